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
