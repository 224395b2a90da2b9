"""Child process for ``run.py --callgrind``: one grpc.aio variant, N sequential calls, nothing else.

    python benchmarks/_aio_child.py VARIANT N TARGET

VARIANT: ``raw`` (a static header), ``aio_channel`` (``session.aio_intercept(raw)``), ``aio_interceptors``
(``aio.insecure_channel(interceptors=session.aio_interceptors())``).  The parent runs it under
``valgrind --tool=callgrind --separate-threads=yes`` for two values of N: the difference of the event-loop
thread's instruction counts divided by the difference of N is the instructions one call costs there,
start-up and warm-up cancelled.  Instruction counts move far less than time with other load.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _peers import CLIENT_ID, CLIENT_SECRET
from grpc import aio

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO

PAYLOAD = b"flyteauth-bench-payload"
WARMUP = 200


async def main(variant: str, n: int, target: str) -> None:
    session = AuthSession(AuthConfig(endpoint=target, insecure=True, auth_type="ClientSecret",
                                     client_id=CLIENT_ID, client_secret=CLIENT_SECRET), interactive=False)
    static = (("flyte-authorization", (await session.get_token_async()).authorization),)
    if variant == "raw":
        channel = aio.insecure_channel(target)
        call, metadata = channel.unary_unary(ECHO["unary"]), static
    elif variant == "aio_channel":
        channel = aio.insecure_channel(target)
        call, metadata = session.aio_intercept(channel).unary_unary(ECHO["unary"]), None
    elif variant == "aio_interceptors":
        channel = aio.insecure_channel(target, interceptors=session.aio_interceptors())
        call, metadata = channel.unary_unary(ECHO["unary"]), None
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    if metadata is None:
        for _ in range(WARMUP + n):
            await call(PAYLOAD)
    else:
        for _ in range(WARMUP + n):
            await call(PAYLOAD, metadata=metadata)
    await channel.close()
    session.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
