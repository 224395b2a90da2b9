"""load_config() and AuthConfig: flytectl YAML, precedence, sources, endpoint forms, secrets, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.config import ALL_KEYS, DEFAULT_SECRET_LOCATION, AuthConfig, describe, load_config
from flyteauth_core.errors import ConfigError

FULL = """\
admin:
  endpoint: dns:///flyte.example.com:443
  authType: ClientSecret
  insecure: false
  insecureSkipVerify: "yes"
  caCertFilePath: /etc/flyte/ca.pem
  clientId: ci-robot
  clientSecretLocation: /etc/secrets/ci
  clientSecretEnvVar: CI_ROBOT_SECRET
  tokenEndpointAuthMethod: client_secret_post
  scopes: [all, offline]
  audience: https://flyte.example.com
  useAudienceFromAdmin: true
  tokenUrl: https://idp.example.com/oauth2/token
  authorizationHeader: flyte-authorization
  tokenRefreshWindow: 1h30m
  tokenStore: memory
  acmeTenant: tenant-7
  command: [aws, sso, login]
logger:
  level: 5
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's ~/.flyte nor FLYTECTL_CONFIG may leak into these tests."""
    monkeypatch.delenv("FLYTECTL_CONFIG", raising=False)
    monkeypatch.delenv("UCTL_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


# -- the file ---------------------------------------------------------------------------------------
def test_every_flytectl_key_is_read_and_its_source_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(path)
    assert config.endpoint == "dns:///flyte.example.com:443"
    assert config.auth_type == "ClientSecret"
    assert config.insecure is False
    assert config.insecure_skip_verify is True
    assert config.ca_cert_file_path == "/etc/flyte/ca.pem"
    assert config.client_id == "ci-robot"
    assert config.client_secret_location == "/etc/secrets/ci"
    assert config.client_secret_env_var == "CI_ROBOT_SECRET"
    assert config.token_endpoint_auth_method == "client_secret_post"
    assert config.scopes == ("all", "offline")
    assert config.audience == "https://flyte.example.com"
    assert config.use_audience_from_admin is True
    assert config.token_url == "https://idp.example.com/oauth2/token"
    assert config.authorization_header == "flyte-authorization"
    assert config.token_refresh_window == 5400.0
    assert config.store == "memory"
    core = ("endpoint", "authType", "insecure", "insecureSkipVerify", "caCertFilePath", "clientId",
            "clientSecretLocation", "clientSecretEnvVar", "tokenEndpointAuthMethod", "scopes", "audience",
            "useAudienceFromAdmin", "tokenUrl", "authorizationHeader", "tokenRefreshWindow", "tokenStore")
    for key, (field, _) in {k: ALL_KEYS[k] for k in core}.items():  # every core key is tested above
        assert config.sources[field] == f"{path}:admin.{key}", key
    assert "client_secret" not in config.sources


def test_options_expose_the_raw_admin_section_including_unknown_keys(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), options={"fromCode": 1})
    assert config.options["acmeTenant"] == "tenant-7"
    assert config.options["command"] == ["aws", "sso", "login"]
    assert config.options["tokenRefreshWindow"] == "1h30m"  # raw, as written
    assert config.options["fromCode"] == 1
    assert "logger" not in config.options  # only the admin section


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("30s", 30.0), ("1.5h", 5400.0), ("2m30s", 150.0),
     ("1h0m0.5s", 3600.5), ("500us", 0.0005), ("42", 42.0), ("42.5", 42.5), ("0", 0.0), ("120", 120.0)],
)
def test_go_durations(tmp_path: Path, raw: str, seconds: float) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: flyte:443\n  tokenRefreshWindow: '{raw}'\n")
    assert load_config(path).token_refresh_window == pytest.approx(seconds)


def test_duration_as_a_yaml_number(tmp_path: Path) -> None:
    path = write(tmp_path, "admin:\n  endpoint: flyte:443\n  tokenRefreshWindow: 90\n")
    assert load_config(path).token_refresh_window == 90.0


@pytest.mark.parametrize("raw", ["5 minutes", "m", "5x", "''", "1h30", "-5m", "1..5s", "true", "[5m]", "1d"])
def test_bad_duration_names_the_key(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: flyte:443\n  tokenRefreshWindow: {raw}\n")
    with pytest.raises(ConfigError, match=r"admin\.tokenRefreshWindow must be a duration"):
        load_config(path)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("'yes'", True), ("'on'", True), ("'1'", True),
                                                ("false", False), ("'off'", False), ("0", False)])
def test_bool_values(tmp_path: Path, raw: str, expected: bool) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: flyte:443\n  insecure: {raw}\n")
    assert load_config(path).insecure is expected


