"""The ``flyteauth:`` section, provenance in the user's terms, the secret chosen by layer, and config files
that have nothing for us."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flyteauth_core.config import load_config
from flyteauth_core.errors import ConfigError
from flyteauth_core.options import Source

ENDPOINT = "dns:///flyte.example.invalid:443"


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FLYTEKIT_STYLE = f"""\
admin:
  endpoint: {ENDPOINT}
  authType: flyteauth
  clientId: from-admin
  scopes: [admin-scope]
  pkceConfig:
    timeout: 1m
    refreshTime: 2m
flyteauth:
  authType: ClientSecret
  clientId: from-flyteauth
  clientSecretLocation: /run/secrets/flyte
  pkceConfig:
    timeout: 3m
"""


def test_flyteauth_section_wins_over_admin_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, FLYTEKIT_STYLE)
    config = load_config(path, env={})
    assert config.auth_type == "ClientSecret" and config.client_id == "from-flyteauth"
    assert config.scopes == ("admin-scope",)  # only in admin: still read
    assert config.pkce_timeout == 180.0 and config.pkce_refresh_time == 120.0
    assert config.source("client_id") == Source("flyteauth.clientId", str(path))
    assert config.source("client_id").describe() == f"flyteauth.clientId in {path}"
    assert config.source("scopes").key == "admin.scopes" and config.source("scopes").origin == str(path)
    assert config.sources["scopes"] == f"{path}:admin.scopes"  # still the 0.1.0 string form
    # options (what a provider sees) merge the same way, nested sections one level deep
    assert config.options["clientId"] == "from-flyteauth" and config.options["scopes"] == ["admin-scope"]
    assert config.options["pkceConfig"] == {"timeout": "3m", "refreshTime": "2m"}
    assert not config.problems


def test_admin_auth_type_flyteauth_is_the_sdk_hook_not_a_provider(tmp_path: Path) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  authType: flyteauth\nflyteauth:\n  clientId: c\n"
                           "  clientSecretLocation: /run/secrets/flyte\n")
    config = load_config(path, env={})
    assert config.auth_type is None and config.resolved_auth_type == "ClientSecret"  # inferred, as without the hook


@pytest.mark.parametrize("flyteauth_section", ["", "flyteauth:\n  clientId: c\n"])
def test_the_sdk_hook_with_no_provider_is_an_error_never_a_silent_pkce(tmp_path: Path, flyteauth_section: str) -> None:
    """0.2.0 resolved ``admin.authType: flyteauth`` with no ``flyteauth:`` section to Pkce without a word."""
    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  authType: flyteauth\n{flyteauth_section}")
    with pytest.raises(ConfigError, match=r"admin.authType: flyteauth .* (no flyteauth: section|flyteauth: section "
                                          r"names no authType)") as raised:
        load_config(path, env={})
    assert "flyteauth:" in (raised.value.hint or "")
    errors: list[ConfigError] = []
    assert load_config(path, env={}, errors=errors) and len(errors) == 1  # collected for `flyteauth config`
    explicit = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  authType: flyteauth\nflyteauth:\n  authType: Pkce\n")
    assert load_config(explicit, env={}).resolved_auth_type == "Pkce"  # asked for by name: fine
    assert load_config(path, env={"FLYTEAUTH_AUTH_TYPE": "DeviceFlow"}).resolved_auth_type == "DeviceFlow"


def test_client_secret_keys_in_admin_beside_the_flytekit_hook_are_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
admin:
  endpoint: {ENDPOINT}
  authType: flyteauth
  clientSecretLocation: /run/secrets/flyte
  clientSecretEnvVar: FLYTE_SECRET
flyteauth:
  authType: ClientSecret
""")
    (problem,) = load_config(path, env={}).problems
    assert "admin.clientSecretLocation and admin.clientSecretEnvVar" in problem
    assert "move clientSecretLocation and clientSecretEnvVar into the flyteauth: section" in problem


def test_a_file_with_only_a_flyteauth_section_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, f"flyteauth:\n  endpoint: {ENDPOINT}\n  authType: Passthrough\n")
    config = load_config(path, env={})
    assert (config.endpoint, config.auth_type) == (ENDPOINT, "Passthrough")


def test_environment_beats_both_sections(tmp_path: Path) -> None:
    path = write(tmp_path, FLYTEKIT_STYLE)
    config = load_config(path, env={"FLYTE_CREDENTIALS_CLIENT_ID": "env-id"})
    assert config.client_id == "env-id"
    assert config.source("client_id") == Source("$FLYTE_CREDENTIALS_CLIENT_ID", "environment")
    assert config.source("client_id").describe() == "$FLYTE_CREDENTIALS_CLIENT_ID"
    assert config.source("audience") == Source("audience", "default")


# -- the secret is chosen by layer --------------------------------------------------------------------------
def test_secret_in_env_does_not_beat_a_secret_file_passed_as_argument(tmp_path: Path) -> None:
    secret = write(tmp_path, "from-file\n", "secret")
    config = load_config(None, env={"FLYTE_ADMIN_ENDPOINT": ENDPOINT, "FLYTE_CREDENTIALS_CLIENT_SECRET": "from-env"},
                         client_secret_location=str(secret))
    assert config.client_secret is None
    assert config.resolve_client_secret() == "from-file"
    assert config.source("client_secret_location") == Source("client_secret_location", "argument")
    assert any("$FLYTE_CREDENTIALS_CLIENT_SECRET is not used" in p and "argument" in p for p in config.problems)


def test_secret_in_flyteauth_section_beats_admin_secret_env_var(tmp_path: Path) -> None:
    secret = write(tmp_path, "s3cr3t-file\n", "secret")
    path = write(tmp_path, f"""\
admin:
  endpoint: {ENDPOINT}
  clientSecretEnvVar: SOME_VAR
flyteauth:
  clientSecretLocation: {secret}
""")
    config = load_config(path, env={"SOME_VAR": "from-var"})
    assert config.client_secret_env_var is None and config.resolve_client_secret() == "s3cr3t-file"


def test_env_secret_beats_file_secret_location(tmp_path: Path) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  clientSecretLocation: /nonexistent\n")
    config = load_config(path, env={"FLYTE_CREDENTIALS_CLIENT_SECRET": "env-secret"})
    assert config.client_secret_location is None and config.resolve_client_secret() == "env-secret"


# -- files without a section for us --------------------------------------------------------------------------
def test_config_yaml_without_our_sections_does_not_capture_the_search(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    unrelated = write(work, "services:\n  web:\n    image: nginx\n")  # e.g. someone's compose-like file
    real = write(home / ".flyte", f"admin:\n  endpoint: {ENDPOINT}\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    config = load_config(None, env={"HOME": str(home)})
    assert config.endpoint == ENDPOINT
    assert config.source("endpoint") == Source("admin.endpoint", str(real))
    assert any(str(unrelated) in p and "skipped it" in p for p in config.problems)


def test_explicit_file_without_our_sections_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "other: {}\n")
    config = load_config(path, env={"FLYTE_ADMIN_ENDPOINT": ENDPOINT})
    assert any("has no admin: or flyteauth: section" in p for p in config.problems)


def test_ini_without_flytekit_sections_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "w"
    write(work, "[tool]\nx = 1\n", "flytekit.config")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    config = load_config(None, env={"FLYTE_ADMIN_ENDPOINT": ENDPOINT, "HOME": os.environ["HOME"]})
    assert any("flytekit.config has no admin: or flyteauth: section" in p for p in config.problems)
