"""Soak: 32 threads and 256 coroutines call for N seconds with 2-second tokens.

Zero failed calls; token requests within one of duration / (lifetime - window) (computed from the
session's RefreshPolicy); no thread or file-descriptor growth (the manager's one refresh worker allowed).
The peers run in a child process (``_peers.py``), so the counts are the client's alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO

from ._peers import CLIENT_ID, CLIENT_SECRET
from .conftest import soak_seconds

pytestmark = pytest.mark.soak

THREADS, COROUTINES, TTL = 32, 256, 2.0
ROOT = Path(__file__).resolve().parents[2]


class PeerProcess:
    def __init__(self, ttl: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.soak._peers", "--ttl", str(ttl)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("soak peers did not start")
        self.target: str = json.loads(line)["target"]

    def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        data: dict[str, int] = json.loads(self.proc.stdout.readline())
        return data

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def peers() -> Iterator[PeerProcess]:
    proc = PeerProcess(TTL)
    try:
        yield proc
    finally:
        proc.close()


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(measure: Any, limit: int, seconds: float = 3.0) -> int:
    """The value of ``measure()`` once it is <= ``limit`` (or the last reading after ``seconds``)."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return int(value)


def request_bounds(session: AuthSession, duration: float, lifetime: float) -> tuple[int, int, float, float]:
    """(lowest, highest) acceptable token requests in ``duration``: within one of duration / (lifetime -
    window), the window being min(window, lifetime * max_window_fraction) plus up to ``jitter`` of itself."""
    policy = session.manager.policy
    window = min(policy.window, lifetime * policy.max_window_fraction)
    longest, shortest = lifetime - window, lifetime - window * (1 + policy.jitter)
    return math.floor(duration / longest) - 1, math.ceil(duration / shortest) + 1, shortest, longest


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count file descriptors")
def test_soak_threads_and_coroutines(  # noqa: PLR0915
    peers: PeerProcess, soak_report: list[tuple[str, str]], pytestconfig: pytest.Config
) -> None:
    duration = soak_seconds(pytestconfig)
    config = AuthConfig(endpoint=peers.target, insecure=True, auth_type="ClientSecret", client_id=CLIENT_ID,
                        client_secret=CLIENT_SECRET)
    session = AuthSession(config, interactive=False)
    channel = session.channel()
    unary = channel.unary_unary(ECHO["unary"])
    assert unary(b"warm") == b"warm"  # discovery + the first token, outside the measured window
    sync_calls, async_calls = [0] * THREADS, [0] * COROUTINES
    failures: list[str] = []
    go = threading.Event()
    window: dict[str, float] = {}

    def thread_caller(i: int) -> None:
        go.wait(30)
        stop = window["stop"]
        while time.monotonic() < stop:
            try:
                unary(b"s")
            except Exception as exc:
                failures.append(f"thread: {type(exc).__name__}: {exc}"[:300])
            sync_calls[i] += 1

    async def run() -> dict[str, Any]:
        async with session.aio_channel() as achannel:
            aunary = achannel.unary_unary(ECHO["unary"])
            assert await aunary(b"warm") == b"warm"
            before = {"threads": threading.active_count(), "fds": fd_count()}
            start_requests = peers.stats()["token_requests"]

            async def coroutine_caller(i: int) -> None:
                stop = window["stop"]
                while time.monotonic() < stop:
                    try:
                        await aunary(b"a")
                    except Exception as exc:
                        failures.append(f"coroutine: {type(exc).__name__}: {exc}"[:300])
                    async_calls[i] += 1

            threads = [threading.Thread(target=thread_caller, args=(i,), name=f"soak-{i}") for i in range(THREADS)]
            window["start"] = time.monotonic()
            window["stop"] = window["start"] + duration
            for t in threads:
                t.start()
            go.set()
            await asyncio.gather(*(coroutine_caller(i) for i in range(COROUTINES)))
            for t in threads:  # they stop at the same deadline (no executor thread: it would count as growth)
                t.join(30)
            assert not any(t.is_alive() for t in threads), "a soak thread hung"
            window["end"] = time.monotonic()
            requests = peers.stats()["token_requests"] - start_requests
            after = {"threads": settle(threading.active_count, before["threads"] + 1),
                     "fds": settle(fd_count, before["fds"])}
            names = sorted(t.name for t in threading.enumerate())
            return {"requests": requests, "thread_names": names, **{f"{k}_before": v for k, v in before.items()},
                    **{f"{k}_after": v for k, v in after.items()}}

    try:
        counts = asyncio.run(run())
    finally:
        session.close()
    elapsed = window["end"] - window["start"]
    low, high, shortest, longest = request_bounds(session, duration, TTL)
    calls = sum(sync_calls) + sum(async_calls)
    soak_report += [
        ("duration (s)", f"{duration:g} (measured {elapsed:.1f})"),
        ("callers", f"{THREADS} threads + {COROUTINES} coroutines"),
        ("token lifetime (s)", f"{TTL:g}"),
        ("calls", f"{calls} ({sum(sync_calls)} sync, {sum(async_calls)} aio; {calls / elapsed:.0f}/s)"),
        ("failed calls", str(len(failures))),
        ("token requests (at the endpoint)", str(counts["requests"])),
        ("bound: duration / (lifetime - window) ± 1",
         f"{low}..{high} (refresh every {shortest:.2f}..{longest:.2f} s)"),
        ("background refreshes / waits after warm-up", f"{session.stats.background_refreshes} / "
                                                        f"{session.stats.waits - 1}"),
        ("threads before / after", f"{counts['threads_before']} / {counts['threads_after']} (+1 allowed: refresh "
                                   "worker)"),
        ("threads alive after", ", ".join(counts["thread_names"])),
        ("fds before / after", f"{counts['fds_before']} / {counts['fds_after']}"),
    ]
    assert not failures, failures[:5]
    assert low <= counts["requests"] <= high, (counts, low, high)
    assert counts["threads_after"] <= counts["threads_before"] + 1, counts
    assert counts["fds_after"] <= counts["fds_before"], counts
