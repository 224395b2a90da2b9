"""Authentication for synchronous grpc channels: two short drivers of the one flow (``flow.py``).

* :class:`AuthChannel` wraps a ``grpc.Channel`` at the multicallable level.  It adds metadata with one
  tuple concatenation per call and avoids grpc's interceptor machinery (about 24 µs per call here).
* :class:`AuthClientInterceptor` is a ``grpc`` client interceptor for users who compose interceptors with
  ``grpc.intercept_channel``.

Both serve all four call kinds with ``__call__``, ``with_call`` and ``future``.  Blocking calls retry
once after a rejection when the request can be replayed, with what is left of the caller's timeout;
response streams retry only if the rejection comes before the first message; a future the caller
holds is never replayed, but its rejection still invalidates the token.  Auth failures are raised as
errors that are both the ``FlyteAuthError`` subclass and a ``grpc.RpcError``.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ..errors import FlyteAuthError, as_grpc_error
from ..protocols import Interceptor, Metadata
from .flow import (
    STOP,
    accepted,
    after_rejection,
    auth_flow,
    left,
    merge,
    metadata_sync,
    replayable,
    retry_sync,
    retry_timeout,
)

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
_PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def classify(outcome: Any) -> bool | None:
    """None: not a rejection; False: the server rejected the token; True: maybe a proxy (the flow
    checks whether a proxy token was sent at all)."""
    code = getattr(outcome, "code", None)
    if not callable(code):
        return None
    status = code()
    if status is _UNAUTHENTICATED:
        return False
    return True if status is _PERMISSION_DENIED else None


def _feed(requests: Any) -> Any:
    """grpc's sync client streams call ``next()`` on the requests: hand it a fresh iterator of a list."""
    return iter(requests) if replayable(requests) else requests


def _watch(future: Any, flow: Any, sent: Metadata) -> Any:
    """A future the caller holds: never replayed, but its rejection invalidates the token."""

    def on_done(done: Any) -> None:
        if not done.cancelled() and (proxy := classify(done)) is not None:
            after_rejection(flow, sent, False, proxy)

    future.add_done_callback(on_done)
    return future


def _held_by_caller(outcome: Any) -> bool:
    """Whether the continuation returned the running call of a ``future()`` (the caller holds it: watch
    it, never replay it) rather than the finished outcome of ``__call__``/``with_call``.

    Judged by the call's type, not only by ``done()``: on a busy machine the server's rejection can
    complete the future before the interceptor looks at it, and whether a future is replayed must not
    depend on the machine's load (the caller may have chosen ``future()`` so that it never is).
    """
    if not outcome.done():
        return True
    # grpc's running calls (private to grpc, so looked up defensively; loaded once a channel exists)
    live = getattr(sys.modules.get("grpc._channel"), "_Rendezvous", ())
    return isinstance(outcome, live)


class _Stream:
    """A response stream driven by the flow: started again once if rejected before its first message."""

    def __init__(self, interceptor: Interceptor, timeout: float | None,
                 start: Callable[[Metadata, float | None], Any], can_replay: bool) -> None:
        self._interceptor = interceptor
        self._flow = auth_flow(interceptor, timeout)
        self._start = start
        self._can_replay = can_replay
        self._started = False
        self._retried = False  # until the retry's first message (or clean end) says the token works
        self._call = self._begin(next(self._flow))

    def _begin(self, timeout: float | None) -> Any:
        """Wait for the token within ``timeout``, then start the call with what is left of it."""
        started = time.monotonic() if timeout is not None else 0.0
        self._sent = metadata_sync(self._interceptor, as_grpc_error, timeout)
        return self._start(self._sent, left(timeout, started))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                message = next(self._call)
                break
            except grpc.RpcError as error:
                timeout = retry_timeout(self._flow, self._sent, self._can_replay and not self._started, error,
                                        classify, as_grpc_error)
                self._call = self._begin(timeout)
                self._retried = True
            except StopIteration:
                self._succeeded()
                raise
        if self._retried:
            self._succeeded()
        self._started = True
        return message

    def _succeeded(self) -> None:
        if self._retried:
            self._retried = False
            accepted(self._interceptor, self._sent)

    def __getattr__(self, name: str) -> Any:  # code(), details(), cancel(), trailing_metadata(), ...
        return getattr(self._call, name)


