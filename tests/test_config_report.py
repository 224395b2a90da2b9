"""``flyteauth config``: the user's keys as written, where they came from, and every offline problem."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import load_config
from flyteauth_core.config_report import format_value, problems, report

SECRET = "cfg-report-secret-canary-7Qz"


def flyteauth(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "flyteauth_core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=60, check=False, cwd=cwd)


def user_config(tmp_path: Path, body: str, *, secret: bool = True, mode: int = 0o600) -> Path:
    """The issue's new user: a flytectl config (with whatever ``body`` adds) and a secret file."""
    secret_file = tmp_path / "secret"
    if secret:
        secret_file.write_text(SECRET + "\n")
        secret_file.chmod(mode)
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com\n  authType: ClientSecret\n  clientId: ci\n"
                      f"  clientSecretLocation: {secret_file}\n{body}")
    return config


def test_a_good_config_shows_the_users_keys_and_exits_0(tmp_path: Path) -> None:
    config = user_config(tmp_path, "  scopes: [all]\n")
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "admin.clientSecretLocation" in out and "client_secret_location" not in out
    assert f"config file: {config}" in out and "problems: none" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("admin.")}
    assert rows["admin.scopes"] == ["[all]", str(config)]
    assert rows["admin.clientId"] == ["ci", str(config)]
    assert "admin.pkceConfig.timeout" not in rows  # a default: only with --all
    assert SECRET not in out + result.stderr


def test_a_misspelt_key_is_a_warning_that_names_the_right_key(tmp_path: Path) -> None:
    """A warning, as at runtime (logged, and the session works): exit 0; 1 with --strict.  (0.2.0: an error,
    exit 1, while the runtime only warned.)"""
    config = user_config(tmp_path, "  clientSecretLocaton: /somewhere\n")
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert flyteauth("config", "--strict", "--config", str(config)).returncode == 1
    assert "warning: admin.clientSecretLocaton is not a key flyteauth reads" in result.stdout
    assert "Rename admin.clientSecretLocaton to admin.clientSecretLocation" in result.stdout
    assert "client_secret_location" not in result.stdout
    assert result.stderr.count("clientSecretLocaton") == 0  # reported in the table, not also as a log warning


def test_a_missing_secret_file_exits_non_zero_and_says_the_key_is_set_but_wrong(tmp_path: Path) -> None:
    config = user_config(tmp_path, "", secret=False)
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 1
    assert f"error: admin.clientSecretLocation names {tmp_path / 'secret'}, which does not exist" in result.stdout
    assert result.stdout.count(str(tmp_path / "secret")) == 3, result.stdout  # the row, the error, its fix: once
    assert "cannot describe the provider" not in result.stdout
    data = json.loads(flyteauth("config", "--json", "--config", str(config)).stdout)
    assert data["ok"] is False
    assert [(p["key"], p["state"], p["severity"]) for p in data["problems"]] == [
        ("admin.clientSecretLocation", "wrong", "error")]


def test_the_misspelt_key_and_the_missing_file_together(tmp_path: Path) -> None:
    """The issue's scenario: both problems listed, not only the typo."""
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///flyte.example.com\n  authType: ClientSecret\n  clientId: ci\n"
                      f"  clientSecretLocaton: /x\n  clientSecretLocation: {tmp_path / 'missing'}\n")
    data = json.loads(flyteauth("config", "--json", "--config", str(config)).stdout)
    assert [(p["key"], p["state"]) for p in data["problems"]] == [("admin.clientSecretLocation", "wrong"),
                                                                  ("admin.clientSecretLocaton", "unknown")]


def test_flyteauth_token_prints_the_warning_once_and_an_error_that_does_not_say_set_it_again(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n"
                      f"  clientId: ci\n  clientSecretLocaton: /x\n  clientSecretLocation: {tmp_path / 'missing'}\n")
    result = flyteauth("token", "--config", str(config))
    assert result.returncode == 2  # the credential helper's exit code for a configuration error
    assert result.stderr.count("unknown key 'clientSecretLocaton'") == 1
    assert "Set admin.clientSecretLocation" not in result.stderr
    assert "admin.clientSecretLocation is set" in result.stderr and str(tmp_path / "missing") in result.stderr


def test_each_warning_is_logged_once_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///a:1\n  clientIdd: x\n")
    with caplog.at_level(logging.DEBUG, logger="flyteauth.config"):
        for _ in range(3):
            assert load_config(config).problems  # every load still reports it as data
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "clientIdd" in r.getMessage()]
    assert len(warnings) == 1


