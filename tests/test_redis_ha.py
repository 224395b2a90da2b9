"""Redis Sentinel and Redis Cluster, started on loopback by the fixtures in tests/_redis.py (a master, a replica and
3 sentinels; 3 masters and 3 replicas made with ``redis-cli --cluster create``), with the master that holds the
fleet's token SIGKILLed while 4 processes (each its own "host") call a Flyte server through the real IdP.

What a user would notice, asserted: no call fails, no call waits long on the failover, and once the new master
answers the fleet shares one token again.  The duration bound is generous (a loaded CI machine): it tells a
fallback within ``redisTimeout`` from a wait on a lock TTL or a client's retry loop (0.2.0's Cluster client
waited 4 s and 7 s in some runs).  Speed itself is measured by ``benchmarks/fleet.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ._idp import CI_BASIC, IdpServer
from ._redis import RedisClusterGroup, RedisServer, SentinelGroup, _redis_cli

pytestmark = [pytest.mark.idp, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
PROCS, DURATION, KILL_AT = 4, 10.0, 2.0
#: Longest acceptable call while the master dies (target 1.5 s; slack for a loaded 2-core CI machine).
LONGEST_CALL_S = 2.5

WORKER = r"""
import json, logging, os, sys, time
from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO
logging.getLogger("flyteauth").setLevel(logging.ERROR)
spec = json.loads(sys.argv[1])
config = AuthConfig(endpoint=spec["target"], insecure=True, auth_type="ClientSecret", client_id=spec["client_id"],
                    client_secret=os.environ["HA_CLIENT_SECRET"], store="redis", options=spec["options"])
with AuthSession(config) as session:
    call = session.channel().unary_unary(ECHO["unary"])
    call(b"warm", timeout=30)
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    calls = []
    while (now := time.time()) < start + spec["duration"]:
        error = None
        try:
            call(b"ping", timeout=30)
        except Exception as exc:
            error = type(exc).__name__
        calls.append((now, time.time() - now, error))
        time.sleep(max(0.0, 0.05 - (time.time() - now)))
print(json.dumps({"calls": calls}), flush=True)
"""


def run_through_failover(tmp_path: Path, idp: IdpServer, target: str, options: dict[str, Any],
                         kill: Callable[[], Callable[[], bool]]) -> dict[str, Any]:
    """Run PROCS workers for DURATION s; at KILL_AT call ``kill()`` (returns "has the failover finished?").

    Returns the calls, when the master was killed and replaced, and the IdP's token request count over time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HA_CLIENT_SECRET": CI_BASIC[1]}
    spec = json.dumps({"target": target, "client_id": CI_BASIC[0], "options": options, "duration": DURATION})
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**env, "FLYTEAUTH_TOKEN_DIR": str(tmp_path / f"host-{i}")})
             for i in range(PROCS)]
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), idp.token_request_count(CI_BASIC[0])))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        start = time.time() + 0.3
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start}\n")
            proc.stdin.flush()
        sampler.start()
        time.sleep(max(0.0, start + KILL_AT - time.time()))
        killed_at = time.time()
        replaced = kill()
        while not replaced() and time.time() < killed_at + 20:
            time.sleep(0.05)
        replaced_at = time.time()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop.set()
        for proc in procs:
            proc.kill()
            proc.wait()
    calls = [c for r in results for c in r["calls"]]
    return {"calls": calls, "start": start, "killed_at": killed_at, "replaced_at": replaced_at, "samples": samples}


def requests_between(samples: list[tuple[float, int]], a: float, b: float) -> int:
    before = max((c for t, c in samples if t <= a), default=0)
    return max((c for t, c in samples if t <= b), default=0) - before


def check(run: dict[str, Any]) -> None:
    calls = run["calls"]
    failed = [c for c in calls if c[2] is not None]
    longest = max(c[1] for c in calls)
    # After the new master answers (and one RETRY_INTERVAL), the fleet shares again: about one token request
    # per refresh interval (2 s tokens, refreshed after about 1 s) for the whole fleet, not one per process.
    window = (run["replaced_at"] + 1.5, run["start"] + DURATION)
    after = requests_between(run["samples"], *window)
    per_interval = after / max(window[1] - window[0], 0.5)
    print(f"{len(calls)} calls, {len(failed)} failed, longest {longest:.3f} s; failover "
          f"{run['replaced_at'] - run['killed_at']:.2f} s; {after} token requests in the last "
          f"{window[1] - window[0]:.1f} s ({per_interval:.2f}/s for {PROCS} processes)")
    assert failed == [], failed[:5]
    assert len(calls) > PROCS * DURATION * 5
    assert longest < LONGEST_CALL_S, longest
    assert window[1] - window[0] >= 1.5, "the failover took too long to see the fleet share again"
    assert per_interval <= PROCS / 2, (after, window)  # unshared, it would be about PROCS per second


def test_sentinel_master_killed_mid_run(redis_sentinel: SentinelGroup, idp_fresh: IdpServer,
                                        flyte_server: Callable[..., Any], tmp_path: Path) -> None:
    """``redisURL: redis+sentinel://h1:p1,h2:p2,h3:p3/<master>/<db>``: the README's Sentinel form."""
    server = flyte_server()
    old = redis_sentinel.master()

    def kill() -> Callable[[], bool]:
        old.stop()  # SIGKILL

        def replaced() -> bool:
            try:
                return redis_sentinel.master() is not old
            except (StopIteration, IndexError):
                return False

        return replaced

    options = {"redisURL": redis_sentinel.url, "redisAllowPlaintext": True}
    run = run_through_failover(tmp_path, idp_fresh, server.target, options, kill)
    check(run)


def test_cluster_master_killed_mid_run(redis_cluster: RedisClusterGroup, idp_fresh: IdpServer,
                                       flyte_server: Callable[..., Any], tmp_path: Path) -> None:
    """``redisURL`` naming cluster nodes (``redis://h1:p1,h2:p2/0``) plus ``redisCluster: true``: the README's
    Cluster form.  The master killed is the one serving the fleet's token (and its lock: one hash tag, one
    slot, so the fenced save runs as one script)."""
    server = flyte_server()
    victim: list[RedisServer] = []

    def kill() -> Callable[[], bool]:
        keys = [k for node in redis_cluster.nodes if node.running
                for k in _redis_cli(node.port, "--scan", "--pattern", "flyteauth:*").split()]
        assert keys, "the fleet's token is not in the cluster"
        victim.append(redis_cluster.master_of(keys[0]))
        victim[0].stop()  # SIGKILL
        key = keys[0]

        def replaced() -> bool:
            try:
                return redis_cluster.master_of(key) is not victim[0]
            except (RuntimeError, StopIteration, IndexError):
                return False

        return replaced

    # two of the nodes, either of which can bootstrap a client
    url = f"redis://127.0.0.1:{redis_cluster.nodes[0].port},127.0.0.1:{redis_cluster.nodes[1].port}/0"
    options = {"redisURL": url, "redisCluster": True, "redisAllowPlaintext": True}
    run = run_through_failover(tmp_path, idp_fresh, server.target, options, kill)
    check(run)
