"""flyte 2.x's two flyteauth routes beside bare flyte 2.x, same workload, one run, one table.

    .venv/bin/python benchmarks/flyte_routes.py [--expiry-seconds 10]

Columns (all in this venv, which has flyte 2.x; each client in its own child process, ``_client_driver.py``):

* ``flyte 2.x``: flyte's own ClientSecret auth (``ClientSet.for_endpoint(auth_type="ClientSecret")``, what
  ``flyte.init`` builds) -- the baseline;
* route (a) ``flyte 2.x + flyteauth helper``: ``authType: ExternalCommand``, ``command: [flyteauth, token]``;
* route (b) ``flyte 2.x + flyteauth session``: flyte's ClientSet from
  ``flyteauth_integrations.flyte.client_set(AuthSession(...))``.

Peers: ``DemoTokenEndpoint`` and the Connect test server (connectrpc ASGI + flyteidl2 stubs behind uvicorn,
plaintext HTTP/1.1 on 127.0.0.1; token requests and UNAUTHENTICATED replies are counted server-side).  The
rows are ``compare.py``'s: per-call overhead against a raw connectrpc client with a static header, cold
storms (threads on one event loop, and 256 coroutines), an expired-token storm, calls across expiries, a
server that rejects every token, cold start and import time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import EMBEDDED, measure, version  # noqa: E402
from run import table  # noqa: E402

COLUMNS = {"flyte 2.x": "flyte", "flyte 2.x + flyteauth helper": EMBEDDED["flyte 2.x + flyteauth helper"],
           "flyte 2.x + flyteauth session": EMBEDDED["flyte 2.x + flyteauth session"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expiry-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    python = Path(sys.executable)
    started = time.perf_counter()
    columns: dict[str, dict[str, str]] = {}
    for name, client in COLUMNS.items():
        columns[name] = {"version": f"flyte {version(python, 'flyte')}"
                                    + ("" if client == "flyte" else f" + flyteauth {version(python, 'flyteauth')}")}
        columns[name].update(measure(name, python, client, args.expiry_seconds))
        print(f"measured {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    metrics: list[str] = []
    for col in columns.values():
        metrics += [m for m in col if m not in metrics]
    print(f"\n## flyte 2.x: bare vs route (a) helper vs route (b) session (loopback; {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s)\n")
    print(table(["metric", *columns], [[m, *(col.get(m, "") for col in columns.values())] for m in metrics]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
