"""flyte 2.x (the real ``flyte`` package) with ``authType: ExternalCommand`` and ``command: [flyteauth, token]``:
N processes calling ``IdentityService.UserInfo`` for S seconds of T-second tokens.

    .venv/bin/python benchmarks/flyte_helper.py [--processes 8] [--seconds 10] [--ttl 3]

Peers: the real test IdP (tests/idp, node) and a Connect server (connectrpc ASGI + flyteidl2 stubs behind
uvicorn, tests/_connect_server.py) over TLS with a throwaway CA (flyte 2.x sends no auth to a plaintext
endpoint).  The helper discovers the token endpoint over Connect (no tokenUrl in the config).

Two runs in the same invocation: the helper's cache shared by all processes (how it is installed), and a
cache per process (the baseline: what N independent token commands cost, one IdP request per process per
expiry).  Goal: shared <= N IdP token requests, 0 failed calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._connect_server import ConnectTestServer  # noqa: E402
from tests._idp import CI_BASIC, IdpServer, make_test_ca  # noqa: E402
from tests.conftest import jwt_validator  # noqa: E402
from tests.test_flyte2_helper import flyte_config, run_flyte  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ttl", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    errors: set[str] = set()
    with IdpServer(token_ttl=args.ttl) as idp:
        for label, shared in (("shared helper cache", True), ("one cache per process (baseline)", False)):
            idp.reset()
            with tempfile.TemporaryDirectory() as tmp:
                ca, cert, key = make_test_ca(Path(tmp) / "ca")
                with ConnectTestServer(jwt_validator(idp), token_endpoint=idp.token_endpoint,
                                       tls=(str(cert), str(key))) as server:
                    results = run_flyte(Path(tmp), flyte_config(Path(tmp), server, ca), args.processes,
                                        args.seconds, shared_cache=shared)
                    rows.append((label, idp.token_request_count(CI_BASIC[0]), server.stats["rejected"],
                                 sum(int(r["calls"]) for r in results), sum(int(r["failed"]) for r in results)))
                    errors.update(str(e) for r in results for e in r["errors"])  # type: ignore[attr-defined]
    print(f"## flyte 2.x + `flyteauth token`: {args.processes} processes, {args.seconds:g} s of {args.ttl} s tokens\n")
    print("| helper cache | IdP token requests | UNAUTHENTICATED replies (retried by flyte) | calls | failed |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    for error in sorted(errors):
        print(f"\nfailed call: {error}")
    shared_requests, failed = rows[0][1], rows[0][4]
    ok = shared_requests <= args.processes and failed == 0
    print(f"\nshared cache: {shared_requests} IdP requests (goal <= {args.processes}), {failed} failed calls: "
          f"{'ok' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
