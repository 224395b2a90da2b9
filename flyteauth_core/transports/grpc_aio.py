"""Authentication for ``grpc.aio`` channels: one interceptor object per call kind.

grpc.aio uses an interceptor object for only the first call kind it implements, so each kind gets its
own small class over the shared decisions in ``_retry``.  Waiting for a token awaits the manager's
in-flight refresh (which runs in a worker thread), so the event loop never blocks.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc import aio

from ..protocols import Interceptor, Metadata
from ._retry import replayable, should_retry

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


class _AioAuthBase:
    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    async def _details(self, details: Any) -> tuple[Any, Metadata]:
        sent = await self._interceptor.metadata_async()
        merged = aio.Metadata(*(details.metadata or ()), *sent)
        return details._replace(metadata=merged), sent

    async def _stream_with_retry(self, continuation: Any, details: Any, request: Any, can_replay: bool) -> Any:
        """Start a streaming call; restart it once if rejected before the first message."""
        new_details, sent = await self._details(details)
        call = await continuation(new_details, request)
        try:
            await call.wait_for_connection()  # returns at the first message or the status
        except aio.AioRpcError as error:
            if error.code() is _UNAUTHENTICATED and should_retry(self._interceptor, sent, replayable=can_replay):
                new_details, _ = await self._details(details)
                return await continuation(new_details, request)
        return call


class AioUnaryUnaryAuth(_AioAuthBase, aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, sent = await self._details(client_call_details)
        call = await continuation(details, request)
        if await call.code() is _UNAUTHENTICATED and should_retry(self._interceptor, sent, replayable=True):
            details, _ = await self._details(client_call_details)
            return await continuation(details, request)
        return call


class AioUnaryStreamAuth(_AioAuthBase, aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._stream_with_retry(continuation, client_call_details, request, True)


class AioStreamUnaryAuth(_AioAuthBase, aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        details, sent = await self._details(client_call_details)
        call = await continuation(details, request_iterator)
        if await call.code() is _UNAUTHENTICATED and should_retry(
            self._interceptor, sent, replayable=replayable(request_iterator)
        ):
            details, _ = await self._details(client_call_details)
            return await continuation(details, request_iterator)
        return call


class AioStreamStreamAuth(_AioAuthBase, aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await self._stream_with_retry(
            continuation, client_call_details, request_iterator, replayable(request_iterator)
        )


def aio_interceptors(interceptor: Interceptor) -> list[Any]:
    """One object per call kind, for ``grpc.aio.*_channel(interceptors=...)``."""
    return [
        AioUnaryUnaryAuth(interceptor),
        AioUnaryStreamAuth(interceptor),
        AioStreamUnaryAuth(interceptor),
        AioStreamStreamAuth(interceptor),
    ]
