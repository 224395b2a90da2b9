"""Every config dialect users already have: flytectl/flyte 2.x YAML, flytekit INI, flytekit, flyte 2.x and
FLYTEAUTH env vars, FLYTE_API_KEY, explicit arguments; precedence and sources; `flyteauth config`."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthSession
from flyteauth_core.config import ALL_KEYS, FLYTE2_ENV, FLYTEKIT_ENV, decode_api_key, default_config_paths, load_config
from flyteauth_core.errors import ConfigError
from flyteauth_core.testing import ECHO, FlyteTestServer

from ._idp import CI_BASIC, IdpServer


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(os.environ):
        if var.startswith(("FLYTE", "UCTL_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def api_key(endpoint: str, client_id: str, secret: str, org: str = "") -> str:
    return base64.b64encode(f"{endpoint}:{client_id}:{secret}:{org}".encode()).decode()


YAML_FULL = """\
admin:
  endpoint: dns:///file.example.com:443
  authType: Pkce
  insecure: false
  clientId: file-client
  scopes: [all, offline]
  audience: file-aud
  httpProxyURL: http://proxy.corp:3128
  command: [acme-token, --json]
  proxyCommand: [acme-proxy]
  pkceConfig:
    timeout: 3m
    refreshTime: 1m
  deviceFlowConfig:
    timeout: 15m
    pollInterval: 7s
  maxRetries: 6
  perRetryTimeout: 20s
  maxBackoffDelay: 1m
  disableKeyring: true
"""

INI_FULL = """\
[platform]
url = ini.example.com:443
insecure = True
insecure_skip_verify = false
ca_cert_file_path = /etc/ini/ca.pem
http_proxy_url = http://ini-proxy:8080