@pytest.mark.parametrize(("key", "raw"), [("insecure", "maybe"), ("insecureSkipVerify", "2"),
                                          ("useAudienceFromAdmin", "[true]")])
def test_bad_bool_names_the_key(tmp_path: Path, key: str, raw: str) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: flyte:443\n  {key}: {raw}\n")
    with pytest.raises(ConfigError, match=rf"admin\.{key} must be a boolean"):
        load_config(path)


@pytest.mark.parametrize(("key", "raw"), [("clientId", "{a: 1}"), ("endpoint", "[a, b]"), ("scopes", "5"),
                                          ("scopes", "{all: true}")])
def test_wrong_type_names_the_key(tmp_path: Path, key: str, raw: str) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: flyte:443\n  {key}: {raw}\n")
    with pytest.raises(ConfigError, match=rf"admin\.{key} must be"):
        load_config(path)


def test_scopes_as_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "admin:\n  endpoint: flyte:443\n  scopes: 'all, offline  openid'\n")
    assert load_config(path).scopes == ("all", "offline", "openid")


@pytest.mark.parametrize(
    ("text", "line"),
    [("admin:\n  endpoint: a\n   clientId: b\n", 3), ("admin:\n\tendpoint: x\n", 2),
     ("admin:\n  endpoint: dns:///x\n  scopes: [all, offline\n  clientId: b\n", 4)],
)
def test_bad_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert f"not valid YAML at line {line}" in str(info.value)


@pytest.mark.parametrize("text", ["admin: [1, 2]\n", "admin: dns:///flyte\n", "admin: 5\n"])
def test_admin_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"'admin' section .* must be a mapping"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- admin\n", "just a string\n", "42\n"])
def test_document_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, text))


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"admin:\n  endpoint: flyte:443\n  clientId: r\xe9sum\xe9\n")
    with pytest.raises(ConfigError, match=r"config\.yaml.*not UTF-8"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.yaml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)  # a directory is not a config file


@pytest.mark.parametrize("text", ["", "admin:\n", "admin:\n  clientId: x\n", "admin:\n  endpoint: ''\n",
                                  "logger:\n  level: 1\n"])
def test_missing_endpoint_says_where_it_looked(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="No Flyte endpoint configured") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "admin.endpoint" in str(info.value)


def test_no_file_anywhere_lists_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTECTL_CONFIG", str(tmp_path / "from-env.yaml"))  # set, but absent
    with pytest.raises(ConfigError, match="No Flyte endpoint configured") as info:
        load_config()
    message = str(info.value)
    for where in (str(tmp_path / "from-env.yaml"), "config.yaml", ".flyte/config.yaml",
                  str(tmp_path / "home" / ".flyte" / "config.yaml")):
        assert where in message


def test_flytectl_config_env_var_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "admin:\n  endpoint: from-cwd:443\n")
    env_file = write(tmp_path, "admin:\n  endpoint: from-env:443\n", name="env.yaml")
    monkeypatch.setenv("FLYTECTL_CONFIG", str(env_file))
    config = load_config()
    assert config.endpoint == "from-env:443"
    assert config.sources["endpoint"] == f"{env_file}:admin.endpoint"
    monkeypatch.delenv("FLYTECTL_CONFIG")
    assert load_config().endpoint == "from-cwd:443"


def test_home_flyte_config_is_found(tmp_path: Path) -> None:
    (tmp_path / "home" / ".flyte").mkdir(parents=True)
    write(tmp_path / "home" / ".flyte", "admin:\n  endpoint: from-home:443\n")
    assert load_config().endpoint == "from-home:443"


def test_bad_file_on_the_search_path_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "admin: [oops]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config()


# -- precedence -------------------------------------------------------------------------------------
def test_explicit_arguments_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(path, endpoint="dns:///other:443", client_id="override", scopes=("x",), audience=None)
    assert config.endpoint == "dns:///other:443"
    assert config.client_id == "override"
    assert config.scopes == ("x",)
    assert config.sources["endpoint"] == config.sources["client_id"] == config.sources["scopes"] == "argument"
    # None means "not given": the file value stays, with its source
    assert config.audience == "https://flyte.example.com"
    assert config.sources["audience"] == f"{path}:admin.audience"
    assert config.sources["token_url"] == f"{path}:admin.tokenUrl"


def test_arguments_alone_are_enough() -> None:
    config = load_config(endpoint="flyte:443", client_secret="inline")
    assert config.sources == {"endpoint": "argument", "client_secret": "argument"}
    rows = {name: (shown, source) for name, shown, source in describe(config)}
    assert rows["client_secret"] == ("****", "argument")
    assert rows["client_id"] == ("None", "default")