def test_an_unset_secret_location_is_called_unset(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///a:1\n  authType: ClientSecret\n  clientId: ci\n")
    [problem] = problems(load_config(config, env={}), env={})
    assert (problem.key, problem.state) == ("admin.clientSecretLocation", "unset")
    assert "is unset" in problem.message and "/etc/secrets/client_secret" in problem.message


def test_a_secret_file_readable_by_others_is_a_warning(tmp_path: Path) -> None:
    """One severity (a warning) in `flyteauth config`, doctor and at runtime; 0.2.0 exited 1 here while doctor
    said WARN and the runtime said nothing."""
    config = user_config(tmp_path, "", mode=0o644)
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0 and "warning: " in result.stdout
    assert flyteauth("config", "--strict", "--config", str(config)).returncode == 1
    assert "readable by others (mode 0644)" in result.stdout and f"chmod 600 {tmp_path / 'secret'}" in result.stdout


def test_missing_ca_client_key_token_file_and_env_var_each_name_their_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///a:1\n  authType: ClientSecret\n  clientId: ci\n"
                      f"  tokenEndpointAuthMethod: private_key_jwt\n  clientKeyFilePath: {tmp_path / 'key.pem'}\n"
                      f"  caCertFilePath: {tmp_path / 'ca.pem'}\n  idpCaCertFilePath: {tmp_path}\n"
                      "  proxyCommand: [no-such-program-xyz, --token, abc]\n")
    found = {p.key: p for p in problems(load_config(config, env={}), env={})}
    assert set(found) == {"admin.clientKeyFilePath", "admin.caCertFilePath", "admin.idpCaCertFilePath",
                          "admin.proxyCommand"}
    assert all(p.state == "wrong" and p.severity == "error" for p in found.values())
    assert "is not a file" in found["admin.idpCaCertFilePath"].message
    passthrough = tmp_path / "pt.yaml"
    passthrough.write_text(f"admin:\n  endpoint: dns:///a:1\n  authType: Passthrough\n"
                           f"  tokenFilePath: {tmp_path / 'token'}\n  tokenEnvVar: MY_TOKEN_VAR\n")
    found = {p.key: p for p in problems(load_config(passthrough, env={}), env={})}
    assert set(found) == {"admin.tokenFilePath", "admin.tokenEnvVar"}
    assert "MY_TOKEN_VAR, which is unset" in found["admin.tokenEnvVar"].message


def test_no_secret_configs_need_no_secret_but_their_platform_token_file(tmp_path: Path) -> None:
    """README's "No secrets on disk": federated_jwt and TokenExchange send no client secret, so a missing
    /etc/secrets/client_secret is no problem; a platform token file that is not there is, naming its key."""
    missing = tmp_path / "tokens" / "flyte"
    federated = tmp_path / "fed.yaml"
    federated.write_text("admin:\n  endpoint: dns:///a:1\n  authType: ClientSecret\n  clientId: app\n"
                         "  tokenEndpointAuthMethod: federated_jwt\n  tokenUrl: https://idp.example/token\n"
                         f"  platformTokenFile: {missing}\n  platformTokenAudience: api://AzureADTokenExchange\n")
    exchange = tmp_path / "tx.yaml"
    exchange.write_text("admin:\n  endpoint: dns:///a:1\n  authType: flyteauth\nflyteauth:\n"
                        f"  authType: TokenExchange\n  platformTokenFile: {missing}\n")
    for config, key in ((federated, "admin.platformTokenFile"), (exchange, "flyteauth.platformTokenFile")):
        [problem] = problems(load_config(config, env={}), env={})
        assert (problem.key, problem.state, problem.severity) == (key, "wrong", "error")
        assert f"names {missing}, which does not exist" in problem.message
        missing.parent.mkdir(exist_ok=True)
        missing.write_text("header.payload.signature")
        assert problems(load_config(config, env={}), env={}) == []
        missing.unlink()


