"""Authentication for ``grpc.aio``: two short drivers of the one flow (``flow.py``).

* :class:`AioAuthChannel` wraps a ``grpc.aio.Channel`` at the multicallable level (what
  ``session.aio_channel()`` and ``session.aio_intercept(channel)`` return).  It does not go through
  grpc.aio's interceptor machinery, which costs about 19 µs per call.
* :func:`aio_interceptors`: one interceptor object per call kind (grpc.aio uses an object for only the
  first kind it implements), for people who compose ``grpc.aio.*_channel(interceptors=...)``.

Waiting for a token awaits the manager's in-flight refresh (which runs in a worker thread), so the event
loop never blocks.  Calls whose requests cannot be replayed (an async iterator, or the ``write()`` API)
are handed to the caller at once: holding them back to watch for a rejection would deadlock a caller that
still has to write; their rejection still invalidates the token.

Why a bidi or client stream rejected while its requests are being written is not retried when it ends in
INTERNAL "Internal error from Core": grpc.aio's ``_write`` turns a write that fails because the server has
already closed the call into ``set_internal_error``, and the server's own status (UNAUTHENTICATED) is
then discarded (``code()`` stays INTERNAL).  Nothing in the call tells a rejection from any other early
close, so retrying (or invalidating the token) would be a guess that can replay requests the server
processed.  Measured against a server that rejects at call start: 1 % of rejected bidi calls with one
request, about 60 % with three and 80 % with fifty end this way; writing the requests ourselves through
the write API (stopping as soon as the call is done) did not help, since the race is between grpc's
send batch and the arrival of the server's trailers.  Only a fix in grpc.aio (keep the received status
when a send fails) can make these retryable; until then the caller sees INTERNAL and its next call
after a real rejection is retried as usual (the token is invalidated by the first call that sees
UNAUTHENTICATED).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import grpc
from grpc import aio

from ..errors import FlyteAuthError, as_grpc_error
from ..protocols import Interceptor, Metadata, NoWait
from .flow import (
    accepted,
    after_rejection,
    auth_flow,
    call_async,
    left,
    merge,
    metadata_async,
    replayable,
    retry_timeout,
)
from .grpc_sync import classify


def _watch(call: Any, flow: Any, sent: Metadata) -> Any:
    """A call the caller drives itself: not replayed, but its rejection invalidates the token."""

    async def check(done: Any) -> None:
        if (proxy := classify(_Status(await _final_code(done)))) is not None:
            after_rejection(flow, sent, False, proxy)

    def on_done(done: Any) -> None:
        if not done.cancelled():
            asyncio.get_running_loop().create_task(check(done))

    call.add_done_callback(on_done)
    return call


async def _final_code(call: Any) -> grpc.StatusCode:
    """A finished call's status.  Awaits a unary-response call itself rather than ``code()``: when the
    server rejects a client stream while requests are still being written, ``code()`` can report the
    writer's INTERNAL error while awaiting the call raises the server's status."""
    if not hasattr(call, "__await__"):
        return await call.code()  # type: ignore[no-any-return]
    try:
        await call
    except aio.AioRpcError as error:
        return error.code()
    except Exception:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


class _Status:
    """A finished call's status as ``classify`` reads it (grpc.aio's ``code()`` is a coroutine)."""

    __slots__ = ("_code",)

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _AioCall:
    """What every wrapped multicallable returns: awaitable (unary response) or async-iterable
    (response stream) like grpc.aio's own call, started on first use and driven by the flow.

    The accepted call is kept short, since its cost shows per call on an event loop (``benchmarks/run.py``
    §2): when the interceptor has a fresh token at hand (``metadata_nowait()``), ``__await__`` starts
    grpc's call and awaits it as a generator, with no coroutine of its own; the flow generator is created
    only when a rejection arrives (with the time the first attempt started).  No ``__getattr__``: a class
    that has one pays a second attribute lookup on every ``self._x`` read."""

    __slots__ = ("_call", "_can_replay", "_extra", "_flow", "_mc", "_metadata", "_reader", "_request", "_sent",
                 "_started", "_timeout", "_write_api")

    def __init__(self, mc: _AioMulticallable, request: Any, timeout: float | None, metadata: Any,
                 extra: dict[str, Any], can_replay: bool, write_api: bool) -> None:
        self._mc = mc  # the interceptor, grpc's multicallable
        self._request = request
        self._timeout = timeout
        self._started = time.monotonic() if timeout is not None else 0.0
        self._metadata = metadata
        self._extra = extra  # credentials, wait_for_ready, compression (when given)
        self._can_replay = can_replay
        self._write_api = write_api  # the caller writes the requests (and may read) itself
        self._flow: Any = None
        self._call: Any = None
        self._sent: Metadata = ()
        self._reader: Any = None

    def _start(self, sent: Metadata, timeout: float | None) -> Any:
        """Start grpc's call carrying ``sent`` (after the caller's own metadata), with what is left of the
        caller's deadline."""
        self._sent = sent
        metadata = self._metadata
        if metadata:
            sent = merge(metadata, sent)
        extra = self._extra
        if self._write_api:
            call = self._mc._inner(timeout=timeout, metadata=sent, **extra)
        elif extra:
            call = self._mc._inner(self._request, timeout=timeout, metadata=sent, **extra)
        else:
            call = self._mc._inner(self._request, timeout=timeout, metadata=sent)
        self._call = call
        if not self._can_replay:
            _watch(call, self._flows(), self._sent)
        return call

    def _now(self) -> Any:
        """grpc's call, started at once when the interceptor has fresh metadata (nothing waited: the call
        gets its whole deadline); else None."""
        nowait = self._mc._nowait
        if nowait is None:
            return None
        try:
            sent = nowait()
        except FlyteAuthError as exc:
            raise as_grpc_error(exc) from exc.__cause__
        return None if sent is None else self._start(sent, self._timeout)

    async def _begin(self) -> Any:
        timeout = self._timeout  # the caller's deadline bounds the wait for the token; the call gets the rest
        try:
            sent = await self._mc._interceptor.metadata_async(timeout)
        except FlyteAuthError as exc:
            raise as_grpc_error(exc) from exc.__cause__
        if timeout is not None:
            timeout -= time.monotonic() - self._started
        return self._start(sent, timeout)

    def _flows(self) -> Any:
        if self._flow is None:
            self._flow = auth_flow(self._mc._interceptor, self._timeout, started=self._started)
            next(self._flow)
        return self._flow

    def _rejected(self, error: BaseException, delivered: bool) -> None:
        """Ask the flow; re-raises ``error`` unless a retry was granted (then the next use restarts)."""
        self._timeout = retry_timeout(self._flows(), self._sent, self._can_replay and not delivered, error,
                                      classify, as_grpc_error)
        self._started = time.monotonic()  # the retry's timeout is what was left at this moment
        self._call = None

    async def _response(self, retried: bool) -> Any:
        while True:
            call = self._call or await self._begin()
            try:
                result = await call
            except aio.AioRpcError as error:
                self._rejected(error, False)
                retried = True
            else:
                if retried:  # the replacement token works
                    accepted(self._mc._interceptor, self._sent)
                return result

    def __await__(self) -> Generator[Any, None, Any]:
        call = self._call
        if call is None:  # ``_now()`` inlined: this is the hot path
            nowait, sent = self._mc._nowait, None
            if nowait is not None:
                try:
                    sent = nowait()
                except FlyteAuthError as exc:
                    raise as_grpc_error(exc) from exc.__cause__
            if sent is not None and self._metadata is None and self._extra is _NO_EXTRA:  # _start(), inlined
                self._sent = sent
                self._call = call = self._mc._inner(self._request, timeout=self._timeout, metadata=sent)
            elif sent is not None:
                call = self._start(sent, self._timeout)
            else:  # no fresh token: wait for one (never blocking the loop), then start
                call = yield from self._begin().__await__()
        try:
            return (yield from call.__await__())
        except aio.AioRpcError as error:
            self._rejected(error, False)  # re-raises unless a retry was granted
        return (yield from self._response(True).__await__())

    async def _messages(self) -> AsyncIterator[Any]:
        delivered = retried = False
        while True:
            call = self._call or self._now() or await self._begin()
            try:
                async for message in call:
                    if retried:  # the replacement token works
                        retried = False
                        accepted(self._mc._interceptor, self._sent)
                    delivered = True
                    yield message
                if retried:
                    accepted(self._mc._interceptor, self._sent)
                return
            except aio.AioRpcError as error:
                self._rejected(error, delivered)
                retried = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def read(self) -> Any:
        if self._write_api:  # the caller drives the call
            return await (await self._current()).read()
        if self._reader is None:
            self._reader = self._messages()
        try:
            return await self._reader.__anext__()
        except StopAsyncIteration:
            return aio.EOF  # type: ignore[attr-defined]

    async def write(self, request: Any) -> None:
        await (await self._current()).write(request)

    async def done_writing(self) -> None:
        await (await self._current()).done_writing()

    async def _current(self) -> Any:
        return self._call or self._now() or await self._begin()

    async def initial_metadata(self) -> Any:
        return await (await self._current()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._current()).trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        return await (await self._current()).code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        return await (await self._current()).details()  # type: ignore[no-any-return]

    async def wait_for_connection(self) -> None:
        await (await self._current()).wait_for_connection()

    def cancel(self) -> bool:
        return bool(self._call is not None and self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call is not None and self._call.cancelled())

    def done(self) -> bool:
        return bool(self._call is not None and self._call.done())

    def _running(self, name: str) -> Any:
        if self._call is None:
            raise RuntimeError(f"{name}: the call has not started yet (await it or iterate it first)")
        return self._call

    def time_remaining(self) -> float | None:
        return self._running("time_remaining").time_remaining()  # type: ignore[no-any-return]

    def add_done_callback(self, callback: Any) -> None:
        self._running("add_done_callback").add_done_callback(callback)


