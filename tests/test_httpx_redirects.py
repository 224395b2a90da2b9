"""HTTP never carries our headers to another origin, redirects included (issue 16, item 4).

Two real HTTP servers on loopback, two origins (two ports): "Flyte" answers ``/api``, redirects
``/away`` with a 302 to the other server (a presigned object-store URL) and ``/same`` with a 302 to its
own ``/api``; the "object store" records every header it receives.  The session's token goes under the
header key under test (``authorization``, which httpx2 itself strips across origins, and
``flyte-authorization``, which it does not), and a ``proxyCommand`` adds ``proxy-authorization``.

The documented way (``session.httpx_client()`` / ``httpx_async_client()``) strips our headers from every
hop whose origin is not allowed and keeps them on a same-origin redirect.  ``auth=session.httpx_auth()``
alone strips them from a redirect the caller follows (``response.next_request``), and says in a WARNING
when httpx2 followed one itself with our headers (which it cannot prevent: httpx2 does not ask the auth
flow about redirect hops).  ConnectRPC: every POST to "Flyte" is answered with a 302 or 307 to the object
store; flyte 2.x's clients built by ``flyteauth_integrations.flyte`` and the documented construction for
generated clients (``follow_redirects=False``) send it nothing.  On 0.2.0 the object store received
``flyte-authorization`` and ``proxy-authorization``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import DemoTokenEndpoint

SECRET = "redirect-test-secret"
PROXY_TOKEN = "proxy-token-r3d1r3ct"


class Recorder:
    """An HTTP server on 127.0.0.1 that records the headers of every request; ``redirects`` maps a path to
    the Location it answers with a 302."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.redirects: dict[str, str] = {}
        self.post_status = 302  # the status of the redirect answering a POST (a Connect RPC): 302 or 307
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                peer.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                location = peer.redirects.get(self.path) or (self.command == "POST" and peer.redirects.get("POST"))
                status = peer.post_status if self.command == "POST" else 302
                self.send_response(status if location else 200)
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.do_GET()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Peers:
    def __init__(self) -> None:
        self.idp = DemoTokenEndpoint("client", SECRET, ttl=300).start()
        self.flyte = Recorder()
        self.store = Recorder()  # another origin: same host, another port
        self.flyte.redirects = {"/away": f"{self.store.url}/bucket/object?X-Sig=1", "/same": "/api",
                                "POST": f"{self.store.url}/bucket/upload"}  # any POST (a Connect RPC)

    def stop(self) -> None:
        self.flyte.stop()
        self.store.stop()
        self.idp.stop()


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    p = Peers()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(params=["authorization", "flyte-authorization"])
def session(request: pytest.FixtureRequest, peers: Peers) -> Iterator[AuthSession]:
    peers.flyte.seen.clear()
    peers.store.seen.clear()
    config = AuthConfig(endpoint=peers.flyte.url, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET, token_url=peers.idp.url, authorization_header=request.param,
                        proxy_command=(sys.executable, "-c", f"print({PROXY_TOKEN!r})"))
    with AuthSession(config, store="memory", interactive=False) as s:
        yield s


def _ours(session: AuthSession) -> dict[str, str]:
    """The headers the session adds: the token under its key, and the proxy's."""
    return {session.config.authorization_header or "": f"Bearer {session.get_token().access_token}",
            "proxy-authorization": f"Bearer {PROXY_TOKEN}"}


def _assert_kept_off(peers: Peers, session: AuthSession) -> None:
    """The object store saw requests, and none of them carried a header we add (by key or by value)."""
    ours = _ours(session)
    assert peers.store.seen, "the redirect was not followed"
    for path, headers in peers.store.seen:
        leaked = sorted(k for k in ours if k in headers) + sorted(
            k for k, v in headers.items() if any(secret.split()[1] in v for secret in ours.values()))
        assert not leaked, f"{path} on another origin received {leaked}"


def _assert_authenticated(peers: Peers, session: AuthSession, path: str) -> None:
    ours = _ours(session)
    hits = [headers for p, headers in peers.flyte.seen if p == path]
    assert hits and all(headers.get(k) == v for headers in hits for k, v in ours.items()), path


def test_httpx_client_keeps_our_headers_off_a_cross_origin_redirect(peers: Peers, session: AuthSession) -> None:
    with session.httpx_client(follow_redirects=True) as client:
        response = client.get(f"{peers.flyte.url}/away")
        assert response.status_code == 200 and response.url.port != httpx2.URL(peers.flyte.url).port
        client.get(f"{peers.store.url}/direct")  # a presigned URL fetched through the same client
    _assert_authenticated(peers, session, "/away")  # Flyte itself got the token and the proxy's
    _assert_kept_off(peers, session)


