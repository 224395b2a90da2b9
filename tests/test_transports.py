"""Transport adapters against real in-process peers: retries, call styles, stubs of both vintages."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx2
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

SECRET = "transport-test-secret"


@pytest.fixture
def peers() -> Iterator[tuple[DemoTokenEndpoint, FlyteTestServer]]:
    with DemoTokenEndpoint("client", SECRET, ttl=60) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        yield idp, server


@pytest.fixture
def session(peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> Iterator[AuthSession]:
    _, server = peers
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET)
    with AuthSession(config) as s:
        yield s


def test_stubs_with_and_without_registered_method_both_work(session: AuthSession) -> None:
    channel = session.channel()
    new_style = channel.unary_unary(ECHO["unary"], request_serializer=None, response_deserializer=None,
                                    _registered_method=True)
    old_style = channel.unary_unary(ECHO["unary"], None, None)
    assert new_style(b"new") == b"new" and old_style(b"old") == b"old"
    response, call = old_style.with_call(b"call")
    assert response == b"call" and call.code() is grpc.StatusCode.OK


def test_caller_metadata_is_kept_beside_the_token(session: AuthSession,
                                                  peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    _, server = peers
    server.record_metadata = True
    session.channel().unary_unary(ECHO["unary"])(b"x", metadata=(("x-request-id", "42"),))
    seen = dict(server.seen_metadata[-1])
    assert seen["x-request-id"] == "42" and seen["flyte-authorization"].startswith("Bearer ")


def test_sync_future_call_invalidates_a_rejected_token(session: AuthSession,
                                                       peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    idp, server = peers
    unary = session.channel().unary_unary(ECHO["unary"])
    assert unary.future(b"a").result() == b"a"
    server.revoke(session.get_token().access_token)
    future = unary.future(b"b")
    with pytest.raises(grpc.RpcError):
        future.result()
    assert future.code() is grpc.StatusCode.UNAUTHENTICATED
    assert unary.future(b"c").result() == b"c"  # the next call carries a fresh token
    assert idp.requests == 2


async def test_aio_write_api_streams_do_not_deadlock(session: AuthSession) -> None:
    async with session.aio_channel() as channel:
        bidi = channel.stream_stream(ECHO["bidi"])()
        await asyncio.wait_for(bidi.write(b"one"), 5)
        assert await asyncio.wait_for(bidi.read(), 5) == b"one"
        await bidi.done_writing()
        assert await asyncio.wait_for(bidi.read(), 5) is grpc.aio.EOF

        client_stream = channel.stream_unary(ECHO["client_stream"])()
        await asyncio.wait_for(client_stream.write(b"a"), 5)
        await asyncio.wait_for(client_stream.write(b"b"), 5)
        await client_stream.done_writing()
        assert await asyncio.wait_for(client_stream, 5) == b"ab"


async def test_aio_retries_after_revocation(session: AuthSession,
                                            peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    idp, server = peers
    async with session.aio_channel() as channel:
        unary = channel.unary_unary(ECHO["unary"])
        assert await unary(b"a") == b"a"

        server.revoke(session.get_token().access_token)
        assert await unary(b"b") == b"b"  # retried once, transparently

        server.revoke(session.get_token().access_token)
        assert [m async for m in channel.unary_stream(ECHO["server_stream"])(b"s")] == [b"s0", b"s1", b"s2"]

        server.revoke(session.get_token().access_token)
        assert await channel.stream_unary(ECHO["client_stream"])([b"l", b"ist"]) == b"list"

        async def requests() -> AsyncIterator[bytes]:
            yield b"gen"

        server.revoke(session.get_token().access_token)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await channel.stream_unary(ECHO["client_stream"])(requests())
        assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED  # an async iterator is never replayed
        for _ in range(100):  # the rejection is noticed in a done-callback; the next call gets a new token
            if session.stats.invalidations == 4:
                break
            await asyncio.sleep(0.01)
        assert await channel.stream_unary(ECHO["client_stream"])(requests()) == b"gen"
    assert server.stats["rejected"] == 4
    assert idp.requests == 5


class _Api(BaseHTTPRequestHandler):
    """A REST endpoint that checks the token like the gRPC server does (and can reject everything)."""

    validate = staticmethod(lambda token: "unset")
    seen: list[str] = []
    control: dict[str, bool] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        value = self.headers.get("flyte-authorization", "")
        self.seen.append(value)
        ok = value.startswith("Bearer ") and self.validate(value[7:]) is None and not self.control["reject_all"]
        body = b"hello" if ok else b"denied"
        self.send_response(200 if ok else 401)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api(peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> Iterator[tuple[str, list[str], dict[str, bool]]]:
    idp, _ = peers
    seen: list[str] = []
    control = {"reject_all": False}
    handler = type("Api", (_Api,), {"validate": staticmethod(idp.validate), "seen": seen, "control": control})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api", seen, control
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def rest_session(peers: tuple[DemoTokenEndpoint, FlyteTestServer],
                 api: tuple[str, list[str], dict[str, bool]]) -> Iterator[AuthSession]:
    """A session whose config names the REST server's origin (``authOrigins``)."""
    config = AuthConfig(endpoint=peers[1].target, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET, auth_origins=(api[0],))
    with AuthSession(config) as s:
        yield s


