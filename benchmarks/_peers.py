"""Loopback peers for the benchmarks: a DemoTokenEndpoint and a FlyteTestServer validating its tokens.

Imported by ``run.py`` (in-process peers), or run as a script to host the peers in a separate process so
that server-side Python work does not compete with the measured client for the GIL::

    python benchmarks/_peers.py --ttl 3600     # prints one JSON line, serves until stdin closes
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flyteauth_core.testing import DemoTokenEndpoint, FlyteTestServer

CLIENT_ID = "flyteauth-bench"
CLIENT_SECRET = "bench-secret"  # a throwaway secret for a loopback demo endpoint


def reject_every_token(token: str) -> str:
    """A server that accepts no token (wrong audience, clock skew, wrong header key...)."""
    return "wrong audience"


class Peers:
    """A started token endpoint plus a Flyte test server whose discovery points at it."""

    def __init__(self, ttl: float, max_workers: int = 16, reject_all: bool = False) -> None:
        self.endpoint = DemoTokenEndpoint(CLIENT_ID, CLIENT_SECRET, ttl=ttl).start()
        try:
            self.server = FlyteTestServer(
                reject_every_token if reject_all else self.endpoint.validate, token_endpoint=self.endpoint.url,
                max_workers=max_workers,
            ).start()
        except BaseException:
            self.endpoint.stop()
            raise
        self.target = self.server.target

    def info(self) -> dict[str, Any]:
        return {"target": self.target, "token_url": self.endpoint.url, "ttl": self.endpoint.ttl}

    def close(self) -> None:
        self.server.stop()
        self.endpoint.stop()

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ttl", type=float, default=3600.0)
    args = parser.parse_args()
    with Peers(args.ttl) as peers:
        print(json.dumps(peers.info()), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or exits)


if __name__ == "__main__":
    main()
