"""Discovery at the edges (issue 9, items 5, 6 and 8).

* item 8: ``get_token()`` never needs the Flyte server when the provider does not; a failed discovery
  does not fix the header key for the life of the session.
* item 6: each discovery RPC is resolved on its own (a v2 server without ``GetOAuth2Metadata``).
* item 5: discovery carries the proxy's ``proxy-authorization`` (never the bearer), so a session behind
  an authenticating proxy works without ``tokenUrl``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.discovery import PATHS
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer
from tests.faults._kit import closed_port

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def idp() -> Iterator[DemoTokenEndpoint]:
    with DemoTokenEndpoint("edge", "edge-secret", ttl=600) as endpoint:
        yield endpoint


def test_get_token_with_a_command_needs_no_flyte_server(tmp_path: Path) -> None:
    command = (sys.executable, str(SCRIPTS / "raw_token.py"), str(tmp_path / "count"), "cmd-token")
    config = AuthConfig(endpoint=f"127.0.0.1:{closed_port()}", insecure=True, auth_type="ExternalCommand",
                        command=command)
    with AuthSession(config, store="memory", interactive=False) as session:
        assert session.get_token().access_token == "cmd-token-1"  # 0.1.0: DiscoveryError


def test_a_failed_discovery_does_not_fix_the_header_key(idp: DemoTokenEndpoint) -> None:
    config = AuthConfig(endpoint=f"127.0.0.1:{closed_port()}", insecure=True, auth_type="ClientSecret",
                        client_id="edge", client_secret="edge-secret", token_url=idp.url)
    with AuthSession(config, store="memory", interactive=False) as session:
        assert session.get_token().access_token
        ((key, _),) = session.manager.metadata()  # the server is down: the default key, for now
        assert key == "authorization"
        with FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:  # now it is up
            channel = grpc.insecure_channel(server.target)
            session._discovery._channel = lambda: channel
            session.manager.refresh("expired")
            ((key, _),) = session.manager.metadata()
            assert key == "flyte-authorization"  # 0.1.0: "authorization" for the life of the session
            assert session.intercept(channel).unary_unary(ECHO["unary"])(b"ok", timeout=5) == b"ok"
            channel.close()


def test_each_discovery_rpc_is_resolved_on_its_own(idp: DemoTokenEndpoint) -> None:
    """A v2 server answering GetPublicClientConfig but not GetOAuth2Metadata; v1 has the metadata only."""
    unimplemented = (PATHS["v2"][0], PATHS["v1"][1])
    with FlyteTestServer(idp.validate, token_endpoint=idp.url, unimplemented=unimplemented, client_id="edge",
                         audience="https://flyte.example/api") as server:
        config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="edge",
                            client_secret="edge-secret")
        with AuthSession(config, store="memory", interactive=False) as session:
            info = session.server_info()
            assert info.token_endpoint == idp.url and info.source == "grpc v1 + grpc v2"
            assert info.authorization_metadata_key == "flyte-authorization"  # from v2's client config
            assert info.audience == "https://flyte.example/api" and info.client_id == "edge"
            assert session.channel().unary_unary(ECHO["unary"])(b"x", timeout=5) == b"x"


class AuthenticatingProxy:
    """A gRPC proxy (IAP, Istio style) in front of a Flyte server: every call without the expected
    ``proxy-authorization`` is refused with UNAUTHENTICATED; the others are forwarded upstream."""

    def __init__(self, upstream: str, expected: str) -> None:
        self.expected = expected
        self.seen: list[dict[str, str]] = []
        self._upstream = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(8))
        self._server.add_generic_rpc_handlers((_Forward(self),))
        self.target = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._lock = threading.Lock()

    def forward(self, method: str, request: bytes, context: Any) -> bytes:
        metadata = {k: str(v) for k, v in context.invocation_metadata()}
        with self._lock:
            self.seen.append({"method": method, **metadata})
        if metadata.get("proxy-authorization") != self.expected:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "proxy: missing or wrong proxy-authorization")
        upstream_metadata = [(k, v) for k, v in metadata.items() if k != "proxy-authorization" and
                             not k.startswith(("grpc-", "user-agent", ":"))]
        call = self._upstream.unary_unary(method)
        try:
            response: bytes = call(request, metadata=upstream_metadata, timeout=5)
        except grpc.RpcError as error:
            context.abort(error.code(), error.details() or "")
        return response

    def __enter__(self) -> AuthenticatingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(None).wait(5)
        self._upstream.close()


class _Forward(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, proxy: AuthenticatingProxy) -> None:
        self._proxy = proxy

    def service(self, details: Any) -> Any:
        method = details.method
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self._proxy.forward(method, request,
                                                                                               context))


def _behind(proxy: AuthenticatingProxy, tmp_path: Path) -> AuthConfig:
    """ClientSecret through ``proxy`` with no tokenUrl (so discovery must pass the proxy), and a
    proxyCommand printing ``proxy-token-1``, ``proxy-token-2``, ... one per run."""
    command = [sys.executable, str(SCRIPTS / "raw_token.py"), str(tmp_path / "count"), "proxy-token"]
    return AuthConfig(endpoint=proxy.target, insecure=True, auth_type="ClientSecret", client_id="edge",
                      client_secret="edge-secret", proxy_command=command)


def test_discovery_behind_an_authenticating_proxy_works_without_token_url(idp: DemoTokenEndpoint,
                                                                          tmp_path: Path) -> None:
    with FlyteTestServer(idp.validate, token_endpoint=idp.url) as server, \
            AuthenticatingProxy(server.target, "Bearer proxy-token-1") as proxy:
        config = _behind(proxy, tmp_path)
        with AuthSession(config, store="memory", interactive=False) as session:
            assert session.channel().unary_unary(ECHO["unary"])(b"hi", timeout=10) == b"hi"  # 0.1.0: DiscoveryError
    discovery = [seen for seen in proxy.seen if "AuthMetadataService" in seen["method"]]
    assert discovery and all(seen.get("proxy-authorization") == "Bearer proxy-token-1" for seen in discovery)
    assert not any("authorization" in seen or "flyte-authorization" in seen for seen in discovery)  # no bearer


def test_a_proxy_refusing_discovery_gets_a_new_proxy_token_once(idp: DemoTokenEndpoint, tmp_path: Path) -> None:
    """The proxy token the command printed first is refused (expired at the proxy): discovery has the
    proxy interceptor replace it, once, and carries on."""
    with FlyteTestServer(idp.validate, token_endpoint=idp.url) as server, \
            AuthenticatingProxy(server.target, "Bearer proxy-token-2") as proxy:
        config = _behind(proxy, tmp_path)
        with AuthSession(config, store="memory", interactive=False) as session:
            assert session.server_info().token_endpoint == idp.url
            assert session.channel().unary_unary(ECHO["unary"])(b"hi", timeout=10) == b"hi"
    assert (tmp_path / "count").read_text().count("x") == 2  # the command ran twice, not per request
