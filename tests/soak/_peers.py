"""Soak peers in a child process: a DemoTokenEndpoint and a FlyteTestServer validating its tokens.

    python -m tests.soak._peers --ttl 2

Prints ``{"target": ...}``; then answers each ``stats`` line on stdin with one JSON line (token requests
served, RPCs, rejections) and exits when stdin closes.  A separate process keeps the server's threads and
sockets out of the soaked client's thread and fd counts, and out of its GIL.
"""

from __future__ import annotations

import argparse
import json
import sys

from flyteauth_core.testing import DemoTokenEndpoint, FlyteTestServer

CLIENT_ID = "soak-client"
CLIENT_SECRET = "soak-secret-0d9a7c41e2"  # a throwaway secret for a loopback demo endpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    with DemoTokenEndpoint(CLIENT_ID, CLIENT_SECRET, ttl=args.ttl) as endpoint, FlyteTestServer(
        endpoint.validate, token_endpoint=endpoint.url, max_workers=args.workers
    ) as server:
        print(json.dumps({"target": server.target}), flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                print(json.dumps({"token_requests": endpoint.requests, "calls": server.stats["calls"],
                                  "rejected": server.stats["rejected"]}), flush=True)


if __name__ == "__main__":
    main()