def test_env_vars_are_shown_by_their_own_names(tmp_path: Path) -> None:
    result = flyteauth("config", "--json", cwd=tmp_path, env={
        "FLYTE_PLATFORM_URL": "dns:///a:1", "FLYTE_CREDENTIALS_CLIENT_SECRET": SECRET,
        "FLYTE_CREDENTIALS_CLIENT_ID": "ci", "FLYTE_AUTH_TYPE": "ClientSecret", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    settings = {s["key"]: s for s in data["settings"]}
    assert settings["$FLYTE_CREDENTIALS_CLIENT_SECRET"]["value"] == "****"
    assert settings["$FLYTE_CREDENTIALS_CLIENT_SECRET"]["origin"] == "environment"
    assert settings["$FLYTE_AUTH_TYPE"]["value"] == "ClientSecret"
    assert data["file"] is None
    assert SECRET not in result.stdout + result.stderr


def test_all_adds_the_defaults(tmp_path: Path) -> None:
    config = user_config(tmp_path, "")
    plain = json.loads(flyteauth("config", "--json", "--config", str(config)).stdout)["settings"]
    full = json.loads(flyteauth("config", "--json", "--all", "--config", str(config)).stdout)["settings"]
    assert {s["key"] for s in plain} < {s["key"] for s in full}
    defaults = {s["key"]: s for s in full if s["origin"] == "default"}
    assert defaults["admin.pkceConfig.timeout"]["value"] == "120"
    assert defaults["admin.insecure"]["value"] == "false"
    assert defaults["admin.audience"]["value"] == "(unset)"
    text = flyteauth("config", "--all", "--config", str(config)).stdout
    assert "admin.deviceFlowConfig.pollInterval" in text and "default" in text


def test_command_arguments_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///a:1\n  authType: ExternalCommand\n"
                      f"  command: [{sys.executable}, --token=cmd-secret-1, cmd-secret-2]\n"
                      f"  proxyCommand: [{sys.executable}, proxy-secret-3]\n")
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert f"{sys.executable} **** ****" in result.stdout and f"{sys.executable} ****" in result.stdout
    assert "secret-" not in result.stdout
    assert format_value("command", ("gcloud",)) == "gcloud"


def test_report_is_data_first(tmp_path: Path) -> None:
    config = load_config(user_config(tmp_path, ""), env={})
    result = report(config, include_defaults=True)
    assert result.ok and result.auth_type == "ClientSecret"
    assert {r.field for r in result.rows} >= {"client_secret_location", "endpoint", "pkce_timeout"}
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True


def test_keys_a_plugin_declares_are_shown_validated_and_masked(tmp_path: Path) -> None:
    from flyteauth_core.config_report import rows
    from flyteauth_core.options import Option

    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///a:1\n  authType: Pkce\nflyteauth:\n"
                      f"  tokenStorePath: {tmp_path}\n  acmeApiToken: acme-secret-88\n")
    data = json.loads(flyteauth("config", "--json", "--config", str(config)).stdout)
    settings = {s["key"]: s for s in data["settings"]}
    assert settings["flyteauth.tokenStorePath"]["origin"] == str(config)  # the file store declares it
    assert not any("tokenStorePath" in p["message"] for p in data["problems"])
    loaded = load_config(config, env={})
    shown = {r.key: r.value for r in rows(loaded, declared={"acmeApiToken": Option("acmeApiToken", secret=True)})}
    assert shown["flyteauth.acmeApiToken"] == "****"
    config.write_text(config.read_text() + "  tokenStoreLockTimeout: soon\n")
    result = flyteauth("config", "--json", "--config", str(config))
    assert result.returncode == 1
    bad = [p for p in json.loads(result.stdout)["problems"] if "tokenStoreLockTimeout" in p["key"]]
    assert bad  # one per store that reads the key (file, redis)
    assert {(p["key"], p["state"], p["severity"]) for p in bad} == {("flyteauth.tokenStoreLockTimeout", "wrong",
                                                                      "error")}


def test_a_key_in_the_flyteauth_section_is_named_as_written(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///a:1\n  authType: flyteauth\nflyteauth:\n  authType: ClientSecret\n"
                      f"  clientId: ci\n  clientSecretLocation: {tmp_path / 'missing'}\n")
    data = json.loads(flyteauth("config", "--json", "--config", str(config)).stdout)
    assert {s["key"] for s in data["settings"]} >= {"flyteauth.authType", "flyteauth.clientSecretLocation"}
    [problem] = data["problems"]
    assert (problem["key"], problem["state"]) == ("flyteauth.clientSecretLocation", "wrong")


def test_keys_accepted_for_compatibility_are_notes_not_problems(tmp_path: Path) -> None:
    config = user_config(tmp_path, "  maxRetries: 3\n  maxMessageSizeBytes: 1000\n")
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert "note: admin.maxRetries is accepted for compatibility, no effect" in result.stdout
    assert "note: admin.maxMessageSizeBytes" in result.stdout and "problems: none" in result.stdout