class _Multicallable:
    """What the four wrapped multicallables share: each call is one run of the flow."""

    __slots__ = ("_inner", "_interceptor")

    def __init__(self, inner: Any, interceptor: Interceptor) -> None:
        self._inner = inner
        self._interceptor = interceptor

    def _blocking(self, fn: Any, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                  wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        # The first attempt inline (the hot path: no closure, no generator); the flow takes over on failure.
        # The caller's deadline bounds the wait for the token too; the call gets what is left of it.
        started = time.monotonic() if timeout is not None else 0.0
        try:
            sent = self._interceptor.metadata(timeout)
        except FlyteAuthError as exc:
            raise as_grpc_error(exc) from exc.__cause__
        try:
            return fn(_feed(request) if stream else request,
                      timeout if timeout is None else timeout - (time.monotonic() - started),
                      (*metadata, *sent) if metadata else sent, credentials, wait_for_ready, compression)
        except grpc.RpcError as error:
            def attempt(sent: Metadata, remaining: float | None) -> Any:
                return fn(_feed(request) if stream else request, remaining, merge(metadata, sent), credentials,
                          wait_for_ready, compression)

            return retry_sync(self._interceptor, timeout, started, not stream or replayable(request), sent, error,
                              attempt, classify, as_grpc_error)

    def _response_stream(self, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                         wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        def start(sent: Metadata, remaining: float | None) -> Any:
            return self._inner(_feed(request) if stream else request, remaining, merge(metadata, sent),
                               credentials, wait_for_ready, compression)

        return _Stream(self._interceptor, timeout, start, not stream or replayable(request))

    def _future(self, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        flow = auth_flow(self._interceptor, timeout)
        started = time.monotonic() if timeout is not None else 0.0
        sent = metadata_sync(self._interceptor, as_grpc_error, next(flow))
        future = self._inner.future(_feed(request) if stream else request, left(timeout, started),
                                    merge(metadata, sent), credentials, wait_for_ready, compression)
        return _watch(future, flow, sent)


class _UnaryUnary(_Multicallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner, request, timeout, metadata, credentials, wait_for_ready, compression)

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None,
                  credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner.with_call, request, timeout, metadata, credentials, wait_for_ready,
                              compression)

    def future(self, request: Any, timeout: float | None = None, metadata: Any = None,
               credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._future(request, timeout, metadata, credentials, wait_for_ready, compression)


class _UnaryStream(_Multicallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._response_stream(request, timeout, metadata, credentials, wait_for_ready, compression)


class _StreamUnary(_Multicallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner, request_iterator, timeout, metadata, credentials, wait_for_ready,
                              compression, stream=True)

    def with_call(self, request_iterator: Any, timeout: float | None = None, metadata: Any = None,
                  credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner.with_call, request_iterator, timeout, metadata, credentials,
                              wait_for_ready, compression, stream=True)

    def future(self, request_iterator: Any, timeout: float | None = None, metadata: Any = None,
               credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._future(request_iterator, timeout, metadata, credentials, wait_for_ready, compression,
                            stream=True)


class _StreamStream(_Multicallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._response_stream(request_iterator, timeout, metadata, credentials, wait_for_ready,
                                     compression, stream=True)


class AuthChannel(grpc.Channel):
    """A ``grpc.Channel`` that authenticates every call made through it.

    Accepts what both old and new generated stubs pass (``_registered_method`` or not).
    """

    def __init__(self, channel: grpc.Channel, interceptor: Interceptor, *, owns_channel: bool = False) -> None:
        self._channel = channel
        self._interceptor = interceptor
        self._owns_channel = owns_channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _UnaryUnary(self._channel.unary_unary(method, *args, **kwargs), self._interceptor)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _UnaryStream(self._channel.unary_stream(method, *args, **kwargs), self._interceptor)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _StreamUnary(self._channel.stream_unary(method, *args, **kwargs), self._interceptor)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _StreamStream(self._channel.stream_stream(method, *args, **kwargs), self._interceptor)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        """Closes the underlying channel only if this wrapper created it."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> AuthChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Details = collections.namedtuple(
    "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
)


class _CallDetails(_Details, grpc.ClientCallDetails):
    pass


def _with_metadata(details: Any, metadata: Metadata, timeout: float | None) -> _CallDetails:
    return _CallDetails(
        details.method,
        timeout,
        merge(details.metadata, metadata),
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class AuthClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """The interceptor form, for ``grpc.intercept_channel(channel, AuthClientInterceptor(...), ...)``.

    grpc calls the same method for ``__call__``/``with_call`` (the continuation returns a finished
    outcome) and for ``future()`` (it returns a running future): a finished outcome is judged and retried
    at once, a running one is handed to the caller and only watched, so ``future()`` never blocks.
    """

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    def _unary_response(self, continuation: Any, details: Any, request: Any, can_replay: bool) -> Any:
        flow = auth_flow(self._interceptor, details.timeout)
        timeout = next(flow)
        retried = False
        while True:
            started = time.monotonic() if timeout is not None else 0.0
            sent = metadata_sync(self._interceptor, as_grpc_error, timeout)
            outcome = continuation(_with_metadata(details, sent, left(timeout, started)), _feed(request))
            if _held_by_caller(outcome):
                return _watch(outcome, flow, sent)
            proxy = classify(outcome)
            if proxy is None:
                if retried and outcome.code() is grpc.StatusCode.OK:
                    accepted(self._interceptor, sent)
                return outcome
            if (timeout := after_rejection(flow, sent, can_replay, proxy)) is STOP:
                return outcome
            retried = True

    def _stream_response(self, continuation: Any, details: Any, request: Any, can_replay: bool) -> Any:
        return _Stream(self._interceptor, details.timeout,
                       lambda sent, timeout: continuation(_with_metadata(details, sent, timeout), _feed(request)),
                       can_replay)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._unary_response(continuation, client_call_details, request, True)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._stream_response(continuation, client_call_details, request, True)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return self._unary_response(continuation, client_call_details, request_iterator,
                                    replayable(request_iterator))

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return self._stream_response(continuation, client_call_details, request_iterator,
                                     replayable(request_iterator))
