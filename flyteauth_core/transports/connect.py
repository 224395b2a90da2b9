"""ConnectRPC interceptors driving the one flow (``flow.py``): flyte 2.x's wire since 2.1.

``session.connect_interceptors()`` (async clients) and ``session.connect_interceptors_sync()`` (sync
clients) go into ``interceptors=`` of any generated client (flyteidl2 ships ``*_connect.py`` stubs).
Works with connectrpc 0.10 (``ctx.request_headers()`` is a method; flyte 2.12 pins ``<0.11``) and later
releases (a property since 0.11).

The request context keeps the caller's deadline as an end time, so the wait for the token, and a retry
through the same context, get only what is left of it (a token not ready in time: ``deadline_exceeded``).
Unary calls retry once after UNAUTHENTICATED; a server stream retries only before its first message;
client and bidi streams (an iterator connectrpc consumes) are never replayed, but their rejection
invalidates the token.  PERMISSION_DENIED while a ``proxy-authorization`` header was
sent refreshes the proxy's token once.  Auth failures raise errors that are both the ``FlyteAuthError``
subclass and a ``ConnectError``.

Redirects are the HTTP client's business, which an interceptor never sees (connectrpc hands it headers, not
the exchange): connectrpc's default pyqwest client follows a 302/307 to another origin with every header but
``authorization``/``proxy-authorization``, so a ``flyte-authorization`` token goes along.  Give each client
``http_client=`` a pyqwest client built with ``follow_redirects=False`` (README; docs/security.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from ..errors import as_connect_error
from ..protocols import Interceptor, Metadata
from .flow import accepted, auth_flow, call_async, call_sync, metadata_async, metadata_sync, retry_timeout


def classify(error: BaseException) -> bool | None:
    if not isinstance(error, ConnectError):
        return None
    if error.code is Code.UNAUTHENTICATED:
        return False
    return True if error.code is Code.PERMISSION_DENIED else None


def _headers(ctx: Any) -> Any:
    headers = ctx.request_headers
    return headers() if callable(headers) else headers  # a method before connectrpc 0.11


def _timeout(ctx: Any) -> float | None:
    remaining = ctx.timeout_ms
    remaining = remaining() if callable(remaining) else remaining
    return None if remaining is None else remaining / 1000.0


def _apply(ctx: Any, sent: Metadata) -> Any:
    headers = _headers(ctx)
    for key, value in sent:
        headers[key] = value
    return ctx


class ConnectAuth:
    """Auth for async Connect clients: connectrpc's unary, client-, server- and bidi-stream interceptor."""

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    async def intercept_unary(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Any:
        async def attempt(sent: Metadata, timeout: float | None) -> Any:
            return await call_next(request, _apply(ctx, sent))

        return await call_async(self._interceptor, _timeout(ctx), True, attempt, classify, as_connect_error)

    async def intercept_client_stream(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Any:
        async def attempt(sent: Metadata, timeout: float | None) -> Any:
            return await call_next(request, _apply(ctx, sent))

        return await call_async(self._interceptor, _timeout(ctx), False, attempt, classify, as_connect_error)

    def intercept_server_stream(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> AsyncIterator[Any]:
        return self._stream(call_next, request, ctx, True)

    def intercept_bidi_stream(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> AsyncIterator[Any]:
        return self._stream(call_next, request, ctx, False)

    async def _stream(self, call_next: Callable[..., Any], request: Any, ctx: Any,
                      can_replay: bool) -> AsyncIterator[Any]:
        attempts = _StreamAttempts(self._interceptor, ctx, can_replay)
        while True:
            sent = await metadata_async(self._interceptor, as_connect_error, _timeout(ctx))
            try:
                async for message in call_next(request, _apply(ctx, sent)):
                    attempts.delivering(sent)
                    yield message
                attempts.ended(sent)
                return
            except ConnectError as error:
                attempts.rejected(sent, error)


class ConnectAuthSync:
    """Auth for sync Connect clients (``...ClientSync``): the same flow, blocking."""

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    def intercept_unary_sync(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Any:
        return call_sync(self._interceptor, _timeout(ctx), True,
                         lambda sent, timeout: call_next(request, _apply(ctx, sent)), classify, as_connect_error)

    def intercept_client_stream_sync(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Any:
        return call_sync(self._interceptor, _timeout(ctx), False,
                         lambda sent, timeout: call_next(request, _apply(ctx, sent)), classify, as_connect_error)

    def intercept_server_stream_sync(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Iterator[Any]:
        return self._stream(call_next, request, ctx, True)

    def intercept_bidi_stream_sync(self, call_next: Callable[..., Any], request: Any, ctx: Any) -> Iterator[Any]:
        return self._stream(call_next, request, ctx, False)

    def _stream(self, call_next: Callable[..., Any], request: Any, ctx: Any, can_replay: bool) -> Iterator[Any]:
        attempts = _StreamAttempts(self._interceptor, ctx, can_replay)
        while True:
            sent = metadata_sync(self._interceptor, as_connect_error, _timeout(ctx))
            try:
                for message in call_next(request, _apply(ctx, sent)):
                    attempts.delivering(sent)
                    yield message
                attempts.ended(sent)
                return
            except ConnectError as error:
                attempts.rejected(sent, error)


class _StreamAttempts:
    """The decisions of one streamed Connect call, shared by the async and the sync driver (only the
    iteration differs): a stream is replayed only before its first message, and a retry that delivers
    (or ends cleanly) tells the interceptor the replacement token was accepted."""

    __slots__ = ("_can_replay", "_delivered", "_flow", "_interceptor", "_retried")

    def __init__(self, interceptor: Interceptor, ctx: Any, can_replay: bool) -> None:
        self._interceptor = interceptor
        self._flow = auth_flow(interceptor, _timeout(ctx))
        next(self._flow)
        self._can_replay = can_replay
        self._delivered = self._retried = False

    def delivering(self, sent: Metadata) -> None:
        """A message is about to reach the caller: from now on the call cannot be replayed."""
        if self._retried:  # the replacement token works
            self._retried = False
            accepted(self._interceptor, sent)
        self._delivered = True

    def ended(self, sent: Metadata) -> None:
        if self._retried:
            accepted(self._interceptor, sent)

    def rejected(self, sent: Metadata, error: ConnectError) -> None:
        """Re-raises ``error`` unless the flow grants a retry."""
        retry_timeout(self._flow, sent, self._can_replay and not self._delivered, error, classify,
                      as_connect_error)
        self._retried = True