def test_a_stray_config_yaml_without_an_admin_section_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("some_other_tool:\n  setting: 1\n")
    result = flyteauth("config", cwd=tmp_path, env={"FLYTE_ADMIN_ENDPOINT": "dns:///a:1", "FLYTE_AUTH_TYPE": "Pkce",
                                                   "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: " in result.stdout and "has no admin: or flyteauth: section" in result.stdout


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


def test_config_shows_where_the_platform_token_comes_from_and_its_claims_never_the_token(tmp_path: Path) -> None:
    """Issue 12: a pod with no secret can check, offline, which platform token it will present."""
    token = _unsigned_jwt({"iss": "https://cluster.example", "sub": "system:serviceaccount:ml:trainer",
                           "aud": "flyte", "exp": 4102444800})
    token_file = tmp_path / "projected-token"
    token_file.write_text(token)
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com\n  authType: TokenExchange\n"
                      f"  tokenUrl: https://idp.example/token\n  platformTokenFile: {token_file}\n")
    text = flyteauth("config", "--config", str(config))
    assert f"file {token_file}" in text.stdout
    assert "system:serviceaccount:ml:trainer" in text.stdout and "https://cluster.example" in text.stdout
    data = json.loads(flyteauth("config", "--config", str(config), "--json").stdout)
    platform = data["provider_details"]["platform_token"]
    assert platform["sub"] == "system:serviceaccount:ml:trainer" and platform["aud"] in ("flyte", ["flyte"])
    for out in (text.stdout, text.stderr, json.dumps(data)):
        assert token not in out and token.split(".")[1] not in out


def test_secret_errors_name_keys_in_the_section_the_user_wrote(tmp_path: Path) -> None:
    """A secret configured in flyteauth: gets a fix in flyteauth:, not in admin: (where flytekit would take
    over): the missing file suggests flyteauth.clientSecretEnvVar, the unset variable names its own key."""
    from flyteauth_core import ConfigError

    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///a:1\n  authType: flyteauth\nflyteauth:\n  authType: ClientSecret\n"
                      f"  clientId: ci\n  clientSecretLocation: {tmp_path / 'nope'}\n")
    with pytest.raises(ConfigError) as missing:
        load_config(config, env={}).resolve_client_secret()
    assert "flyteauth.clientSecretLocation is set" in str(missing.value)
    assert "flyteauth.clientSecretEnvVar instead" in str(missing.value) and "admin." not in str(missing.value)
    config.write_text("admin:\n  endpoint: dns:///a:1\n  authType: flyteauth\nflyteauth:\n  authType: ClientSecret\n"
                      "  clientId: ci\n  clientSecretEnvVar: FLYTEAUTH_TEST_UNSET_SECRET_VAR\n")
    with pytest.raises(ConfigError) as unset:
        load_config(config, env={}).resolve_client_secret()
    assert str(unset.value).startswith("flyteauth.clientSecretEnvVar names 'FLYTEAUTH_TEST_UNSET_SECRET_VAR'")
    assert "fix flyteauth.clientSecretEnvVar" in str(unset.value)


def test_a_bad_value_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    """0.2.0 printed only ``insecure: "maybe"``'s error; now every problem is listed, errors first."""
    config = user_config(tmp_path, '  insecure: "maybe"\n  httpTimeout: soon\n  clientIdd: x\n', secret=False)
    result = flyteauth("config", "--json", "--config", str(config))
    assert result.returncode == 1
    found = [(p["severity"], p["key"]) for p in json.loads(result.stdout)["problems"]]
    assert found == [("error", "admin.insecure"), ("error", "admin.httpTimeout"),
                     ("error", "admin.clientSecretLocation"), ("warning", "admin.clientIdd")]
    text = flyteauth("config", "--config", str(config)).stdout
    assert "error: admin.insecure must be a boolean" in text and "warning: admin.clientIdd" in text


def test_no_endpoint_is_listed_with_the_values_rejected_before_it(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  insecure: maybe\n")
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 1
    assert "error: admin.insecure must be a boolean" in result.stdout
    assert "error: No Flyte endpoint configured" in result.stdout


def test_the_runtime_warns_once_about_a_secret_file_others_can_read(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The same severity as `flyteauth config` and doctor: a warning (0.2.0 said nothing at runtime)."""
    config = load_config(user_config(tmp_path, "", mode=0o644), env={})
    with caplog.at_level(logging.DEBUG, logger="flyteauth.config"):
        assert config.resolve_client_secret() == SECRET
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "readable by others" in r.getMessage()]
    assert len(warned) == 1 and "chmod 600" in warned[0].getMessage()
