"""Fleet simulator: N processes on H "hosts" share one client id, against the real test IdP.

Each host has its own HOME and file-store directory; all hosts share one redis-server.  The IdP
(tests/idp, oidc-provider) issues tokens of T seconds and, with ``--rate-limit R``, answers 429 +
Retry-After beyond R token requests per second per client, as Okta, Auth0 and Entra ID do.  Every process
calls a Flyte test server (gRPC Echo, which checks the JWT) ``--rate`` times a second for D seconds.

    .venv/bin/python benchmarks/fleet.py                       # 64 processes, 8 hosts, 3 s tokens, 10 s
    .venv/bin/python benchmarks/fleet.py --procs 8 --hosts 2 --duration 5 --json out.json

Sections:

1. *Fleet*: the three configurations (no shared store; a file store per host; Redis), without and with
   the rate limit: token requests (and per refresh interval), 429s, failed calls, p99 call latency overall
   and within 0.5 s of a token expiry, metadata RPCs.
2. *Lock holder killed*: Redis; the IdP delays the next token request, the process holding the Redis lock
   is SIGKILLed while it waits; how long until the fleet has a new token (bound: lock TTL + one IdP round
   trip), and failed calls of the survivors.
3. *Redis outage*: Redis stopped for ``--outage`` seconds mid-run, then restarted on the same port; token
   requests per refresh interval before, during and after, and failed calls.
   3b. *Freeze*: Redis SIGSTOPped for ``--freeze`` seconds (it accepts connections and answers nothing).
   3c. *Failover*: a Sentinel group and a Redis Cluster (tests/_redis.py), the master SIGKILLed mid-run.
   Every scenario reports its *longest call* (target: none over 1.5 s).
4. *Discovery*: metadata RPCs made by ``--discovery-procs`` processes starting at once, per configuration.
5. *Hot path*: per-call cost of ``metadata()`` with the redis store and with the memory store.

Processes are forked from this one (nothing gRPC is created here before forking); the Flyte server runs in
a forked child too.  Everything binds to 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._idp import CI_BASIC, IdpServer  # noqa: E402
from tests._redis import RedisServer  # noqa: E402

CONFIGS = ("none", "file", "redis")
STORE = {"none": "memory", "file": "file", "redis": "redis"}
FORK = multiprocessing.get_context("fork")


def _preload() -> None:
    """Import what workers need once, here, so forked workers share it (no gRPC object is created)."""
    import cryptography.fernet  # noqa: F401
    import grpc
    import grpc._channel  # noqa: F401  (what the first channel would load in every worker)
    import httpx2  # noqa: F401
    import redis  # noqa: F401

    import flyteauth_core._proto
    import flyteauth_core.transports.grpc_sync  # noqa: F401
    import flyteauth_providers.client_credentials
    import flyteauth_providers.file_store
    import flyteauth_providers.redis_store  # noqa: F401
    from flyteauth_core.plugins import default_registry

    default_registry().token_store("memory")


def _warm(idp: IdpServer) -> None:
    """One token request here loads the IdP client stack (authlib, httpcore2, truststore, ...) before the
    fork, so that no configuration pays ~0.3 s of imports per process (which only the unshared one would)."""
    from flyteauth_core import AuthConfig, AuthSession

    config = AuthConfig(endpoint="127.0.0.1:1", insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], token_url=idp.token_endpoint, authorization_header="authorization")
    with AuthSession(config) as session:
        session.get_token()


# -- the Flyte server (a forked child) ---------------------------------------------------------------
def _serve(idp_issuer: str, jwks_uri: str, conn: Any) -> None:
    from flyteauth_core.testing import FlyteTestServer
    from tests.conftest import jwt_validator

    class _Idp:  # what jwt_validator reads
        def __init__(self) -> None:
            self.jwks_uri = jwks_uri

    server = FlyteTestServer(jwt_validator(_Idp()), token_endpoint=f"{idp_issuer}/token", issuer=idp_issuer,  # type: ignore[arg-type]
                             max_workers=32).start()
    conn.send(server.target)
    while True:
        message = conn.recv()
        if message == "stats":
            conn.send(dict(server.stats))
        elif message == "reset":
            server.stats.clear()
            conn.send(True)
        else:
            break
    server.stop()
    os._exit(0)


# -- one process of the fleet ------------------------------------------------------------------------------
def _worker(spec: dict[str, Any], conn: Any) -> None:
    try:
        result = _work(spec)
    except BaseException as exc:  # report, never hang the parent
        result = {"error": f"{type(exc).__name__}: {exc}"}
    conn.send(result)
    conn.close()
    os._exit(0)


def _work(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    import grpc

    from flyteauth_core import AuthConfig, AuthSession
    from flyteauth_core.errors import FlyteAuthError
    from flyteauth_core.testing import ECHO

    logging.getLogger("flyteauth").setLevel(logging.ERROR)  # 64 copies of "Redis is down" say nothing new
    # The IdP, Redis and the Flyte server stand for other machines: on a 2-core box 64 workers at the same
    # priority would starve Redis past its 200 ms timeout, and the fleet would measure its own fallback.
    os.nice(10)
    host_dir = Path(spec["host_dir"])
    os.environ.update(HOME=str(host_dir), XDG_CONFIG_HOME=str(host_dir / ".config"),
                      FLYTEAUTH_TOKEN_DIR=str(host_dir / "tokens"))
    config = AuthConfig(endpoint=spec["target"], insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], store=spec["store"], options=spec["options"])
    session = AuthSession(config)
    call = session.channel().unary_unary(ECHO["unary"])
    interval = 1.0 / spec["rate"]
    time.sleep(max(0.0, spec["start_at"] - time.time()) + random.random() * interval * 0.1)
    calls: list[tuple[float, float, bool]] = []
    expiries: set[float] = set()
    while (now := time.time()) < spec["end_at"]:
        ok = True
        try:
            call(b"ping", timeout=30)
        except (grpc.RpcError, FlyteAuthError):
            ok = False
        calls.append((now, time.time() - now, ok))
        current = session.manager.state()
        token = getattr(session.manager, "_state", None)
        if current is not None and token is not None and token.token is not None and token.token.expires_at:
            expiries.add(token.token.expires_at)
        time.sleep(max(0.0, interval - (time.time() - now)))
    stats = session.manager.stats
    session.close()
    return {"calls": calls, "expiries": sorted(expiries), "token_requests": stats.token_requests,
            "loaded": stats.loaded_from_store}


# -- the fleet --------------------------------------------------------------------------------------------
class Fleet:
    """The peers (IdP, Redis, Flyte server) and a way to run N forked processes against them."""

    def __init__(self, ttl: float, rate_limit: int = 0, lock_ttl: float = 10.0) -> None:
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.tmp = Path(tempfile.mkdtemp(prefix="flyteauth-fleet-"))
        env = {"IDP_RATE_LIMIT": str(rate_limit)}
        self.idp = IdpServer(token_ttl=int(ttl), env=env).start()
        _warm(self.idp)
        self.redis = RedisServer().start()
        from cryptography.fernet import Fernet

        self.key_file = self.tmp / "fleet.key"
        self.key_file.write_bytes(Fernet.generate_key())
        self.key_file.chmod(0o600)
        parent, child = FORK.Pipe()
        self._server = FORK.Process(target=_serve, args=(self.idp.issuer, self.idp.jwks_uri, child), daemon=True)
        self._server.start()
        self._conn = parent
        self.target: str = parent.recv()

    def server_stats(self) -> dict[str, int]:
        self._conn.send("stats")
        stats: dict[str, int] = self._conn.recv()
        return stats

    def reset(self) -> None:
        self.idp.reset()
        self._conn.send("reset")
        self._conn.recv()
        self.redis.command("FLUSHALL")
        for path in self.tmp.glob("host-*"):
            shutil.rmtree(path, ignore_errors=True)

    def options(self, config: str) -> dict[str, Any]:
        if config != "redis":
            return {}
        return {"redisURL": self.redis.url, "redisEncryptionKeyFile": str(self.key_file),
                "redisLockTTL": self.lock_ttl}

    def start(self, config: str, procs: int, hosts: int, duration: float, rate: float,
              warmup: float = 1.5, options: dict[str, Any] | None = None) -> tuple[list[Any], list[Any], float]:
        """Fork the fleet; returns (processes, pipes, start time).  Collect with :meth:`collect`."""
        start_at = time.time() + warmup + procs * 0.01
        processes, pipes = [], []
        for i in range(procs):
            host_dir = self.tmp / f"host-{i % hosts}"
            host_dir.mkdir(exist_ok=True)
            spec = {"host_dir": str(host_dir), "target": self.target, "store": STORE[config],
                    "options": self.options(config) if options is None else options, "rate": rate,
                    "start_at": start_at,
                    "end_at": start_at + duration}
            parent, child = FORK.Pipe()
            proc = FORK.Process(target=_worker, args=(spec, child), daemon=True)
            proc.start()
            child.close()
            processes.append(proc)
            pipes.append(parent)
        return processes, pipes, start_at

    @staticmethod
    def collect(processes: list[Any], pipes: list[Any], timeout: float) -> list[dict[str, Any] | None]:
        results: list[dict[str, Any] | None] = []
        deadline = time.monotonic() + timeout
        for proc, pipe in zip(processes, pipes, strict=True):
            got = None
            with contextlib.suppress(EOFError, OSError):
                if pipe.poll(max(0.1, deadline - time.monotonic())):
                    got = pipe.recv()
            results.append(got)
            proc.join(timeout=1)
            if proc.is_alive():
                proc.kill()
                proc.join()
        return results

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send("stop")
        self._server.join(timeout=5)
        if self._server.is_alive():
            self._server.kill()
        self.idp.stop()
        self.redis.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize(results: list[dict[str, Any] | None], idp_stats: dict[str, Any], server_stats: dict[str, int],
              ttl: float, duration: float) -> dict[str, Any]:
    """One row: the fleet's token requests, 429s, failed calls and latencies."""
    calls = [c for r in results if r and "calls" in r for c in r["calls"]]
    near = [c for r in results if r and "calls" in r for c in r["calls"]
            if any(abs(c[0] - e) <= 0.5 for e in r["expiries"])]
    requests = int(idp_stats.get("token_requests", {}).get(CI_BASIC[0], 0))
    intervals = max(duration / (ttl / 2), 1.0)  # tokens are refreshed at about half their lifetime
    return {
        "processes": len(results),
        "reported": sum(1 for r in results if r and "calls" in r),
        "errors": sorted({r["error"] for r in results if r and "error" in r}),
        "token_requests": requests,
        "per_refresh_interval": round(requests / intervals, 2),
        "rate_limited": int(idp_stats.get("rate_limited", 0)),
        "calls": len(calls),
        "failed_calls": sum(1 for c in calls if not c[2]),
        "p99_ms": round(_p99([c[1] for c in calls]) * 1000, 1),
        "p99_near_expiry_ms": round(_p99([c[1] for c in near]) * 1000, 1),
        "longest_ms": round(max((c[1] for c in calls), default=float("nan")) * 1000, 1),
        "metadata_rpcs": sum(v for k, v in server_stats.items() if k.startswith("discovery_")),
    }


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def run_fleet(fleet: Fleet, config: str, procs: int, hosts: int, duration: float, rate: float) -> dict[str, Any]:
    fleet.reset()
    processes, pipes, _ = fleet.start(config, procs, hosts, duration, rate)
    results = fleet.collect(processes, pipes, timeout=duration + 60)
    return summarize(results, fleet.idp.stats(), fleet.server_stats(), fleet.ttl, duration)


