"""An ``httpx2.Auth`` driving the one flow (``flow.py``): for REST calls to the Flyte endpoint.

Scoped to origins: the token and ``proxy-authorization`` go only to the Flyte endpoint's origin and the
origins the config names (``authOrigins``).  A request to any other host (a presigned object-store URL
through the same client) is sent untouched, and its 401 invalidates nothing.

HTTP 401 invalidates the token that was sent and retries once; HTTP 407, or 403 while a
``proxy-authorization`` header was sent, refreshes the proxy's token once.  Requests with a streaming
body that cannot be replayed are not retried.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import httpx2

from ..protocols import Interceptor, Metadata
from .flow import STOP, Flow, accepted, after_rejection, auth_flow

Origin = tuple[str, str, int]


def origin(url: str | httpx2.URL) -> Origin:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def _apply(request: httpx2.Request, metadata: Metadata) -> httpx2.Request:
    for key, value in metadata:
        request.headers[key] = value
    return request


def _deadline(request: httpx2.Request) -> float | None:
    """The request's read timeout, taken as the budget for the call and its retry."""
    timeout = request.extensions.get("timeout")
    return timeout.get("read") if isinstance(timeout, dict) else None


def _retry(flow: Flow, request: httpx2.Request, response: httpx2.Response, sent: Metadata) -> bool:
    """Whether the flow grants a retry for this response (401: the token; 407/403: the proxy's token).

    The retry's timeouts are cut to what is left of the first attempt's read timeout."""
    status = response.status_code
    if status not in (401, 403, 407):
        return False
    replayable = not isinstance(request.stream, (httpx2.SyncByteStream, httpx2.AsyncByteStream)) or hasattr(
        request, "_content"
    )
    remaining = after_rejection(flow, sent, replayable, status != 401)
    if remaining is STOP:
        return False
    if remaining is not None:
        timeouts = request.extensions["timeout"]
        request.extensions["timeout"] = {k: remaining if v is None else min(v, remaining) for k, v in timeouts.items()}
    return True


class HttpxAuth(httpx2.Auth):
    """``httpx2.Client(auth=session.httpx_auth())``."""

    def __init__(self, interceptor: Interceptor, origins: Iterable[str] = ()) -> None:
        self._interceptor = interceptor
        self._origins = frozenset(origin(o) for o in origins)

    def _in_scope(self, request: httpx2.Request) -> bool:
        return not self._origins or origin(request.url) in self._origins

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if not self._in_scope(request):
            yield request
            return
        flow = auth_flow(self._interceptor, _deadline(request))
        next(flow)
        retried = False
        while True:
            sent = self._interceptor.metadata()
            response = yield _apply(request, sent)
            if not _retry(flow, request, response, sent):
                if retried and response.status_code < 400:  # the replacement token works
                    accepted(self._interceptor, sent)
                return
            retried = True
            response.read()

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._in_scope(request):
            flow = auth_flow(self._interceptor, _deadline(request))
            next(flow)
            sent = await self._interceptor.metadata_async()
            response = yield _apply(request, sent)
            if _retry(flow, request, response, sent):
                while True:
                    await response.aread()
                    sent = await self._interceptor.metadata_async()
                    response = yield _apply(request, sent)
                    if not _retry(flow, request, response, sent):
                        break
                if response.status_code < 400:  # the replacement token works
                    accepted(self._interceptor, sent)
        else:
            yield request

    def auth_flow(self, request: httpx2.Request) -> Any:  # pragma: no cover - both flows overridden
        raise NotImplementedError