def test_unknown_argument_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown config field 'clientId'"):
        load_config(write(tmp_path, FULL), clientId="x")


def test_bad_auth_method_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "admin:\n  endpoint: flyte:443\n  tokenEndpointAuthMethod: private_key_jwt\n")
    with pytest.raises(ConfigError, match="private_key_jwt"):
        load_config(path)


@pytest.mark.parametrize("endpoint", ["", None, 443])
def test_auth_config_needs_an_endpoint(endpoint: Any) -> None:
    with pytest.raises(ConfigError, match="No Flyte endpoint"):
        AuthConfig(endpoint=endpoint)


# -- endpoint forms ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "insecure", "target", "plaintext", "base_url"),
    [
        ("dns:///flyte.example.com:443", False, "dns:///flyte.example.com:443", False, "https://flyte.example.com"),
        ("dns:///flyte.example.com", False, "dns:///flyte.example.com", False, "https://flyte.example.com"),
        ("flyte.example.com:8089", False, "flyte.example.com:8089", False, "https://flyte.example.com:8089"),
        ("https://flyte.example.com", False, "flyte.example.com:443", False, "https://flyte.example.com"),
        ("https://flyte.example.com/", False, "flyte.example.com:443", False, "https://flyte.example.com"),
        ("https://flyte.example.com:8443", False, "flyte.example.com:8443", False,
         "https://flyte.example.com:8443"),
        ("http://localhost:30080", False, "localhost:30080", True, "http://localhost:30080"),
        ("http://localhost", False, "localhost:80", True, "http://localhost"),
        ("localhost:30080", True, "localhost:30080", True, "http://localhost:30080"),
        ("dns:///localhost:30080", True, "dns:///localhost:30080", True, "http://localhost:30080"),
        ("[::1]:8089", False, "[::1]:8089", False, "https://[::1]:8089"),
        ("https://[::1]", False, "[::1]:443", False, "https://[::1]"),
    ],
)
def test_endpoint_forms(endpoint: str, insecure: bool, target: str, plaintext: bool, base_url: str) -> None:
    config = AuthConfig(endpoint=endpoint, insecure=insecure)
    assert config.grpc_target == target
    assert config.use_plaintext is plaintext
    assert config.http_base_url == base_url


# -- which auth type ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"auth_type": "Pkce", "client_secret": "s"}, "Pkce"),  # explicit wins even with a secret
        ({"auth_type": "DeviceFlow", "client_secret_env_var": "X"}, "DeviceFlow"),
        ({"client_secret": "s"}, "ClientSecret"),
        ({"client_secret_env_var": "X"}, "ClientSecret"),
        ({"client_secret_location": "/x"}, "ClientSecret"),
        ({}, "Pkce"),
        ({"client_id": "flytectl"}, "Pkce"),
    ],
)
def test_resolved_auth_type(kwargs: dict[str, Any], expected: str) -> None:
    assert AuthConfig(endpoint="flyte:443", **kwargs).resolved_auth_type == expected


def test_resolved_auth_type_from_a_file_with_a_secret_location(tmp_path: Path) -> None:
    path = write(tmp_path, "admin:\n  endpoint: flyte:443\n  clientSecretLocation: /etc/secrets/x\n")
    assert load_config(path).resolved_auth_type == "ClientSecret"
    path = write(tmp_path, "admin:\n  endpoint: flyte:443\n  authType: Pkce\n  clientSecretLocation: /x\n")
    assert load_config(path).resolved_auth_type == "Pkce"


# -- the client secret --------------------------------------------------------------------------------
FILE_SECRET = "file-secret-Qz8"
ENV_SECRET = "env-secret-Wk3"
INLINE_SECRET = "inline-secret-Pd5"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client_secret"
    path.write_text(f"  {FILE_SECRET}\n\n")
    return path