@contextlib.contextmanager
def _sampling(fleet: Fleet, every: float = 0.1) -> Iterator[list[tuple[float, int]]]:
    """Sample the IdP's token request count in a thread: [(time, count)]."""
    import threading

    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                samples.append((time.time(), int(fleet.idp.stats()["token_requests"].get(CI_BASIC[0], 0))))
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _count_between(samples: list[tuple[float, int]], start: float, end: float) -> int:
    before = max((c for t, c in samples if t <= start), default=0)
    upto = max((c for t, c in samples if t <= end), default=0)
    return upto - before


def run_outage(fleet: Fleet, procs: int, hosts: int, duration: float, rate: float, outage: float) -> dict[str, Any]:
    """Redis stopped for ``outage`` seconds in the middle of the run, then restarted."""
    fleet.reset()
    with _sampling(fleet) as samples:
        processes, pipes, start_at = fleet.start("redis", procs, hosts, duration, rate)
        down_at = start_at + (duration - outage) / 2
        time.sleep(max(0.0, down_at - time.time()))
        fleet.redis.stop()
        time.sleep(outage)
        fleet.redis.start()
        up_at = time.time()
        results = fleet.collect(processes, pipes, timeout=duration + 60)
    row = summarize(results, fleet.idp.stats(), fleet.server_stats(), fleet.ttl, duration)
    interval = fleet.ttl / 2

    def per_interval(a: float, b: float) -> float | None:
        if b - a < 0.5:
            return None  # too short a window to say anything
        return round(_count_between(samples, a, b) / ((b - a) / interval), 2)

    # "before" leaves out the cold start (one request for the whole fleet, done within half a second);
    # "after" starts one refresh interval after the restart: processes that failed on Redis in the last
    # second before it leave Redis alone for a second (RETRY_INTERVAL), and the restarted Redis is empty
    row.update(before=per_interval(start_at + 0.5, down_at), during=per_interval(down_at, up_at),
               after=per_interval(up_at + interval, start_at + duration), outage_s=round(up_at - down_at, 2))
    return row


