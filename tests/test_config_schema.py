"""One config schema: each AuthConfig field declared once; AuthConfig validates at construction; the
keyword path, the file path and the environment agree; hashable, read-only, picklable; compat keys."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import attrs
import pytest

from flyteauth_core import AuthConfig
from flyteauth_core.config import (
    COMPAT_FIELDS,
    FLYTE2_ENV,
    FLYTEKIT_ENV,
    OUR_ENV,
    SETTINGS,
    describe,
    key_table,
    load_config,
)
from flyteauth_core.errors import ConfigError

ENDPOINT = "dns:///flyte.example.invalid:443"
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("how", ["keyword", "load_config", "flyte2 env", "flytekit env", "ours env", "yaml", "ini"])
def test_false_means_tls_on_every_path(how: str, tmp_path: Path) -> None:
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"admin:\n  endpoint: {ENDPOINT}\n  insecure: 'false'\n")
    ini = tmp_path / "c.ini"
    ini.write_text(f"[platform]\nurl = {ENDPOINT}\ninsecure = false\n")
    env = {"FLYTE_ADMIN_ENDPOINT": ENDPOINT}
    config = {
        "keyword": lambda: AuthConfig(endpoint=ENDPOINT, insecure="false"),  # type: ignore[arg-type]
        "load_config": lambda: load_config(None, env=env, insecure="false"),
        "flyte2 env": lambda: load_config(None, env={**env, "FLYTE_ADMIN_INSECURE": "false"}),
        "flytekit env": lambda: load_config(None, env={**env, "FLYTE_PLATFORM_INSECURE": "False"}),
        "ours env": lambda: load_config(None, env={**env, "FLYTEAUTH_INSECURE": "0"}),
        "yaml": lambda: load_config(yaml, env={}),
        "ini": lambda: load_config(ini, env={}),
    }[how]()
    assert config.insecure is False and config.use_plaintext is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"insecure": "maybe"}, r"insecure must be a boolean .* got 'maybe'"),
        ({"idp_insecure_skip_verify": "nope"}, r"idp_insecure_skip_verify \(admin.idpInsecureSkipVerify\) must be"),
        ({"http_timeout": "soon"}, r"http_timeout \(admin.httpTimeout\) must be a duration"),
        ({"pkce_timeout": -5}, r"pkce_timeout \(admin.pkceConfig.timeout\) must be a finite, non-negative"),
        ({"token_endpoint_auth_method": "magic"}, r"Unsupported tokenEndpointAuthMethod 'magic'"),
        ({"max_retries": "many"}, r"max_retries \(admin.maxRetries\) must be a whole number"),
        ({"client_id": {"a": 1}}, r"client_id \(admin.clientId\) must be a string"),
        ({"scopes": [1, True]}, r"scopes must be a list of strings"),
    ],
)
def test_auth_config_validates_at_construction_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuthConfig(endpoint=ENDPOINT, **kwargs)  # type: ignore[arg-type]


def test_keyword_values_are_converted_like_file_values() -> None:
    config = AuthConfig(endpoint=ENDPOINT, http_timeout="1m30s", scopes="a, b c", command="aws sso login",  # type: ignore[arg-type]
                        disable_keyring="yes", max_retries="3")  # type: ignore[arg-type]
    assert (config.http_timeout, config.scopes, config.command) == (90.0, ("a", "b", "c"), ("aws", "sso", "login"))
    assert config.disable_keyring is True and config.max_retries == 3
    assert config == AuthConfig(endpoint=ENDPOINT, http_timeout=90, scopes=["a", "b", "c"],  # type: ignore[arg-type]
                                command=("aws", "sso", "login"), disable_keyring=True, max_retries=3)


def test_config_is_hashable_read_only_and_picklable() -> None:
    raw = {"acme": {"tenant": "t"}, "list": [1]}
    config = AuthConfig(endpoint=ENDPOINT, client_secret="s3cr3t-value", options=raw)
    other = AuthConfig(endpoint=ENDPOINT, client_secret="s3cr3t-value", options={"other": 1})
    same = AuthConfig(endpoint=ENDPOINT, client_secret="s3cr3t-value", options={"acme": {"tenant": "t"}, "list": [1]})
    assert hash(config) == hash(other) and config != other  # options take part in ==, not in the hash
    assert {config: 1}[same] == 1
    with pytest.raises(TypeError):
        config.options["new"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        config.options["acme"]["tenant"] = "x"
    raw["acme"]["tenant"] = "changed"  # the caller's dict is copied, not shared
    assert config.options["acme"]["tenant"] == "t"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.insecure = True  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.options == config.options


def test_every_field_is_declared_once_with_its_dialects() -> None:
    declared = {f.name for f in attrs.fields(AuthConfig)} - {"options", "sources", "problems", "trust"}
    assert set(SETTINGS) == declared
    assert FLYTEKIT_ENV["FLYTE_CREDENTIALS_CLIENT_SECRET"] == "client_secret"
    assert FLYTE2_ENV["FLYTE_ADMIN_INSECURE"] == "insecure" and FLYTE2_ENV["FLYTE_AUTH_TYPE"] == "auth_type"
    assert OUR_ENV["FLYTEAUTH_TOKEN"] == "token"
    assert "FLYTE_ADMIN_PKCECONFIG.TIMEOUT" not in FLYTE2_ENV  # nested keys have no flyte 2.x variable
    assert {n for n, s in SETTINGS.items() if s.secret} == {"client_secret", "token"}
    assert "s3cr3t-value" not in repr(AuthConfig(endpoint=ENDPOINT, client_secret="s3cr3t-value"))


def test_compatibility_only_keys_are_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"""\
admin:
  endpoint: {ENDPOINT}
  maxRetries: 7
  perRetryTimeout: 3s
  maxBackoffDelay: 1s
  org: acme
  pkceConfig:
    refreshTime: 1m
  deviceFlowConfig:
    refreshTime: 1m
