"""An ``httpx2.Auth`` for REST, Connect and signed-URL calls, over the same Interceptor.

Sends the session's metadata as headers; on HTTP 401 invalidates the token it sent and retries once
(requests with a streaming body that cannot be replayed are not retried).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx2

from ..protocols import Interceptor, Metadata


def _apply(request: httpx2.Request, metadata: Metadata) -> httpx2.Request:
    for key, value in metadata:
        request.headers[key] = value
    return request


def _retry(interceptor: Interceptor, request: httpx2.Request, response: httpx2.Response, sent: Metadata) -> bool:
    replayable = not isinstance(request.stream, (httpx2.SyncByteStream, httpx2.AsyncByteStream)) or hasattr(
        request, "_content"
    )
    return response.status_code == 401 and interceptor.rejected(sent) and replayable


class HttpxAuth(httpx2.Auth):
    """``httpx2.Client(auth=session.httpx_auth())``."""

    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        sent = self._interceptor.metadata()
        response = yield _apply(request, sent)
        if _retry(self._interceptor, request, response, sent):
            response.read()
            yield _apply(request, self._interceptor.metadata())

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        sent = await self._interceptor.metadata_async()
        response = yield _apply(request, sent)
        if _retry(self._interceptor, request, response, sent):
            await response.aread()
            yield _apply(request, await self._interceptor.metadata_async())

    def auth_flow(self, request: httpx2.Request) -> Any:  # pragma: no cover - both flows overridden
        raise NotImplementedError