def run_freeze(fleet: Fleet, procs: int, hosts: int, duration: float, rate: float, freeze: float) -> dict[str, Any]:
    """Redis frozen (SIGSTOP: connections accepted, nothing answered) for ``freeze`` seconds mid-run: every
    command that reaches it costs ``redisTimeout``, and a SET NX sent just before the freeze becomes a ghost
    lock when Redis thaws (nobody renews it)."""
    fleet.reset()
    processes, pipes, start_at = fleet.start("redis", procs, hosts, duration, rate)
    down_at = start_at + (duration - freeze) / 2
    time.sleep(max(0.0, down_at - time.time()))
    fleet.redis.pause()
    try:
        time.sleep(freeze)
    finally:
        fleet.redis.resume()
    results = fleet.collect(processes, pipes, timeout=duration + 60)
    row = summarize(results, fleet.idp.stats(), fleet.server_stats(), fleet.ttl, duration)
    row.update(frozen_s=freeze)
    return row


def run_failover(fleet: Fleet, procs: int, hosts: int, duration: float, rate: float, kind: str) -> dict[str, Any]:
    """A Sentinel group (master, replica, 3 sentinels) or a 3+3 Cluster; the master holding the fleet's token
    SIGKILLed mid-run.  Failover time is until the sentinels (or the cluster) name a new master."""
    from tests._redis import RedisClusterGroup, SentinelGroup, _redis_cli

    fleet.reset()
    group: Any = SentinelGroup() if kind == "sentinel" else RedisClusterGroup()
    group.start()
    try:
        options = {**fleet.options("redis"), "redisURL": group.url, "redisCluster": kind == "cluster"}
        processes, pipes, start_at = fleet.start("redis", procs, hosts, duration, rate, options=options)
        time.sleep(max(0.0, start_at + duration / 3 - time.time()))
        if kind == "sentinel":
            victim = group.master()

            def replaced() -> bool:
                with contextlib.suppress(StopIteration, IndexError):
                    return group.master() is not victim
                return False
        else:
            keys = [k for node in group.nodes for k in _redis_cli(node.port, "--scan", "--pattern", "flyteauth:*")
                    .split()]
            key = keys[0] if keys else "flyteauth:"
            victim = group.master_of(key)

            def replaced() -> bool:
                with contextlib.suppress(RuntimeError, StopIteration, IndexError):
                    return group.master_of(key) is not victim
                return False
        victim.stop()  # SIGKILL
        killed_at = time.time()
        while not replaced() and time.time() < killed_at + 30:
            time.sleep(0.05)
        failover_s = time.time() - killed_at
        results = fleet.collect(processes, pipes, timeout=duration + 60)
    finally:
        group.close()
    row = summarize(results, fleet.idp.stats(), fleet.server_stats(), fleet.ttl, duration)
    row.update(failover_s=round(failover_s, 2))
    return row