""")
    rows = {field: source for field, _, source in describe(load_config(path, env={}))}
    assert set(COMPAT_FIELDS) == {"max_retries", "per_retry_timeout", "max_backoff_delay", "org",
                                  "pkce_refresh_time", "device_flow_refresh_time"}
    for field in COMPAT_FIELDS:
        assert "accepted for compatibility, no effect" in rows[field], field
    assert "accepted for compatibility" not in rows["endpoint"]


def test_commands_and_proxy_urls_are_masked_in_describe() -> None:
    config = AuthConfig(endpoint=ENDPOINT, command=("get-token", "--password", "hunter2"),
                        http_proxy_url="http://me:pw@proxy:3128")
    rows = {field: value for field, value, _ in describe(config)}
    assert rows["command"] == "('get-token', '<2 arguments hidden>')" and "hunter2" not in rows["command"]
    assert rows["http_proxy_url"] == "'http://me:****@proxy:3128'"


def test_readme_key_table_is_generated_from_the_schema() -> None:
    text = README.read_text()
    match = re.search(r"<!-- keys:start -->\n(.*?)\n<!-- keys:end -->", text, re.S)
    assert match, "README.md lacks the generated key table markers"
    assert match.group(1).strip() == key_table().strip(), (
        "README key table is stale: regenerate with python -c 'from flyteauth_core.config import key_table; "
        "print(key_table())'"
    )


def test_flytectl_grpc_keys_are_compatibility_notes_not_unknown(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"admin:\n  endpoint: {ENDPOINT}\n  maxMessageSizeBytes: 1000\n  defaultServiceConfig: '{{}}'\n")
    problems = load_config(path, env={}).problems
    assert len(problems) == 2 and all("accepted for compatibility, no effect" in p for p in problems)
    assert f"admin.maxMessageSizeBytes in {path}" in problems[0]
