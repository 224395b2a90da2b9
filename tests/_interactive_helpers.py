"""Shared pieces of the interactive-login tests: a fake peer pair, a fake browser, a session factory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import FlyteTestServer

from ._oauth_fake import CLIENT_ID, FakeOAuthServer

REPO = Path(__file__).resolve().parent.parent


class HttpBrowser:
    """Plays a browser that is already logged in: GETs the URL and follows redirects to our callback."""

    def __init__(self, before: Callable[[str], None] | None = None) -> None:
        self.urls: list[str] = []
        self.pages: list[tuple[int, str]] = []
        self.before = before

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        if self.before is not None:
            self.before(url)
        response = httpx2.get(url, follow_redirects=True, timeout=10)
        self.pages.append((response.status_code, response.text))
        return True


@pytest.fixture
def fake_peers() -> Iterator[Callable[..., tuple[FakeOAuthServer, FlyteTestServer]]]:
    """Factory: (FakeOAuthServer, FlyteTestServer advertising it); both stopped after the test."""
    started: list[Any] = []

    def make(**fake_kwargs: Any) -> tuple[FakeOAuthServer, FlyteTestServer]:
        fake = FakeOAuthServer(**fake_kwargs).start()
        server = FlyteTestServer(
            fake.validate, token_endpoint=fake.token_endpoint, issuer=fake.issuer,
            authorization_endpoint=fake.authorization_endpoint,
            device_authorization_endpoint=fake.device_authorization_endpoint,
            client_id=CLIENT_ID, scopes=("all", "offline"), redirect_uri="http://127.0.0.1:0/callback",
            grant_types=("authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"),
        ).start()
        started.extend([server, fake])
        return fake, server

    yield make
    for peer in started:
        peer.stop()


def config_for(server: FlyteTestServer, auth_type: str = "Pkce", **options: Any) -> AuthConfig:
    """Keyword arguments that name AuthConfig fields (``pkce_timeout=1``) are fields; the rest are raw options."""
    fields = {k: options.pop(k) for k in list(options) if k in attrs.fields_dict(AuthConfig)}
    return AuthConfig(endpoint=server.target, insecure=True, auth_type=auth_type, options=options, **fields)


def session_for(server: FlyteTestServer, tmp_path: Path, auth_type: str = "Pkce", *, interactive: bool = True,
                **options: Any) -> AuthSession:
    options.setdefault("tokenStorePath", str(tmp_path / "tokens"))
    return AuthSession(config_for(server, auth_type, **options), store="file", interactive=interactive)


def write_config(path: Path, server: FlyteTestServer, auth_type: str = "Pkce", extra: str = "") -> Path:
    path.write_text(f"admin:\n  endpoint: {server.target}\n  insecure: true\n  authType: {auth_type}\n"
                    f"  tokenStore: file\n{textwrap.indent(extra, '  ')}")
    return path


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO, check=False)


def flyteauth(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flyteauth_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO,
                          check=False)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def native_peers(idp_factory: Any, flyte_server: Callable[..., FlyteTestServer]) -> Callable[..., tuple[Any,
                                                                                                      FlyteTestServer]]:
    """Factory: (a real IdP started with ``idp_kwargs``, a FlyteTestServer advertising its public native client
    ``flyte-native``)."""
    from ._idp import DEVICE_CODE_GRANT, NATIVE_CLIENT_ID, native_redirect_uri

    def make(**idp_kwargs: Any) -> tuple[Any, FlyteTestServer]:
        idp = idp_factory(**idp_kwargs)
        server = flyte_server(
            token_endpoint=idp.token_endpoint, issuer=idp.issuer,
            authorization_endpoint=idp.authorization_endpoint,
            device_authorization_endpoint=idp.device_authorization_endpoint,
            client_id=NATIVE_CLIENT_ID, redirect_uri=native_redirect_uri(free_port()), scopes=("openid", "all"),
            grant_types=("authorization_code", "refresh_token", DEVICE_CODE_GRANT),
            validate=lambda token: None,
        )
        return idp, server

    return make


def thread_storm(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` in ``n`` threads released at the same instant; return results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = call(i)
        except BaseException as exc:  # collected and asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results
