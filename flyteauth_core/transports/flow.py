"""The one auth flow that every transport drives.

Modelled on httpx's ``Auth.auth_flow``: :func:`auth_flow` is a generator that holds the whole decision
("send metadata; on rejection invalidate exactly what was sent; retry once if the request can be
replayed, within what is left of the caller's deadline"), and each transport only drives it:

* ``next(flow)`` gives the timeout of the first attempt (the caller's);
* the driver fetches metadata within that timeout (``interceptor.metadata(timeout)`` or ``await
  interceptor.metadata_async(timeout)``, so one generator serves sync and async transports alike) and
  makes the attempt with what is left of it: the caller's deadline bounds the wait for the token too
  (as in grpc's own model, where it covers call credentials), and a wait that outlasts it raises
  ``TokenDeadlineError`` in the transport's deadline error type while the refresh goes on;
* if the server accepted it, the driver drops the generator; if it rejected it, the driver calls
  :func:`after_rejection`, which hands the flow ``(sent, replayable, proxy)`` and returns the timeout
  for the retry, or :data:`STOP`;
* if the retry succeeds, the driver calls :func:`accepted` with what the retry sent, so the
  interceptor learns that the replacement token works (the manager ends its chain of rejections
  there, see ``RejectionBrake``).  Only after a retry: the accepted first attempt costs nothing.

``replayable`` is the driver's fact at the moment of the rejection: a unary request, a list of
requests or a stream that has produced no message yet can be sent again; a consumed iterator, a
future the caller already holds, or a stream that has delivered messages cannot.  Its rejection
still invalidates the token, so the caller's next call gets a fresh one.

``proxy`` marks a rejection by an authenticating proxy in front of Flyte (HTTP 407, or 403 /
PERMISSION_DENIED while a ``proxy-authorization`` header was sent): only the proxy's token is
invalidated, and it is refreshed once.

:func:`call_sync` and :func:`call_async` are the two pumps for transports whose rejection is an
exception (grpc blocking calls, grpc.aio, ConnectRPC).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, TypeVar

from ..errors import FlyteAuthError
from ..protocols import Accepting, Interceptor, Metadata

T = TypeVar("T")

#: The header an authenticating proxy reads (``admin.proxyCommand``).
PROXY_HEADER: Final = "proxy-authorization"
#: What :func:`after_rejection` returns when the flow says: no retry, surface the rejection.
STOP: Final[Any] = object()

#: Sent into the flow after a rejection: what the rejected attempt carried, whether the request can
#: be sent again, and whether a proxy (not the Flyte server) rejected it.
Rejection = tuple[Metadata, bool, bool]
Flow = Generator["float | None", Rejection, None]


def auth_flow(interceptor: Interceptor, timeout: float | None, clock: Callable[[], float] = time.monotonic,
              started: float | None = None) -> Flow:
    """The decision, written once.  Yields the timeout of each attempt (None: no deadline).

    ``started``: when the first attempt began (``clock()`` time), for a driver that creates the flow only
    once a rejection arrives (the grpc.aio wrapper, to keep the accepted path short)."""
    if started is None:
        started = clock() if timeout is not None else 0.0
    sent, replayable, proxy = yield timeout
    if proxy:
        sent = tuple(pair for pair in sent if pair[0] == PROXY_HEADER)
        if not sent:  # a plain 403 from Flyte: nothing of ours to refresh
            return
    # Invalidate exactly what was sent, always: even when we cannot retry, the next call is fresh.
    if not interceptor.rejected(sent) or not replayable:
        return
    if timeout is not None:
        timeout -= clock() - started
        if timeout <= 0:  # the caller's deadline is spent: the rejection is the answer
            return
    yield timeout


def accepted(interceptor: Interceptor, sent: Metadata) -> None:
    """A retried attempt that carried ``sent`` succeeded: tell an interceptor that wants to know
    (:class:`~flyteauth_core.protocols.Accepting`).  Drivers call it only after a retry."""
    if isinstance(interceptor, Accepting):
        interceptor.accepted(sent)


def after_rejection(flow: Flow, sent: Metadata, replayable: bool, proxy: bool = False) -> Any:
    """Tell the flow about a rejection: the retry's timeout (None: no deadline), or :data:`STOP`."""
    try:
        return flow.send((sent, replayable, proxy))
    except StopIteration:
        return STOP


