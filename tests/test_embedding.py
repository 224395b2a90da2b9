"""The embedding API: what an SDK hands AuthSession (its HTTP transport, discovery channel, authenticator,
event callback, login prompts), no I/O in the constructor, async login/logout, and exported errors."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import httpx2
import pytest

import flyteauth_core
from flyteauth_core import AuthConfig, AuthSession, Token, TokenEvent, errors
from flyteauth_core.errors import UnknownAuthTypeError
from flyteauth_core.plugins import PluginRegistry
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

from ._interactive_helpers import HttpBrowser
from ._oauth_fake import CLIENT_ID, FakeOAuthServer
from .test_transports import SECRET
from .test_transports import peers as transport_peers

peers = transport_peers  # the same loopback DemoTokenEndpoint + FlyteTestServer fixture (client id "client")

ROOT = Path(__file__).resolve().parent.parent
def client_secret_config(server: FlyteTestServer, **kwargs: Any) -> AuthConfig:
    return AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                      client_secret=SECRET, **kwargs)


def test_constructor_does_no_io_and_create_resolves_off_the_loop() -> None:
    registry = PluginRegistry()
    session = AuthSession(AuthConfig(endpoint="dns:///127.0.0.1:9", auth_type="NoSuchProvider"), registry=registry)
    assert registry._loaded is False  # no entry point was read
    assert "store" not in session.__dict__ and "manager" not in session.__dict__
    with pytest.raises(UnknownAuthTypeError):  # resolved on first use
        _ = session.auth_type
    session.close()

    async def create() -> tuple[AuthSession, int]:
        loop_thread = threading.get_ident()
        seen: list[int] = []
        created = await AuthSession.create(AuthConfig(endpoint="dns:///127.0.0.1:9", auth_type="NoAuth"),
                                           registry=PluginRegistry(),
                                           on_event=lambda e: seen.append(threading.get_ident()))
        return created, loop_thread

    created, _ = asyncio.run(create())
    assert "interceptor" in created.__dict__ and created.anonymous
    created.close()


def test_authenticator_instance_events_and_transport(peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    idp, server = peers

    class Issuer:
        """An SDK's own provider: a client-credentials request through the HTTP client flyteauth hands it."""

        def acquire(self, request: Any) -> Token:
            with request.http_client(idp.url) as http:
                body = http.post(idp.url, data={"grant_type": "client_credentials"}, auth=("client", SECRET)).json()
            return Token(access_token=body["access_token"], expires_at=None)

    sent: list[str] = []

    class CountingTransport(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            sent.append(str(request.url))
            return super().handle_request(request)

    events: list[TokenEvent] = []
    config = AuthConfig(endpoint=server.target, insecure=True, authorization_header="flyte-authorization")
    with AuthSession(config, authenticator=Issuer(), http_transport_factory=CountingTransport,
                     on_event=events.append) as session:
        assert session.channel().unary_unary(ECHO["unary"])(b"hi", timeout=10) == b"hi"
        assert session.auth_type == "Issuer"
    assert sent == [idp.url]  # the IdP call went through the SDK's transport
    assert [e.kind for e in events] == ["acquired"]


def test_http_client_factory_discovery_channel_and_a_failing_observer(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    idp, server = peers
    built: list[str | None] = []
    channels: list[grpc.Channel] = []

    def http_client(for_url: str | None) -> httpx2.Client:
        built.append(for_url)
        return httpx2.Client(timeout=10)

    def discovery_channel() -> grpc.Channel:
        channels.append(grpc.insecure_channel(server.target))
        return channels[-1]

    def broken_observer(event: TokenEvent) -> None:
        raise RuntimeError("the SDK's telemetry is down")

    with AuthSession(client_secret_config(server), http_client_factory=http_client,
                     discovery_channel=discovery_channel, on_event=broken_observer) as session:
        assert session.get_token().access_token
        assert session.server_info().token_endpoint == idp.url
    assert idp.url in built and channels  # discovery used the SDK's channel, the token request its client
    for channel in channels:
        channel.close()


def test_browser_opener_and_async_login_logout(tmp_path: Path) -> None:
    with FakeOAuthServer() as fake:
        server = FlyteTestServer(fake.validate, token_endpoint=fake.token_endpoint, issuer=fake.issuer,
                                 authorization_endpoint=fake.authorization_endpoint, client_id=CLIENT_ID,
                                 scopes=("all", "offline"), redirect_uri="http://127.0.0.1:0/callback",
                                 grant_types=("authorization_code", "refresh_token")).start()
        try:
            opener = HttpBrowser()
            config = AuthConfig(endpoint=server.target, insecure=True, auth_type="Pkce", pkce_timeout=20,
                                options={"tokenStorePath": str(tmp_path)})

            async def flow() -> tuple[Token, bool]:
                session = await AuthSession.create(config, store="file", interactive=True, browser_opener=opener)
                token = await session.login_async()
                revoked = await session.logout_async(revoke=False)
                session.close()
                return token, revoked

            token, revoked = asyncio.run(flow())
            assert token.refresh_token and opener.urls and not revoked
            assert not list(tmp_path.glob("*.json"))  # logged out
        finally:
            server.stop()


def test_device_prompt_is_the_sdks() -> None:
    with FakeOAuthServer(device_interval=0.05) as fake:
        server = FlyteTestServer(fake.validate, token_endpoint=fake.token_endpoint, issuer=fake.issuer,
                                 device_authorization_endpoint=fake.device_authorization_endpoint,
                                 client_id=CLIENT_ID, scopes=("all",),
                                 grant_types=("urn:ietf:params:oauth:grant-type:device_code",)).start()
        try:
            shown: list[Any] = []

            def prompt(code: Any) -> None:
                shown.append(code)
                fake.approve_device(code.user_code)

            config = AuthConfig(endpoint=server.target, insecure=True, auth_type="DeviceFlow")
            with AuthSession(config, store="memory", interactive=True, device_prompt=prompt) as session:
                assert session.login().access_token
            assert len(shown) == 1 and shown[0].verification_uri
        finally:
            server.stop()


def test_every_public_error_is_exported() -> None:
    public = {name for name, cls in inspect.getmembers(errors, inspect.isclass)
              if issubclass(cls, errors.FlyteAuthError) and not name.startswith("_")
              and cls.__module__ == errors.__name__}
    missing = sorted(n for n in public if getattr(flyteauth_core, n, None) is not getattr(errors, n))
    assert missing == []
    assert public <= set(flyteauth_core.__all__)


def test_the_documented_example_runs() -> None:
    """docs/embedding.md's example is docs/embedding_example.py, and it runs."""
    page = (ROOT / "docs" / "embedding.md").read_text()
    block = re.search(r"## A runnable example.*?```python\n(.*?)```", page, re.S)
    assert block is not None
    example = ROOT / "docs" / "embedding_example.py"
    assert example.read_text() == block.group(1)
    assert len(block.group(1).splitlines()) <= 40
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60,
                            check=False, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "ok; events: ['acquired'] ; token requests: 1" in result.stdout