def run_kill(fleet: Fleet, procs: int, hosts: int, duration: float, rate: float) -> dict[str, Any]:
    """SIGKILL the Redis lock holder while its token request is held up at the IdP."""
    import redis as redis_module

    fleet.reset()
    rtt = _idp_round_trip(fleet.idp)
    fleet.idp.reset()
    client = redis_module.Redis(host="127.0.0.1", port=fleet.redis.port, socket_timeout=2)
    processes, pipes, start_at = fleet.start("redis", procs, hosts, duration, rate)
    time.sleep(max(0.0, start_at + fleet.ttl * 0.25 - time.time()))  # the fleet holds its first token
    before = fleet.idp.stats()["total"]
    fleet.idp.inject_faults([{"delay_ms": int((duration + 30) * 1000)}])  # the next token request hangs
    victim, killed_at, data_key, old = None, 0.0, None, None
    deadline = time.time() + duration
    while time.time() < deadline and victim is None:
        if fleet.idp.stats()["total"] > before:
            for lock_key in client.scan_iter(match="flyteauth:lock:*"):
                owner = client.get(lock_key)
                if owner is None:
                    continue
                data_key = lock_key.decode().replace("lock:", "")  # flyteauth:lock:{h} -> flyteauth:{h}
                old = client.get(data_key)
                victim = int(owner.decode().split(":")[1])
                os.kill(victim, signal.SIGKILL)
                killed_at = time.time()
                break
        time.sleep(0.005)
    recovered_at = None
    while victim is not None and time.time() < deadline + 30:
        value = client.get(data_key) if data_key else None
        if value is not None and value != old:
            recovered_at = time.time()
            break
        time.sleep(0.01)
    results = fleet.collect(processes, pipes, timeout=duration + 60)
    survivors = [r for p, r in zip(processes, results, strict=True) if p.pid != victim]
    row = summarize(survivors, fleet.idp.stats(), fleet.server_stats(), fleet.ttl, duration)
    row.update(killed_pid=victim, recovered_s=None if recovered_at is None else round(recovered_at - killed_at, 2),
               bound_s=round(fleet.lock_ttl + rtt, 2), idp_round_trip_ms=round(rtt * 1000, 1))
    return row