[credentials]
client_id = ini-client
client_secret_location = /etc/ini/secret
scopes = all, offline
auth_mode = basic
audience = ini-aud
command = acme-token,--ini
"""

F = "{file}"  # placeholder: the scenario's config file
# Each: (id, file name, file text, env, arguments, {field: (value, source)})
Scenario = tuple[str, str | None, str | None, dict[str, str], dict[str, Any], dict[str, tuple[Any, str]]]
SCENARIOS: list[Scenario] = [
    # -- YAML alone ---------------------------------------------------------------------------------
    ("yaml-endpoint", "config.yaml", "admin:\n  endpoint: dns:///a:443\n", {}, {},
     {"endpoint": ("dns:///a:443", f"{F}:admin.endpoint"), "insecure": (False, "default"),
      "auth_type": (None, "default")}),
    ("yaml-full-surface", "config.yaml", YAML_FULL, {}, {},
     {"client_id": ("file-client", f"{F}:admin.clientId"), "scopes": (("all", "offline"), f"{F}:admin.scopes"),
      "http_proxy_url": ("http://proxy.corp:3128", f"{F}:admin.httpProxyURL"),
      "command": (("acme-token", "--json"), f"{F}:admin.command"),
      "proxy_command": (("acme-proxy",), f"{F}:admin.proxyCommand")}),
    ("yaml-nested-durations", "config.yaml", YAML_FULL, {}, {},
     {"pkce_timeout": (180.0, f"{F}:admin.pkceConfig.timeout"),
      "pkce_refresh_time": (60.0, f"{F}:admin.pkceConfig.refreshTime"),
      "device_flow_timeout": (900.0, f"{F}:admin.deviceFlowConfig.timeout"),
      "device_flow_poll_interval": (7.0, f"{F}:admin.deviceFlowConfig.pollInterval"),
      "device_flow_refresh_time": (300.0, "default")}),
    ("yaml-retries-keyring", "config.yaml", YAML_FULL, {}, {},
     {"max_retries": (6, f"{F}:admin.maxRetries"), "per_retry_timeout": (20.0, f"{F}:admin.perRetryTimeout"),
      "max_backoff_delay": (60.0, f"{F}:admin.maxBackoffDelay"),
      "disable_keyring": (True, f"{F}:admin.disableKeyring")}),
    ("yaml-our-keys", "config.yaml",
     "admin:\n  endpoint: a:1\n  tokenEndpointAuthMethod: private_key_jwt\n  clientKeyFilePath: /k.pem\n"
     "  commandTimeout: 45s\n  proxyAuthForIdP: yes\n  idpCaCertFilePath: /idp-ca.pem\n  tokenFilePath: /t\n", {}, {},
     {"token_endpoint_auth_method": ("private_key_jwt", f"{F}:admin.tokenEndpointAuthMethod"),
      "client_key_file_path": ("/k.pem", f"{F}:admin.clientKeyFilePath"),
      "command_timeout": (45.0, f"{F}:admin.commandTimeout"),
      "proxy_auth_for_idp": (True, f"{F}:admin.proxyAuthForIdP"),
      "idp_ca_cert_file_path": ("/idp-ca.pem", f"{F}:admin.idpCaCertFilePath"),
      "token_file_path": ("/t", f"{F}:admin.tokenFilePath")}),
    ("yaml-command-as-string", "config.yaml", "admin:\n  endpoint: a:1\n  command: gcloud auth print-access-token\n",
     {}, {}, {"command": (("gcloud", "auth", "print-access-token"), f"{F}:admin.command")}),
    ("yaml-scopes-json-string", "config.yaml", "admin:\n  endpoint: a:1\n  scopes: '[\"all\", \"read\"]'\n", {}, {},
     {"scopes": (("all", "read"), f"{F}:admin.scopes")}),
    ("yaml-found-in-dot-flyte", ".flyte/config.yaml", "admin:\n  endpoint: dotflyte:1\n", {}, {},
     {"endpoint": ("dotflyte:1", f"{F}:admin.endpoint")}),
    ("yaml-found-in-home-union", "home/.union/config.yaml", "admin:\n  endpoint: union:1\n", {}, {},
     {"endpoint": ("union:1", f"{F}:admin.endpoint")}),
    ("yaml-via-UCTL_CONFIG", "elsewhere/uctl.yaml", "admin:\n  endpoint: uctl:1\n",
     {"UCTL_CONFIG": "{tmp}/elsewhere/uctl.yaml"}, {}, {"endpoint": ("uctl:1", f"{F}:admin.endpoint")}),
    ("yaml-via-FLYTEAUTH_CONFIG", "elsewhere/ours.yaml", "admin:\n  endpoint: ours:1\n",
     {"FLYTEAUTH_CONFIG": "{tmp}/elsewhere/ours.yaml"}, {}, {"endpoint": ("ours:1", f"{F}:admin.endpoint")}),
    # -- flytekit INI -------------------------------------------------------------------------------
    ("ini-full", "flytekit.config", INI_FULL, {}, {},
     {"endpoint": ("ini.example.com:443", f"{F}:[platform] url"), "insecure": (True, f"{F}:[platform] insecure"),
      "insecure_skip_verify": (False, f"{F}:[platform] insecure_skip_verify"),
      "ca_cert_file_path": ("/etc/ini/ca.pem", f"{F}:[platform] ca_cert_file_path"),
      "http_proxy_url": ("http://ini-proxy:8080", f"{F}:[platform] http_proxy_url"),
      "client_id": ("ini-client", f"{F}:[credentials] client_id"),
      "client_secret_location": ("/etc/ini/secret", f"{F}:[credentials] client_secret_location"),
      "scopes": (("all", "offline"), f"{F}:[credentials] scopes"),
      "auth_type": ("basic", f"{F}:[credentials] auth_mode"), "audience": ("ini-aud", f"{F}:[credentials] audience"),
      "command": (("acme-token", "--ini"), f"{F}:[credentials] command")}),
    ("ini-in-home", "home/.flyte/config", "[platform]\nurl = home-ini:1\n[credentials]\nclient_secret = s3\n", {}, {},
     {"endpoint": ("home-ini:1", f"{F}:[platform] url"), "client_secret": ("s3", f"{F}:[credentials] client_secret")}),
    ("ini-env-wins", "flytekit.config", INI_FULL, {"FLYTE_CREDENTIALS_CLIENT_ID": "env-client"}, {},
     {"client_id": ("env-client", "$FLYTE_CREDENTIALS_CLIENT_ID"),
      "audience": ("ini-aud", f"{F}:[credentials] audience")}),
    ("ini-argument-wins", "flytekit.config", INI_FULL, {}, {"insecure": False},
     {"insecure": (False, "argument"), "endpoint": ("ini.example.com:443", f"{F}:[platform] url")}),
    # -- flytekit env alone -------------------------------------------------------------------------
    ("flytekit-env-basics", None, None,
     {"FLYTE_PLATFORM_URL": "kit:1", "FLYTE_PLATFORM_INSECURE": "True", "FLYTE_CREDENTIALS_CLIENT_ID": "kit-id",
      "FLYTE_CREDENTIALS_CLIENT_SECRET": "kit-secret\n", "FLYTE_CREDENTIALS_AUTH_MODE": "basic"}, {},
     {"endpoint": ("kit:1", "$FLYTE_PLATFORM_URL"), "insecure": (True, "$FLYTE_PLATFORM_INSECURE"),
      "client_id": ("kit-id", "$FLYTE_CREDENTIALS_CLIENT_ID"),
      "client_secret": ("kit-secret\n", "$FLYTE_CREDENTIALS_CLIENT_SECRET"),
      "auth_type": ("basic", "$FLYTE_CREDENTIALS_AUTH_MODE")}),
    ("flytekit-env-lists", None, None,
     {"FLYTE_PLATFORM_URL": "kit:1", "FLYTE_CREDENTIALS_SCOPES": "all,offline",
      "FLYTE_CREDENTIALS_COMMAND": "acme,token,--raw", "FLYTE_CREDENTIALS_PROXY_COMMAND": "acme-proxy,--x"}, {},
     {"scopes": (("all", "offline"), "$FLYTE_CREDENTIALS_SCOPES"),
      "command": (("acme", "token", "--raw"), "$FLYTE_CREDENTIALS_COMMAND"),
      "proxy_command": (("acme-proxy", "--x"), "$FLYTE_CREDENTIALS_PROXY_COMMAND")}),
    ("flytekit-env-tls-proxy", None, None,
     {"FLYTE_PLATFORM_URL": "kit:1", "FLYTE_PLATFORM_INSECURE_SKIP_VERIFY": "yes",
      "FLYTE_PLATFORM_CA_CERT_FILE_PATH": "/ca.pem", "FLYTE_PLATFORM_HTTP_PROXY_URL": "http://p:1",
      "FLYTE_CREDENTIALS_CLIENT_SECRET_LOCATION": "/s", "FLYTE_CREDENTIALS_CLIENT_SECRET_ENV_VAR": "MY_SECRET",
      "FLYTE_CREDENTIALS_AUDIENCE": "kit-aud"}, {},
     {"insecure_skip_verify": (True, "$FLYTE_PLATFORM_INSECURE_SKIP_VERIFY"),
      "ca_cert_file_path": ("/ca.pem", "$FLYTE_PLATFORM_CA_CERT_FILE_PATH"),
      "http_proxy_url": ("http://p:1", "$FLYTE_PLATFORM_HTTP_PROXY_URL"),
      "client_secret_location": ("/s", "$FLYTE_CREDENTIALS_CLIENT_SECRET_LOCATION"),
      "client_secret_env_var": ("MY_SECRET", "$FLYTE_CREDENTIALS_CLIENT_SECRET_ENV_VAR"),
      "audience": ("kit-aud", "$FLYTE_CREDENTIALS_AUDIENCE")}),
    ("flytekit-env-false-is-false", None, None, {"FLYTE_PLATFORM_URL": "kit:1", "FLYTE_PLATFORM_INSECURE": "off"},
     {}, {"insecure": (False, "$FLYTE_PLATFORM_INSECURE")}),
    # -- flyte 2.x env alone ------------------------------------------------------------------------
    ("flyte2-env-basics", None, None,
     {"FLYTE_ADMIN_ENDPOINT": "dns:///two:443", "FLYTE_ADMIN_CLIENTID": "two-id",
      "FLYTE_ADMIN_CLIENTSECRETENVVAR": "TWO_SECRET", "FLYTE_AUTH_TYPE": "ClientSecret"}, {},
     {"endpoint": ("dns:///two:443", "$FLYTE_ADMIN_ENDPOINT"), "client_id": ("two-id", "$FLYTE_ADMIN_CLIENTID"),
      "client_secret_env_var": ("TWO_SECRET", "$FLYTE_ADMIN_CLIENTSECRETENVVAR"),
      "auth_type": ("ClientSecret", "$FLYTE_AUTH_TYPE")}),
    ("flyte2-insecure-false-is-false", None, None, {"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_ADMIN_INSECURE": "false"},
     {}, {"insecure": (False, "$FLYTE_ADMIN_INSECURE")}),
    ("flyte2-insecure-true", None, None, {"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_ADMIN_INSECURE": "TRUE"},
     {}, {"insecure": (True, "$FLYTE_ADMIN_INSECURE")}),
    ("flyte2-commands", None, None,
     {"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_AUTH_COMMAND": '["acme", "token"]',
      "FLYTE_AUTH_PROXY_COMMAND": "acme-proxy --quiet"}, {},
     {"command": (("acme", "token"), "$FLYTE_AUTH_COMMAND"),
      "proxy_command": (("acme-proxy", "--quiet"), "$FLYTE_AUTH_PROXY_COMMAND")}),
    ("flyte2-admin-scopes-duration", None, None,
     {"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_ADMIN_SCOPES": "all offline", "FLYTE_ADMIN_TOKENREFRESHWINDOW": "2m",
      "FLYTE_ADMIN_HTTPPROXYURL": "http://p2:3128", "FLYTE_ADMIN_DISABLEKEYRING": "1"}, {},
     {"scopes": (("all", "offline"), "$FLYTE_ADMIN_SCOPES"),
      "token_refresh_window": (120.0, "$FLYTE_ADMIN_TOKENREFRESHWINDOW"),
      "http_proxy_url": ("http://p2:3128", "$FLYTE_ADMIN_HTTPPROXYURL"),
      "disable_keyring": (True, "$FLYTE_ADMIN_DISABLEKEYRING")}),
    ("flyte2-admin-command-key", None, None,
     {"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_ADMIN_COMMAND": "a,b", "FLYTE_ADMIN_PROXYCOMMAND": '["p"]'}, {},
     {"command": (("a", "b"), "$FLYTE_ADMIN_COMMAND"), "proxy_command": (("p",), "$FLYTE_ADMIN_PROXYCOMMAND")}),
    # -- API key ------------------------------------------------------------------------------------
    ("api-key-dns-endpoint", None, None,
     {"FLYTE_API_KEY": api_key("dns:///key.example.com:443", "kid", "ksec", "org1")},
     {}, {"endpoint": ("dns:///key.example.com:443", "$FLYTE_API_KEY"), "client_id": ("kid", "$FLYTE_API_KEY"),
          "client_secret": ("ksec", "$FLYTE_API_KEY"), "auth_type": ("ClientSecret", "$FLYTE_API_KEY"),
          "org": ("org1", "$FLYTE_API_KEY")}),
    ("api-key-empty-org", None, None, {"FLYTE_API_KEY": api_key("key.example.com", "kid", "ksec")}, {},
     {"endpoint": ("key.example.com", "$FLYTE_API_KEY"), "org": (None, "default")}),
    ("api-key-https-endpoint", None, None, {"FLYTE_API_KEY": api_key("https://key.example.com:8443", "k", "s", "o")},
     {}, {"endpoint": ("https://key.example.com:8443", "$FLYTE_API_KEY")}),
    ("api-key-overridden-by-admin-env", None, None,
     {"FLYTE_API_KEY": api_key("dns:///key:443", "kid", "ksec"), "FLYTE_ADMIN_ENDPOINT": "override:1"}, {},
     {"endpoint": ("override:1", "$FLYTE_ADMIN_ENDPOINT"), "client_id": ("kid", "$FLYTE_API_KEY")}),
    ("api-key-over-file", "config.yaml", "admin:\n  endpoint: file:1\n  authType: Pkce\n  clientId: f\n",
     {"FLYTE_API_KEY": api_key("dns:///key:443", "kid", "ksec")}, {},
     {"endpoint": ("dns:///key:443", "$FLYTE_API_KEY"), "auth_type": ("ClientSecret", "$FLYTE_API_KEY"),
      "client_id": ("kid", "$FLYTE_API_KEY")}),
    ("api-key-argument-wins", None, None, {"FLYTE_API_KEY": api_key("dns:///key:443", "kid", "ksec")},
     {"auth_type": "Pkce", "client_id": "arg"},
     {"auth_type": ("Pkce", "argument"), "client_id": ("arg", "argument"),
      "endpoint": ("dns:///key:443", "$FLYTE_API_KEY")}),
    # -- our env -------------------------------------------------------------------------------------
    ("flyteauth-env", None, None,
     {"FLYTEAUTH_ENDPOINT": "ours:1", "FLYTEAUTH_AUTH_TYPE": "Passthrough", "FLYTEAUTH_TOKEN": "tok",
      "FLYTEAUTH_COMMAND_TIMEOUT": "90s", "FLYTEAUTH_PROXY_AUTH_FOR_IDP": "on"}, {},
     {"endpoint": ("ours:1", "$FLYTEAUTH_ENDPOINT"), "auth_type": ("Passthrough", "$FLYTEAUTH_AUTH_TYPE"),
      "token": ("tok", "$FLYTEAUTH_TOKEN"), "command_timeout": (90.0, "$FLYTEAUTH_COMMAND_TIMEOUT"),
      "proxy_auth_for_idp": (True, "$FLYTEAUTH_PROXY_AUTH_FOR_IDP")}),
    ("flyteauth-beats-flyte2-beats-flytekit", None, None,
     {"FLYTEAUTH_CLIENT_ID": "ours", "FLYTE_ADMIN_CLIENTID": "two", "FLYTE_CREDENTIALS_CLIENT_ID": "kit",
      "FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_PLATFORM_URL": "kit:1"}, {},
     {"client_id": ("ours", "$FLYTEAUTH_CLIENT_ID"), "endpoint": ("two:1", "$FLYTE_ADMIN_ENDPOINT")}),
    # -- file x env x arguments ---------------------------------------------------------------------
    ("env-over-yaml", "config.yaml", YAML_FULL, {"FLYTE_ADMIN_CLIENTID": "env-id", "FLYTE_PLATFORM_INSECURE": "1"}, {},
     {"client_id": ("env-id", "$FLYTE_ADMIN_CLIENTID"), "insecure": (True, "$FLYTE_PLATFORM_INSECURE"),
      "audience": ("file-aud", f"{F}:admin.audience")}),
    ("argument-over-env-over-yaml", "config.yaml", YAML_FULL, {"FLYTE_ADMIN_AUDIENCE": "env-aud"},
     {"audience": "arg-aud", "scopes": ("x",)},
     {"audience": ("arg-aud", "argument"), "scopes": (("x",), "argument"),
      "client_id": ("file-client", f"{F}:admin.clientId")}),
    ("argument-none-means-not-given", "config.yaml", YAML_FULL, {"FLYTE_ADMIN_AUDIENCE": "env-aud"}, {"audience": None},
     {"audience": ("env-aud", "$FLYTE_ADMIN_AUDIENCE")}),
    ("empty-env-is-unset", "config.yaml", YAML_FULL, {"FLYTE_ADMIN_CLIENTID": "", "FLYTE_CREDENTIALS_AUDIENCE": "  "},
     {}, {"client_id": ("file-client", f"{F}:admin.clientId"), "audience": ("file-aud", f"{F}:admin.audience")}),
    ("env-endpoint-with-no-file", None, None, {"FLYTE_PLATFORM_URL": "http://localhost:30080"}, {},
     {"endpoint": ("http://localhost:30080", "$FLYTE_PLATFORM_URL"), "scopes": ((), "default")}),
    ("flytectl-config-beats-cwd", "elsewhere/fc.yaml", "admin:\n  endpoint: fc:1\n",
     {"FLYTECTL_CONFIG": "{tmp}/elsewhere/fc.yaml"}, {}, {"endpoint": ("fc:1", f"{F}:admin.endpoint")}),
    ("env-bool-over-file-bool", "config.yaml", "admin:\n  endpoint: a:1\n  insecure: true\n",
     {"FLYTE_ADMIN_INSECURE": "no"}, {}, {"insecure": (False, "$FLYTE_ADMIN_INSECURE")}),
    ("argument-endpoint-only", None, None, {}, {"endpoint": "arg:1", "client_secret": "x"},
     {"endpoint": ("arg:1", "argument"), "client_secret": ("x", "argument"), "client_id": (None, "default")}),
    ("defaults", None, None, {}, {"endpoint": "arg:1"},
     {"token_endpoint_auth_method": ("client_secret_basic", "default"), "command_timeout": (30.0, "default"),
      "pkce_timeout": (120.0, "default"), "device_flow_timeout": (600.0, "default"),
      "device_flow_poll_interval": (5.0, "default"), "max_retries": (4, "default"),
      "http_proxy_url": (None, "default"), "disable_keyring": (False, "default")}),
    ("ini-and-flyte2-env", "flytekit.config", INI_FULL,
     {"FLYTE_ADMIN_ENDPOINT": "dns:///two:443", "FLYTE_AUTH_TYPE": "Pkce"}, {},
     {"endpoint": ("dns:///two:443", "$FLYTE_ADMIN_ENDPOINT"), "auth_type": ("Pkce", "$FLYTE_AUTH_TYPE"),
      "client_id": ("ini-client", f"{F}:[credentials] client_id")}),
    ("yaml-and-flytekit-env-proxy-command", "config.yaml", YAML_FULL,
     {"FLYTE_CREDENTIALS_PROXY_COMMAND": "other-proxy"}, {},
     {"proxy_command": (("other-proxy",), "$FLYTE_CREDENTIALS_PROXY_COMMAND"),
      "command": (("acme-token", "--json"), f"{F}:admin.command")}),
]


@pytest.mark.parametrize(("name", "file_name", "text", "env", "args", "expected"), SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_scenario(tmp_path: Path, name: str, file_name: str | None, text: str | None, env: dict[str, str],
                  args: dict[str, Any], expected: dict[str, tuple[Any, str]]) -> None:
    file = None
    if file_name is not None and text is not None:
        file = tmp_path / file_name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    config = load_config(None, env=env, **args)  # always through the search path / env
    for field, (value, source) in expected.items():
        assert getattr(config, field) == value, field
        assert config.sources.get(field, "default") == source.replace(F, str(file)), field


def test_there_are_at_least_forty_scenarios() -> None:
    assert len(SCENARIOS) >= 40


def test_every_key_of_the_surface_has_an_env_var_in_flyte2_form() -> None:
    for key, (field, _) in ALL_KEYS.items():
        if "." not in key:
            assert FLYTE2_ENV[f"FLYTE_ADMIN_{key.upper()}"] == field
    assert set(FLYTEKIT_ENV) >= {"FLYTE_PLATFORM_URL", "FLYTE_CREDENTIALS_CLIENT_SECRET", "FLYTE_CREDENTIALS_AUTH_MODE",
                                 "FLYTE_CREDENTIALS_PROXY_COMMAND", "FLYTE_PLATFORM_HTTP_PROXY_URL"}


# -- strict booleans, bad values --------------------------------------------------------------------
@pytest.mark.parametrize("var", ["FLYTE_ADMIN_INSECURE", "FLYTE_PLATFORM_INSECURE", "FLYTEAUTH_INSECURE",
                                 "FLYTE_PLATFORM_INSECURE_SKIP_VERIFY"])
@pytest.mark.parametrize("raw", ["flase", "2", "yes please", "t"])
def test_unrecognised_boolean_env_is_an_error_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=rf"{var} must be a boolean"):
        load_config(env={"FLYTE_ADMIN_ENDPOINT": "a:1", var: raw})


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("False", False), ("0", False), ("no", False),
                                                ("OFF", False), ("true", True), ("1", True), ("Yes", True),
                                                ("on", True)])
def test_boolean_env_values(raw: str, expected: bool) -> None:
    assert load_config(env={"FLYTE_ADMIN_ENDPOINT": "a:1", "FLYTE_ADMIN_INSECURE": raw}).insecure is expected


def test_bad_duration_env_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FLYTE_ADMIN_TOKENREFRESHWINDOW must be a duration"):
        load_config(env={"FLYTE_ADMIN_ENDPOINT": "a:1", "FLYTE_ADMIN_TOKENREFRESHWINDOW": "soon"})


def test_bad_json_list_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FLYTE_AUTH_COMMAND"):
        load_config(env={"FLYTE_ADMIN_ENDPOINT": "a:1", "FLYTE_AUTH_COMMAND": '["unclosed'})


# -- API key ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["dns:///flyte.example.com:443", "flyte.example.com:443", "[::1]:8089",
                                      "https://flyte.example.com", "dns:///[::1]:443"])
def test_api_key_endpoint_may_contain_colons(endpoint: str) -> None:
    decoded = decode_api_key(api_key(endpoint, "client", "secret", "org"))
    assert decoded == {"endpoint": endpoint, "client_id": "client", "client_secret": "secret", "org": "org"}


@pytest.mark.parametrize("raw", ["not base64 at all!", base64.b64encode(b"only:two").decode(),
                                 base64.b64encode(b":id:secret:org").decode(), base64.b64encode(b"\xff\xfe").decode()])
def test_bad_api_key_names_the_variable_not_its_content(raw: str) -> None:
    with pytest.raises(ConfigError, match="FLYTE_API_KEY is not a valid API key") as info:
        load_config(env={"FLYTE_API_KEY": raw})
    assert raw not in str(info.value)


# -- auth type choice, problems --------------------------------------------------------------------
def test_secret_does_not_override_an_explicit_auth_type(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("admin:\n  endpoint: a:1\n  authType: Pkce\n")
    config = load_config(env={"FLYTE_CREDENTIALS_CLIENT_SECRET": "s"})
    assert config.resolved_auth_type == "Pkce"
    assert "explicit authType" in config.auth_type_reason and "not used" in config.auth_type_reason
    assert any("flytekit would switch to ClientSecret" in p for p in config.problems)


@pytest.mark.parametrize(
    ("args", "expected", "why"),
    [({"client_secret": "s"}, "ClientSecret", "inferred: a client secret"),
     ({"token": "t"}, "Passthrough", "inferred: a token is handed in"),
     ({"token_file_path": "/t"}, "Passthrough", "inferred: a token"),
     ({}, "Pkce", "default"), ({"auth_type": "DeviceFlow", "client_secret": "s"}, "DeviceFlow", "explicit")],
)
def test_auth_type_and_why(args: dict[str, Any], expected: str, why: str) -> None:
    config = load_config(env={}, endpoint="a:1", **args)
    assert config.resolved_auth_type == expected
    assert config.auth_type_reason.startswith(why)


def test_unknown_and_deprecated_keys_warn_and_do_not_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "config.yaml").write_text(
        "admin:\n  endpoint: a:1\n  useAuth: true\n  authorizationServerUrl: https://x\n  clientID: typo\n"
        "  acmeTenant: t7\n  maxMessageSizeBytes: 100\n"
    )
    config = load_config(env={})
    text = "\n".join(config.problems)
    assert "admin.useAuth is deprecated" in text and "admin.authorizationServerUrl is deprecated" in text
    assert "unknown key 'clientID'" in text and "did you mean 'clientId'?" in text
    assert "unknown key 'acmeTenant'" in text
    # a real flytectl key that does nothing here: said so (issue 8), not called unknown, not a warning
    assert "admin.maxMessageSizeBytes in" in text and "accepted for compatibility, no effect" in text
    assert "unknown key 'maxMessageSizeBytes'" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "maxMessageSizeBytes" in r.getMessage()]
    assert config.options["acmeTenant"] == "t7"  # still there for plugins
    assert "useAuth" in caplog.text


def test_unknown_ini_key_warns(tmp_path: Path) -> None:
    (tmp_path / "flytekit.config").write_text("[platform]\nurl = a:1\nurll = b\n[sdk]\nworkflow_packages = x\n")
    config = load_config(env={})
    assert config.endpoint == "a:1"
    assert any("unknown key 'urll'" in p and "did you mean 'url'?" in p for p in config.problems)


def test_missing_flytectl_config_target_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("admin:\n  endpoint: cwd:1\n")
    config = load_config(env={"FLYTECTL_CONFIG": str(tmp_path / "gone.yaml")})
    assert config.endpoint == "cwd:1"
    assert any("FLYTECTL_CONFIG names" in p for p in config.problems)


def test_dialects_that_disagree_are_reported() -> None:
    config = load_config(env={"FLYTE_ADMIN_ENDPOINT": "two:1", "FLYTE_PLATFORM_URL": "kit:1"})
    assert config.endpoint == "two:1"
    assert any("$FLYTE_PLATFORM_URL disagrees with $FLYTE_ADMIN_ENDPOINT" in p for p in config.problems)


def test_search_order(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir()
    os.chdir(tmp_path / "repo" / "sub")
    paths = [str(p) for p in default_config_paths({"FLYTECTL_CONFIG": "/a.yaml", "UCTL_CONFIG": "/b.yaml"})]
    home = str(tmp_path / "home")
    assert paths == ["/a.yaml", "/b.yaml", "config.yaml", ".flyte/config.yaml",
                     str(tmp_path / "repo" / ".flyte" / "config.yaml"), "flytekit.config",
                     f"{home}/.union/config.yaml", f"{home}/.flyte/config.yaml", f"{home}/.flyte/config"]
    (tmp_path / "repo" / ".flyte").mkdir()
    (tmp_path / "repo" / ".flyte" / "config.yaml").write_text("admin:\n  endpoint: gitroot:1\n")
    assert load_config(env={}).endpoint == "gitroot:1"


def test_secrets_are_trimmed_the_same_from_every_dialect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s").write_text("  sekrit\n")
    monkeypatch.setenv("MY_SECRET", "\tsekrit\r\n")
    for env in ({"FLYTE_CREDENTIALS_CLIENT_SECRET": "sekrit\n"}, {"FLYTEAUTH_CLIENT_SECRET": " sekrit "},
                {"FLYTE_CREDENTIALS_CLIENT_SECRET_ENV_VAR": "MY_SECRET"},
                {"FLYTE_ADMIN_CLIENTSECRETLOCATION": str(tmp_path / "s")},
                {"FLYTE_API_KEY": api_key("a:1", "id", "sekrit")}):
        config = load_config(env={"FLYTE_ADMIN_ENDPOINT": "a:1", **env})
        assert config.resolve_client_secret() == "sekrit", env


# -- `flyteauth config` ----------------------------------------------------------------------------
def test_flyteauth_config_output_for_a_file_and_env_mix(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com:443\n  authType: Pkce\n  clientId: file-id\n"
                      "  useAuth: true\n  httpProxyURL: http://user:proxy-pw-93@proxy:3128\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE")}
    env.update(FLYTE_CREDENTIALS_CLIENT_SECRET="cli-secret-canary-4Rt", FLYTE_ADMIN_SCOPES="all,offline",
               FLYTE_PLATFORM_INSECURE="true")
    result = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "config", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr  # useAuth is deprecated: a warning (exit 1 with --strict)
    out = result.stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("admin.", "$"))}
    assert rows["admin.endpoint"].split() == ["admin.endpoint", "dns:///flyte.example.com:443", str(config)]
    assert rows["admin.clientId"].split() == ["admin.clientId", "file-id", str(config)]
    assert rows["$FLYTE_CREDENTIALS_CLIENT_SECRET"].split()[1:] == ["****", "environment"]
    assert rows["$FLYTE_ADMIN_SCOPES"].split()[1:] == ["[all,", "offline]", "environment"]
    assert rows["$FLYTE_PLATFORM_INSECURE"].split()[1:] == ["true", "environment"]
    assert "admin.audience" not in rows  # a default: shown with --all
    assert "proxy:3128" in rows["admin.httpProxyURL"] and "proxy-pw-93" not in out
    assert "cli-secret-canary-4Rt" not in out + result.stderr
    assert "auth type:   Pkce" in out and "explicit authType" in out and "not used" in out
    assert "admin.useAuth is deprecated" in out and "flytekit would switch to ClientSecret" in out


def test_flyteauth_config_reports_a_bad_boolean(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTE")}
    env.update(FLYTE_ADMIN_ENDPOINT="a:1", FLYTE_ADMIN_INSECURE="maybe")
    result = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "config"], capture_output=True, text=True,
                            env=env, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 1
    assert "error: FLYTE_ADMIN_INSECURE must be a boolean" in result.stdout  # in the report, with the rest
    assert "fix: Set FLYTE_ADMIN_INSECURE to true or false" in result.stdout


# -- sessions built only from one SDK's env vars, against the real IdP ----------------------------------
def _call(session: AuthSession) -> bytes:
    result: bytes = session.channel().unary_unary(ECHO["unary"])(b"hello", timeout=20)
    return result


@pytest.mark.idp
def test_session_from_flytekit_env_vars_only(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    for key, value in {"FLYTE_PLATFORM_URL": server.target, "FLYTE_PLATFORM_INSECURE": "True",
                       "FLYTE_CREDENTIALS_CLIENT_ID": CI_BASIC[0],
                       "FLYTE_CREDENTIALS_CLIENT_SECRET": CI_BASIC[1] + "\n",
                       "FLYTE_CREDENTIALS_AUTH_MODE": "basic", "FLYTE_CREDENTIALS_SCOPES": "all"}.items():
        monkeypatch.setenv(key, value)
    config = load_config()
    assert all(src.startswith("$FLYTE_") for src in config.sources.values())
    with AuthSession(config, store="memory") as session:
        assert _call(session) == b"hello"
        assert session.auth_type == "ClientSecret"
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1


@pytest.mark.idp
def test_session_from_flyte2_env_vars_only(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    monkeypatch.setenv("CI_SECRET_FOR_TEST", CI_BASIC[1])
    for key, value in {"FLYTE_ADMIN_ENDPOINT": f"dns:///{server.target}", "FLYTE_ADMIN_INSECURE": "true",
                       "FLYTE_ADMIN_CLIENTID": CI_BASIC[0], "FLYTE_ADMIN_CLIENTSECRETENVVAR": "CI_SECRET_FOR_TEST",
                       "FLYTE_AUTH_TYPE": "ClientSecret"}.items():
        monkeypatch.setenv(key, value)
    config = load_config()
    assert all(src.startswith("$FLYTE_") for src in config.sources.values())
    with AuthSession(config, store="memory") as session:
        assert _call(session) == b"hello"
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1


@pytest.mark.idp
def test_session_from_flyte2_api_key_only(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    monkeypatch.setenv("FLYTE_API_KEY", api_key(f"dns:///{server.target}", *CI_BASIC, "org"))
    monkeypatch.setenv("FLYTE_ADMIN_INSECURE", "true")
    with AuthSession(load_config(), store="memory") as session:
        assert _call(session) == b"hello"
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1