def test_httpx_auth_sends_the_token_and_retries_once_after_a_401(
    rest_session: AuthSession, api: tuple[str, list[str], dict[str, bool]]
) -> None:
    session = rest_session
    url, seen, control = api
    with httpx2.Client(auth=session.httpx_auth()) as client:
        assert client.get(url).text == "hello"
        control["reject_all"] = True
        response = client.get(url)
        control["reject_all"] = False
        assert response.status_code == 401  # a server that rejects every token: one retry, then the caller sees it
        assert client.get(url).text == "hello"
    assert len(seen) == 4
    assert seen[0] == seen[1] != seen[2] == seen[3]  # the retry carried a fresh token, which was then kept
    assert session.stats.invalidations == 1 and session.stats.token_requests == 2


async def test_httpx_async_auth_sends_the_token(
    rest_session: AuthSession, api: tuple[str, list[str], dict[str, bool]]
) -> None:
    session = rest_session
    url, seen, _ = api
    async with httpx2.AsyncClient(auth=session.httpx_auth()) as client:
        assert (await client.get(url)).text == "hello"
        assert (await client.get(url)).text == "hello"
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0].startswith("Bearer ")


class _ExtraHeader:
    """An extra interceptor as a plugin would register it (e.g. proxy authorization)."""

    def __init__(self, config: AuthConfig) -> None:
        self.rejections: list[tuple[tuple[str, str], ...]] = []

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-extra", "1"),)

    async def metadata_async(self) -> tuple[tuple[str, str], ...]:
        return self.metadata()

    def rejected(self, sent: tuple[tuple[str, str], ...]) -> bool:
        self.rejections.append(sent)
        return False


def test_extra_interceptors_from_plugins_ride_along(peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    import types

    from flyteauth_core import hookimpl
    from flyteauth_core.plugins import PluginRegistry

    idp, server = peers
    made: list[_ExtraHeader] = []
    plugin = types.SimpleNamespace()

    @hookimpl
    def flyteauth_register_interceptors(register):  # type: ignore[no-untyped-def]
        register("extra", lambda config: made.append(_ExtraHeader(config)) or made[-1])

    plugin.flyteauth_register_interceptors = flyteauth_register_interceptors
    registry = PluginRegistry()
    registry.register_module(plugin, "extra-plugin")
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET)
    server.record_metadata = True
    with AuthSession(config, registry=registry) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        assert unary(b"a") == b"a"
        server.revoke(session.get_token().access_token)
        # the token part was invalidated and retried through the composite; the call's deadline reaches the
        # token's wait, and the extra interceptor (a pre-0.3.0 metadata() without timeout) is called without it
        assert unary(b"b", timeout=10) == b"b"
    seen = dict(server.seen_metadata[-1])
    assert seen["x-extra"] == "1" and seen["flyte-authorization"].startswith("Bearer ")
    assert made[0].rejections == [(("x-extra", "1"),)]  # each part sees only the pairs it sent
    assert idp.requests == 2


