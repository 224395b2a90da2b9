"""Transport adapters against real in-process peers: retries, call styles, stubs of both vintages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx2
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.lifecycle import RejectionBrake
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

#: Revoking each replacement token right after one call looks, to the manager, like a server that rejects
#: every token (the rejection brake, tests/test_edges_brake.py); these tests are about retry mechanics.
NO_BRAKE = RejectionBrake(window=0.0)

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
    session.manager.brake = NO_BRAKE
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


def test_httpx_auth_sends_the_token_and_retries_once_after_a_401(
    session: AuthSession, api: tuple[str, list[str], dict[str, bool]]
) -> None:
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
    session: AuthSession, api: tuple[str, list[str], dict[str, bool]]
) -> None:
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
        assert unary(b"b") == b"b"  # the token part was invalidated and retried through the composite
    seen = dict(server.seen_metadata[-1])
    assert seen["x-extra"] == "1" and seen["flyte-authorization"].startswith("Bearer ")
    assert made[0].rejections == [(("x-extra", "1"),)]  # each part sees only the pairs it sent
    assert idp.requests == 2


async def test_aio_server_stream_rejected_before_its_first_message_is_retried_every_time(
    session: AuthSession, peers: tuple[DemoTokenEndpoint, FlyteTestServer]
) -> None:
    _, server = peers
    session.manager.brake = NO_BRAKE
    async with session.aio_channel() as channel:
        stream = channel.unary_stream(ECHO["server_stream"])
        for _ in range(10):
            server.revoke(session.get_token().access_token)
            assert [m async for m in stream(b"r")] == [b"r0", b"r1", b"r2"]
    assert session.stats.invalidations == 10 and server.stats["rejected"] == 10