def test_inline_secret_wins_over_env_and_file(secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_SECRET_T", f"\t{ENV_SECRET}\r\n")
    config = AuthConfig(endpoint="flyte:443", client_secret=f" {INLINE_SECRET}\n",
                        client_secret_env_var="FLYTE_SECRET_T", client_secret_location=str(secret_file))
    assert config.resolve_client_secret() == INLINE_SECRET


def test_env_var_wins_over_file(secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_SECRET_T", f"\t{ENV_SECRET}\r\n")
    config = AuthConfig(endpoint="flyte:443", client_secret_env_var="FLYTE_SECRET_T",
                        client_secret_location=str(secret_file))
    assert config.resolve_client_secret() == ENV_SECRET


def test_file_is_read_and_trimmed(secret_file: Path) -> None:
    config = AuthConfig(endpoint="flyte:443", client_secret_location=str(secret_file))
    assert config.resolve_client_secret() == FILE_SECRET


@pytest.mark.parametrize("padding", [("", ""), (" ", " "), ("", "\n"), ("\t", "\r\n"), ("\n", "\n\n")])
def test_whitespace_is_trimmed_the_same_for_all_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, padding: tuple[str, str]
) -> None:
    value = f"{padding[0]}s3cr3t{padding[1]}"
    (tmp_path / "secret").write_text(value)
    monkeypatch.setenv("FLYTE_SECRET_T", value)
    results = {
        AuthConfig(endpoint="flyte:443", client_secret=value).resolve_client_secret(),
        AuthConfig(endpoint="flyte:443", client_secret_env_var="FLYTE_SECRET_T").resolve_client_secret(),
        AuthConfig(endpoint="flyte:443", client_secret_location=str(tmp_path / "secret")).resolve_client_secret(),
    }
    assert results == {"s3cr3t"}


@pytest.mark.parametrize("blank", [" ", "\n", " \t\r\n"])
def test_blank_secret_is_an_error_the_same_for_all_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    (tmp_path / "secret").write_text(blank)
    monkeypatch.setenv("FLYTE_SECRET_T", blank)
    for kwargs in ({"client_secret": blank}, {"client_secret_env_var": "FLYTE_SECRET_T"},
                   {"client_secret_location": str(tmp_path / "secret")}):
        with pytest.raises(ConfigError):
            AuthConfig(endpoint="flyte:443", **kwargs).resolve_client_secret()


def test_unset_env_var_names_the_variable_not_a_secret(secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYTE_SECRET_UNSET", raising=False)
    config = AuthConfig(endpoint="flyte:443", client_secret_env_var="FLYTE_SECRET_UNSET",
                        client_secret_location=str(secret_file))
    with pytest.raises(ConfigError) as info:
        config.resolve_client_secret()  # no silent fall back to the file
    assert "FLYTE_SECRET_UNSET" in str(info.value)
    assert FILE_SECRET not in str(info.value) and FILE_SECRET not in repr(info.value)


def test_empty_env_var_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_SECRET_EMPTY", "")
    config = AuthConfig(endpoint="flyte:443", client_secret_env_var="FLYTE_SECRET_EMPTY")
    with pytest.raises(ConfigError, match="FLYTE_SECRET_EMPTY"):
        config.resolve_client_secret()


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "secret"
    with pytest.raises(ConfigError) as info:
        AuthConfig(endpoint="flyte:443", client_secret_location=str(missing)).resolve_client_secret()
    assert str(missing) in str(info.value)
    assert "clientSecretEnvVar" in str(info.value)  # says what else would work


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("")
    with pytest.raises(ConfigError, match="is empty") as info:
        AuthConfig(endpoint="flyte:443", client_secret_location=str(tmp_path / "secret")).resolve_client_secret()
    assert str(tmp_path / "secret") in str(info.value)


def test_secret_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read the client secret file"):
        AuthConfig(endpoint="flyte:443", client_secret_location=str(tmp_path)).resolve_client_secret()


def test_secret_file_that_is_not_utf8_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xff\xfe" + FILE_SECRET.encode())
    with pytest.raises(ConfigError) as info:
        AuthConfig(endpoint="flyte:443", client_secret_location=str(path)).resolve_client_secret()
    assert str(path) in str(info.value)
    for text in (str(info.value), repr(info.value), repr(info.value.__cause__), repr(info.value.__context__)):
        assert FILE_SECRET not in text


def test_nothing_configured_reads_the_default_location(tmp_path: Path) -> None:
    if Path(DEFAULT_SECRET_LOCATION).exists():
        pytest.skip(f"{DEFAULT_SECRET_LOCATION} exists on this machine")
    with pytest.raises(ConfigError, match=DEFAULT_SECRET_LOCATION):
        AuthConfig(endpoint="flyte:443").resolve_client_secret()


def test_repr_hides_the_secret_and_equality_ignores_sources() -> None:
    config = AuthConfig(endpoint="flyte:443", client_id="ci", client_secret="repr-canary-Zx9")
    assert "repr-canary-Zx9" not in repr(config) and "repr-canary-Zx9" not in str(config)
    assert "client_id='ci'" in repr(config)
    assert config == AuthConfig(endpoint="flyte:443", client_id="ci", client_secret="repr-canary-Zx9",
                                sources={"endpoint": "argument"})


def test_a_key_with_no_value_is_unset_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("admin:\n  endpoint: dns:///flyte.example.com:443\n  insecure:\n  tokenRefreshWindow:\n")
    config = load_config(path)
    assert config.insecure is False and config.token_refresh_window is None
    assert "insecure" not in config.sources