def _idp_round_trip(idp: IdpServer) -> float:
    import base64

    auth = base64.b64encode(f"{CI_BASIC[0]}:{CI_BASIC[1]}".encode()).decode()
    times = []
    for _ in range(3):
        request = urllib.request.Request(idp.token_endpoint, data=b"grant_type=client_credentials",
                                         headers={"Authorization": f"Basic {auth}"})
        started = time.monotonic()
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
            response.read()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def _settle(manager: Any) -> None:
    """Before a measured round: no refresh still talking to the store, and a token with most of its
    (short) life ahead, so the round measures the hot path and not a refresh a slow machine ran into."""
    from flyteauth_core.token import TokenState

    inflight = manager._inflight  # a background refresh publishes before it saves and unlocks
    if inflight is not None:
        inflight.exception(timeout=60)
    if manager.state() is not TokenState.FRESH:
        manager.refresh("expiring")


def _hot_path(spec: dict[str, Any], conn: Any) -> None:
    """In a forked child: ns per ``metadata()`` call with the memory and the redis store (interleaved).

    The fleet's tokens live a few seconds, so a round that outlives its token's fresh window (a loaded
    machine) triggers a refresh; the Redis commands counted are those of the rounds whose token stayed
    fresh throughout (``fresh_rounds``), each started with a fresh token and no refresh in flight.
    """
    import timeit

    from flyteauth_core import AuthConfig, AuthSession
    from flyteauth_core.token import TokenState

    sessions = {}
    for name in ("memory", "redis"):
        config = AuthConfig(endpoint=spec["target"], insecure=True, auth_type="ClientSecret",
                            client_id=CI_BASIC[0], client_secret=CI_BASIC[1], store=name,
                            options=spec["options"] if name == "redis" else {})
        sessions[name] = AuthSession(config)
        sessions[name].manager.metadata()
    rounds: dict[str, list[float]] = {"memory": [], "redis": []}
    store = sessions["redis"].store
    commands, fresh_rounds = 0, 0
    for _ in range(15):
        for name, session in sessions.items():
            manager = session.manager
            _settle(manager)
            token, before = manager.token(), store.commands  # type: ignore[union-attr]
            number = 200_000
            rounds[name].append(timeit.timeit(manager.metadata, number=number) / number * 1e9)
            if name == "redis" and manager.state() is TokenState.FRESH and manager.token() is token:
                # the token stayed fresh the whole round: every command was the hot path's
                commands += store.commands - before  # type: ignore[union-attr]
                fresh_rounds += 1
    result: dict[str, Any] = {name: round(statistics.median(v), 1) for name, v in rounds.items()}
    result["redis_commands_during"] = commands
    result["fresh_rounds"] = fresh_rounds
    for session in sessions.values():
        session.close()
    conn.send(result)
    os._exit(0)


