"""One scenario table, run through every transport driver of the one auth flow.

Rows: sync channel, sync interceptor form, aio channel, aio interceptors, httpx2 sync/async, Connect
async/sync.  Peers are real: the oidc-provider test IdP issues the tokens; a gRPC ``FlyteTestServer``,
a REST server and a Connect server (connectrpc's ASGI app behind uvicorn) validate them against the
IdP's JWKS.  The only mock is the session's clock, to jump past an expiry without waiting for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx2
import pytest
from grpc import aio

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO, FlyteTestServer, judge_bearer, record_call

from ._idp import CI_BASIC, IdpServer, _node_or_skip
from .conftest import jwt_validator

pytestmark = pytest.mark.idp
HEADER = "authorization"


class Gate:
    """What every server consults before answering: revoked tokens and per-call delays (in order); a
    delay ends early once ``release`` is set (a test's abandoned call need not hold the server)."""

    def __init__(self, validate: Callable[[str], str | None]) -> None:
        self._validate = validate
        self.revoked: set[str] = set()
        self.delays: list[float] = []
        self.release = threading.Event()

    def __call__(self, token: str) -> str | None:
        if self.delays:
            self.release.wait(self.delays.pop(0))
        return "revoked" if token in self.revoked else self._validate(token)


class RestServer:
    """GET /unary and POST /upload, checking ``authorization`` with the gate; counts like the others."""

    def __init__(self, gate: Gate) -> None:
        self.stats: Counter[str] = Counter()
        lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                reason = judge_bearer(self.headers.get(HEADER), HEADER, gate)
                record_call(peer.stats, lock, reason)
                body = b"ok" if reason is None else reason.encode()
                self.send_response(200 if reason is None else 401)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                if self.headers.get("transfer-encoding") == "chunked":
                    while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                        self.rfile.read(size + 2)
                    self.rfile.readline()
                else:
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                self._answer()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.target = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Peers:
    def __init__(self, idp: IdpServer) -> None:
        from ._connect_server import ConnectTestServer

        self.idp = idp
        self.gate = Gate(jwt_validator(idp))
        self.grpc = FlyteTestServer(self.gate, token_endpoint=idp.token_endpoint, header_key=HEADER).start()
        self.rest = RestServer(self.gate)
        self.connect = ConnectTestServer(self.gate, token_endpoint=idp.token_endpoint).start()

    def stop(self) -> None:
        self.grpc.stop()
        self.rest.stop()
        self.connect.stop()


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    pytest.importorskip("connectrpc")
    _node_or_skip()
    with IdpServer(token_ttl=300) as idp:
        peers = Peers(idp)
        try:
            yield peers
        finally:
            peers.stop()


# -- the drivers: each makes the same three kinds of call through one transport ------------------------
class Driver:
    """``unary(timeout)``, ``stream()`` (server stream, collected) and ``unreplayable()`` (a request stream
    from an iterator); each raises the transport's error when the call fails."""

    family = "grpc"
    has_server_stream = True

    def __init__(self, session: AuthSession, peers: Peers) -> None:
        self.session = session
        self.peers = peers
        self.loop: asyncio.AbstractEventLoop | None = None
        self.setup()

    def setup(self) -> None: ...

    def run(self, coro: Any) -> Any:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()

    @property
    def server(self) -> Any:
        return {"grpc": self.peers.grpc, "rest": self.peers.rest, "connect": self.peers.connect}[self.family]


class SyncGrpc(Driver):
    def setup(self) -> None:
        self.channel = self.session.channel()

    def unary(self, timeout: float | None = None) -> None:
        assert self.channel.unary_unary(ECHO["unary"])(b"x", timeout=timeout) == b"x"

    def stream(self) -> list[Any]:
        return list(self.channel.unary_stream(ECHO["server_stream"])(b"s"))

    def unreplayable(self) -> None:
        self.channel.stream_unary(ECHO["client_stream"])(iter([b"a", b"b"]))


class SyncGrpcInterceptor(SyncGrpc):
    def setup(self) -> None:
        self.raw = grpc.insecure_channel(self.peers.grpc.target)
        self.channel = grpc.intercept_channel(self.raw, *self.session.grpc_interceptors())

    def close(self) -> None:
        self.raw.close()


class AioGrpc(Driver):
    def make_channel(self) -> Any:
        return self.session.aio_channel()

    def setup(self) -> None:
        async def make() -> Any:
            return self.make_channel()

        self.channel = self.run(make())

    def unary(self, timeout: float | None = None) -> None:
        assert self.run(self.channel.unary_unary(ECHO["unary"])(b"x", timeout=timeout)) == b"x"

    def stream(self) -> list[Any]:
        async def collect() -> list[Any]:
            return [m async for m in self.channel.unary_stream(ECHO["server_stream"])(b"s")]

        return self.run(collect())  # type: ignore[no-any-return]

    def unreplayable(self) -> None:
        async def requests() -> Any:
            yield b"a"

        async def call() -> None:
            await self.channel.stream_unary(ECHO["client_stream"])(requests())

        self.run(call())

    def close(self) -> None:
        self.run(self.channel.close())
        super().close()


class AioGrpcInterceptors(AioGrpc):
    def make_channel(self) -> Any:
        return aio.insecure_channel(self.peers.grpc.target, interceptors=self.session.aio_interceptors())


class HttpxSync(Driver):
    family = "rest"
    has_server_stream = False  # HTTP's status comes before the body: no rejection after the first message

    def setup(self) -> None:
        self.client = self.session.httpx_client(base_url=self.peers.rest.target)  # the documented way

    def unary(self, timeout: float | None = None) -> None:
        self.client.get("/unary", timeout=timeout).raise_for_status()

    def unreplayable(self) -> None:
        self.client.post("/upload", content=iter([b"a", b"b"])).raise_for_status()

    def close(self) -> None:
        self.client.close()


class HttpxAsync(HttpxSync):
    def setup(self) -> None:
        self.client = self.session.httpx_async_client(base_url=self.peers.rest.target)

    def unary(self, timeout: float | None = None) -> None:
        async def call() -> None:
            (await self.client.get("/unary", timeout=timeout)).raise_for_status()

        self.run(call())

    def unreplayable(self) -> None:
        async def body() -> Any:
            yield b"a"

        async def call() -> None:
            (await self.client.post("/upload", content=body())).raise_for_status()

        self.run(call())

    def close(self) -> None:
        self.run(self.client.aclose())
        Driver.close(self)


def _message(payload: str) -> Any:
    """An Echo request (the test service reuses flyteidl2's UserInfoRequest; its payload is irrelevant)."""
    from flyteidl2.auth import identity_pb2

    return identity_pb2.UserInfoRequest()


class ConnectAsync(Driver):
    family = "connect"

    def setup(self) -> None:
        from connectrpc.client import ConnectClient

        from ._connect_server import ECHO_METHODS

        self.methods = ECHO_METHODS
        self.client = ConnectClient(self.peers.connect.target, interceptors=self.session.connect_interceptors())

    @staticmethod
    def _ms(timeout: float | None) -> int | None:
        return None if timeout is None else int(timeout * 1000)

    def unary(self, timeout: float | None = None) -> None:
        self.run(self.client.execute_unary(request=_message(""), method=self.methods["Unary"],
                                           timeout_ms=self._ms(timeout)))

    def stream(self) -> list[Any]:
        async def collect() -> list[Any]:
            return [m async for m in self.client.execute_server_stream(request=_message(""),
                                                                       method=self.methods["ServerStream"])]

        return self.run(collect())  # type: ignore[no-any-return]

    def unreplayable(self) -> None:
        async def requests() -> Any:
            yield _message("a")

        self.run(self.client.execute_client_stream(request=requests(), method=self.methods["ClientStream"]))

    def close(self) -> None:
        self.run(self.client.close())
        super().close()


class ConnectSync(ConnectAsync):
    def setup(self) -> None:
        from connectrpc.client import ConnectClientSync

        from ._connect_server import ECHO_METHODS

        self.methods = ECHO_METHODS
        self.client = ConnectClientSync(self.peers.connect.target,
                                        interceptors=self.session.connect_interceptors_sync())

    def unary(self, timeout: float | None = None) -> None:
        self.client.execute_unary(request=_message(""), method=self.methods["Unary"], timeout_ms=self._ms(timeout))

    def stream(self) -> list[Any]:
        return list(self.client.execute_server_stream(request=_message(""), method=self.methods["ServerStream"]))

    def unreplayable(self) -> None:
        self.client.execute_client_stream(request=iter([_message("a")]), method=self.methods["ClientStream"])

    def close(self) -> None:
        self.client.close()


DRIVERS: dict[str, type[Driver]] = {
    "sync channel": SyncGrpc,
    "sync interceptor": SyncGrpcInterceptor,
    "aio channel": AioGrpc,
    "aio interceptors": AioGrpcInterceptors,
    "httpx2 sync": HttpxSync,
    "httpx2 async": HttpxAsync,
    "connect async": ConnectAsync,
    "connect sync": ConnectSync,
}


class Clock:
    """The session's clock: real time plus an offset a scenario can move."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(params=list(DRIVERS))
def driver(request: pytest.FixtureRequest, peers: Peers) -> Iterator[Driver]:
    cls = DRIVERS[request.param]
    server = {"grpc": peers.grpc, "rest": peers.rest, "connect": peers.connect}[cls.family]
    server.stats.clear()
    peers.gate.revoked.clear()
    peers.gate.delays.clear()
    peers.gate.release.clear()
    peers.grpc.reject_after_first_message = peers.connect.reject_after_first_message = False
    clock = Clock()
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], token_url=peers.idp.token_endpoint, authorization_header=HEADER)
    session = AuthSession(config, interactive=False, clock=clock)
    session.test_clock = clock  # type: ignore[attr-defined]
    drv = cls(session, peers)
    try:
        yield drv
    finally:
        drv.close()
        session.close()


def _revoke_current(driver: Driver) -> str:
    token = driver.session.get_token().access_token
    driver.peers.gate.revoked.add(token)
    return token


def _eventually(check: Callable[[], bool], driver: Driver) -> bool:
    """Rejections of calls the caller drives itself are noticed in a done-callback (aio: a task)."""
    for _ in range(200):
        if check():
            return True
        if driver.loop is not None:
            driver.run(asyncio.sleep(0.01))
        else:
            time.sleep(0.01)
    return check()


def _is_deadline(error: BaseException) -> bool:
    """The transport's own "deadline exceeded": grpc's status, Connect's code, httpx's timeout."""
    code = getattr(error, "code", None)
    code = code() if callable(code) else code
    return code is grpc.StatusCode.DEADLINE_EXCEEDED or getattr(code, "name", "") == "DEADLINE_EXCEEDED" or \
        isinstance(error, httpx2.TimeoutException)


def test_fresh_token(driver: Driver) -> None:
    for _ in range(3):
        driver.unary()
    assert driver.session.stats.token_requests == 1
    assert driver.server.stats["calls"] == 3 and driver.server.stats["rejected"] == 0


def test_expiry_in_the_middle_of_a_run(driver: Driver) -> None:
    clock = driver.session.test_clock  # type: ignore[attr-defined]
    driver.unary()
    clock.offset = 400.0  # the token (300 s) has expired by the session's clock
    driver.unary()
    clock.offset = 0.0  # ...and time goes on from the refresh
    driver.unary()
    assert driver.session.stats.token_requests == 2
    assert driver.server.stats["rejected"] == 0 and driver.server.stats["calls"] == 3


def test_rejection_then_exactly_one_retry(driver: Driver) -> None:
    driver.unary()
    _revoke_current(driver)
    driver.unary()  # succeeds: rejected once, retried once with a new token
    assert driver.server.stats["rejected"] == 1 and driver.server.stats["calls"] == 3
    assert driver.session.stats.invalidations == 1 and driver.session.stats.token_requests == 2


def test_rejected_unreplayable_stream_is_not_retried_but_invalidates(driver: Driver) -> None:
    driver.unary()
    _revoke_current(driver)
    with pytest.raises(Exception) as error:
        driver.unreplayable()
    assert "nauthorized" in str(error.value) or "nauthenticated" in str(error.value).lower() or \
        getattr(error.value, "code", lambda: None)() is grpc.StatusCode.UNAUTHENTICATED
    assert driver.server.stats["rejected"] == 1 and driver.server.stats["calls"] == 2  # no retry
    assert _eventually(lambda: driver.session.stats.invalidations == 1, driver)
    driver.unary()  # the next call carries a new token
    assert driver.session.stats.token_requests == 2 and driver.server.stats["rejected"] == 1


def test_retry_gets_only_what_is_left_of_the_deadline(driver: Driver) -> None:
    driver.unary()
    _revoke_current(driver)
    # The caller allows 2 s; the rejection takes 1 s, the retry would take 30 s (until released).  Given
    # what is left (1 s), the retry ends at the caller's deadline, 2 s after the start; given a deadline
    # of its own (the caller's 2 s again) it would end 1 s later, given none it would not end at all.
    deadline, rejection = 2.0, 1.0
    driver.peers.gate.delays[:] = [rejection, 30.0]
    started = time.monotonic()
    with pytest.raises(Exception) as error:
        driver.unary(timeout=deadline)
    elapsed = time.monotonic() - started
    driver.peers.gate.release.set()  # let the server finish the abandoned retry
    assert _is_deadline(error.value), repr(error.value)
    assert driver.session.stats.token_requests == 2  # the retry was made, with a new token ...
    # ... and ended at the caller's deadline: the bound sits halfway to where a retry with a deadline of
    # its own would end, so a slow machine's late wake-up (tenths of a second) does not fail it
    assert elapsed < deadline + rejection / 2, f"the retry outlived the caller's {deadline:g} s deadline " \
        f"({elapsed:.2f} s)"
    # the abandoned retry reached the server (and does not count in the next test)
    assert _eventually(lambda: driver.server.stats["calls"] == 3, driver)


def test_server_stream_rejected_after_its_first_message_is_not_retried(driver: Driver) -> None:
    if not driver.has_server_stream:
        pytest.skip("HTTP sends its status before the body: a rejection never follows a message")
    assert len(driver.stream()) == 3
    driver.server.reject_after_first_message = True
    with pytest.raises(Exception) as error:
        driver.stream()
    assert "mid-stream" in str(error.value) or "mid-stream" in repr(error.value)
    assert driver.server.stats["calls"] == 2  # not replayed
    assert _eventually(lambda: driver.session.stats.invalidations == 1, driver)  # but the token is invalidated


def test_revocations_in_a_row_each_replacement_accepted_never_brake(driver: Driver) -> None:
    """A server that revokes the current token six times in a row, accepting each replacement in between
    (an admin revoking sessions, a key rotation), costs six token requests and no failed call: the retry
    that succeeds tells the manager the replacement works, so the rejection brake (which stops a server
    rejecting every token) does not take these for a storm."""
    driver.unary()
    for i in range(6):
        _revoke_current(driver)
        if driver.has_server_stream and i % 2:
            assert len(driver.stream()) == 3  # a response stream's retry is accepted at its first message
        else:
            driver.unary()  # rejected once, retried once with a new token, which the server accepts
    stats = driver.session.stats
    assert stats.token_requests == 1 + 6 and stats.invalidations == 6
    assert stats.braked_rejections == 0 and stats.failures == 0
    assert driver.server.stats["rejected"] == 6 and driver.server.stats["calls"] == 1 + 2 * 6


# -- the caller's deadline bounds the wait for the token (issue 16, item 6) -------------------------------
def _until(check: Callable[[], bool], driver: Driver, limit: float = 15.0) -> bool:
    deadline = time.monotonic() + limit
    while not check() and time.monotonic() < deadline:
        if driver.loop is not None:
            driver.run(asyncio.sleep(0.05))
        else:
            time.sleep(0.05)
    return check()


def test_a_slow_idp_fails_the_call_at_its_deadline_and_the_refresh_goes_on(driver: Driver) -> None:
    """The IdP takes 3 s to answer the first token request; a call allowing 0.5 s fails at ~0.5 s with an
    error that is both a ``TokenDeadlineError`` and the transport's deadline error, and is never sent.
    The refresh is not cancelled by the waiter that gave up: its token arrives, and the next call uses it
    (one token request in all).  On 0.2.0 the call succeeded after 3 s."""
    delay, deadline = 3.0, 0.5
    driver.peers.idp.inject_faults([{"delay_ms": int(delay * 1000)}])
    started = time.monotonic()
    with pytest.raises(Exception) as error:
        driver.unary(timeout=deadline)
    elapsed = time.monotonic() - started
    from flyteauth_core import TokenDeadlineError
    assert isinstance(error.value, TokenDeadlineError) and _is_deadline(error.value), repr(error.value)
    assert "not ready within the call's deadline" in str(error.value)
    # bounded by the call's 0.5 s, not the IdP's 3 s (a second of slack for a loaded machine)
    assert elapsed < delay - 1.5, f"the call waited {elapsed:.2f} s for its token"
    assert driver.server.stats["calls"] == 0  # the call was not sent without a token
    assert _until(lambda: driver.session.manager.state() is not None, driver)  # the refresh went on
    driver.unary(timeout=deadline)
    assert driver.session.stats.token_requests == 1 and driver.server.stats["calls"] == 1


def test_the_wait_for_the_token_is_taken_from_the_calls_deadline(driver: Driver) -> None:
    """The token takes 1 s, the caller allows 2 s, the server would take 30 s: the call ends at the
    caller's 2 s (the attempt got what the token wait left), not 1 s later."""
    deadline, wait = 2.0, 1.0
    driver.peers.idp.inject_faults([{"delay_ms": int(wait * 1000)}])
    driver.peers.gate.delays[:] = [30.0]
    started = time.monotonic()
    with pytest.raises(Exception) as error:
        driver.unary(timeout=deadline)
    elapsed = time.monotonic() - started
    driver.peers.gate.release.set()  # let the server finish the abandoned call
    assert _is_deadline(error.value), repr(error.value)
    assert driver.session.stats.token_requests == 1
    assert elapsed < deadline + wait / 2, f"the call outlived the caller's {deadline:g} s deadline ({elapsed:.2f} s)"
    assert _eventually(lambda: driver.server.stats["calls"] == 1, driver)