async def test_aio_server_stream_rejected_before_its_first_message_is_retried_every_time(
    session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer]
) -> None:
    _, server = peers
    async with session.aio_channel() as channel:
        stream = channel.unary_stream(ECHO["server_stream"])
        for _ in range(10):
            server.revoke(session.get_token().access_token)
            assert [m async for m in stream(b"r")] == [b"r0", b"r1", b"r2"]
    assert session.stats.invalidations == 10 and server.stats["rejected"] == 10


# -- auth failures in the transport's own error type -----------------------------------------------------
@pytest.mark.parametrize("form", ["channel", "interceptor"])
def test_a_grpc_auth_failure_is_both_a_flyteauth_error_and_an_rpc_error(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer], form: str) -> None:
    from flyteauth_core.errors import FlyteAuthError, InvalidClientError

    _, server = peers
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret="not-the-secret")
    with AuthSession(config) as session:
        channel = session.channel() if form == "channel" else grpc.intercept_channel(
            session._raw(), *session.grpc_interceptors())
        unary = channel.unary_unary(ECHO["unary"])
        for call in (unary, unary.with_call, lambda r: unary.future(r).result()):
            with pytest.raises(grpc.RpcError) as error:
                call(b"x")
            assert isinstance(error.value, InvalidClientError) and isinstance(error.value, FlyteAuthError)
            assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "invalid_client" in error.value.details() and "not-the-secret" not in error.value.details()
    assert server.stats["calls"] == 0


async def test_aio_auth_failures_are_rpc_errors_and_a_down_idp_is_unavailable(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    from flyteauth_core.errors import FlyteAuthError
    from flyteauth_core.http import RetryPolicy

    _, server = peers
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET, token_url="http://127.0.0.1:9/token")  # nothing listens there
    with AuthSession(config, retry=RetryPolicy(attempts=1)) as session:
        async with session.aio_channel() as channel:
            with pytest.raises(grpc.RpcError) as error:
                await channel.unary_unary(ECHO["unary"])(b"x")
    assert isinstance(error.value, FlyteAuthError) and error.value.transient
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE  # transient: the caller's retry logic applies


# -- httpx2: auth scoped to the Flyte origin and authOrigins ---------------------------------------------
def test_httpx_auth_stays_off_other_hosts(rest_session: AuthSession, api: tuple[str, list[str], dict[str, bool]],
                                         peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    url, seen, control = api
    other = url.replace("127.0.0.1", "localhost")  # the same server under another origin: a "presigned URL"
    with httpx2.Client(auth=rest_session.httpx_auth()) as client:
        assert client.get(url).text == "hello"
        assert client.get(other).status_code == 401  # no token went there ...
        assert seen[-1] == ""
        control["reject_all"] = True
        assert client.get(other).status_code == 401  # ... and its 401 invalidates nothing
    assert rest_session.stats.invalidations == 0 and rest_session.stats.token_requests == 1
    assert peers[0].requests == 1


def test_httpx_auth_reaches_the_flyte_origin_without_configuration(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer], api: tuple[str, list[str], dict[str, bool]]) -> None:
    url, seen, _ = api
    config = AuthConfig(endpoint=url.rsplit("/", 1)[0], insecure=True, auth_type="ClientSecret", client_id="client",
                        client_secret=SECRET, token_url=peers[0].url, authorization_header="flyte-authorization")
    with AuthSession(config) as session, httpx2.Client(auth=session.httpx_auth()) as client:
        assert client.get(url).text == "hello"
    assert seen[-1].startswith("Bearer ")


