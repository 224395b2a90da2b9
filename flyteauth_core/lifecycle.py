"""TokenManager: when to refresh, single-flight, invalidation and persistence.

One decision function (``_decide``) serves sync and async callers alike.  The in-flight refresh is a
``concurrent.futures.Future``: threads wait on it, coroutines await ``asyncio.wrap_future`` of it, and the
refresh itself runs in the calling thread (a sync caller that has to wait anyway) or in a worker thread
(background refreshes and async callers), so providers only implement a synchronous ``acquire`` and the
event loop never blocks.

The hot path (a fresh token) reads one attribute, compares one float and returns a prebuilt metadata
tuple: no lock, no allocation, no I/O.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import attrs

from .errors import (
    FlyteAuthError,
    InvalidClientError,
    InvalidGrantError,
    RefreshTokenRotatedError,
    ResponseLostError,
    TokenDeadlineError,
    TokenRejectedError,
    TokenRequestError,
    TokenStoreError,
    TokenTimeoutError,
)
from .events import TokenEvent
from .protocols import LockingTokenStore
from .token import RefreshPolicy, Token, TokenState
from .types import AcquireReason, AcquireRequest

if TYPE_CHECKING:
    from .protocols import TokenStore
    from .types import Metadata

log = logging.getLogger("flyteauth.lifecycle")

#: The reason given to providers by an explicit login: skip the refresh token, run the interactive flow.
LOGIN = AcquireReason.LOGIN
#: A refresh whose answer was lost, sent once more (see :class:`~flyteauth_core.errors.ResponseLostError`):
#: an ``invalid_grant`` then means the rotated refresh token is gone: ``RefreshTokenRotatedError``.
REPLAY = AcquireReason.REPLAY
#: The reason of a background refresh (a stale but valid token): never an interactive flow.
EXPIRING = AcquireReason.EXPIRING

#: OAuth2 errors that asking again will not fix: remembered for ``RejectionBrake.fatal_ttl``.
NON_TRANSIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "invalid_scope"})

__all__ = ["EXPIRING", "LOGIN", "REPLAY", "AcquireRequest", "ManagerStats", "Redacted", "RejectionBrake",
           "TokenManager"]


class Redacted(str):
    """A metadata value (``Bearer <token>``) whose repr hides it: tracebacks that capture locals (Sentry
    does by default) show the tuples a transport frame holds through repr.  ``str()`` and the bytes sent
    are the real value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


@attrs.define
class _State:
    """One published token and its deadlines.  ``metadata`` is built on first use (the header key may
    need discovery, which ``get_token()`` must not wait for); its repr never shows the token."""

    token: Token | None
    metadata: Metadata | None = attrs.field(repr=False)
    stale_at: float
    expired_at: float
    #: When the IdP issued it (-inf for a token loaded from a store: its age is unknown).
    obtained_at: float = -math.inf
    #: How many tokens in a row were rejected shortly after being obtained, before this one replaced them
    #: (0: not obtained because of a rejection).
    rejections: int = 0


_EMPTY = _State(None, (), -math.inf, -math.inf)


class _Action(enum.Enum):
    USE = "use"
    USE_AND_REFRESH = "use_and_refresh"
    WAIT = "wait"


@attrs.frozen
class RejectionBrake:
    """How a manager stops failure from multiplying (a server rejecting every token, an IdP refusing
    the client).

    When ``after`` tokens in a row were each rejected within ``window`` seconds of replacing a rejected
    one (the first replacement may simply follow a server-side revocation), the next rejection is not
    answered with a new token: calls fail with :class:`~flyteauth_core.errors.TokenRejectedError` for
    ``initial`` seconds, doubling up to ``maximum`` on each repetition.  A replacement the server
    accepted (a retry that succeeded, reported through :meth:`TokenManager.accepted`) ends the chain: its
    next rejection is a new revocation, not a step towards the brake.  Accepted or not, ``burst``
    replacements within ``window`` brake too: behind a load balancer, one replica that rejects every
    token while the others accept them would otherwise cost a token request per call it gets.
    Non-transient IdP errors
    (``invalid_client``, ``unauthorized_client``, ``invalid_scope``) are raised again without asking the
    IdP for ``fatal_ttl`` seconds (a config change means a new session, so a new manager).
    """

    window: float = 30.0
    after: int = 2
    burst: int = 10
    initial: float = 5.0
    maximum: float = 300.0
    fatal_ttl: float = 60.0


