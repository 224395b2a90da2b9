"""proxyCommand: its token reaches the Flyte server in proxy-authorization, is refreshed on rejection, and
never reaches the IdP's token endpoint unless proxyAuthForIdP says the IdP is behind the same proxy."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer
from flyteauth_providers.proxy_command import ProxyAuthorization, proxy_authorization

SCRIPTS = Path(__file__).parent / "scripts"
SECRET = "proxy-test-secret-1b7"


class RecordingTokenEndpoint(DemoTokenEndpoint):
    """The demo token endpoint, recording the headers of every request it receives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_headers: list[dict[str, str]] = []

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        self.seen_headers.append({k.lower(): v for k, v in handler.headers.items()})
        super()._handle(handler)


@pytest.fixture
def peers() -> Iterator[tuple[RecordingTokenEndpoint, FlyteTestServer]]:
    with RecordingTokenEndpoint("ci", SECRET, ttl=60) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        server.record_metadata = True
        yield idp, server


def make_session(server: FlyteTestServer, counter: Path, **kwargs: Any) -> AuthSession:
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="ci",
                        client_secret=SECRET,
                        proxy_command=(sys.executable, str(SCRIPTS / "raw_token.py"), str(counter), "proxy-tok"),
                        **kwargs)
    return AuthSession(config, store="memory")


def proxy_headers(metadata: tuple[tuple[str, str], ...]) -> list[str]:
    return [v for k, v in metadata if k == "proxy-authorization"]


def test_proxy_token_reaches_the_server_and_never_the_idp(peers: tuple[RecordingTokenEndpoint, FlyteTestServer],
                                                          tmp_path: Path) -> None:
    idp, server = peers
    counter = tmp_path / "count"
    with make_session(server, counter) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        for _ in range(3):
            assert unary(b"x", timeout=10) == b"x"
    assert [proxy_headers(m) for m in server.seen_metadata] == [["Bearer proxy-tok-1"]] * 3
    assert len(counter.read_text().splitlines()) == 1  # cached
    assert idp.requests == 1 and idp.seen_headers
    assert all("proxy-authorization" not in headers for headers in idp.seen_headers)
    assert all("proxy-tok" not in str(headers) for headers in idp.seen_headers)


def test_proxy_token_is_refreshed_on_rejection(peers: tuple[RecordingTokenEndpoint, FlyteTestServer],
                                               tmp_path: Path) -> None:
    _, server = peers
    counter = tmp_path / "count"
    with make_session(server, counter) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        unary(b"x", timeout=10)
        server.revoke(session.get_token().access_token)  # the server answers UNAUTHENTICATED once
        assert unary(b"y", timeout=10) == b"y"
    assert proxy_headers(server.seen_metadata[-1]) == ["Bearer proxy-tok-2"]
    assert len(counter.read_text().splitlines()) == 2


def test_proxy_token_goes_to_the_idp_only_when_configured(peers: tuple[RecordingTokenEndpoint, FlyteTestServer],
                                                          tmp_path: Path) -> None:
    idp, server = peers
    with make_session(server, tmp_path / "count", proxy_auth_for_idp=True) as session:
        session.channel().unary_unary(ECHO["unary"])(b"x", timeout=10)
    assert idp.seen_headers and all(h.get("proxy-authorization") == "Bearer proxy-tok-1" for h in idp.seen_headers)
    assert len((tmp_path / "count").read_text().splitlines()) == 1  # one token for both


def test_not_configured_means_no_interceptor_and_no_header(peers: tuple[RecordingTokenEndpoint, FlyteTestServer]
                                                           ) -> None:
    _, server = peers
    config = AuthConfig(endpoint=server.target, insecure=True, client_id="ci", client_secret=SECRET)
    assert proxy_authorization(config) is None
    with AuthSession(config, store="memory") as session:
        session.channel().unary_unary(ECHO["unary"])(b"x", timeout=10)
    assert proxy_headers(server.seen_metadata[-1]) == []


def test_works_with_no_auth_too(peers: tuple[RecordingTokenEndpoint, FlyteTestServer], tmp_path: Path) -> None:
    _, server = peers
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="NoAuth",
                        proxy_command=(sys.executable, str(SCRIPTS / "raw_token.py"), str(tmp_path / "c"), "p"))
    with AuthSession(config) as session:
        assert session.interceptor.metadata() == (("proxy-authorization", "Bearer p-1"),)


def test_one_implementation_the_token_manager() -> None:
    from flyteauth_core.lifecycle import TokenManager

    manager = proxy_authorization(AuthConfig(endpoint="a:1", proxy_command=("true",)))
    assert isinstance(manager, ProxyAuthorization) and isinstance(manager, TokenManager)
    assert manager._store is None  # never persisted


@pytest.mark.parametrize("form", ["channel", "interceptor", "aio channel"])
def test_a_proxy_permission_denied_over_grpc_refreshes_the_proxy_token_once(tmp_path: Path, form: str) -> None:
    """An authenticating proxy in front of Flyte (IAP, Istio) answers PERMISSION_DENIED to a stale
    ``proxy-authorization``: the proxy token is replaced once and the call retried; the bearer token,
    which the proxy never judged, stays.  Discovery goes through the same proxy (no ``tokenUrl``)."""
    import asyncio

    import grpc

    proxy = {"current": "proxy-tok-1"}
    counter = tmp_path / "count"
    with RecordingTokenEndpoint("ci", SECRET, ttl=60) as idp, FlyteTestServer(
            idp.validate, token_endpoint=idp.url,
            proxy_validate=lambda token: None if token == proxy["current"] else "stale proxy token") as server, \
            make_session(server, counter) as session:
        loop = asyncio.new_event_loop()
        if form == "aio channel":
            async def make() -> Any:
                return session.aio_channel()

            channel = loop.run_until_complete(make())
            unary = channel.unary_unary(ECHO["unary"])

            def call(payload: bytes) -> bytes:
                return loop.run_until_complete(unary(payload, timeout=10))  # type: ignore[no-any-return]
        else:
            raw = grpc.insecure_channel(server.target)
            channel = session.channel() if form == "channel" else grpc.intercept_channel(
                raw, *session.grpc_interceptors())
            unary = channel.unary_unary(ECHO["unary"])

            def call(payload: bytes) -> bytes:
                return unary(payload, timeout=10)  # type: ignore[no-any-return]
        try:
            assert call(b"a") == b"a"
            bearer = session.get_token().access_token
            proxy["current"] = "proxy-tok-2"  # the proxy rotated its credentials
            assert call(b"b") == b"b"  # PERMISSION_DENIED once, the proxy token refreshed, retried once
            assert server.stats["proxy_denied"] == 1 and len(counter.read_text().splitlines()) == 2
            proxy["current"] = "never"  # a proxy that refuses every token: refreshed once, then the caller sees it
            with pytest.raises(grpc.RpcError) as error:
                call(b"c")
            assert error.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert server.stats["proxy_denied"] == 3 and len(counter.read_text().splitlines()) == 3
        finally:
            if form == "aio channel":
                loop.run_until_complete(channel.close())
            else:
                raw.close()
            loop.close()
        # the bearer token was never invalidated: one token request, no rejection by Flyte itself
        assert session.get_token().access_token == bearer and session.stats.invalidations == 0
        assert idp.requests == 1 and server.stats["rejected"] == 0