# -- a proxy's 407/403 refreshes the proxy token once ----------------------------------------------------
class _Proxy(BaseHTTPRequestHandler):
    """Answers 407 (or 403) unless proxy-authorization carries the current proxy token."""

    state: dict[str, object] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        current = self.state["current"]
        ok = self.headers.get("proxy-authorization") == f"Bearer {current}"
        self.state.setdefault("seen", []).append(self.headers.get("proxy-authorization"))  # type: ignore[union-attr]
        status = 200 if ok else int(self.state["status"])  # type: ignore[call-overload]
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.mark.parametrize("status", [407, 403])
def test_a_proxy_rejection_refreshes_the_proxy_token_once(tmp_path: object, status: int) -> None:
    import sys
    from pathlib import Path

    counter = Path(str(tmp_path)) / "runs"
    counter.write_text("0")
    script = ("import pathlib,sys; p=pathlib.Path(sys.argv[1]); n=int(p.read_text())+1; p.write_text(str(n)); "
              "print(f'proxy-{n}')")
    state: dict[str, object] = {"current": "proxy-1", "status": status}
    handler = type("Proxy", (_Proxy,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    config = AuthConfig(endpoint=url, auth_type="Passthrough", token="user-token", authorization_header="authorization",
                        proxy_command=(sys.executable, "-c", script, str(counter)))
    try:
        with AuthSession(config) as session, httpx2.Client(auth=session.httpx_auth()) as client:
            assert client.get(url).status_code == 200
            state["current"] = "proxy-2"  # the proxy rotated its credentials
            assert client.get(url).status_code == 200  # one rejection, one refresh, one retry
            state["current"] = "never"
            assert client.get(url).status_code == status  # refreshed once, then the caller sees it
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert counter.read_text() == "3"  # proxy-1, proxy-2 after the rotation, proxy-3 for the one retry of the last call


# -- every call kind and call style of both sync forms --------------------------------------------------
@pytest.mark.parametrize("form", ["channel", "interceptor"])
def test_every_sync_call_kind_and_style_after_a_revocation(
        session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer], form: str) -> None:
    idp, server = peers
    channel = session.channel() if form == "channel" else grpc.intercept_channel(
        session._raw(), *session.grpc_interceptors())
    unary = channel.unary_unary(ECHO["unary"])
    client_stream = channel.stream_unary(ECHO["client_stream"])
    calls = {
        "unary()": lambda: unary(b"u"),
        "unary.with_call()": lambda: unary.with_call(b"u")[0],
        "server stream": lambda: b"".join(channel.unary_stream(ECHO["server_stream"])(b"s")),
        "client stream (list)": lambda: client_stream([b"c", b"l"]),
        "client stream.with_call (list)": lambda: client_stream.with_call([b"c", b"l"])[0],
        "bidi (list)": lambda: b"".join(channel.stream_stream(ECHO["bidi"])([b"b", b"i"])),
    }
    expected = {"unary()": b"u", "unary.with_call()": b"u", "server stream": b"s0s1s2",
                "client stream (list)": b"cl", "client stream.with_call (list)": b"cl", "bidi (list)": b"bi"}
    for name, call in calls.items():
        server.revoke(session.get_token().access_token)
        assert call() == expected[name], name  # rejected once, retried once with a new token
    assert server.stats["rejected"] == len(calls) and session.stats.invalidations == len(calls)
    # futures the caller holds: never replayed, never blocking, but their rejection invalidates the token
    for make in (lambda: unary.future(b"f"), lambda: client_stream.future(iter([b"f"]))):
        server.revoke(session.get_token().access_token)
        invalidations = session.stats.invalidations
        future = make()
        try:
            result = future.result(timeout=5)
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        else:  # the interceptor form sees a unary future that is already done as a finished call: one retry
            assert form == "interceptor" and result == b"f"
        # The rejection is seen by the future's done-callback, which grpc runs just after result() wakes up:
        # wait for it (bounded), as a caller's next call a moment later would.
        waited = time.monotonic() + 5
        while session.stats.invalidations == invalidations and time.monotonic() < waited:
            time.sleep(0.005)
        assert session.stats.invalidations == invalidations + 1
        assert unary.future(b"next").result(timeout=5) == b"next"  # the next call carries a fresh token
    assert idp.requests == len(calls) + 3


class _FinishBeforeReturning(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Hands a ``future()`` back only once it has finished: what a busy machine does by chance when the
    server answers before the caller's thread runs again."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._finished(continuation(details, request))

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return self._finished(continuation(details, request_iterator))

    @staticmethod
    def _finished(outcome: Any) -> Any:
        done = threading.Event()
        outcome.add_done_callback(lambda _: done.set())
        assert done.wait(5)
        return outcome


def test_interceptor_form_never_replays_a_future_that_finished_before_it_was_returned(
        session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    idp, server = peers
    channel = grpc.intercept_channel(session._raw(), *session.grpc_interceptors(), _FinishBeforeReturning())
    unary, client_stream = channel.unary_unary(ECHO["unary"]), channel.stream_unary(ECHO["client_stream"])
    for make in (lambda: unary.future(b"f"), lambda: client_stream.future(iter([b"f"]))):
        server.revoke(session.get_token().access_token)
        future = make()
        assert future.done()
        with pytest.raises(grpc.RpcError) as error:
            future.result(timeout=5)
        assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED  # not replayed with a new token ...
        assert unary(b"next") == b"next"  # ... but the rejected token was dropped: no second rejection
    assert server.stats["rejected"] == 2 and session.stats.invalidations == 2 and idp.requests == 3


def test_interceptor_form_future_does_not_block(session: AuthSession,
                                                 peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    import time

    _, server = peers
    gate = threading.Event()
    validate = server.validate
    server.validate = lambda token: (gate.wait(5), validate(token))[1]  # the server holds every call
    try:
        unary = grpc.intercept_channel(session._raw(), *session.grpc_interceptors()).unary_unary(ECHO["unary"])
        session.get_token()
        started = time.monotonic()
        future = unary.future(b"f")
        assert time.monotonic() - started < 1.0 and not future.done()  # returned before the server answered
        gate.set()
        assert future.result(timeout=5) == b"f"
    finally:
        gate.set()
        server.validate = validate


@pytest.mark.parametrize("form", ["aio_intercept", "aio_interceptors"])
async def test_aio_call_kinds_after_a_revocation_and_the_call_api(
        session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer], form: str) -> None:
    _, server = peers
    async with grpc.aio.insecure_channel(server.target, interceptors=(
            session.aio_interceptors() if form == "aio_interceptors" else None)) as raw:
        channel = session.aio_intercept(raw) if form == "aio_intercept" else raw
        unary = channel.unary_unary(ECHO["unary"])
        server.revoke(session.get_token().access_token)
        call = unary(b"u")
        assert await call == b"u" and await call == b"u"  # awaited twice: one result, not a second call
        assert await call.code() is grpc.StatusCode.OK and await call.trailing_metadata() is not None
        server.revoke(session.get_token().access_token)
        stream = channel.unary_stream(ECHO["server_stream"])(b"s")
        assert [await stream.read() for _ in range(3)] == [b"s0", b"s1", b"s2"]
        assert await stream.read() is grpc.aio.EOF
        server.revoke(session.get_token().access_token)
        assert await channel.stream_unary(ECHO["client_stream"])([b"a", b"b"]) == b"ab"
        assert await unary(b"v") == b"v"
    assert server.stats["rejected"] == 3 and session.stats.invalidations == 3
    if form == "aio_intercept":  # the wrapper leaves a channel it did not create open until its owner closes it
        assert raw.get_state() is not None


async def test_aio_bidi_rejected_while_writing_is_retried_or_surfaces_grpc_s_lost_status(
        session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    """grpc.aio replaces the server's UNAUTHENTICATED by INTERNAL "Internal error from Core" when a request
    write fails because the server already closed the call (see grpc_aio's module docstring).  Each rejected
    bidi call either comes back through the one retry, or surfaces that INTERNAL untouched: never a hang,
    never a retry or invalidation on a guess."""
    _, server = peers
    outcomes: list[str] = []
    async with session.aio_channel() as channel:
        bidi = channel.stream_stream(ECHO["bidi"])
        for _ in range(session.manager.brake.burst - 1):  # more revocations within 30 s would brake
            server.revoke(session.get_token().access_token)
            try:
                assert [m async for m in bidi([b"a", b"b", b"c"])] == [b"a", b"b", b"c"]
                outcomes.append("retried")
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.INTERNAL and "Internal error from Core" in error.details()
                outcomes.append("internal")
    assert session.stats.invalidations == outcomes.count("retried")
    assert server.stats["rejected"] >= len(outcomes)


def test_an_auth_error_from_rejected_is_raised_as_an_rpc_error(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    """A manager may refuse to fetch again for a token the server keeps rejecting (a typed error from
    ``rejected()``); on a gRPC path that error is also a ``grpc.RpcError``, chained to the rejection."""
    from flyteauth_core.errors import TokenError
    from flyteauth_core.transports.grpc_sync import AuthChannel

    class Refusing:
        def metadata(self, timeout: float | None = None) -> tuple[tuple[str, str], ...]:
            return (("flyte-authorization", "Bearer not-valid"),)

        async def metadata_async(self, timeout: float | None = None) -> tuple[tuple[str, str], ...]:
            return self.metadata()

        def rejected(self, sent: object) -> bool:
            raise TokenError("The server rejected a token obtained moments ago", hint="Check the audience")

    _, server = peers
    channel = AuthChannel(grpc.insecure_channel(server.target), Refusing(), owns_channel=True)
    with channel, pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(ECHO["unary"])(b"x")
    assert isinstance(error.value, TokenError) and error.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "audience" in error.value.details()
    assert isinstance(error.value.__cause__, grpc.RpcError) and server.stats["rejected"] == 1


async def test_aio_wrapper_authenticates_with_or_without_metadata_nowait(
        session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    """The wrapper's short path (a fresh token handed over at once, ``NoWait``) and its awaited path (a cold
    session, a stale token, or an interceptor that only has ``metadata_async``) send the same token, retry a
    revoked one once, and expose grpc's call API once the call has started."""
    from flyteauth_core.transports.grpc_aio import AioAuthChannel

    idp, server = peers
    manager = session.manager

    class AwaitOnly:  # the Interceptor protocol alone: every call awaits metadata_async()
        def metadata(self, timeout: float | None = None) -> Any:
            return manager.metadata(timeout)

        async def metadata_async(self, timeout: float | None = None) -> Any:
            return await manager.metadata_async(timeout)

        def rejected(self, sent: Any) -> bool:
            return manager.rejected(sent)

    async with grpc.aio.insecure_channel(server.target) as raw:
        for interceptor in (session.interceptor, AwaitOnly()):  # the first call of the cold session awaits
            unary = AioAuthChannel(raw, interceptor).unary_unary(ECHO["unary"])
            call = unary(b"x", timeout=10)
            with pytest.raises(RuntimeError, match="has not started yet"):
                call.time_remaining()
            assert await call == b"x"
            remaining = call.time_remaining()
            assert remaining is not None and 0 < remaining <= 10
            server.revoke(session.get_token().access_token)
            assert await unary(b"y", wait_for_ready=True) == b"y"  # rejected once, retried with a new token
    assert idp.requests == 3 and server.stats["rejected"] == 2 and session.stats.invalidations == 2