#: What a driver passes to say how its transport reports a rejection: None (not a rejection),
#: False (the Flyte server rejected the token) or True (a proxy rejected its token).
Classify = Callable[[BaseException], "bool | None"]
Wrap = Callable[[FlyteAuthError], BaseException]


def retry_timeout(flow: Flow, sent: Metadata, replayable: bool, error: BaseException, classify: Classify,
                  wrap: Wrap | None = None) -> Any:
    """Inside a driver's ``except``: the retry's timeout, or re-raise ``error`` (not a rejection, or STOP).

    An auth error from the interceptor's ``rejected()`` (a token the server keeps rejecting) is raised in
    the transport's own error type (``wrap``)."""
    proxy = classify(error)
    if proxy is None:
        raise error
    try:
        timeout = after_rejection(flow, sent, replayable, proxy)
    except FlyteAuthError as exc:
        if wrap is None:
            raise
        raise wrap(exc) from error
    if timeout is STOP:
        raise error
    return timeout


def left(timeout: float | None, started: float) -> float | None:
    """What is left of ``timeout`` (None: no deadline), ``started`` being ``time.monotonic()`` then."""
    return None if timeout is None else timeout - (time.monotonic() - started)


def call_sync(interceptor: Interceptor, timeout: float | None, replayable: bool,
              attempt: Callable[[Metadata, float | None], T], classify: Classify, wrap: Wrap) -> T:
    """Drive the flow for a call that returns its result or raises its rejection."""
    started = time.monotonic() if timeout is not None else 0.0
    sent = metadata_sync(interceptor, wrap, timeout)
    try:
        return attempt(sent, left(timeout, started))
    except Exception as error:
        return retry_sync(interceptor, timeout, started, replayable, sent, error, attempt, classify, wrap)


def retry_sync(interceptor: Interceptor, timeout: float | None, started: float, replayable: bool, sent: Metadata,
               error: Exception, attempt: Callable[[Metadata, float | None], T], classify: Classify,
               wrap: Wrap) -> T:
    """The flow from a failed first attempt on (a hot driver makes the first attempt inline, so the
    accepted path creates no generator): re-raises ``error`` unless the flow grants a retry."""
    flow = auth_flow(interceptor, timeout, started=started)
    next(flow)
    while True:
        timeout = retry_timeout(flow, sent, replayable, error, classify, wrap)
        started = time.monotonic()
        sent = metadata_sync(interceptor, wrap, timeout)
        try:
            result = attempt(sent, left(timeout, started))
        except Exception as exc:
            error = exc
        else:
            accepted(interceptor, sent)
            return result


async def call_async(interceptor: Interceptor, timeout: float | None, replayable: bool,
                     attempt: Callable[[Metadata, float | None], Awaitable[T]], classify: Classify,
                     wrap: Wrap) -> T:
    """:func:`call_sync` for coroutines: the same flow, metadata awaited (never blocking the loop)."""
    flow = auth_flow(interceptor, timeout)
    timeout = next(flow)
    retried = False
    while True:
        started = time.monotonic() if timeout is not None else 0.0
        sent = await metadata_async(interceptor, wrap, timeout)
        try:
            result = await attempt(sent, left(timeout, started))
        except Exception as error:
            timeout = retry_timeout(flow, sent, replayable, error, classify, wrap)
            retried = True
        else:
            if retried:
                accepted(interceptor, sent)
            return result


def metadata_sync(interceptor: Interceptor, wrap: Wrap, timeout: float | None = None) -> Metadata:
    """The interceptor's metadata, waiting at most ``timeout`` (what is left of the caller's deadline);
    an auth failure (``TokenDeadlineError`` included) re-raised as the transport's own error type."""
    try:
        return interceptor.metadata(timeout)
    except FlyteAuthError as exc:
        raise wrap(exc) from exc.__cause__


async def metadata_async(interceptor: Interceptor, wrap: Wrap, timeout: float | None = None) -> Metadata:
    try:
        return await interceptor.metadata_async(timeout)
    except FlyteAuthError as exc:
        raise wrap(exc) from exc.__cause__


def merge(call_metadata: Any, auth: Metadata) -> Metadata:
    """The caller's metadata followed by ours (ours last, so a caller cannot shadow it by accident)."""
    if not call_metadata:
        return auth
    return (*tuple(call_metadata), *auth)


def replayable(requests: Any) -> bool:
    """Requests can be sent again only when they are a concrete sequence, not a (consumed) iterator."""
    return isinstance(requests, (list, tuple))