def run_hot_path(fleet: Fleet) -> dict[str, Any]:
    fleet.reset()
    parent, child = FORK.Pipe()
    # long tokens for this one: no refresh during the measurement
    spec = {"target": fleet.target, "options": fleet.options("redis")}
    proc = FORK.Process(target=_hot_path, args=(spec, child), daemon=True)
    proc.start()
    result: dict[str, Any] = parent.recv() if parent.poll(120) else {"error": "timed out"}
    proc.join(timeout=5)
    if "memory" in result:
        result["ratio"] = round(result["redis"] / result["memory"], 3)
    return result


def table(title: str, rows: list[tuple[str, dict[str, Any]]], columns: list[tuple[str, str]]) -> str:
    header = ["config", *[c[1] for c in columns]]
    body = [[name, *[_fmt(row.get(key)) for key, _ in columns]] for name, row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "; ".join(value) or "-"
    return str(value)


FLEET_COLUMNS = [("token_requests", "token reqs"), ("per_refresh_interval", "per refresh interval"),
                 ("rate_limited", "429s"), ("failed_calls", "failed calls"), ("calls", "calls"),
                 ("p99_ms", "p99 ms"), ("p99_near_expiry_ms", "p99 ms near expiry"), ("longest_ms", "longest call ms"),
                 ("metadata_rpcs", "metadata RPCs"), ("errors", "errors")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=64)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--ttl", type=int, default=3, help="token lifetime (s)")
    parser.add_argument("--duration", type=float, default=10.0, help="run length (s)")
    parser.add_argument("--rate", type=float, default=10.0, help="calls per second per process")
    parser.add_argument("--rate-limit", type=int, default=5, help="IdP token requests/s per client (0 = off)")
    parser.add_argument("--lock-ttl", type=float, default=10.0, help="redisLockTTL (s)")
    parser.add_argument("--outage", type=float, default=5.0, help="Redis outage (s) in section 3")
    parser.add_argument("--outage-run", type=float, help="run length (s) of section 3 (default: --duration)")
    parser.add_argument("--freeze", type=float, default=2.0, help="Redis frozen (SIGSTOP) this long in section 3b")
    parser.add_argument("--discovery-procs", type=int, default=16)
    parser.add_argument("--sections", default="fleet,limited,kill,outage,freeze,failover,discovery,hotpath")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--limit-all", action="store_true",
                        help="run every section against the rate-limited IdP (one IdP; for the short test version)")
    parser.add_argument("--json", help="also write every number to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sections = set(args.sections.split(","))
    configs = [c for c in args.configs.split(",") if c]
    _preload()
    report: dict[str, Any] = {"args": vars(args)}
    print(f"fleet: {args.procs} processes on {args.hosts} hosts, {args.ttl} s tokens, {args.duration:g} s runs, "
          f"{args.rate:g} calls/s each; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    with Fleet(args.ttl, rate_limit=args.rate_limit if args.limit_all else 0, lock_ttl=args.lock_ttl) as fleet:
        if "fleet" in sections:
            rows = [(c, run_fleet(fleet, c, args.procs, args.hosts, args.duration, args.rate)) for c in configs]
            report["fleet"] = dict(rows)
            title = f"IdP limited to {args.rate_limit} token requests/s" if args.limit_all else "no rate limit"
            print(table(f"\n1. Fleet, {title}", _with_ratio(rows), [*FLEET_COLUMNS, ("ratio", "vs none")]),
                  flush=True)
        if "kill" in sections:
            row = run_kill(fleet, args.procs, args.hosts, args.duration + args.lock_ttl, args.rate)
            report["kill"] = row
            print(table("\n2. Lock holder SIGKILLed mid-refresh (redis; survivors only)", [("redis", row)],
                        [("killed_pid", "killed pid"), ("recovered_s", "new token after (s)"),
                         ("bound_s", "bound: lock TTL + IdP RTT (s)"), ("failed_calls", "failed calls"),
                         ("token_requests", "token reqs"), ("p99_ms", "p99 ms"),
                         ("longest_ms", "longest call ms")]), flush=True)
        if "outage" in sections:
            row = run_outage(fleet, args.procs, args.hosts, args.outage_run or args.duration, args.rate, args.outage)
            report["outage"] = row
            print(table(f"\n3. Redis stopped for {args.outage:g} s mid-run (token requests per refresh interval; "
                        f"{args.hosts} hosts)", [("redis", row)],
                        [("before", "before"), ("during", "during outage"), ("after", "after"),
                         ("failed_calls", "failed calls"), ("token_requests", "token reqs"),
                         ("p99_ms", "p99 ms"), ("longest_ms", "longest call ms")]), flush=True)
        if "freeze" in sections:
            row = run_freeze(fleet, args.procs, args.hosts, args.outage_run or args.duration, args.rate, args.freeze)
            report["freeze"] = row
            print(table(f"\n3b. Redis frozen (SIGSTOP) for {args.freeze:g} s mid-run", [("redis", row)],
                        [("failed_calls", "failed calls"), ("token_requests", "token reqs"), ("p99_ms", "p99 ms"),
                         ("longest_ms", "longest call ms")]), flush=True)
        if "failover" in sections:
            rows = [(kind, run_failover(fleet, args.procs, args.hosts, args.duration, args.rate, kind))
                    for kind in ("sentinel", "cluster")]
            report["failover"] = dict(rows)
            print(table("\n3c. Redis master SIGKILLed mid-run (Sentinel: master + replica + 3 sentinels; Cluster: "
                        "3 masters + 3 replicas)", rows,
                        [("failover_s", "failover s"), ("failed_calls", "failed calls"),
                         ("per_refresh_interval", "token reqs per refresh interval"), ("p99_ms", "p99 ms"),
                         ("longest_ms", "longest call ms")]), flush=True)
        if "discovery" in sections:
            rows = [(c, run_fleet(fleet, c, args.discovery_procs, args.hosts, 1.0, 2.0)) for c in configs]
            report["discovery"] = dict(rows)
            print(table(f"\n4. Discovery: {args.discovery_procs} processes starting at once", rows,
                        [("metadata_rpcs", "metadata RPCs"), ("token_requests", "token reqs"),
                         ("failed_calls", "failed calls")]), flush=True)
        if "hotpath" in sections:
            row = run_hot_path(fleet)
            report["hotpath"] = row
            print(f"\n5. Hot path: metadata() {row.get('memory')} ns with the memory store, {row.get('redis')} ns "
                  f"with redis (ratio {row.get('ratio')}); Redis commands during the "
                  f"measurement: {row.get('redis_commands_during')} (in {row.get('fresh_rounds')} rounds of 200,000 "
                  "calls with a fresh token)", flush=True)
    if "limited" in sections and not args.limit_all:
        with Fleet(args.ttl, rate_limit=args.rate_limit, lock_ttl=args.lock_ttl) as limited:
            rows = [(c, run_fleet(limited, c, args.procs, args.hosts, args.duration, args.rate)) for c in configs]
            report["limited"] = dict(rows)
            print(table(f"\n1b. Fleet, IdP limited to {args.rate_limit} token requests/s per client",
                        _with_ratio(rows), [*FLEET_COLUMNS, ("ratio", "vs none")]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _with_ratio(rows: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    base = dict(rows).get("none", {}).get("token_requests")
    for _, row in rows:
        if base:
            row["ratio"] = f"{row['token_requests'] / base:.3f}x"
    return rows


if __name__ == "__main__":
    sys.exit(main())
