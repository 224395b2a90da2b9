"""Authentication for synchronous grpc channels.

Two forms over the same decisions (``_retry``):

* :class:`AuthChannel` wraps a ``grpc.Channel`` at the multicallable level.  It adds metadata with one
  tuple concatenation per call and avoids grpc's interceptor machinery (about 24 µs per call here).
* :class:`AuthClientInterceptor` is a ``grpc`` client interceptor for users who compose interceptors with
  ``grpc.intercept_channel``.

Retries: unary calls retry once after UNAUTHENTICATED; server streams retry only if the rejection
arrives before the first message; client streams retry only when the requests are a list or tuple
(a consumed iterator is never replayed).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ..protocols import Interceptor, Metadata
from ._retry import merge, replayable, should_retry

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _feed(requests: Any) -> Any:
    """grpc's sync client streams call ``next()`` on the requests: hand it a fresh iterator of a list."""
    return iter(requests) if replayable(requests) else requests


def _is_unauthenticated(error: BaseException) -> bool:
    code = getattr(error, "code", None)
    return callable(code) and code() is _UNAUTHENTICATED


class _RetryBeforeFirstMessage:
    """A response stream that restarts once if the server rejects it before sending anything."""

    def __init__(
        self,
        call: Any,
        interceptor: Interceptor,
        sent: Metadata,
        restart: Callable[[], Any] | None,
    ) -> None:
        self._call = call
        self._interceptor = interceptor
        self._sent = sent
        self._restart = restart
        self._started = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            message = next(self._call)
        except grpc.RpcError as error:
            if self._started or not _is_unauthenticated(error):
                raise
            restart, self._restart = self._restart, None
            if not should_retry(self._interceptor, self._sent, replayable=restart is not None):
                raise
            assert restart is not None
            self._call = restart()
            message = next(self._call)
        self._started = True
        return message

    def __getattr__(self, name: str) -> Any:  # code(), details(), cancel(), trailing_metadata(), ...
        return getattr(self._call, name)


class _Multicallable:
    """What the four wrapped multicallables share: attach metadata, and the retry decision."""

    __slots__ = ("_inner", "_interceptor")

    def __init__(self, inner: Any, interceptor: Interceptor) -> None:
        self._inner = inner
        self._interceptor = interceptor

    def _blocking(self, fn: Any, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                  wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        """A call that returns its response or raises: retried once after UNAUTHENTICATED if replayable."""
        sent = self._interceptor.metadata()
        try:
            return fn(_feed(request) if stream else request, timeout, merge(metadata, sent), credentials,
                      wait_for_ready, compression)
        except grpc.RpcError as error:
            can_replay = not stream or replayable(request)
            if not (_is_unauthenticated(error) and should_retry(self._interceptor, sent, replayable=can_replay)):
                raise
        return fn(_feed(request) if stream else request, timeout, merge(metadata, self._interceptor.metadata()),
                  credentials, wait_for_ready, compression)

    def _response_stream(self, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                         wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        """A response stream, restarted once if rejected before its first message (and replayable)."""
        sent = self._interceptor.metadata()
        inner = self._inner
        call = inner(_feed(request) if stream else request, timeout, merge(metadata, sent), credentials,
                     wait_for_ready, compression)

        def restart() -> Any:
            md = merge(metadata, self._interceptor.metadata())
            return inner(_feed(request) if stream else request, timeout, md, credentials, wait_for_ready,
                         compression)

        can_replay = not stream or replayable(request)
        return _RetryBeforeFirstMessage(call, self._interceptor, sent, restart if can_replay else None)

    def _future(self, request: Any, timeout: float | None, metadata: Any, credentials: Any,
                wait_for_ready: bool | None, compression: Any, stream: bool = False) -> Any:
        """Futures are not retried (the caller holds the future), but a rejection invalidates the token."""
        sent = self._interceptor.metadata()
        fut = self._inner.future(_feed(request) if stream else request, timeout, merge(metadata, sent),
                                 credentials, wait_for_ready, compression)
        interceptor = self._interceptor

        def on_done(done: Any) -> None:
            if done.code() is _UNAUTHENTICATED:
                interceptor.rejected(sent)

        fut.add_done_callback(on_done)
        return fut


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

    @staticmethod
    def _kwargs(request_serializer: Any, response_deserializer: Any, extra: dict[str, Any]) -> dict[str, Any]:
        kwargs = {"request_serializer": request_serializer, "response_deserializer": response_deserializer}
        kwargs.update(extra)
        return kwargs

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    **extra: Any) -> Any:
        inner = self._channel.unary_unary(method, **self._kwargs(request_serializer, response_deserializer, extra))
        return _UnaryUnary(inner, self._interceptor)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     **extra: Any) -> Any:
        inner = self._channel.unary_stream(method, **self._kwargs(request_serializer, response_deserializer, extra))
        return _UnaryStream(inner, self._interceptor)

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     **extra: Any) -> Any:
        inner = self._channel.stream_unary(method, **self._kwargs(request_serializer, response_deserializer, extra))
        return _StreamUnary(inner, self._interceptor)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      **extra: Any) -> Any:
        inner = self._channel.stream_stream(method, **self._kwargs(request_serializer, response_deserializer, extra))
        return _StreamStream(inner, self._interceptor)

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


def _with_metadata(details: Any, metadata: Metadata) -> _CallDetails:
    return _CallDetails(
        details.method,
        details.timeout,
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
    """The interceptor form, for ``grpc.intercept_channel(channel, AuthClientInterceptor(...), ...)``."""

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        sent = self._interceptor.metadata()
        outcome = continuation(_with_metadata(client_call_details, sent), request)
        if outcome.code() is _UNAUTHENTICATED and should_retry(self._interceptor, sent, replayable=True):
            return continuation(_with_metadata(client_call_details, self._interceptor.metadata()), request)
        return outcome

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        sent = self._interceptor.metadata()
        call = continuation(_with_metadata(client_call_details, sent), request)
        return _RetryBeforeFirstMessage(
            call,
            self._interceptor,
            sent,
            lambda: continuation(_with_metadata(client_call_details, self._interceptor.metadata()), request),
        )

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        sent = self._interceptor.metadata()
        outcome = continuation(_with_metadata(client_call_details, sent), _feed(request_iterator))
        if (outcome.code() is _UNAUTHENTICATED
                and should_retry(self._interceptor, sent, replayable=replayable(request_iterator))):
            md = self._interceptor.metadata()
            return continuation(_with_metadata(client_call_details, md), _feed(request_iterator))
        return outcome

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        sent = self._interceptor.metadata()
        call = continuation(_with_metadata(client_call_details, sent), _feed(request_iterator))
        return _RetryBeforeFirstMessage(call, self._interceptor, sent, None)