#: The extra keyword arguments of a call that passes none (shared, never mutated).
_NO_EXTRA: dict[str, Any] = {}


class _AioMulticallable:
    """A unary-request multicallable: grpc.aio's signature, nothing more (no ``**kwargs`` dict per call)."""

    __slots__ = ("_inner", "_interceptor", "_nowait")

    def __init__(self, inner: Any, interceptor: Interceptor) -> None:
        self._inner = inner
        self._interceptor = interceptor
        self._nowait = interceptor.metadata_nowait if isinstance(interceptor, NoWait) else None

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> _AioCall:
        if credentials is None and wait_for_ready is None and compression is None:
            return _AioCall(self, request, timeout, metadata, _NO_EXTRA, True, False)
        extra = {"credentials": credentials, "wait_for_ready": wait_for_ready, "compression": compression}
        return _AioCall(self, request, timeout, metadata, extra, True, False)


class _AioStreamMulticallable(_AioMulticallable):
    """A stream-request multicallable: takes ``request_iterator`` positionally or by keyword, or none
    (the caller writes the requests through ``write()``)."""

    __slots__ = ()

    def __call__(self, request: Any = None, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None,
                 **kwargs: Any) -> _AioCall:
        if request is None:
            request = kwargs.pop("request_iterator", None)
        extra = {"credentials": credentials, "wait_for_ready": wait_for_ready, "compression": compression, **kwargs}
        return _AioCall(self, request, timeout, metadata, extra, replayable(request), request is None)


