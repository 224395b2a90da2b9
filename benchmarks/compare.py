"""flyteauth side by side with the existing Python clients, on the same loopback peers.

    python benchmarks/compare.py                 # flyteauth only
    python benchmarks/compare.py --with-others   # also flytekit and flyte 2.x, each in its own virtualenv
                                                 # under build/bench-venvs/ (created and pip-installed on first use),
                                                 # and beside them "flytekit + flyteauth" (authType: flyteauth) and
                                                 # "flyte 2.x + flyteauth helper" (ExternalCommand: flyteauth token)
                                                 # and "flyte 2.x + flyteauth session" (route (b): flyte's ClientSet
                                                 # from flyteauth_integrations.flyte.client_set),
                                                 # run in this venv (pip install -e '.[test]' brings both SDKs)

Each client runs in a child process (``_client_driver.py``, with its own venv's python) against one
DemoTokenEndpoint + FlyteTestServer in this process (``_peers.Peers``; for flyte 2.x, which speaks
ConnectRPC over HTTP, a DemoTokenEndpoint + ``_connect_server.ConnectTestServer``); counters are read at the
child's ``mark`` points.  Output: one markdown table, metric | flyteauth | flytekit | flyte 2.x.  A client that
cannot be installed or driven gets the reason in its column; the others carry on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from _connect_server import ConnectPeers  # noqa: E402
from _peers import CLIENT_ID, CLIENT_SECRET, Peers  # noqa: E402

VENVS = ROOT / "build" / "bench-venvs"
OTHERS = {"flytekit": "flytekit", "flyte 2.x": "flyte>=2,<3"}
IMPORTS = {"flyteauth": "from flyteauth_core import AuthSession",
           "flytekit": "from flytekit.clients.auth_helper import upgrade_channel_to_authenticated",
           "flyte 2.x": "from flyte.remote._client.controlplane import ClientSet",
           "flytekit + flyteauth": "from flytekit.clients.auth_helper import upgrade_channel_to_authenticated; "
                                   "import flyteauth_integrations.flytekit",
           "flyte 2.x + flyteauth helper": "from flyte.remote._client.controlplane import ClientSet",
           "flyte 2.x + flyteauth session": "from flyte.remote._client.controlplane import ClientSet; "
                                            "import flyteauth_integrations.flyte, flyteauth_core.transports.connect"}
#: flyteauth inside the SDKs, driven in this venv: column -> _client_driver client
EMBEDDED = {"flytekit + flyteauth": "flytekit+flyteauth", "flyte 2.x + flyteauth helper": "flyte+helper",
            "flyte 2.x + flyteauth session": "flyte+session"}
#: the _client_driver clients that speak ConnectRPC (flyte 2.x)
CONNECT_CLIENTS = ("flyte", "flyte+helper", "flyte+session")


class Unsupported(Exception):
    pass


def ensure_venv(name: str, requirement: str) -> Path:
    venv = VENVS / name.split(maxsplit=1)[0]
    python = venv / "bin" / "python"
    if not python.exists():
        VENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    module = requirement.split(">", maxsplit=1)[0].split("=", maxsplit=1)[0]
    probe = subprocess.run([str(python), "-c", f"import {module}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
                              capture_output=True, text=True, check=False, timeout=1200)
        if proc.returncode != 0:
            raise Unsupported(f"pip install {requirement} failed: {proc.stderr.strip()[-200:]}")
    return python


def version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "?"


class Driver:
    """One run of ``_client_driver.py``: reads JSON lines, snapshots counters at each mark."""

    def __init__(self, python: Path, client: str, phase: str, peers: Peers | ConnectPeers,
                 env: dict[str, str]) -> None:
        self.peers = peers
        self.marks: dict[str, dict[str, int]] = {"spawn": self.counters()}
        self.data: dict[str, Any] = {}
        started = time.perf_counter()
        proc = subprocess.Popen([str(python), str(HERE / "_client_driver.py"), client, phase, peers.target, CLIENT_ID,
                                 CLIENT_SECRET], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                "BENCH_TOKEN_URL": peers.endpoint.url, **env})
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for line in proc.stdout:
                msg = json.loads(line)
                if "mark" in msg:
                    self.marks[msg["mark"]] = self.counters()
                    self.marks[msg["mark"]]["at_ms"] = int((time.perf_counter() - started) * 1e3)
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                else:
                    self.data.update(msg)
            _, err = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        if proc.returncode != 0:
            last = err.strip().splitlines()[-1][:200] if err.strip() else f"exit {proc.returncode}"
            raise Unsupported(f"{phase} failed: {last}")

    def counters(self) -> dict[str, int]:
        stats = self.peers.server.stats
        discovery = sum(v for k, v in stats.items() if k.startswith("discovery_"))
        return {"tokens": self.peers.endpoint.requests, "calls": stats["calls"], "rejected": stats["rejected"],
                "discovery": discovery}

    def delta(self, a: str, b: str, key: str) -> int:
        return self.marks[b][key] - self.marks[a][key]


def import_ms(python: Path, statement: str, runs: int = 3) -> float:
    def once(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, capture_output=True, env={**os.environ,
                                                                                       "PYTHONPATH": str(ROOT)})
        return (time.perf_counter() - t) * 1e3

    return statistics.median(once(statement) for _ in range(runs)) - statistics.median(once("pass")
                                                                                         for _ in range(runs))


def static_token(peers: Peers | ConnectPeers) -> str:
    """One token from the peers' DemoTokenEndpoint, for the raw baseline's static header."""
    if isinstance(peers, Peers):
        from flyteauth_core import AuthConfig, AuthSession

        with AuthSession(AuthConfig(endpoint=peers.target, insecure=True, auth_type="ClientSecret",
                                    client_id=CLIENT_ID, client_secret=CLIENT_SECRET)) as s:
            return str(s.get_token().access_token)
    import base64
    import urllib.request

    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    req = urllib.request.Request(peers.endpoint.url, data=b"grant_type=client_credentials",
                                 headers={"authorization": f"Basic {basic}",
                                          "content-type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback DemoTokenEndpoint
        return str(json.load(resp)["access_token"])


def measure(name: str, python: Path, client: str, expiry_seconds: float,
            reject_seconds: float = 10.0) -> dict[str, str]:
    col: dict[str, str] = {}
    connect = client in CONNECT_CLIENTS  # flyte 2.x: ConnectRPC over HTTP/1.1, served by _connect_server
    # flyte 2.x is async-only: its thread rows run every call on one background event loop (like syncify)
    via_loop = " (threads share one event loop)" if connect else ""

    def peers_for(ttl: float, max_workers: int = 64, reject_all: bool = False) -> Peers | ConnectPeers:
        if connect:
            return ConnectPeers(CLIENT_ID, CLIENT_SECRET, ttl=ttl, reject_all=reject_all)
        return Peers(ttl=ttl, max_workers=max_workers, reject_all=reject_all)

    def run(phase: str, ttl: float, reject_all: bool = False, **env: str) -> Driver:
        with peers_for(ttl, reject_all=reject_all) as peers:
            return Driver(python, client, phase, peers, env)

    def attempt(label: str, fn: Any) -> None:
        try:
            fn()
        except Unsupported as exc:
            col[label] = f"n/a: {exc}"
        except Exception as exc:  # report and carry on with the next metric
            col[label] = f"error: {type(exc).__name__}: {str(exc)[:120]}"

    aio_label = "256 cold coroutines: token requests (rejected, failed, s)"

    def overhead() -> None:
        with peers_for(3600.0, max_workers=16) as peers:
            d = Driver(python, client, "overhead", peers, {"BENCH_STATIC_TOKEN": static_token(peers)})
        col["per-call overhead vs raw static header (µs; ratio)"] = (
            f"{d.data['overhead_us']:+.1f} ({d.data['ratio']:.3f}; raw {d.data['raw_us']:.0f} µs)")

    def cold() -> None:
        d = run("cold", 3600.0)
        col["spawn to first call (ms)"] = f"{d.data['first_call_ms']:.0f}"
        col["cold start: RPCs (discovery + calls incl. rejected) / token requests"] = (
            f"{d.delta('spawn', 'cold', 'discovery') + d.delta('spawn', 'cold', 'calls')} / "
            f"{d.delta('spawn', 'cold', 'tokens')}")
        col["warm (next call): RPCs / token requests"] = (
            f"{d.delta('cold', 'warm', 'discovery') + d.delta('cold', 'warm', 'calls')} / "
            f"{d.delta('cold', 'warm', 'tokens')}")

    def storm() -> None:
        d = run("storm", 3600.0)
        col["32 cold threads: token requests (rejected, failed, s)"] = (
            f"{d.delta('start', 'done', 'tokens')} ({d.delta('start', 'done', 'rejected')} rejected, "
            f"{d.data['errors']} failed, {d.data['seconds']:.2f} s){via_loop}")

    def expired_storm() -> None:
        d = run("expired_storm", 2.0, BENCH_TTL="2")
        col["32 threads on an expired token: token requests (rejected, failed)"] = (
            f"{d.delta('start', 'done', 'tokens')} ({d.delta('start', 'done', 'rejected')} rejected, "
            f"{d.data['errors']} failed){via_loop}")

    def storm_aio() -> None:
        if client.startswith("flytekit"):
            raise Unsupported("no grpc.aio support in this client")
        d = run("storm_aio", 3600.0)
        col[aio_label] = (
            f"{d.delta('spawn', 'done', 'tokens')} ({d.delta('spawn', 'done', 'rejected')} rejected, "
            f"{d.data['errors']} failed, {d.data['seconds']:.2f} s)")

    def expiry() -> None:
        d = run("expiry", 3.0, BENCH_SECONDS=str(expiry_seconds))
        col[f"{expiry_seconds:g} s of 3-s tokens: UNAUTHENTICATED replies / slow calls >50 ms / failed"] = (
            f"{d.delta('start', 'done', 'rejected')} / {d.data['slow']} of {d.data['calls']} / {d.data['failed']} "
            f"(worst {d.data['worst_ms']:.0f} ms; {d.delta('start', 'done', 'tokens')} token requests)")

    def rejection_storm() -> None:
        # The server rejects every token (wrong audience): how many IdP requests does the client make?
        d = run("reject_storm", 3600.0, reject_all=True, BENCH_SECONDS=str(reject_seconds))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(d.data["errors"].items(), key=lambda kv: -kv[1])[:3])
        col[f"server rejects every token, 16 threads x {reject_seconds:g} s: token requests (calls; errors)"] = (
            f"{d.delta('start', 'done', 'tokens')} ({d.data['calls']} calls; {errors}){via_loop}")

    def imports() -> None:
        col["import time (ms)"] = f"{import_ms(python, IMPORTS[name]):.0f}"

    for label, fn in [("overhead", overhead), ("storm", storm), ("expired", expired_storm), (aio_label, storm_aio),
                      ("expiry", expiry), ("cold", cold), ("rejections", rejection_storm), ("imports", imports)]:
        attempt(label, fn)
    return col


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-others", action="store_true", help="also install and measure flytekit and flyte 2.x")
    parser.add_argument("--expiry-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    columns: dict[str, dict[str, str]] = {}
    started = time.perf_counter()
    ours = Path(sys.executable)
    columns["flyteauth"] = {"version": version(ours, "flyteauth"),
                            **measure("flyteauth", ours, "flyteauth", args.expiry_seconds)}
    if args.with_others:
        for name, requirement in OTHERS.items():
            try:
                python = ensure_venv(name, requirement)
            except (Unsupported, subprocess.SubprocessError, OSError) as exc:
                columns[name] = {"version": f"not installed: {exc}"}
                continue
            dist = requirement.split(">")[0].split("=")[0]
            columns[name] = {"version": version(python, dist)}
            # flyte 2.x speaks ConnectRPC over HTTP (pyqwest), not gRPC: driven against _connect_server instead.
            columns[name].update(measure(name, python, "flytekit" if name == "flytekit" else "flyte",
                                         args.expiry_seconds))
            for embedded in (e for e in EMBEDDED if e.startswith(name + " ")):
                columns[embedded] = {"version": f"{version(ours, dist)} + flyteauth {version(ours, 'flyteauth')}"}
                columns[embedded].update(measure(embedded, ours, EMBEDDED[embedded], args.expiry_seconds))
    names = list(columns)
    if not args.with_others:
        names = ["flyteauth"]
    metrics: list[str] = []
    for col in columns.values():
        metrics += [m for m in col if m not in metrics]
    from run import table

    print(f"\n## flyteauth vs existing clients (loopback; {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s)\n")
    print(table(["metric", *names], [[m, *(columns.get(n, {}).get(m, "") for n in names)] for m in metrics]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