@attrs.define
class ManagerStats:
    """Counters for reports, tests and benchmarks."""

    token_requests: int = 0
    loaded_from_store: int = 0
    background_refreshes: int = 0
    waits: int = 0
    invalidations: int = 0
    failures: int = 0
    #: Rejections answered with TokenRejectedError instead of a new token request.
    braked_rejections: int = 0
    #: Calls answered from the cached non-transient IdP error.
    cached_failures: int = 0
    #: Refreshes sent once more after their answer was lost.
    replays: int = 0


Acquire = Callable[[Token | None, str], Token]

#: Managers alive in this process, reset in a forked child (``os.register_at_fork``).
_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for manager in list(_MANAGERS):
        manager._reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: What ``_store_lock`` yields when the store's lock failed: nothing may be refreshed that needs it.
_UNLOCKED = object()


def _exclusive(hold: object) -> bool:
    """Whether the store's lock, as ``lock(key)`` yielded it, is held everywhere the store is shared.

    A store whose lock yields an object with ``exclusive()`` (the redis store's ``FleetHold``) is asked,
    right before a refresh token is sent; a lock that yields anything else (the file store's ``flock``)
    is exclusive once entered."""
    if hold is _UNLOCKED:
        return False
    check = getattr(hold, "exclusive", None)
    return True if check is None else bool(check())


def _acquire_exclusive(hold: object) -> bool:
    """Wait for the store's lock itself (``hold.acquire_exclusive()``); False when the store cannot."""
    wait = getattr(hold, "acquire_exclusive", None)
    return bool(wait()) if wait is not None else False


