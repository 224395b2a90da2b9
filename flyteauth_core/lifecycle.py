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
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import attrs

from .errors import FlyteAuthError, TokenTimeoutError
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

__all__ = ["LOGIN", "AcquireRequest", "ManagerStats", "TokenManager"]


@attrs.frozen
class _State:
    token: Token | None
    metadata: Metadata
    stale_at: float
    expired_at: float


_EMPTY = _State(None, (), -math.inf, -math.inf)


class _Action(enum.Enum):
    USE = "use"
    USE_AND_REFRESH = "use_and_refresh"
    WAIT = "wait"


@attrs.define
class ManagerStats:
    """Counters for reports, tests and benchmarks."""

    token_requests: int = 0
    loaded_from_store: int = 0
    background_refreshes: int = 0
    waits: int = 0
    invalidations: int = 0
    failures: int = 0


Acquire = Callable[[Token | None, str], Token]


class TokenManager:
    """Owns one credential: serves it, refreshes it once however many callers ask, persists it."""

    def __init__(
        self,
        acquire: Acquire,
        *,
        header_key: Callable[[], str] = lambda: "authorization",
        store: TokenStore | None = None,
        store_key: str = "",
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[TokenEvent], None] | None = None,
        auth_type: str = "",
        endpoint: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self._acquire = acquire
        self._header_key = header_key
        self._store = store
        self._store_key = store_key
        self._store_warned = False
        self.policy = policy or RefreshPolicy()
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
        self.stats = ManagerStats()

    # -- the hot path ---------------------------------------------------------------------------
    def metadata(self) -> Metadata:
        """The metadata to send now; blocks only when there is no usable token."""
        st = self._state
        if self._clock() < st.stale_at:
            return st.metadata
        return self._state_sync(st).metadata

    async def metadata_async(self) -> Metadata:
        """Like :meth:`metadata`, awaiting instead of blocking; the refresh runs in a worker thread."""
        st = self._state
        if self._clock() < st.stale_at:
            return st.metadata
        return (await self._state_async(st)).metadata

    def rejected(self, sent: Metadata) -> bool:
        """The server rejected ``sent``: invalidate exactly that token.  True means a retry may work."""
        with self._lock:
            st = self._state
            if st.metadata != sent:
                # Already replaced by a concurrent caller: retry with the new token, keep it.
                return bool(st.metadata)
            if st.token is None:
                return False
            self._state = _State(st.token, st.metadata, -math.inf, -math.inf)
            self.stats.invalidations += 1
        self._emit("invalidated", reason="rejected by server")
        return True

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

    def _state_sync(self, st: _State) -> _State:
        plan = self._plan(st)
        if plan is None:
            return st
        future, owner = plan
        if owner:
            self._run(future)  # we would wait anyway: refresh in this thread
        try:
            return future.result(timeout=self.policy.acquire_timeout)
        except FutureTimeout:
            raise self._timeout() from None

    async def _state_async(self, st: _State) -> _State:
        plan = self._plan(st)
        if plan is None:
            return st
        import asyncio  # loaded here: sync-only programs should not pay for it at import

        future, owner = plan
        if owner:
            self._worker().submit(self._run, future)  # never block the event loop
        try:
            # shield: one cancelled caller must not cancel the refresh the others wait for
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(future)), self.policy.acquire_timeout
            )
        except asyncio.TimeoutError:
            raise self._timeout() from None

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
            future: Future[_State] = Future()
            future.reason = "expiring"  # type: ignore[attr-defined]
            self._inflight = future
            self.stats.background_refreshes += 1
        self._worker().submit(self._run, future)

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="flyteauth-refresh")
        return self._executor

    def _run(self, future: Future[_State]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        reason: str = getattr(future, "reason", "initial")
        started = self._clock()
        try:
            state = self._refresh(reason)
        except BaseException as exc:
            self._failed(exc, reason, started)
            future.set_exception(exc)
            self.stats.failures += 1  # counted once the failure is visible to everyone
        else:
            future.set_result(state)

    def _refresh(self, reason: str) -> _State:
        """Get a new token, under the store's cross-process lock when it has one.

        The store is read first: a fresh token that another process (or an earlier run) stored is used
        without asking the IdP, and the newest stored refresh token is the one handed to the provider,
        since another process may have rotated it (reusing a rotated refresh token revokes the grant).
        """
        with self._store_lock():
            previous = self._state.token
            stored = self._store_call("load") if reason != LOGIN else None
            if stored is not None and (previous is None or stored.access_token != previous.access_token):
                state = self._published(stored, obtained_at=self._clock())
                if self._decide(state, self._clock()) is _Action.USE:
                    self._state = state
                    self.stats.loaded_from_store += 1
                    self._emit("loaded", expires_at=stored.expires_at, reason=reason)
                    return state
                previous = stored
            started = self._clock()
            with self._lock:
                self.stats.token_requests += 1
            token = self._acquire(previous, reason)
            state = self._published(token, obtained_at=self._clock())
            self._state = state
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

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """The store's optional ``lock(key)`` (a context manager); a failing lock is reported, not fatal."""
        lock = self._store.lock if isinstance(self._store, LockingTokenStore) else None
        if lock is None:
            yield
            return
        try:
            held = lock(self._store_key)
            held.__enter__()
        except Exception as exc:
            log.warning("flyteauth: could not lock the token store (%s); refreshing without it",
                        type(exc).__name__)
            yield
            return
        try:
            yield
        finally:
            held.__exit__(None, None, None)

    def refresh(self, reason: str = LOGIN) -> Token:
        """Acquire a new token now, whatever the state of the current one (``flyteauth login``).

        With the default reason the store is not consulted and providers skip their refresh token.
        """
        future, owner = self._join(reason, force=True)
        if owner:
            self._run(future)
        st = future.result(timeout=self.policy.acquire_timeout)
        assert st.token is not None
        return st.token

    def _published(self, token: Token, obtained_at: float) -> _State:
        stale_at, expired_at = self.policy.deadlines(token, obtained_at, self._rng)
        return _State(token, ((self._header_key(), token.authorization),), stale_at, expired_at)

    def _failed(self, exc: BaseException, reason: str, started: float) -> None:
        self._failures += 1
        backoff = min(
            self.policy.failure_backoff_initial * 2 ** (self._failures - 1), self.policy.failure_backoff_max
        )
        self._next_background_at = self._clock() + backoff
        message = str(exc) if isinstance(exc, FlyteAuthError) else type(exc).__name__
        log.warning(
            "flyteauth: token %s for %s failed (%s: %s); %s",
            "refresh" if self._state.token else "request",
            self._endpoint or "endpoint",
            type(exc).__name__,
            message,
            "still serving the current token" if self._state.token and reason == "expiring" else "",
        )
        self._emit("failed", reason=reason, error=f"{type(exc).__name__}: {message}",
                   duration=self._clock() - started)

    def _timeout(self) -> TokenTimeoutError:
        return TokenTimeoutError(
            f"No token for {self._endpoint or 'the endpoint'} after {self.policy.acquire_timeout:.0f}s",
            hint="The identity provider may be slow or unreachable; check the network or raise the timeout",
        )

    # -- persistence ------------------------------------------------------------------------------
    def _store_call(self, op: str, token: Token | None = None) -> Any:
        if self._store is None:
            return None
        try:
            if op == "load":
                return self._store.load(self._store_key)
            if op == "save" and token is not None:
                return self._store.save(self._store_key, token)
            if op == "delete":
                return self._store.delete(self._store_key)
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
        if self._on_event is not None:
            self._on_event(TokenEvent(kind=kind, auth_type=self._auth_type, endpoint=self._endpoint, **fields))

    def close(self) -> None:
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
