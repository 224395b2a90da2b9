"""What passing the caller's deadline costs on the fresh-token path (issue 16, item 6).

    python benchmarks/deadline_cost.py

CPU ns per call (``time.process_time``, best of 5) over the stub channels of ``run.py`` (they answer at
once, so only the wrapper's Python is measured), with and without a ``timeout=``.  Without one, the
wrappers pass ``None`` down; with one, the call reads the clock once more to hand the RPC what the wait
for the token left.  Run it against two checkouts (e.g. ``git stash``) to compare.
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(1, str(HERE.parent))

from run import PAYLOAD, UNARY, _StubAioChannel, _StubChannel  # noqa: E402

from flyteauth_core import AuthConfig, AuthSession  # noqa: E402
from flyteauth_core.testing import DemoTokenEndpoint  # noqa: E402
from flyteauth_core.transports.grpc_aio import AioAuthChannel  # noqa: E402
from flyteauth_core.transports.grpc_sync import AuthChannel  # noqa: E402

N = 100_000


def _ns(fn: Any) -> float:
    return min(timeit.Timer(fn, timer=time.process_time).repeat(repeat=5, number=N)) / N * 1e9


async def _aio_ns(multicallable: Any, timeout: float | None) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(N // 5):
            await multicallable(PAYLOAD, timeout=timeout)
        best = min(best, (time.process_time() - started) / (N // 5) * 1e9)
    return best


def main() -> None:
    with DemoTokenEndpoint("bench", "bench-secret", ttl=3600) as idp:
        config = AuthConfig(endpoint="dns:///127.0.0.1:1", insecure=True, auth_type="ClientSecret",
                            client_id="bench", client_secret="bench-secret", token_url=idp.url,
                            authorization_header="flyte-authorization")
        with AuthSession(config) as session:
            session.get_token()
            sync = AuthChannel(_StubChannel(), session.interceptor).unary_unary(UNARY)
            aio_call = AioAuthChannel(_StubAioChannel(), session.interceptor).unary_unary(UNARY)
            rows = {
                "session.interceptor.metadata()": _ns(session.interceptor.metadata),
                "AuthChannel over a stub, no timeout": _ns(lambda: sync(PAYLOAD)),
                "AuthChannel over a stub, timeout=30": _ns(lambda: sync(PAYLOAD, timeout=30)),
                "AioAuthChannel over a stub, no timeout": asyncio.run(_aio_ns(aio_call, None)),
                "AioAuthChannel over a stub, timeout=30": asyncio.run(_aio_ns(aio_call, 30)),
            }
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:{width}}  {value:7.0f} ns")


if __name__ == "__main__":
    main()