def test_httpx_async_client_keeps_our_headers_off_a_cross_origin_redirect(peers: Peers,
                                                                          session: AuthSession) -> None:
    async def run() -> None:
        async with session.httpx_async_client(follow_redirects=True) as client:
            assert (await client.get(f"{peers.flyte.url}/away")).status_code == 200
            await client.get(f"{peers.store.url}/direct")

    asyncio.run(run())
    _assert_authenticated(peers, session, "/away")
    _assert_kept_off(peers, session)


def test_a_same_origin_redirect_keeps_auth(peers: Peers, session: AuthSession) -> None:
    with session.httpx_client(follow_redirects=True) as client:
        assert client.get(f"{peers.flyte.url}/same").status_code == 200

    async def run() -> None:
        async with session.httpx_async_client(follow_redirects=True) as client:
            assert (await client.get(f"{peers.flyte.url}/same")).status_code == 200

    asyncio.run(run())
    _assert_authenticated(peers, session, "/api")  # the redirect's target got the token, sync and async
    assert [p for p, _ in peers.flyte.seen] == ["/same", "/api", "/same", "/api"]


def test_httpx_auth_strips_a_redirect_the_caller_follows(peers: Peers, session: AuthSession) -> None:
    """``auth=`` alone, httpx2's default ``follow_redirects=False``: ``response.next_request`` carries a
    copy of our headers; sending it through the client runs the auth flow, which strips them."""
    with httpx2.Client(auth=session.httpx_auth()) as client:
        response = client.get(f"{peers.flyte.url}/away")
        assert response.status_code == 302 and response.next_request is not None
        assert client.send(response.next_request).status_code == 200

    async def run() -> None:
        async with httpx2.AsyncClient(auth=session.httpx_auth()) as client:
            response = await client.get(f"{peers.flyte.url}/away")
            assert response.next_request is not None
            assert (await client.send(response.next_request)).status_code == 200

    asyncio.run(run())
    assert len(peers.store.seen) == 2
    _assert_kept_off(peers, session)