class AioAuthChannel(aio.Channel):
    """A ``grpc.aio.Channel`` that authenticates every call made through it (all four call kinds)."""

    def __init__(self, channel: aio.Channel, interceptor: Interceptor, *, owns_channel: bool = False) -> None:
        self._channel = channel
        self._interceptor = interceptor
        self._owns_channel = owns_channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioMulticallable(self._channel.unary_unary(method, *args, **kwargs), self._interceptor)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioMulticallable(self._channel.unary_stream(method, *args, **kwargs), self._interceptor)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioStreamMulticallable(self._channel.stream_unary(method, *args, **kwargs), self._interceptor)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioStreamMulticallable(self._channel.stream_stream(method, *args, **kwargs), self._interceptor)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        """Closes the underlying channel only if this wrapper created it."""
        if self._owns_channel:
            await self._channel.close(grace)

    async def __aenter__(self) -> AioAuthChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(None)


# -- the interceptor form ------------------------------------------------------------------------------
class _Rejected(Exception):
    """A finished call that did not succeed, carried through ``call_async`` (grpc.aio calls are not
    exceptions): a rejection is retried, anything else re-raised at once; ``call`` is handed back to
    grpc.aio when the flow stops.  So ``call_async`` returns only calls that succeeded (or live streams,
    whose headers say the server took the token), and reports a retried one as accepted."""

    def __init__(self, call: Any, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.call = call
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


async def _judge(call: Any, stream: bool) -> bool:
    """Await enough of a call to tell a rejection (raising :class:`_Rejected`, as for any other failure):
    all of it, or a response stream's headers (a server that rejects a stream outright ends it with
    trailers only).  True when the call is a live stream the caller will read."""
    if stream:
        await call.initial_metadata()
        if not call.done():
            return True
    code = await _final_code(call)
    if code is not grpc.StatusCode.OK:
        raise _Rejected(call, code)
    return False


def _held(interceptor: Interceptor, timeout: float | None) -> Any:
    """The flow of a call handed to the caller: it can only invalidate, never replay."""
    flow = auth_flow(interceptor, timeout)
    next(flow)
    return flow


class _AioAuthBase:
    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    async def _intercept(self, continuation: Any, details: Any, request: Any, can_replay: bool,
                         stream: bool) -> Any:
        def with_metadata(sent: Metadata, timeout: float | None) -> Any:
            merged = aio.Metadata(*(details.metadata or ()), *sent)
            return aio.ClientCallDetails(details.method, timeout, merged, details.credentials, details.wait_for_ready)

        if not can_replay:
            started = time.monotonic()
            sent = await metadata_async(self._interceptor, as_grpc_error, details.timeout)
            call = await continuation(with_metadata(sent, left(details.timeout, started)), request)
            return _watch(call, _held(self._interceptor, None), sent)

        async def attempt(sent: Metadata, timeout: float | None) -> Any:
            call = await continuation(with_metadata(sent, timeout), request)
            return _watch(call, _held(self._interceptor, None), sent) if await _judge(call, stream) else call

        try:
            return await call_async(self._interceptor, details.timeout, True, attempt, classify, as_grpc_error)
        except _Rejected as rejected:
            return rejected.call


class AioUnaryUnaryAuth(_AioAuthBase, aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request, True, False)


class AioUnaryStreamAuth(_AioAuthBase, aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request, True, True)


class AioStreamUnaryAuth(_AioAuthBase, aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator,
                                     replayable(request_iterator), False)


class AioStreamStreamAuth(_AioAuthBase, aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator,
                                     replayable(request_iterator), True)


def aio_interceptors(interceptor: Interceptor) -> list[Any]:
    """One object per call kind, for ``grpc.aio.*_channel(interceptors=...)``."""
    return [
        AioUnaryUnaryAuth(interceptor),
        AioUnaryStreamAuth(interceptor),
        AioStreamUnaryAuth(interceptor),
        AioStreamStreamAuth(interceptor),
    ]


