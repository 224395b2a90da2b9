"""An ``httpx2.Auth`` driving the one flow (``flow.py``): for REST calls to the Flyte endpoint.

Scoped to origins: the token and ``proxy-authorization`` go only to the Flyte endpoint's origin and the
origins the config names (``authOrigins``).  A request to any other host (a presigned object-store URL
through the same client) is sent without them, and its 401 invalidates nothing.

Redirects: httpx2 follows them (``follow_redirects=True``) inside the request the auth flow yielded,
without calling the flow again, copying every header but ``Authorization`` to the next hop, whatever
its origin.  So ``auth=`` alone cannot keep a ``flyte-authorization`` or ``proxy-authorization`` header
off a host that a Flyte endpoint redirects to.  :func:`scoped_client` (``session.httpx_client()`` and
``session.httpx_async_client()``) adds a request hook that httpx2 calls before every hop: each request
carries the keys of the headers we set (a request extension, which a redirect inherits), and the hook
removes them from any hop whose origin is not allowed.  Same-origin (and ``authOrigins``) redirects keep
them.  With ``auth=`` alone, a redirect followed by sending ``response.next_request`` yourself is
stripped by the flow itself, and a cross-origin redirect that httpx2 followed with our headers is
logged as a WARNING naming ``httpx_client()``.

HTTP 401 invalidates the token that was sent and retries once; HTTP 407, or 403 while a
``proxy-authorization`` header was sent, refreshes the proxy's token once.  Requests with a streaming
body that cannot be replayed are not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import httpx2

from ..errors import TokenDeadlineError, as_httpx_timeout
from ..logs import warn_once
from ..protocols import Interceptor, Metadata
from .flow import STOP, Flow, accepted, after_rejection, auth_flow, left

log = logging.getLogger("flyteauth.httpx")
Origin = tuple[str, str, int]
#: The request extension that names the header keys we set; a redirect built from the request keeps it.
SENT_KEYS = "flyteauth.sent_keys"


def origin(url: str | httpx2.URL) -> Origin:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def _apply(request: httpx2.Request, metadata: Metadata) -> httpx2.Request:
    for key, value in metadata:
        request.headers[key] = value
    request.extensions[SENT_KEYS] = frozenset(request.extensions.get(SENT_KEYS, ())) | {k for k, _ in metadata}
    return request


def _strip(request: httpx2.Request) -> httpx2.Request:
    """Remove the headers we set (on this request or the one it was redirected from)."""
    for key in request.extensions.pop(SENT_KEYS, ()):
        request.headers.pop(key, None)
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
    _cut(request, remaining)
    return True


def _cut(request: httpx2.Request, remaining: float | None) -> None:
    """Cut the request's timeouts to ``remaining`` (what is left of the budget after a rejection or a wait
    for the token)."""
    if remaining is not None:
        timeouts = request.extensions["timeout"]
        request.extensions["timeout"] = {k: remaining if v is None else min(v, remaining) for k, v in timeouts.items()}


def _leaked(response: httpx2.Response, in_scope: Any) -> bool:
    """Whether httpx2 followed a redirect to another origin with headers we set (``auth=`` alone)."""
    return any(not in_scope(hop.request) and any(k in hop.request.headers for k in keys)
               for hop in (*response.history, response) if (keys := hop.request.extensions.get(SENT_KEYS)))


class HttpxAuth(httpx2.Auth):
    """``httpx2.Client(auth=session.httpx_auth())``: adds the token (and ``proxy-authorization``) to
    requests for the allowed origins, and never to a request for another origin that it is asked to
    authenticate.  It is not asked about the hops of a redirect that httpx2 follows itself
    (``follow_redirects=True``): those carry every header but ``Authorization`` to wherever the redirect
    points.  :func:`scoped_client` closes that gap; see the module docstring."""

    def __init__(self, interceptor: Interceptor, origins: Iterable[str] = ()) -> None:
        self._interceptor = interceptor
        self._origins = frozenset(origin(o) for o in origins)

    def _in_scope(self, request: httpx2.Request) -> bool:
        return not self._origins or origin(request.url) in self._origins

    def guard(self, request: httpx2.Request) -> None:
        """The request hook of :func:`scoped_client`: called by httpx2 before every hop, redirects
        included; removes the headers we set from a hop whose origin is not allowed."""
        if SENT_KEYS in request.extensions and not self._in_scope(request):
            _strip(request)

    async def aguard(self, request: httpx2.Request) -> None:
        self.guard(request)

    def _metadata(self, request: httpx2.Request, timeout: float | None) -> Metadata:
        """The metadata, waiting at most ``timeout``; the request's timeouts then get what is left."""
        started = time.monotonic()
        try:
            sent = self._interceptor.metadata(timeout)
        except TokenDeadlineError as exc:
            raise as_httpx_timeout(exc, request) from None
        _cut(request, left(timeout, started))
        return sent

    async def _metadata_async(self, request: httpx2.Request, timeout: float | None) -> Metadata:
        started = time.monotonic()
        try:
            sent = await self._interceptor.metadata_async(timeout)
        except TokenDeadlineError as exc:
            raise as_httpx_timeout(exc, request) from None
        _cut(request, left(timeout, started))
        return sent

    def _check(self, response: httpx2.Response) -> None:
        if response.history and _leaked(response, self._in_scope):
            warn_once(log, "flyteauth: httpx2 followed a redirect to another origin carrying the token's headers "
                      "(auth= alone cannot see redirects); use session.httpx_client() / httpx_async_client(), "
                      "which strip them")

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if not self._in_scope(request):
            yield _strip(request)  # e.g. response.next_request of a redirect away from Flyte
            return
        timeout = _deadline(request)
        flow = auth_flow(self._interceptor, timeout)
        next(flow)
        retried = False
        while True:
            sent = self._metadata(request, timeout)
            response = yield _apply(request, sent)
            self._check(response)
            if not _retry(flow, request, response, sent):
                if retried and response.status_code < 400:  # the replacement token works
                    accepted(self._interceptor, sent)
                return
            retried = True
            timeout = _deadline(request)  # _retry cut it to what is left
            response.read()

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._in_scope(request):
            timeout = _deadline(request)
            flow = auth_flow(self._interceptor, timeout)
            next(flow)
            sent = await self._metadata_async(request, timeout)
            response = yield _apply(request, sent)
            self._check(response)
            if _retry(flow, request, response, sent):
                while True:
                    await response.aread()
                    sent = await self._metadata_async(request, _deadline(request))
                    response = yield _apply(request, sent)
                    self._check(response)
                    if not _retry(flow, request, response, sent):
                        break
                if response.status_code < 400:  # the replacement token works
                    accepted(self._interceptor, sent)
        else:
            yield _strip(request)

    def auth_flow(self, request: httpx2.Request) -> Any:  # pragma: no cover - both flows overridden
        raise NotImplementedError


def scoped_client(auth: HttpxAuth, cls: type[Any], kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)`` (``httpx2.Client`` or ``AsyncClient``) with ``auth`` and its request hook, which
    keeps the headers ``auth`` sets off every hop whose origin is not allowed, redirects included.

    Your own ``event_hooks`` are kept (ours runs after your request hooks); if you replace
    ``client.event_hooks`` later, keep ``auth.guard`` (``auth.aguard`` for an AsyncClient) in it."""
    if "auth" in kwargs:
        raise TypeError("httpx_client() sets auth= itself (the session's HttpxAuth); pass the other arguments only")
    hooks = dict(kwargs.pop("event_hooks", None) or {})
    guard = auth.aguard if issubclass(cls, httpx2.AsyncClient) else auth.guard
    hooks["request"] = [*hooks.get("request", ()), guard]
    return cls(auth=auth, event_hooks=hooks, **kwargs)
