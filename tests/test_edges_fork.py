"""Fork safety (issue 9, item 1): a child forked at any stage of the parent's token lifecycle keeps
getting valid tokens across two expiries, with no failed call.

On 0.1.0 the child inherits the parent's refresh executor (whose worker thread does not exist in the
child) and any in-flight refresh future (that nobody in the child will complete): its first refresh
never runs, and every later call waits ``acquire_timeout`` and fails.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import DemoTokenEndpoint
from flyteauth_core.token import RefreshPolicy, Token
from flyteauth_providers.file_store import FileTokenStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

TTL = 1.5
POLICY = RefreshPolicy(window=0.5, jitter=0.0, clock_skew=0.0, acquire_timeout=3.0)


@pytest.fixture
def idp() -> Iterator[DemoTokenEndpoint]:
    with DemoTokenEndpoint("fork-client", "fork-secret", ttl=TTL) as endpoint:
        yield endpoint


def _session(idp: DemoTokenEndpoint, store: Any = "memory") -> AuthSession:
    # The endpoint is never called: get_token() needs no Flyte server when tokenUrl is set.
    config = AuthConfig(endpoint="127.0.0.1:9", insecure=True, auth_type="ClientSecret", client_id="fork-client",
                        client_secret="fork-secret", token_url=idp.url)
    return AuthSession(config, store=store, policy=POLICY, interactive=False)


def _child_calls(session: AuthSession, seconds: float) -> dict[str, Any]:
    """In the child: call get_token() for ``seconds``; count failures and expired tokens handed out."""
    failed: list[str] = []
    tokens: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            token = session.get_token()
        except Exception as exc:
            failed.append(type(exc).__name__)
            continue
        if token.expires_at is not None and token.expires_at <= time.time():
            failed.append("expired token served")
        tokens.add(token.access_token)
        time.sleep(0.02)
    return {"failed": failed, "tokens": len(tokens)}


def _fork(session: AuthSession, seconds: float = 2 * TTL + 0.5) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read)
            result = _child_calls(session, seconds)
            os.write(write, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _collect(pid: int, read: int) -> dict[str, Any]:
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def _warm(session: AuthSession) -> Token:
    """One token, then one background refresh: the parent now has a refresh worker thread (0.1.0 made it
    only for background refreshes)."""
    first = session.get_token()
    stale_in = (first.expires_at or 0) - POLICY.window - time.time()
    time.sleep(max(0.0, stale_in) + 0.05)
    session.get_token()  # stale: starts the background refresh
    _wait_for(lambda: session.get_token().access_token != first.access_token)
    return session.get_token()


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _assert_healthy(stage: str, result: dict[str, Any]) -> None:
    assert result["failed"] == [], f"{stage}: {result}"
    assert result["tokens"] >= 3, f"{stage}: the child did not refresh across two expiries: {result}"


@pytest.mark.skipif(sys.platform == "darwin", reason="fork with threads is unsafe on macOS")
def test_children_forked_at_every_stage_keep_calling_across_two_expiries(
    idp: DemoTokenEndpoint, tmp_path: Path
) -> None:
    children: dict[str, tuple[int, int]] = {}

    # idle: a fresh token, nothing running
    with _session(idp) as session:
        _warm(session)
        children["idle"] = _fork(session)

        # stale: inside the refresh window, the child's first call must start a refresh that runs
        token = session.get_token()
        time.sleep(max(0.0, (token.expires_at or 0) - POLICY.window - time.time()) + 0.05)
        children["stale"] = _fork(session)

    # during a refresh: the parent's refresh is blocked inside the provider when the child is forked
    with _session(idp) as session:
        _warm(session)
        gate, inside = threading.Event(), threading.Event()
        acquire = session.manager._acquire
        blocking = [True]

        def slow_acquire(previous: Token | None, reason: str) -> Token:
            if blocking[0]:
                inside.set()
                gate.wait(10)
            return acquire(previous, reason)

        session.manager._acquire = slow_acquire
        parent = threading.Thread(target=session.manager.refresh, args=("expired",))
        parent.start()
        assert inside.wait(5)
        blocking[0] = False  # the child's copy of this list says "do not block"
        children["during a refresh"] = _fork(session)
        gate.set()
        parent.join(5)

    # while another thread holds the store's cross-process lock
    store = FileTokenStore(directory=tmp_path / "tokens")
    with _session(idp, store=store) as session:
        _warm(session)
        held, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            with store.lock(session.identity().store_key):
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_lock)
        holder.start()
        assert held.wait(5)
        children["holding the store lock"] = _fork(session)
        time.sleep(0.3)
        release.set()
        holder.join(5)

    for stage, (pid, read) in children.items():
        _assert_healthy(stage, _collect(pid, read))
