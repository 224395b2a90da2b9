"""Authentication for ``grpc.aio`` channels: one interceptor object per call kind.

grpc.aio uses an interceptor object for only the first call kind it implements, so each kind gets its
own small class over the shared decisions in ``_retry``.  Waiting for a token awaits the manager's
in-flight refresh (which runs in a worker thread), so the event loop never blocks.

Calls whose requests cannot be replayed (an async iterator, or the ``write()`` API) are returned at
once: holding them back to watch for a rejection would deadlock a caller that still has to write.  A
rejection of such a call still invalidates the token, so the caller's next call gets a fresh one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc import aio

from ..protocols import Interceptor, Metadata
from ._retry import replayable, should_retry

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def _rejected(call: Any) -> bool:
    """Whether a finished call ended in UNAUTHENTICATED.

    Awaits the call itself rather than ``call.code()``: when the server rejects a client stream while
    requests are still being written, ``code()`` can report the writer's INTERNAL error instead.
    """
    if not hasattr(call, "__await__"):  # a response stream: its status is all there is
        return await call.code() is _UNAUTHENTICATED
    try:
        await call
    except aio.AioRpcError as error:
        return error.code() is _UNAUTHENTICATED
    except Exception:
        return False
    return False


class _AioAuthBase:
    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    async def _details(self, details: Any) -> tuple[Any, Metadata]:
        sent = await self._interceptor.metadata_async()
        merged = aio.Metadata(*(details.metadata or ()), *sent)
        return aio.ClientCallDetails(
            details.method, details.timeout, merged, details.credentials, details.wait_for_ready
        ), sent

    def _invalidate_when_rejected(self, call: Any, sent: Metadata) -> Any:
        """For calls we cannot replay: no waiting (the caller may still be writing), but a rejection
        invalidates the token so that the caller's next call gets a fresh one."""
        interceptor = self._interceptor

        async def check(done: Any) -> None:
            if await _rejected(done):
                interceptor.rejected(sent)

        def on_done(done: Any) -> None:
            if not done.cancelled():
                asyncio.get_running_loop().create_task(check(done))

        call.add_done_callback(on_done)
        return call

    async def _call_with_retry(self, continuation: Any, details: Any, request: Any, can_replay: bool,
                               streaming_response: bool) -> Any:
        """Start a call; if the server rejects it (for streams: before the first message), invalidate
        the token and start it once more, when the request can be replayed."""
        new_details, sent = await self._details(details)
        call = await continuation(new_details, request)
        if not can_replay:
            return self._invalidate_when_rejected(call, sent)
        if streaming_response:
            # The server's headers, or its status when it rejects the call outright (trailers only).
            await call.initial_metadata()
            if not call.done():
                return call
        rejected = await _rejected(call)
        if rejected and should_retry(self._interceptor, sent, replayable=True):
            new_details, _ = await self._details(details)
            return await continuation(new_details, request)
        return call


class AioUnaryUnaryAuth(_AioAuthBase, aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call_with_retry(continuation, client_call_details, request, True, False)


class AioUnaryStreamAuth(_AioAuthBase, aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call_with_retry(continuation, client_call_details, request, True, True)


class AioStreamUnaryAuth(_AioAuthBase, aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        return await self._call_with_retry(
            continuation, client_call_details, request_iterator, replayable(request_iterator), False
        )


class AioStreamStreamAuth(_AioAuthBase, aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await self._call_with_retry(
            continuation, client_call_details, request_iterator, replayable(request_iterator), True
        )


def aio_interceptors(interceptor: Interceptor) -> list[Any]:
    """One object per call kind, for ``grpc.aio.*_channel(interceptors=...)``."""
    return [
        AioUnaryUnaryAuth(interceptor),
        AioUnaryStreamAuth(interceptor),
        AioStreamUnaryAuth(interceptor),
        AioStreamStreamAuth(interceptor),
    ]
