"""The example plugin package (examples/globex-flyteauth), installed with pip as its own distribution by
scripts/test, is found through its entry point and selected by ``authType`` like any third-party plugin.

Also: ``flyteauth_providers.oauth`` (the public token-endpoint helper) and
``flyteauth_core.testing.acquire_request`` work for a provider tested on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession, load_config
from flyteauth_core.errors import InvalidClientError
from flyteauth_core.plugins import PluginRegistry
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer, acquire_request

SECRET = "globex-example-secret-value"
CLIENT = "globex-robot"


def _installed() -> bool:
    try:
        metadata.distribution("globex-flyteauth")
    except metadata.PackageNotFoundError:
        return False
    return True


needs_example = pytest.mark.skipif(
    not _installed() and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="examples/globex-flyteauth is not installed (scripts/test installs it: "
    "pip install ./examples/globex-flyteauth)",
)


@pytest.fixture
def peers() -> Iterator[tuple[DemoTokenEndpoint, FlyteTestServer]]:
    with DemoTokenEndpoint(CLIENT, SECRET, ttl=60) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        server.record_metadata = True
        yield idp, server


def _config_file(tmp_path: Path, server: FlyteTestServer, idp: DemoTokenEndpoint, **extra: str) -> Path:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    lines = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    path = tmp_path / "config.yaml"
    path.write_text(
        f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n"
        f"flyteauth:\n  authType: globex\n  clientId: {CLIENT}\n  clientSecretLocation: {secret}\n"
        f"  tokenUrl: {idp.url}\n  globexTenant: blue\n{lines}"
    )
    return path


@needs_example
def test_installed_example_is_selected_by_auth_type(peers: tuple[DemoTokenEndpoint, FlyteTestServer],
                                                    tmp_path: Path) -> None:
    assert _installed(), "CI must install examples/globex-flyteauth (scripts/test does)"
    import globex_flyteauth

    idp, server = peers
    registry = PluginRegistry()  # what is installed, like a fresh process
    info = next(p for p in registry.plugins() if p.distribution == "globex-flyteauth")
    assert info.error is None and "authenticator Globex (globex-corp)" in info.registered
    config = load_config(_config_file(tmp_path, server, idp), env={}, registry=registry)
    assert not config.problems  # globexTenant is the plugin's own key, not "unknown"
    globex_flyteauth.EVENTS.clear()
    with AuthSession(config, registry=registry, store="none") as session:
        assert session.auth_type == "Globex"
        unary: Any = session.channel().unary_unary(ECHO["unary"])
        assert unary(b"hi", timeout=10) == b"hi"
    sent = dict(server.seen_metadata[-1])
    assert sent["x-globex-tenant"] == "blue" and sent["flyte-authorization"].startswith("Bearer ")
    assert idp.requests == 1 and globex_flyteauth.EVENTS[:1] == ["acquired"]


@needs_example
def test_flyteauth_config_validates_the_example_plugins_keys(peers: tuple[DemoTokenEndpoint, FlyteTestServer],
                                                              tmp_path: Path) -> None:
    idp, server = peers
    path = _config_file(tmp_path, server, idp, globexSendTenantHeader="sometimes")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL"))}
    proc = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "config", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr  # a wrong value is a problem: `flyteauth config` exits 1
    assert "flyteauth.globexSendTenantHeader in" in proc.stdout and "must be a boolean" in proc.stdout
    assert "read by authenticator Globex" in proc.stdout and "unknown key 'globexTenant'" not in proc.stdout


def test_public_token_helper_calls_the_endpoint_with_our_settings(peers: tuple[DemoTokenEndpoint, Any]) -> None:
    from flyteauth_providers.oauth import client_auth, request_token, token_url

    idp, _ = peers
    config = AuthConfig(endpoint="dns:///unused.invalid", client_id=CLIENT, token_url=idp.url)
    request = acquire_request(config)
    assert token_url(request) == idp.url
    token = request_token(request, {"grant_type": "client_credentials"}, auth=client_auth(CLIENT, SECRET))
    assert idp.validate(token.access_token) is None and token.expires_at is not None
    with pytest.raises(InvalidClientError) as info:
        request_token(request, {"grant_type": "client_credentials"}, auth=client_auth(CLIENT, "wrong-secret"))
    assert idp.url in str(info.value) and "wrong-secret" not in str(info.value)


@needs_example
@pytest.mark.parametrize("spelling", ["GLOBEX", "globex-corp"])
def test_plugins_see_the_registered_name_whatever_the_user_wrote(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer], tmp_path: Path, spelling: str) -> None:
    """docs/plugins.md's ``config.auth_type == "Globex"`` holds for any spelling or alias (0.2.0 handed plugins
    the user's spelling: the example's tenant header was not sent for ``authType: globex-corp``)."""
    idp, server = peers
    path = _config_file(tmp_path, server, idp)
    path.write_text(path.read_text().replace("authType: globex", f"authType: {spelling}"))
    registry = PluginRegistry()
    with AuthSession(load_config(path, env={}, registry=registry), registry=registry, store="none") as session:
        unary: Any = session.channel().unary_unary(ECHO["unary"])
        assert unary(b"hi", timeout=10) == b"hi"
        assert session.config.auth_type == session.auth_type == "Globex"
    assert dict(server.seen_metadata[-1])["x-globex-tenant"] == "blue"


@needs_example
def test_flyteauth_plugins_shows_the_description() -> None:
    proc = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "plugins"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "authenticator Globex: Globex client credentials with a tenant" in proc.stdout
