"""Child process for the cold-start section of ``run.py``: make one authenticated call, report timings.

    python benchmarks/_coldstart_child.py flyteauth CONFIG.yaml METHOD
    python benchmarks/_coldstart_child.py raw TARGET METHOD      # token in $FLYTEAUTH_BENCH_TOKEN

Prints one JSON line with ``time.perf_counter()`` stamps (CLOCK_MONOTONIC on Linux, so comparable with
the parent's) after the call returned.  Kept free of heavy imports before the first stamp.
"""

import time

T_START = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    mode, where, method = sys.argv[1:4]
    stamps = {"start": T_START}
    if mode == "flyteauth":
        from flyteauth_core import AuthSession, load_config

        stamps["imported"] = time.perf_counter()
        session = AuthSession(load_config(where))
        stamps["session"] = time.perf_counter()
        reply = session.channel().unary_unary(method)(b"cold-start", timeout=30)
        stamps["called"] = time.perf_counter()
        extra = {"token_requests": session.stats.token_requests}
    elif mode == "raw":
        import grpc

        stamps["imported"] = time.perf_counter()
        channel = grpc.insecure_channel(where)
        stamps["session"] = time.perf_counter()
        metadata = (("flyte-authorization", "Bearer " + os.environ["FLYTEAUTH_BENCH_TOKEN"]),)
        reply = channel.unary_unary(method)(b"cold-start", timeout=30, metadata=metadata)
        stamps["called"] = time.perf_counter()
        extra = {}
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    assert reply == b"cold-start", reply
    print(json.dumps({"stamps": stamps, **extra}), flush=True)
    if mode == "flyteauth":
        session.close()
    else:
        channel.close()


if __name__ == "__main__":
    main()
