"""TokenManager decisions with a fake clock and a fake provider (the clock is what no real peer can do)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from flyteauth_core import RefreshPolicy, Token, TokenState
from flyteauth_core.errors import InvalidClientError, TokenTimeoutError, TransientTokenError
from flyteauth_core.lifecycle import TokenManager
from flyteauth_providers.memory_store import MemoryTokenStore


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Provider:
    """Issues tokens that live ``lifetime`` seconds of the fake clock; can be told to fail or stall."""

    def __init__(self, clock: Clock, lifetime: float | None = 100.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[Token | None, str]] = []
        self.fail: BaseException | None = None
        self.gate: threading.Event | None = None

    def __call__(self, previous: Token | None, reason: str) -> Token:
        self.calls.append((previous, reason))
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        n = len(self.calls)
        expires = None if self.lifetime is None else self.clock.now + self.lifetime
        return Token(f"token-{n}", expires_at=expires, refresh_token=f"refresh-{n}")


NO_JITTER = RefreshPolicy(window=30, jitter=0.0, clock_skew=0.0)


def manager(provider: Provider, clock: Clock, **kwargs: object) -> TokenManager:
    kwargs.setdefault("policy", NO_JITTER)
    return TokenManager(provider, clock=clock, header_key=lambda: "flyte-authorization", **kwargs)  # type: ignore[arg-type]


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_first_call_acquires_and_uses_the_header_key() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    assert m.metadata() == (("flyte-authorization", "Bearer token-1"),)
    assert [reason for _, reason in provider.calls] == ["initial"]
    assert m.state() is TokenState.FRESH


def test_fresh_token_is_served_without_calling_the_provider() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    first = m.metadata()
    clock.now += 69  # 31 s before expiry: still outside the 30 s window
    assert m.metadata() is first
    assert len(provider.calls) == 1


def test_stale_token_is_served_while_one_background_refresh_runs() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    m.metadata()
    provider.gate = threading.Event()
    clock.now += 80  # inside the window, not expired
    assert m.state() is TokenState.STALE
    served = {m.metadata() for _ in range(50)}
    assert served == {(("flyte-authorization", "Bearer token-1"),)}  # nobody waited
    provider.gate.set()
    wait_for(lambda: m.state() is TokenState.FRESH)
    assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)
    assert [reason for _, reason in provider.calls] == ["initial", "expiring"]
    assert provider.calls[1][0] is not None and provider.calls[1][0].refresh_token == "refresh-1"
    assert m.stats.background_refreshes == 1


def test_expired_token_is_never_sent() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    m.metadata()
    clock.now += 100  # expired
    assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)
    assert provider.calls[1][1] == "expired"


def test_window_is_capped_at_half_the_lifetime() -> None:
    clock = Clock()
    provider = Provider(clock, lifetime=2.0)
    m = manager(provider, clock, policy=RefreshPolicy(window=300, jitter=0, clock_skew=0))
    m.metadata()
    clock.now += 0.9
    assert m.state() is TokenState.FRESH
    clock.now += 0.2
    assert m.state() is TokenState.STALE


def test_unknown_expiry_refreshes_only_on_rejection() -> None:
    clock = Clock()
    provider = Provider(clock, lifetime=None)
    m = manager(provider, clock)
    sent = m.metadata()
    clock.now += 10 * 365 * 86400
    assert m.metadata() is sent and len(provider.calls) == 1
    assert m.rejected(sent) is True
    assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)
    assert provider.calls[1][1] == "expired"


def test_compare_and_invalidate_keeps_a_token_someone_already_replaced() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    old = m.metadata()
    assert m.rejected(old) is True
    new = m.metadata()
    assert new != old
    # A slow caller reports the rejection of the old token after the new one was published:
    assert m.rejected(old) is True  # retry makes sense...
    assert m.metadata() is new  # ...with the new token, which was not thrown away
    assert len(provider.calls) == 2
    assert m.stats.invalidations == 1


def test_rejection_without_a_token_does_not_ask_for_a_retry() -> None:
    clock = Clock()
    m = manager(Provider(clock), clock)
    assert m.rejected(()) is False


def test_threads_on_a_cold_manager_make_one_request() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(m.metadata())) for _ in range(64)]
    for t in threads:
        t.start()
    wait_for(lambda: m.stats.waits == 64)
    provider.gate.set()
    for t in threads:
        t.join(5)
    assert len(provider.calls) == 1
    assert len(results) == 64 and len(set(results)) == 1


async def test_coroutines_and_threads_share_one_refresh() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock)
    tasks = [asyncio.create_task(m.metadata_async()) for _ in range(256)]
    thread_results: list[object] = []
    threads = [threading.Thread(target=lambda: thread_results.append(m.metadata())) for _ in range(8)]
    for t in threads:
        t.start()
    while m.stats.waits < 264:
        await asyncio.sleep(0.005)
    provider.gate.set()
    results = await asyncio.gather(*tasks)
    for t in threads:
        t.join(5)
    assert len(provider.calls) == 1
    assert set(results) == set(thread_results) == {(("flyte-authorization", "Bearer token-1"),)}


async def test_event_loop_is_not_blocked_while_a_refresh_runs() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock)
    task = asyncio.create_task(m.metadata_async())
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 20 and not task.done()
    provider.gate.set()
    assert await task == (("flyte-authorization", "Bearer token-1"),)


async def test_a_cancelled_waiter_does_not_cancel_the_refresh_for_others() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock)
    first = asyncio.create_task(m.metadata_async())
    second = asyncio.create_task(m.metadata_async())
    await asyncio.sleep(0.05)
    first.cancel()
    provider.gate.set()
    assert await second == (("flyte-authorization", "Bearer token-1"),)


def test_failed_background_refresh_keeps_serving_and_is_spaced(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock, policy=RefreshPolicy(window=30, jitter=0, clock_skew=0,
                                                      failure_backoff_initial=5, failure_backoff_max=20))
    good = m.metadata()
    provider.fail = TransientTokenError("IdP down", endpoint="https://idp/token", status=503, transient=True)
    clock.now += 75
    with caplog.at_level(logging.WARNING):
        assert m.metadata() is good
        wait_for(lambda: m.stats.failures == 1)
        for _ in range(100):  # within the backoff: no new attempt
            assert m.metadata() is good
        assert len(provider.calls) == 2
        clock.now += 5  # backoff elapsed: one more attempt
        assert m.metadata() is good
        wait_for(lambda: m.stats.failures == 2)
        assert len(provider.calls) == 3
    assert "still serving the current token" in caplog.text
    provider.fail = None
    clock.now += 10  # second backoff (10 s) elapsed
    m.metadata()
    wait_for(lambda: m.state() is TokenState.FRESH)
    assert m.metadata() == (("flyte-authorization", "Bearer token-4"),)


def test_failure_without_a_usable_token_reaches_every_waiter() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.fail = InvalidClientError("rejected", endpoint="https://idp/token", status=401)
    m = manager(provider, clock)
    with pytest.raises(InvalidClientError):
        m.metadata()
    provider.fail = None
    # invalid_client is not transient: remembered for brake.fatal_ttl instead of asking the IdP per call
    with pytest.raises(InvalidClientError):
        m.metadata()
    assert len(provider.calls) == 1 and m.stats.cached_failures == 1
    clock.now += m.brake.fatal_ttl + 1
    assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)


def test_waiting_has_a_deadline() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock, policy=RefreshPolicy(acquire_timeout=0.2))
    outcomes: list[BaseException | tuple[tuple[str, str], ...]] = []

    def owner_call() -> None:  # the caller that started the refresh: its wait is bounded too
        try:
            outcomes.append(m.metadata())
        except BaseException as exc:  # kept for the assertion below, not left to the thread
            outcomes.append(exc)

    owner = threading.Thread(target=owner_call)
    owner.start()
    wait_for(lambda: m.stats.waits == 1)
    started = time.monotonic()
    with pytest.raises(TokenTimeoutError, match="after 0s"):
        m.metadata()
    assert time.monotonic() - started < 2
    owner.join(5)
    assert len(outcomes) == 1 and isinstance(outcomes[0], TokenTimeoutError)
    provider.gate.set()  # the stalled request finishes late: its token serves the next call, no new request
    wait_for(lambda: m.state() is not None)
    assert m.metadata() == (("flyte-authorization", "Bearer token-1"),) and len(provider.calls) == 1


async def test_the_callers_deadline_bounds_the_wait_and_leaves_the_refresh_to_the_others() -> None:
    """Waiters with a short deadline (a thread and a coroutine) give up with ``TokenDeadlineError``; the
    one refresh goes on and serves a thread and a coroutine that allowed more time: one request in all.
    A deadline longer than ``acquire_timeout`` is the manager's own timeout, not the caller's."""
    from flyteauth_core.errors import TokenDeadlineError

    clock = Clock()
    provider = Provider(clock)
    provider.gate = threading.Event()
    m = manager(provider, clock)
    patient = asyncio.create_task(m.metadata_async())  # starts the refresh, no deadline
    await asyncio.sleep(0.05)
    with pytest.raises(TokenDeadlineError, match="not ready within the call's deadline"):
        await m.metadata_async(0.05)
    with pytest.raises(TokenDeadlineError):
        await asyncio.to_thread(m.metadata, 0.05)
    slow_thread = asyncio.ensure_future(asyncio.to_thread(m.metadata, 10.0))
    await asyncio.sleep(0.05)
    provider.gate.set()
    expected = (("flyte-authorization", "Bearer token-1"),)
    assert await patient == expected and await slow_thread == expected and len(provider.calls) == 1

    stalled = Provider(clock)
    stalled.gate = threading.Event()
    short = manager(stalled, clock, policy=RefreshPolicy(acquire_timeout=0.05))
    with pytest.raises(TokenTimeoutError) as error:
        short.metadata(10.0)
    assert not isinstance(error.value, TokenDeadlineError)
    stalled.gate.set()


def test_store_token_is_used_without_a_request_and_saved_after_refresh() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    store.save("k", Token("stored", expires_at=clock.now + 3600, refresh_token="stored-refresh"))
    provider = Provider(clock)
    m = manager(provider, clock, store=store, store_key="k")
    assert m.metadata() == (("flyte-authorization", "Bearer stored"),)
    assert provider.calls == [] and m.stats.loaded_from_store == 1
    clock.now += 3600
    m.metadata()
    assert provider.calls[0][0] is not None and provider.calls[0][0].refresh_token == "stored-refresh"
    saved = store.load("k")
    assert saved is not None and saved.access_token == "token-1"


def test_expired_stored_token_hands_its_refresh_token_to_the_provider() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    store.save("k", Token("old", expires_at=clock.now - 1, refresh_token="old-refresh"))
    provider = Provider(clock)
    m = manager(provider, clock, store=store, store_key="k")
    assert m.metadata() == (("flyte-authorization", "Bearer token-1"),)
    previous, _ = provider.calls[0]
    assert previous is not None and previous.refresh_token == "old-refresh"


def test_transient_failure_keeps_stored_credentials() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    store.save("k", Token("old", expires_at=clock.now - 1, refresh_token="old-refresh"))
    provider = Provider(clock)
    provider.fail = TransientTokenError("down", endpoint="https://idp/token", status=503, transient=True)
    m = manager(provider, clock, store=store, store_key="k")
    with pytest.raises(TransientTokenError):
        m.metadata()
    kept = store.load("k")
    assert kept is not None and kept.refresh_token == "old-refresh"


class BrokenStore:
    def load(self, key: str) -> Token | None:
        raise OSError("disk on fire")

    def save(self, key: str, token: Token) -> None:
        raise OSError("disk on fire")

    def delete(self, key: str) -> None:
        raise OSError("disk on fire")


def test_a_store_that_raises_never_fails_a_call(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock, store=BrokenStore(), store_key="k")
    with caplog.at_level(logging.WARNING):
        assert m.metadata() == (("flyte-authorization", "Bearer token-1"),)
        clock.now += 100
        assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)
    assert caplog.text.count("continuing with in-memory tokens") == 1


def test_events_are_emitted_without_secrets() -> None:
    clock = Clock()
    provider = Provider(clock)
    events = []
    m = manager(provider, clock, on_event=events.append)
    sent = m.metadata()
    m.rejected(sent)
    m.metadata()
    assert [e.kind for e in events] == ["acquired", "invalidated", "refreshed"]
    assert "token-1" not in repr(events) and "refresh-1" not in repr(events)


def test_a_caller_that_read_the_state_before_a_refresh_finished_does_not_refresh_again() -> None:
    clock = Clock()
    provider = Provider(clock)
    m = manager(provider, clock)
    snapshot = m._state  # read by a caller that is then preempted...
    m.metadata()  # ...while another caller's refresh completes
    assert m._state_sync(snapshot).metadata == (("flyte-authorization", "Bearer token-1"),)
    assert len(provider.calls) == 1


class LockingStore(MemoryTokenStore):
    """A shared store with a lock, standing in for a file store shared by processes."""

    def __init__(self) -> None:
        super().__init__()
        self.lock_calls = 0
        self._cross = threading.Lock()

    def lock(self, key: str):  # type: ignore[no-untyped-def]
        self.lock_calls += 1
        return self._cross


def test_managers_sharing_a_store_refresh_once_between_them() -> None:
    clock = Clock()
    store = LockingStore()
    providers = [Provider(clock) for _ in range(2)]
    a, b = (manager(p, clock, store=store, store_key="k") for p in providers)
    assert a.metadata() == (("flyte-authorization", "Bearer token-1"),)
    assert b.metadata() == (("flyte-authorization", "Bearer token-1"),)  # loaded: no request
    assert len(providers[1].calls) == 0 and b.stats.loaded_from_store == 1
    clock.now += 100  # both expired
    a.metadata()
    b.metadata()
    assert len(providers[0].calls) + len(providers[1].calls) == 2  # one initial + one refresh in all
    assert store.lock_calls == 4


def test_refresh_uses_the_newest_stored_refresh_token() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    provider = Provider(clock)
    m = manager(provider, clock, store=store, store_key="k")
    m.metadata()
    # Another process refreshed (rotating the refresh token) and its token has expired too:
    store.save("k", Token("other", expires_at=clock.now + 10, refresh_token="rotated"))
    clock.now += 100
    m.metadata()
    previous, _ = provider.calls[-1]
    assert previous is not None and previous.refresh_token == "rotated"


def test_a_rejected_token_in_the_store_is_not_reused() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    provider = Provider(clock)
    m = manager(provider, clock, store=store, store_key="k")
    sent = m.metadata()
    m.rejected(sent)
    assert m.metadata() == (("flyte-authorization", "Bearer token-2"),)


def test_forced_refresh_skips_the_store_and_says_login() -> None:
    clock = Clock()
    store = MemoryTokenStore()
    store.save("k", Token("stored", expires_at=clock.now + 3600))
    provider = Provider(clock)
    m = manager(provider, clock, store=store, store_key="k")
    assert m.refresh().access_token == "token-1"
    assert provider.calls[0][1] == "login"
    saved = store.load("k")
    assert saved is not None and saved.access_token == "token-1"


def test_a_store_lock_that_fails_does_not_fail_the_refresh(caplog: pytest.LogCaptureFixture) -> None:
    class BadLock(MemoryTokenStore):
        def lock(self, key: str):  # type: ignore[no-untyped-def]
            raise TimeoutError("lock busy")

    clock = Clock()
    m = manager(Provider(clock), clock, store=BadLock(), store_key="k")
    with caplog.at_level(logging.WARNING):
        assert m.metadata() == (("flyte-authorization", "Bearer token-1"),)
    assert "refreshing without it" in caplog.text
