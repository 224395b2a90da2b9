"""``flyteauth token`` as a credential helper: warm-path spawn-to-exit time, and cold single flight.

    .venv/bin/python benchmarks/token_helper.py [--runs 30] [--processes 16]

1. Warm path.  Spawn-to-exit wall time of a process, interleaved round by round so load drift hits all
   variants alike: ``python -c pass`` and ``python -c "import grpc"`` (the baselines), and
   ``flyteauth token`` (the installed console script) answering from its cache.  Goal: the warm helper
   within 1.5x ``import grpc``.
2. Cold single flight.  N concurrent ``flyteauth token`` processes on an empty cache: IdP token requests
   (goal: 1) and how long the slowest took.

Peers: ``flyteauth_core.testing.DemoTokenEndpoint`` on 127.0.0.1 (tokens live 1 h, so the cache stays warm);
the config names ``tokenUrl`` and ``authorizationHeader``, so no Flyte server is involved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flyteauth_core.testing import DemoTokenEndpoint  # noqa: E402

CLIENT_ID, SECRET = "bench-helper", "bench-helper-secret-7f3a"
HELPER = Path(sys.executable).with_name("flyteauth")


def spawn(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--processes", type=int, default=16)
    args = parser.parse_args(argv)
    if not HELPER.exists():
        raise SystemExit(f"{HELPER} not found: install flyteauth into this venv (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp, DemoTokenEndpoint(CLIENT_ID, SECRET, ttl=3600) as idp:
        (Path(tmp) / "secret").write_text(SECRET)
        config = Path(tmp) / "config.yaml"
        config.write_text(f"admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n"
                          f"  clientId: {CLIENT_ID}\n  clientSecretLocation: {Path(tmp) / 'secret'}\n"
                          f"  tokenUrl: {idp.url}\n  authorizationHeader: authorization\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
        env.update(FLYTEAUTH_TOKEN_DIR=str(Path(tmp) / "tokens"), FLYTECTL_CONFIG=str(config), HOME=tmp)

        # 2. cold single flight (first, while the cache is empty)
        started = time.perf_counter()
        procs = [subprocess.Popen([str(HELPER), "token"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(args.processes)]
        codes = [proc.wait(120) for proc in procs]
        cold_s = time.perf_counter() - started
        cold_requests = idp.requests

        # 1. warm path, interleaved
        variants = {"python -c pass": [sys.executable, "-c", "pass"],
                    'python -c "import grpc"': [sys.executable, "-c", "import grpc"],
                    "flyteauth token (warm)": [str(HELPER), "token"]}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for command in variants.values():  # one untimed run each: page cache, .pyc
            spawn(command, env)
        for i in range(args.runs):
            order = list(variants.items())
            order = order[i % len(order):] + order[:i % len(order)]
            for name, command in order:
                times[name].append(spawn(command, env))
        warm_requests = idp.requests - cold_requests

    base = statistics.median(times['python -c "import grpc"'])
    print(f"## flyteauth token: warm path ({args.runs} runs each, interleaved; median spawn-to-exit)\n")
    print("| variant | median ms | min ms | ratio to import grpc |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.1f} | {min(values) * 1e3:.1f} | "
              f"{statistics.median(values) / base:.2f} |")
    ratio = statistics.median(times["flyteauth token (warm)"]) / base
    print(f"\nwarm helper / import grpc = {ratio:.2f} (goal <= 1.5: {'ok' if ratio <= 1.5 else 'MISS'}); "
          f"IdP requests during the warm runs: {warm_requests} (goal 0)\n")
    print(f"## cold cache: {args.processes} concurrent `flyteauth token` processes\n")
    print(f"IdP token requests: {cold_requests} (goal 1); exit codes: {sorted(set(codes))}; "
          f"all done after {cold_s * 1e3:.0f} ms")
    return 0 if cold_requests == 1 and warm_requests == 0 and set(codes) == {0} else 1


if __name__ == "__main__":
    sys.exit(main())
