"""Fuzz config loading: YAML text (arbitrary, and well-formed ``admin:`` sections with hostile values) and
environment values, through ``load_config``; the resulting AuthConfig is then rendered and inspected."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import flyteauth_core.config as config_module
from flyteauth_core.config import AuthConfig, describe, load_config

from ._profiles import fuzz
from ._strategies import only_typed_errors, small_values, text

pytestmark = pytest.mark.fuzz

#: Keys of the flytectl ``admin`` section (whatever the loader knows today, plus the documented ones).
ADMIN_KEYS = sorted(set(getattr(config_module, "ALL_KEYS", getattr(config_module, "_FILE_KEYS", {}))) | {
    "endpoint", "insecure", "insecureSkipVerify", "caCertFilePath", "authType", "clientId", "clientSecretLocation",
    "clientSecretEnvVar", "scopes", "audience", "useAudienceFromAdmin", "tokenUrl", "authorizationHeader",
    "command", "proxyCommand", "httpProxyURL", "tokenRefreshWindow", "maxRetries", "perRetryTimeout",
    "maxBackoffDelay", "disableKeyring", "pkceConfig", "deviceFlowConfig", "tokenStore",
})
#: Every environment variable the loader reads (when it reads the environment at all).
ENV_NAMES = sorted(
    set(getattr(config_module, "FLYTEKIT_ENV", {})) | set(getattr(config_module, "FLYTE2_ENV", {}))
    | set(getattr(config_module, "_our_env", dict)()) | {"FLYTE_API_KEY", "FLYTE_PLATFORM_URL",
                                                         "FLYTE_ADMIN_ENDPOINT", "FLYTE_ADMIN_INSECURE"}
)
TAKES_ENV = "env" in inspect.signature(load_config).parameters


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def _load(path: Path, env: Mapping[str, str]) -> Any:
    if TAKES_ENV:
        return only_typed_errors(load_config, path, env=dict(env))
    with mock.patch.dict(os.environ, env, clear=False):
        return only_typed_errors(load_config, path)


def _inspect(result: Any) -> None:
    if isinstance(result, AuthConfig):
        repr(result)
        describe(result)
        for prop in ("resolved_auth_type", "grpc_target", "use_plaintext", "http_base_url"):
            only_typed_errors(getattr, result, prop)


def _write(workdir: Path, text_: str) -> Path:
    path = workdir / "config.yaml"
    path.write_text(text_, encoding="utf-8")
    return path


@fuzz
@given(st.text(max_size=300) | st.sampled_from([
    "admin:", "admin: 1", "admin: [1]", "[", "admin: {endpoint: !!binary aGk=}", "admin: &a [*a]",
    "admin:\n  endpoint: x\n  scopes: {a: 1}", "admin:\n  endpoint: x\n  tokenRefreshWindow: -5m", "\t", "%YAML 9.9\n",
]))
def test_any_yaml_text(workdir: Path, text_: str) -> None:
    _inspect(_load(_write(workdir, text_), {}))


admin_sections = st.dictionaries(st.sampled_from(ADMIN_KEYS) | text, small_values, max_size=6).map(
    lambda admin: {"endpoint": "dns:///flyte.example.com:443", **admin})


@fuzz
@given(admin_sections,
       st.sampled_from(["admin", "Admin", "platform"]))
def test_well_formed_yaml_with_hostile_values(workdir: Path, admin: dict[str, Any], section: str) -> None:
    try:
        text_ = yaml.safe_dump({section: admin}, allow_unicode=True)
    except (yaml.YAMLError, ValueError, OverflowError):
        return
    _inspect(_load(_write(workdir, text_), {}))


@pytest.mark.parametrize("value", ["1" + "0" * 400, ".nan", ".inf", "-5"])
def test_duration_integer_beyond_float_range_is_a_config_error(workdir: Path, value: str) -> None:
    """Found by the fuzz profile: a 400-digit integer escaped as OverflowError; NaN/inf/negative passed."""
    path = _write(workdir, f"admin:\n  endpoint: dns:///flyte.example.com:443\n  tokenRefreshWindow: {value}\n")
    with pytest.raises(config_module.ConfigError):
        load_config(path, **({"env": {}} if TAKES_ENV else {}))


env_values = st.dictionaries(st.sampled_from(ENV_NAMES), text | st.sampled_from(
    ["true", "false", "0", "1", "", " ", "5m", "a,b", '["a", 1]', "[", "dns:///h:443", "ClientSecret", "pkce"]),
    max_size=6)


@fuzz
@given(env_values)
def test_any_environment_values(workdir: Path, env: dict[str, str]) -> None:
    path = _write(workdir, "admin:\n  endpoint: dns:///flyte.example.com:443\n")
    _inspect(_load(path, env))


@pytest.fixture(autouse=True)
def _no_stray_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # An env var naming another config file must not make the loader read a developer's own files.
    for var in ("FLYTECTL_CONFIG", "UCTL_CONFIG", "FLYTEAUTH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    yield
