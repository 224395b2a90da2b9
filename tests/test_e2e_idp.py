"""End to end against real peers: the oidc-provider IdP (2 s tokens) and a JWT-validating FlyteTestServer.

Every call kind of every transport (grpc sync, grpc.aio, the grpc interceptor form, httpx2) is
authenticated across token expiries, discovery picks the metadata key and the version the server
speaks, and a server-side rejection costs exactly one refresh and one retry where a retry is safe.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx2
import pytest

from flyteauth_core import AuthSession
from flyteauth_core.errors import TokenRejectedError
from flyteauth_core.testing import ECHO, FlyteTestServer

from ._idp import CI_BASIC_ID, IdpServer
from .conftest import jwt_validator

pytestmark = pytest.mark.idp

SessionFactory = Callable[..., tuple[AuthSession, FlyteTestServer]]


# -- a loopback REST peer that validates the same JWTs -------------------------------------------------
class _RestServer:
    """Answers GET / with 200 when `flyte-authorization` or `authorization` carries a valid JWT, else 401."""

    def __init__(self, validate: Callable[[str], str | None]) -> None:
        self.ok = 0
        self.rejected: list[str] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                value = self.headers.get("flyte-authorization") or self.headers.get("authorization") or ""
                reason = validate(value[7:]) if value.startswith("Bearer ") else "no bearer token"
                if reason is None:
                    peer.ok += 1
                else:
                    peer.rejected.append(reason)
                body = b"ok" if reason is None else reason.encode()
                self.send_response(200 if reason is None else 401)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def rest(idp: IdpServer) -> Iterator[_RestServer]:
    server = _RestServer(jwt_validator(idp))
    yield server
    server.stop()


def _gen(*items: bytes) -> Iterator[bytes]:
    yield from items


def _unauthenticated(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    return excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


# -- every call kind, across expiries -------------------------------------------------------------------
async def test_all_call_kinds_stay_authenticated_across_two_expiries(
    idp_session: SessionFactory, idp_fresh: IdpServer, rest: _RestServer
) -> None:
    session, server = idp_session(auth_origins=(rest.url,))  # the REST peer is another origin than the endpoint
    channel = session.channel()
    unary = channel.unary_unary(ECHO["unary"])
    server_stream = channel.unary_stream(ECHO["server_stream"])
    client_stream = channel.stream_unary(ECHO["client_stream"])
    bidi = channel.stream_stream(ECHO["bidi"])

    # The first (cold) call is the only one that waits for a token.
    assert unary(b"cold") == b"cold"
    assert session.stats.waits == 1

    achannel = session.aio_channel()
    a_unary = achannel.unary_unary(ECHO["unary"])
    a_server_stream = achannel.unary_stream(ECHO["server_stream"])
    a_client_stream = achannel.stream_unary(ECHO["client_stream"])
    a_bidi = achannel.stream_stream(ECHO["bidi"])
    http = httpx2.Client(auth=session.httpx_auth(), trust_env=False, timeout=10)
    tokens: set[str] = set()
    rounds = 0
    try:
        start = time.monotonic()
        while time.monotonic() - start < 5.0:  # 2 s tokens: at least two expiries
            tokens.add(session.get_token().access_token)
            # grpc, sync
            assert unary(b"u") == b"u"
            response, call = unary.with_call(b"w")
            assert response == b"w" and call.code() is grpc.StatusCode.OK
            assert list(server_stream(b"s")) == [b"s0", b"s1", b"s2"]
            assert client_stream(_gen(b"a", b"b")) == b"ab"
            assert list(bidi(_gen(b"x", b"y"))) == [b"x", b"y"]
            # grpc.aio
            assert await a_unary(b"au") == b"au"
            assert [m async for m in a_server_stream(b"as")] == [b"as0", b"as1", b"as2"]
            assert await a_client_stream(_gen(b"c", b"d")) == b"cd"
            assert [m async for m in a_bidi(_gen(b"p", b"q"))] == [b"p", b"q"]
            # httpx2
            reply = http.get(rest.url)
            assert reply.status_code == 200, reply.text
            rounds += 1
            await asyncio.sleep(0.05)
    finally:
        http.close()
        await achannel.close()

    assert rounds >= 20
    assert len(tokens) >= 3, "expected the token to be replaced at least twice in 5 s"
    assert server.stats["rejected"] == 0, dict(server.stats)
    assert server.stats["calls"] == 1 + 9 * rounds
    assert rest.rejected == [] and rest.ok == rounds
    assert session.stats.waits == 1, session.stats  # refreshes happened in the background
    assert session.stats.token_requests >= 3
    assert session.stats.background_refreshes >= 2
    assert idp_fresh.token_request_count(CI_BASIC_ID) == session.stats.token_requests


# -- which metadata key -----------------------------------------------------------------------------
def test_default_flyte_authorization_key_accepted_on_first_call(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    assert server.header_key == "flyte-authorization"
    assert session.channel().unary_unary(ECHO["unary"])(b"hi") == b"hi"
    assert server.stats["calls"] == 1 and server.stats["rejected"] == 0
    assert session.server_info().authorization_metadata_key == "flyte-authorization"


def test_authorization_key_accepted_on_first_call(idp_session: SessionFactory) -> None:
    session, server = idp_session({"header_key": "authorization"})
    assert session.channel().unary_unary(ECHO["unary"])(b"hi") == b"hi"
    assert server.stats["calls"] == 1 and server.stats["rejected"] == 0


def test_explicit_authorization_header_wins_over_discovery(idp_session: SessionFactory) -> None:
    # The server advertises flyte-authorization but (like a misconfigured proxy) reads `authorization`.
    session, server = idp_session(authorization_header="authorization")
    server.header_key = "authorization"
    assert session.server_info().authorization_metadata_key == "flyte-authorization"
    assert session.channel().unary_unary(ECHO["unary"])(b"hi") == b"hi"
    assert server.stats["calls"] == 1 and server.stats["rejected"] == 0


def test_discovered_key_is_used_when_no_explicit_header(idp_session: SessionFactory) -> None:
    # The control for the test above: the same server, no explicit header -> the advertised key.
    session, server = idp_session()
    server.header_key = "authorization"  # advertises flyte-authorization, reads authorization
    with pytest.raises(grpc.RpcError) as excinfo:
        session.channel().unary_unary(ECHO["unary"])(b"hi")
    assert _unauthenticated(excinfo)
    assert server.stats["rejected: no authorization header (got ['flyte-authorization'])"] == 2


# -- discovery versions -----------------------------------------------------------------------------
def test_discovery_falls_back_to_v1(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, server = idp_session({"versions": ("v1",)})
    assert session.channel().unary_unary(ECHO["unary"])(b"v1") == b"v1"
    assert server.stats["discovery_v1"] >= 1
    assert server.stats["discovery_v2"] == 0
    assert server.stats["rejected"] == 0
    assert session.server_info().token_endpoint == idp_fresh.token_endpoint
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1


# -- server-side revocation -------------------------------------------------------------------------
def _warm(session: AuthSession) -> str:
    """Acquire a token now (so the test runs well inside its 2 s life) and return it."""
    return session.get_token().access_token


def test_revoked_token_unary_is_retried_once(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, server = idp_session()
    unary = session.channel().unary_unary(ECHO["unary"])
    revoked = _warm(session)
    server.revoke(revoked)

    assert unary(b"again") == b"again"
    assert session.stats.invalidations == 1
    assert server.stats["rejected"] == 1 and server.stats["rejected: revoked"] == 1
    assert server.stats["calls"] == 2
    assert session.get_token().access_token != revoked
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


def test_revoked_token_with_call_is_retried_once(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    unary = session.channel().unary_unary(ECHO["unary"])
    server.revoke(_warm(session))
    response, call = unary.with_call(b"w")
    assert response == b"w" and call.code() is grpc.StatusCode.OK
    assert session.stats.invalidations == 1 and server.stats["rejected"] == 1


def test_revoked_token_server_stream_is_retried_before_first_message(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    stream = session.channel().unary_stream(ECHO["server_stream"])
    server.revoke(_warm(session))
    assert list(stream(b"m")) == [b"m0", b"m1", b"m2"]
    assert session.stats.invalidations == 1
    assert server.stats["rejected"] == 1 and server.stats["calls"] == 2


def test_revoked_token_client_stream_generator_is_not_replayed(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session()
    client_stream = session.channel().stream_unary(ECHO["client_stream"])
    revoked = _warm(session)
    server.revoke(revoked)

    with pytest.raises(grpc.RpcError) as excinfo:
        client_stream(_gen(b"a", b"b"))
    assert _unauthenticated(excinfo)
    assert server.stats["calls"] == 1  # not replayed
    assert session.stats.invalidations == 1  # but the rejected token is gone
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1

    # The next call gets a new token without a second rejection.
    assert client_stream(_gen(b"c", b"d")) == b"cd"
    assert session.get_token().access_token != revoked
    assert server.stats["rejected"] == 1 and server.stats["calls"] == 2
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


def test_revoked_token_client_stream_list_is_retried(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    client_stream = session.channel().stream_unary(ECHO["client_stream"])
    server.revoke(_warm(session))
    assert client_stream([b"a", b"b"]) == b"ab"
    assert session.stats.invalidations == 1
    assert server.stats["rejected"] == 1 and server.stats["calls"] == 2


def test_revoked_token_bidi_generator_is_not_replayed(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    bidi = session.channel().stream_stream(ECHO["bidi"])
    server.revoke(_warm(session))
    with pytest.raises(grpc.RpcError) as excinfo:
        list(bidi(_gen(b"x")))
    assert _unauthenticated(excinfo)
    assert server.stats["calls"] == 1 and session.stats.invalidations == 1
    assert list(bidi(_gen(b"y"))) == [b"y"]


async def test_revoked_token_aio_unary_and_server_stream_are_retried(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    async with session.aio_channel() as achannel:
        server.revoke((await session.get_token_async()).access_token)
        assert await achannel.unary_unary(ECHO["unary"])(b"a") == b"a"
        assert session.stats.invalidations == 1 and server.stats["rejected"] == 1

        server.revoke((await session.get_token_async()).access_token)
        assert [m async for m in achannel.unary_stream(ECHO["server_stream"])(b"s")] == [b"s0", b"s1", b"s2"]
        assert session.stats.invalidations == 2 and server.stats["rejected"] == 2
        assert server.stats["calls"] == 4


def test_revoked_token_httpx_is_retried_once(
    idp_session: SessionFactory, idp: IdpServer
) -> None:
    validate = jwt_validator(idp)
    revoked: list[str] = []
    rest = _RestServer(lambda t: "revoked" if t in revoked else validate(t))
    session, _ = idp_session(auth_origins=(rest.url,))  # the REST peer is another origin than the endpoint
    revoked.append(_warm(session))
    try:
        with httpx2.Client(auth=session.httpx_auth(), trust_env=False, timeout=10) as http:
            assert http.get(rest.url).status_code == 200
    finally:
        rest.stop()
    assert rest.rejected == ["revoked"] and rest.ok == 1
    assert session.stats.invalidations == 1


# -- a server that rejects everything: one refresh, one retry, no loop ------------------------------
def test_server_rejecting_every_token_costs_one_refresh_and_one_retry_per_call(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session({"validate": lambda t: "nope"})
    channel = session.channel()
    unary = channel.unary_unary(ECHO["unary"])
    stream = channel.unary_stream(ECHO["server_stream"])

    with pytest.raises(grpc.RpcError) as excinfo:
        unary(b"1")
    assert _unauthenticated(excinfo)
    assert "nope" in excinfo.value.details()  # type: ignore[attr-defined]
    # The cold token plus one refresh after the rejection; the call was sent twice.
    assert server.stats["calls"] == 2 and server.stats["rejected: nope"] == 2
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2

    calls, requests = server.stats["calls"], idp_fresh.token_request_count(CI_BASIC_ID)
    with pytest.raises(grpc.RpcError) as excinfo:
        unary(b"2")
    assert _unauthenticated(excinfo)
    assert server.stats["calls"] - calls == 2  # the call and exactly one retry
    assert idp_fresh.token_request_count(CI_BASIC_ID) - requests == 1  # exactly one refresh
    assert session.stats.invalidations == 2
    # A second replacement rejected right after it was obtained: the brake (issue 9) stops refreshing.
    calls, requests = server.stats["calls"], idp_fresh.token_request_count(CI_BASIC_ID)
    with pytest.raises(TokenRejectedError, match="audience"):
        list(stream(b"3"))
    assert server.stats["calls"] - calls == 1 and idp_fresh.token_request_count(CI_BASIC_ID) == requests


async def test_server_rejecting_every_token_aio_no_loop(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session({"validate": lambda t: "nope"})
    async with session.aio_channel() as achannel:
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await achannel.unary_unary(ECHO["unary"])(b"1")
    assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert server.stats["calls"] == 2
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


# -- the grpc interceptor form ----------------------------------------------------------------------
def test_grpc_interceptor_form(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, server = idp_session()
    raw = grpc.insecure_channel(server.target)
    try:
        channel = grpc.intercept_channel(raw, *session.grpc_interceptors())
        unary = channel.unary_unary(ECHO["unary"])
        stream = channel.unary_stream(ECHO["server_stream"])
        assert unary(b"i") == b"i"
        assert list(stream(b"j")) == [b"j0", b"j1", b"j2"]
        assert server.stats["calls"] == 2 and server.stats["rejected"] == 0

        # A revoked token is replaced and the call retried, through the interceptor too.
        server.revoke(session.get_token().access_token)
        assert unary(b"k") == b"k"
        server.revoke(session.get_token().access_token)
        assert list(stream(b"l")) == [b"l0", b"l1", b"l2"]
        assert server.stats["rejected: revoked"] == 2
        assert session.stats.invalidations == 2
        assert idp_fresh.token_request_count(CI_BASIC_ID) == 3
    finally:
        raw.close()


def test_revoked_token_bidi_list_is_retried(idp_session: SessionFactory) -> None:
    session, server = idp_session()
    bidi = session.channel().stream_stream(ECHO["bidi"])
    server.revoke(_warm(session))
    assert list(bidi([b"x", b"y"])) == [b"x", b"y"]
    assert session.stats.invalidations == 1
    assert server.stats["rejected"] == 1 and server.stats["calls"] == 2


async def test_revoked_token_aio_client_stream_generator_not_replayed_list_retried(
    idp_session: SessionFactory,
) -> None:
    session, server = idp_session()
    async with session.aio_channel() as achannel:
        client_stream = achannel.stream_unary(ECHO["client_stream"])
        revoked = (await session.get_token_async()).access_token
        server.revoke(revoked)
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await client_stream(_gen(b"a"))
        assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert server.stats["calls"] == 1  # not replayed
        # The rejected token is invalidated (asynchronously, from the call's done callback) ...
        deadline = time.monotonic() + 2.0
        while session.stats.invalidations == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert session.stats.invalidations == 1
        # ... so the next call carries a new token and is not rejected.
        assert await client_stream(_gen(b"b")) == b"b"
        assert server.stats["rejected"] == 1 and server.stats["calls"] == 2
        assert (await session.get_token_async()).access_token != revoked

        server.revoke((await session.get_token_async()).access_token)
        assert await client_stream([b"b", b"c"]) == b"bc"  # a list is replayed
        assert session.stats.invalidations == 2
        assert server.stats["rejected"] == 2 and server.stats["calls"] == 4