class TokenManager:
    """Owns one credential: serves it, refreshes it once however many callers ask, persists it."""

    def __init__(
        self,
        acquire: Acquire,
        *,
        header_key: Callable[[], str] = lambda: "authorization",
        store: TokenStore | None = None,
        store_key: str | Callable[[], str] = "",
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[TokenEvent], None] | None = None,
        auth_type: str = "",
        endpoint: str = "",
        rng: random.Random | None = None,
        brake: RejectionBrake | None = None,
    ) -> None:
        self._acquire = acquire
        self._header_key = header_key
        self._store = store
        self._key_source = store_key
        self._store_warned = False
        self.policy = policy or RefreshPolicy()
        self.brake = brake or RejectionBrake()
        self._clock = clock
        self._on_event = on_event
        self._auth_type = auth_type
        self._endpoint = endpoint
        self._rng = rng or random.Random()
        self._state = _EMPTY
        self._lock = threading.Lock()
        self._inflight: Future[_State] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._failures = 0
        self._next_background_at = 0.0
        self._closed = False
        self._rejected_at = -math.inf  # when the server last rejected a token we then replaced
        self._rejected_chain = 0  # that token's ``rejections``
        self._brakes = 0  # consecutive brakes (backoff exponent)
        self._replaced: list[float] = []  # when rejected tokens were invalidated, within brake.window
        self._brake_until = -math.inf
        self._fatal: tuple[BaseException, float] | None = None  # a non-transient IdP error, until when
        self.stats = ManagerStats()
        _MANAGERS.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(auth_type={self._auth_type!r}, endpoint={self._endpoint!r})"

    def _reset_after_fork(self) -> None:
        """In a forked child: only the forking thread survives, so the executor's worker, the waiters of
        an in-flight refresh and whoever held a lock are gone.  Start over with fresh ones; keep the
        token (it is still valid, and the child must not log in again)."""
        self._lock = threading.Lock()
        self._executor = None
        inflight, self._inflight = self._inflight, None
        if inflight is not None and not inflight.done():
            inflight.cancel()  # nobody in this process runs it; a waiter (none survive) would see it
        self._next_background_at = 0.0

    # -- the hot path ---------------------------------------------------------------------------
    def metadata(self, timeout: float | None = None) -> Metadata:
        """The metadata to send now; blocks only when there is no usable token, for at most ``timeout``
        seconds (what is left of the caller's deadline; None: ``policy.acquire_timeout``)."""
        st = self._state
        if self._clock() < st.stale_at:
            return st.metadata if st.metadata is not None else self._metadata_of(st)
        return self._metadata_of(self._state_sync(st, timeout))

    async def metadata_async(self, timeout: float | None = None) -> Metadata:
        """Like :meth:`metadata`, awaiting instead of blocking; the refresh runs in a worker thread."""
        st = self._state
        if self._clock() < st.stale_at:
            return st.metadata if st.metadata is not None else self._metadata_of(st)
        return self._metadata_of(await self._state_async(st, timeout))

    def metadata_nowait(self) -> Metadata | None:
        """The metadata of a fresh token, or None when :meth:`metadata_async` must be awaited (no token, or
        a stale one).  The same check as the two above; it lets the grpc.aio wrapper start a call without
        creating a coroutine per call (:class:`~flyteauth_core.protocols.NoWait`)."""
        st = self._state
        if self._clock() < st.stale_at:
            return st.metadata if st.metadata is not None else self._metadata_of(st)
        return None

    def _metadata_of(self, st: _State) -> Metadata:
        """The state's metadata, built (once) when a call first needs it: resolving the header key may
        run discovery, which a plain ``get_token()`` never needs."""
        metadata = st.metadata
        if metadata is None:
            assert st.token is not None
            metadata = ((self._header_key(), Redacted(st.token.authorization)),)
            st.metadata = metadata  # idempotent: two threads racing here build equal tuples
        return metadata

    @staticmethod
    def _carries(st: _State, sent: Metadata) -> bool:
        """Whether ``sent`` carries the token of ``st``."""
        if st.token is None:
            return False
        value = st.token.authorization
        return any(v == value for _, v in sent)

    def rejected(self, sent: Metadata) -> bool:
        """The server rejected ``sent``: invalidate exactly that token.  True means a retry may work.

        A token obtained to replace a rejected one and rejected again shortly after is not replaced:
        :class:`TokenRejectedError` is raised (naming the likely causes) and new tokens are fetched only
        after a backoff, so a server rejecting every token costs a bounded number of IdP requests.
        """
        with self._lock:
            st = self._state
            if not self._carries(st, sent):
                # Already replaced by a concurrent caller: retry with the new token, keep it.
                return st.token is not None
            now = self._clock()
            braking = now < self._brake_until
            replaced = self._replaced = [t for t in self._replaced if now - t < self.brake.window]
            if not braking and (len(replaced) >= max(1, self.brake.burst) or (
                    st.rejections >= max(1, self.brake.after) and now - st.obtained_at < self.brake.window)):
                if now - self._brake_until > 2 * self.brake.maximum:
                    self._brakes = 0  # the last brake is long past: start the backoff over
                self._brakes += 1
                delay = min(self.brake.initial * 2 ** (self._brakes - 1), self.brake.maximum)
                self._brake_until = now + delay
                braking = True
                first = True
            else:
                first = False
            if braking:
                self.stats.braked_rejections += 1
                retry_in = self._brake_until - now
                error = self._rejection_error(now - st.obtained_at, retry_in, len(replaced))
            else:
                if st.stale_at != -math.inf:
                    self.stats.invalidations += 1
                    replaced.append(now)  # once per token, however many calls saw it rejected
                self._state = attrs.evolve(st, stale_at=-math.inf, expired_at=-math.inf)
                self._rejected_at, self._rejected_chain = now, st.rejections
        if braking:
            if first:
                log.warning("flyteauth: %s", error)  # the error's own text: its likely causes included
                self._emit("rejected", reason="rejected again after replacement", duration=retry_in)
            raise error
        self._emit("invalidated", reason="rejected by server")
        return True

    def accepted(self, sent: Metadata) -> None:
        """A retry carrying ``sent`` (a replacement token) succeeded: end the chain of rejections.

        Only for exactly that token (compare, like :meth:`rejected`): the server took it, so its next
        rejection is a new revocation, answered with a new token, not a step towards the brake.  The
        transports call this only after a retry, never on the hot path.
        """
        if not self._state.rejections:
            return  # nothing to end (an accepted token, or one not obtained because of a rejection)
        with self._lock:
            st = self._state
            # An invalidated token (another call saw it rejected since) keeps its chain.
            if st.rejections and st.stale_at != -math.inf and self._carries(st, sent):
                st.rejections = 0
                self._rejected_at = -math.inf  # the next token is not a replacement either
                self._brakes = 0  # the server takes our tokens again: a later brake starts short

    def _rejection_error(self, age: float, retry_in: float, replaced: int) -> TokenRejectedError:
        what = (f"{replaced + 1} tokens in {self.brake.window:.0f}s, although it accepted some of them"
                if replaced >= max(1, self.brake.burst) else
                f"a token the identity provider issued {max(age, 0.0):.0f}s ago, right after rejecting the ones "
                f"it replaced")
        return TokenRejectedError(
            f"The server at {self._endpoint or 'the endpoint'} rejected {what}; not asking the IdP for "
            f"another one for {retry_in:.0f}s",
            retry_in=retry_in,
            hint="Likely causes: the token's audience is not the one the server expects (admin.audience, "
            "useAudienceFromAdmin), the clocks of this machine and the server disagree (clock skew), or "
            "the server reads the token from another header key (admin.authorizationHeader)",
        )

    def token(self) -> Token:
        """The current token, acquiring or refreshing it as needed."""
        st = self._state
        if self._clock() >= st.stale_at:
            st = self._state_sync(st)
        assert st.token is not None
        return st.token

    async def token_async(self) -> Token:
        st = self._state
        if self._clock() >= st.stale_at:
            st = await self._state_async(st)
        assert st.token is not None
        return st.token

    def state(self) -> TokenState | None:
        """FRESH, STALE or EXPIRED for the current token; None when there is none."""
        st = self._state
        if st.token is None:
            return None
        now = self._clock()
        return TokenState.FRESH if now < st.stale_at else (
            TokenState.STALE if now < st.expired_at else TokenState.EXPIRED
        )

    # -- the one decision -------------------------------------------------------------------------
    def _decide(self, st: _State, now: float) -> _Action:
        if now < st.stale_at:
            return _Action.USE
        if now < st.expired_at:
            return _Action.USE_AND_REFRESH if now >= self._next_background_at else _Action.USE
        return _Action.WAIT

    def _plan(self, st: _State) -> tuple[Future[_State], bool] | None:
        """Act on the decision for ``st``: ``None`` means serve ``st`` (after starting a background
        refresh if it is stale); otherwise the in-flight refresh to wait on, and whether we own it."""
        action = self._decide(st, self._clock())
        if action is _Action.WAIT:
            return self._join("expired" if st.token else "initial")
        if action is _Action.USE_AND_REFRESH:
            self._start_background()
        return None

    def _state_sync(self, st: _State, timeout: float | None = None) -> _State:
        plan = self._plan(st)
        if plan is None:
            return st
        future, owner = plan
        if owner:
            # The refresh runs in the worker, so this caller's wait is bounded by its deadline (or
            # acquire_timeout), and a caller that gives up leaves the refresh running for the next one.
            self._worker().submit(self._run, future)
        wait, own_deadline = self._bound(timeout)
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            raise self._timeout(timeout if own_deadline else None) from None

    def _bound(self, timeout: float | None) -> tuple[float, bool]:
        """How long a caller waits for the in-flight refresh, and whether that is the caller's own
        deadline (shorter than ``policy.acquire_timeout``).  Decided here once, for sync and async."""
        limit = self.policy.acquire_timeout
        if timeout is None or timeout >= limit:
            return limit, False
        return max(timeout, 0.0), True

    async def _state_async(self, st: _State, timeout: float | None = None) -> _State:
        plan = self._plan(st)
        if plan is None:
            return st
        import asyncio  # loaded here: sync-only programs should not pay for it at import

        future, owner = plan
        if owner:
            self._worker().submit(self._run, future)  # never block the event loop
        wait, own_deadline = self._bound(timeout)
        try:
            # shield: a cancelled or timed-out caller must not cancel the refresh the others wait for
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait)
        except asyncio.TimeoutError:
            raise self._timeout(timeout if own_deadline else None) from None

    # -- single flight ----------------------------------------------------------------------------
    def _join(self, reason: str, force: bool = False) -> tuple[Future[_State], bool]:
        with self._lock:
            st = self._state
            if not force and self._decide(st, self._clock()) is not _Action.WAIT:
                # Another caller's refresh finished between our read of the state and this lock.
                done: Future[_State] = Future()
                done.set_result(st)
                return done, False
            self.stats.waits += 1
            current = self._inflight
            if current is not None and not current.done():
                return current, False
            if not force and self._fatal is not None:
                error, until = self._fatal
                if self._clock() < until:
                    # The IdP refused the client moments ago; asking again only risks a lockout.
                    self.stats.cached_failures += 1
                    failed: Future[_State] = Future()
                    failed.set_exception(error)
                    return failed, False
                self._fatal = None
            future: Future[_State] = Future()
            future.reason = reason  # type: ignore[attr-defined]
            self._inflight = future
            return future, True

    def _start_background(self) -> None:
        with self._lock:
            if (self._inflight is not None and not self._inflight.done()) or self._closed:
                return
            if self._clock() < max(self._next_background_at, self._state.stale_at):
                return  # backing off after a failure, or someone just refreshed
            if self._fatal is not None and self._clock() < self._fatal[1]:
                return
            future: Future[_State] = Future()
            future.reason = EXPIRING  # type: ignore[attr-defined]
            self._inflight = future
            self.stats.background_refreshes += 1
        self._worker().submit(self._run, future)

    def _worker(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="flyteauth-refresh")
                executor = self._executor
        return executor

    def _run(self, future: Future[_State]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        reason: str = getattr(future, "reason", "initial")
        started = self._clock()
        try:
            state = self._refresh(reason)
        except BaseException as exc:
            try:
                self._remember_failure(exc)
                self._failed(exc, reason, started)  # the event is out before any waiter wakes up
            finally:  # whatever logging or an event hook does, the waiters are released
                future.set_exception(exc)
                self.stats.failures += 1  # counted once the failure is visible to everyone
        else:
            future.set_result(state)

    def _remember_failure(self, exc: BaseException) -> None:
        """Cache a non-transient IdP refusal (wrong client, scope) for ``brake.fatal_ttl``."""
        code = getattr(exc, "error", None)
        if isinstance(exc, InvalidClientError) or (
            isinstance(exc, TokenRequestError) and not exc.transient and code in NON_TRANSIENT_ERRORS
        ):
            with self._lock:
                self._fatal = (exc, self._clock() + self.brake.fatal_ttl)

    def _refresh(self, reason: str) -> _State:
        """Get a new token, under the store's cross-process lock when it has one.

        The store is read first: a fresh token that another process (or an earlier run) stored is used
        without asking the IdP, and the newest stored refresh token is the one handed to the provider,
        since another process may have rotated it (reusing a rotated refresh token revokes the grant).
        """
        with self._store_lock() as hold:
            for _ in range(3):
                previous = self._state.token
                stored = self._store_call("load") if reason != LOGIN else None
                if stored is not None and (previous is None or stored.access_token != previous.access_token):
                    state = self._published(stored, obtained_at=self._clock(), from_store=True)
                    if self._decide(state, self._clock()) is _Action.USE:
                        self._publish(state)
                        self.stats.loaded_from_store += 1
                        self._emit("loaded", expires_at=stored.expires_at, reason=reason)
                        return state
                    previous = stored
                if reason == LOGIN or previous is None or not previous.refresh_token or _exclusive(hold):
                    break
                # A refresh token may rotate: sending it outside the store's lock (two holders, one paused
                # past the lock's TTL) can trip the IdP's reuse detection, which revokes the grant.  Wait
                # for the lock itself, then read the store again (the last holder may have refreshed).
                if not _acquire_exclusive(hold):
                    raise TokenStoreError(
                        f"Not refreshing the token for {self._endpoint or 'the endpoint'}: its refresh token may "
                        "rotate, and the token store's lock cannot be held right now (is Redis reachable?)",
                        hint="The call can be retried; a refresh token is only ever sent under the fleet lock, "
                        "so that two processes never present it twice")
            else:
                raise TokenStoreError("The token store's lock was lost, or its record could not be read under it, "
                                      "three times in a row during one refresh",
                                      hint="Check redisLockTTL against how long processes get paused, and "
                                      "redisTimeout against how fast Redis answers")
            started = self._clock()
            with self._lock:
                self.stats.token_requests += 1
            try:
                token = self._acquire(previous, reason)
            except ResponseLostError as lost:
                if lost.grant != "refresh_token" or previous is None:
                    raise
                token, from_store = self._replay_refresh(previous)
                if from_store:  # another process stored the rotated token: use it
                    state = self._published(token, obtained_at=self._clock(), from_store=True)
                    self._publish(state)
                    return state
            state = self._published(token, obtained_at=self._clock())
            self._publish(state)
            self._failures = 0
            self._next_background_at = 0.0
            self._store_call("save", token)
        self._emit(
            "acquired" if previous is None else "refreshed",
            expires_at=token.expires_at,
            reason=reason,
            duration=self._clock() - started,
        )
        return state

    def _replay_refresh(self, previous: Token) -> tuple[Token, bool]:
        """A refresh whose answer was lost: the IdP may have rotated the refresh token we hold.

        Another process may hold the new token, so the store is read first (we already hold its
        lock).  Otherwise the refresh is sent once more (IdPs with a reuse grace period answer it); an
        ``invalid_grant`` then means the grant is gone: :class:`RefreshTokenRotatedError`.
        """
        stored = self._store_call("load")
        if stored is not None and stored.refresh_token and stored.refresh_token != previous.refresh_token:
            log.info("flyteauth: a refresh answer was lost; using the token another process stored")
            return stored, True
        with self._lock:
            self.stats.token_requests += 1
            self.stats.replays += 1
        try:
            return self._acquire(previous, REPLAY), False
        except InvalidGrantError as exc:
            if isinstance(exc, RefreshTokenRotatedError):
                raise
            raise RefreshTokenRotatedError(
                "The refresh token was rotated by a refresh whose answer was lost, and the identity provider "
                "refused it when it was sent again",
                endpoint=exc.endpoint, status=exc.status, error=exc.error,
                hint="A new login is needed: run `flyteauth login`",
            ) from None
        except ResponseLostError as exc:
            raise RefreshTokenRotatedError(
                "Two refreshes in a row were answered by a dropped connection; the refresh token may have "
                "been rotated and is not sent a third time", endpoint=exc.endpoint,
                hint="Check the network to the identity provider, then run `flyteauth login`",
            ) from None

    @property
    def _store_key(self) -> str:
        """The store key: a string, or computed at each store access (the session's identity, which follows
        a rotating platform token's ``iss``/``sub``); never on the hot path."""
        key = self._key_source
        return key() if callable(key) else key

    def _publish(self, state: _State) -> None:
        """Publish ``state`` under the lock, so a concurrent ``rejected()`` never overwrites it."""
        with self._lock:
            if state.token is not None and self._clock() - self._rejected_at < self.brake.window:
                state.rejections = self._rejected_chain + 1
            self._state = state

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[object]:
        """The store's optional ``lock(key)`` (a context manager), yielding what it yields (see
        :func:`_exclusive`); a failing lock is reported, not fatal, except to a rotating refresh token."""
        lock = self._store.lock if isinstance(self._store, LockingTokenStore) else None
        if lock is None:
            yield None
            return
        key = self._store_key  # the identity: an unreadable platform token fails the refresh with its own error
        try:
            held = lock(key)
            hold = held.__enter__()
        except Exception as exc:
            log.warning("flyteauth: could not lock the token store (%s); refreshing without it",
                        type(exc).__name__)
            yield _UNLOCKED
            return
        try:
            yield hold
        finally:
            held.__exit__(None, None, None)

    def refresh(self, reason: str = LOGIN) -> Token:
        """Acquire a new token now, whatever the state of the current one (``flyteauth login``).

        With the default reason the store is not consulted and providers skip their refresh token.  A
        background refresh in flight is waited for (its outcome ignored), never joined: a login must
        run the login flow.  Raises :class:`TokenTimeoutError` after ``policy.acquire_timeout``.
        """
        deadline = time.monotonic() + self.policy.acquire_timeout
        while True:
            with self._lock:
                current = self._inflight
                if current is None or current.done():
                    future: Future[_State] = Future()
                    future.reason = reason  # type: ignore[attr-defined]
                    self._inflight = future
                    self.stats.waits += 1
                    break
            try:
                current.exception(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                raise self._timeout() from None
        self._worker().submit(self._run, future)
        try:
            st = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise self._timeout() from None
        assert st.token is not None
        return st.token

    def _published(self, token: Token, obtained_at: float, *, from_store: bool = False) -> _State:
        stale_at, expired_at = self.policy.deadlines(token, obtained_at, self._rng)
        return _State(token, None, stale_at, expired_at, -math.inf if from_store else obtained_at)

    def _failed(self, exc: BaseException, reason: str, started: float) -> None:
        self._failures += 1
        backoff = min(
            self.policy.failure_backoff_initial * 2 ** (self._failures - 1), self.policy.failure_backoff_max
        )
        self._next_background_at = self._clock() + backoff
        message = str(exc) if isinstance(exc, FlyteAuthError) else type(exc).__name__
        log.warning(
            "flyteauth: token %s for %s failed (%s: %s)%s",
            "refresh" if self._state.token else "request",
            self._endpoint or "endpoint",
            type(exc).__name__,
            message,
            "; still serving the current token" if self._state.token and reason == EXPIRING else "",
        )
        self._emit("failed", reason=reason, error=f"{type(exc).__name__}: {message}",
                   duration=self._clock() - started)

    def _timeout(self, deadline: float | None = None) -> TokenTimeoutError:
        if deadline is not None:
            return TokenDeadlineError(
                f"The token for {self._endpoint or 'the endpoint'} was not ready within the call's deadline "
                f"({max(deadline, 0.0):.3g}s); the call was not sent",
                hint="The identity provider has not answered yet; the refresh goes on in the background and a "
                "later call uses its token. Give the call a longer timeout, or check the identity provider's "
                "latency (`flyteauth doctor`)",
            )
        return TokenTimeoutError(
            f"No token for {self._endpoint or 'the endpoint'} after {self.policy.acquire_timeout:.0f}s",
            hint="The identity provider may be slow or unreachable; check the network or raise the timeout",
        )

    # -- persistence ------------------------------------------------------------------------------
    def _store_call(self, op: str, token: Token | None = None) -> Any:
        if self._store is None:
            return None
        key = self._store_key  # outside the try: a failing identity is not a failing store
        try:
            if op == "load":
                return self._store.load(key)
            if op == "save" and token is not None:
                return self._store.save(key, token)
            if op == "delete":
                return self._store.delete(key)
        except Exception as exc:
            if not self._store_warned:
                self._store_warned = True
                log.warning(
                    "flyteauth: token store %s failed on %s (%s); continuing with in-memory tokens",
                    type(self._store).__name__, op, type(exc).__name__,
                )
        return None

    def forget(self) -> None:
        """Drop the token from memory and from the store (logout)."""
        with self._lock:
            self._state = _EMPTY
        self._store_call("delete")

    def _emit(self, kind: str, **fields: Any) -> None:
        """Hand an event to the hook; a hook that raises is logged, never allowed to break a refresh."""
        if self._on_event is None:
            return
        try:
            self._on_event(TokenEvent(kind=kind, auth_type=self._auth_type, endpoint=self._endpoint, **fields))
        except Exception as exc:
            log.warning("flyteauth: an on_event hook raised %s on %r; ignored", type(exc).__name__, kind)

    def close(self) -> None:
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