def test_httpx_auth_with_follow_redirects_warns_to_use_httpx_client(peers: Peers, session: AuthSession,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """What ``auth=`` alone cannot do (httpx2 follows the redirect without asking it): said in a WARNING
    that names the safe way, rather than left to be found in an object store's access log."""
    from flyteauth_core import logs

    logs._SHOWN.clear()
    with caplog.at_level(logging.WARNING, logger="flyteauth.httpx"), \
            httpx2.Client(auth=session.httpx_auth(), follow_redirects=True) as client:
        client.get(f"{peers.flyte.url}/same")  # same origin: nothing to say
        assert not caplog.records
        client.get(f"{peers.flyte.url}/away")
    assert any("httpx_client()" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_httpx_client_refuses_an_auth_argument(session: AuthSession) -> None:
    with pytest.raises(TypeError, match="auth="):
        session.httpx_client(auth=httpx2.BasicAuth("u", "p"))


@pytest.fixture(params=[302, 307])
def post_redirect(request: pytest.FixtureRequest, peers: Peers) -> Iterator[int]:
    """The Flyte server answers every POST (a Connect RPC) with this redirect to the object store: 302 (the
    client may turn it into a GET) or 307 (the POST and its body are sent again)."""
    peers.flyte.post_status = request.param
    try:
        yield request.param
    finally:
        peers.flyte.post_status = 302


def _assert_rpc_kept_on_flyte(peers: Peers, session: AuthSession, calls: int) -> None:
    """Each RPC reached Flyte with our headers, and nothing at all reached the object store."""
    ours = _ours(session)
    assert len(peers.flyte.seen) == calls
    assert all(headers.get(k) == v for _, headers in peers.flyte.seen for k, v in ours.items())
    assert not peers.store.seen, f"the other origin received {peers.store.seen}"


def test_the_documented_connect_clients_keep_our_headers_off_a_redirect(peers: Peers, session: AuthSession,
                                                                        post_redirect: int) -> None:
    """What README and docs/security.md tell direct ConnectRPC users: connectrpc's default HTTP client
    (pyqwest) follows redirects and keeps ``flyte-authorization``; an RPC has no use for redirects, and a
    client built with ``follow_redirects=False`` sends nothing to the other origin (the redirect is the
    call's error), sync and async alike."""
    pyqwest = pytest.importorskip("pyqwest")
    pytest.importorskip("connectrpc")
    from connectrpc.errors import ConnectError
    from flyteidl2.auth.identity_connect import IdentityServiceClient, IdentityServiceClientSync
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    http = pyqwest.SyncClient(pyqwest.SyncHTTPTransport(follow_redirects=False, tls_include_system_certs=True))
    client = IdentityServiceClientSync(peers.flyte.url, interceptors=session.connect_interceptors_sync(),
                                       http_client=http)
    with pytest.raises(ConnectError):
        client.user_info(UserInfoRequest())
    client.close()

    async def run() -> None:
        http = pyqwest.Client(pyqwest.HTTPTransport(follow_redirects=False, tls_include_system_certs=True))
        client = IdentityServiceClient(peers.flyte.url, interceptors=session.connect_interceptors(),
                                       http_client=http)
        with pytest.raises(ConnectError):
            await client.user_info(UserInfoRequest())
        await client.close()

    asyncio.run(run())
    _assert_rpc_kept_on_flyte(peers, session, calls=2)


def test_flytes_clients_built_by_flyteauth_keep_our_headers_off_a_redirect(peers: Peers, session: AuthSession,
                                                                           post_redirect: int) -> None:
    """Route (b) with the real flyte package: ``flyteauth_integrations.flyte.client_set()`` and the HTTP
    client its ``SessionConfig.new_http_client()`` builds again do not follow the endpoint's redirect, so
    neither the token (any header key) nor ``proxy-authorization`` reaches the other origin.  Before, they
    used flyte's own HTTP client, which followed it: the object store received ``flyte-authorization``."""
    pytest.importorskip("flyte")
    from connectrpc.errors import ConnectError
    from flyteidl2.auth.identity_connect import IdentityServiceClient
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    from flyteauth_integrations import flyte as flyteauth_flyte

    async def run() -> None:
        clients = await flyteauth_flyte.client_set(session, rpc_retries=0)
        with pytest.raises(ConnectError):
            await clients.identity_service.user_info(UserInfoRequest())
        config = await flyteauth_flyte.session_config(session, rpc_retries=0)
        again = IdentityServiceClient(**{**config.connect_kwargs(), "http_client": config.new_http_client()})
        with pytest.raises(ConnectError):
            await again.user_info(UserInfoRequest())

    asyncio.run(run())
    _assert_rpc_kept_on_flyte(peers, session, calls=2)


def test_every_doc_block_that_builds_a_connect_client_turns_redirects_off() -> None:
    """The Connect snippets users copy (README, docs/*.md) give each client an HTTP client that does not
    follow redirects: an interceptor cannot (it never sees the HTTP exchange), so the construction is the
    guarantee.  On 0.2.0 README's snippets used connectrpc's default client, which follows them."""
    from ._docs_blocks import doc_files, extract

    checked = []
    for path in doc_files():
        for block in extract(path):
            built = block.code.count("interceptors=session.connect_interceptors")
            if not built:
                continue
            checked.append(block.where)
            assert block.code.count("http_client=") >= built and "follow_redirects=False" in block.code, (
                f"{block.where} builds a Connect client that follows redirects")
    assert len(checked) >= 2, checked  # README's quickstart and "Use it"


def test_a_pyqwest_that_cannot_turn_off_redirects_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exact fault (a pyqwest older than ``follow_redirects``, which connectrpc's floor allows): route (b)
    refuses with a typed error naming the fix rather than building a client that follows redirects."""
    pytest.importorskip("flyte")
    import pyqwest

    from flyteauth_core import ConfigError
    from flyteauth_integrations import flyte as flyteauth_flyte

    def old_transport(*, tls_ca_cert: bytes | None = None, use_system_dns: bool = False,
                      tls_include_system_certs: bool = False) -> Any:
        raise AssertionError("not reached: the keyword is refused first")

    monkeypatch.setattr(pyqwest, "HTTPTransport", old_transport)
    config = AuthConfig(endpoint="dns:///127.0.0.1:9", insecure=True, auth_type="Passthrough", token="t")
    with AuthSession(config, store="memory", interactive=False) as session, \
            pytest.raises(ConfigError, match="cannot turn off redirects") as refused:
        asyncio.run(flyteauth_flyte.client_set(session))
    assert "pip install -U pyqwest" in str(refused.value.hint)
