"""Child process for the cold-start section of ``run.py``: make one authenticated call, report timings.

    python benchmarks/_coldstart_child.py flyteauth CONFIG.yaml METHOD [--hide=trio]
    python benchmarks/_coldstart_child.py raw TARGET METHOD      # token in $BENCH_STATIC_TOKEN

Prints one JSON line with ``time.perf_counter()`` stamps (CLOCK_MONOTONIC on Linux, so comparable with
the parent's) after the call returned, the process's CPU time at that moment, and whether an HTTP client
or an OAuth library was imported.  The flyteauth child takes the steps of a first call one by one, so each
phase has its own stamp; together they are the work ``session.channel()``'s first call does:

* imports: ``from flyteauth_core import AuthSession, load_config``;
* config: ``load_config(CONFIG)`` (the YAML, plugin keys, secrets named by path are not read yet);
* plugins: ``AuthSession(config)`` wired (the provider, the token store and the extra interceptors resolved
  through the entry points);
* store read: the token store's ``load`` (a stored token, or nothing);
* discovery: the server's auth metadata (from the discovery cache of the store, or 2 RPCs);
* token request: the provider's request to the IdP (nothing when the stored token is valid);
* first RPC: ``session.channel()`` and the call itself.

Kept free of heavy imports before the first stamp.
"""

import time

T_START = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

#: Modules whose presence after the call says an HTTP client or an OAuth library was loaded.
WATCHED = ("httpx2", "httpcore2", "authlib", "yaml", "google.protobuf", "importlib.metadata", "pluggy")


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def flyteauth(config_path: str, method: str, stamps: dict[str, float]) -> tuple[bytes, dict[str, object]]:
    from flyteauth_core import AuthSession, load_config

    stamps["imported"] = time.perf_counter()
    config = load_config(config_path)
    stamps["config"] = time.perf_counter()
    session = AuthSession(config)
    manager = session.manager  # wires the session: provider, store, interceptors from the plugins
    stamps["plugins"] = time.perf_counter()
    stored = session.store.load(manager._store_key) if session.store is not None else None
    stamps["store read"] = time.perf_counter()
    session._server_info()  # discovery: the store's discovery cache, else the server
    stamps["discovery"] = time.perf_counter()
    token = session.get_token()  # the stored token (loaded again, from the OS cache) or a token request
    stamps["token request"] = time.perf_counter()
    reply = session.channel().unary_unary(method)(b"cold-start", timeout=30)
    stamps["called"] = time.perf_counter()
    extra: dict[str, object] = {"token_requests": session.stats.token_requests,
                                "stored_token_used": stored is not None and stored.access_token == token.access_token}
    session.close()
    return reply, extra


def raw(target: str, method: str, stamps: dict[str, float]) -> tuple[bytes, dict[str, object]]:
    import grpc

    stamps["imported"] = time.perf_counter()
    channel = grpc.insecure_channel(target)
    metadata = (("flyte-authorization", "Bearer " + os.environ["BENCH_STATIC_TOKEN"]),)
    reply = channel.unary_unary(method)(b"cold-start", timeout=30, metadata=metadata)
    stamps["called"] = time.perf_counter()
    channel.close()
    return reply, {}


def main() -> None:
    mode, where, method = sys.argv[1:4]
    for arg in sys.argv[4:]:  # --hide=trio: as if not installed (a dependency of the test tools only)
        if arg.startswith("--hide="):
            for name in arg[len("--hide="):].split(","):
                sys.modules[name] = None  # type: ignore[assignment]
    stamps = {"start": T_START}
    if mode == "flyteauth":
        reply, extra = flyteauth(where, method, stamps)
    elif mode == "raw":
        reply, extra = raw(where, method, stamps)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    cpu = cpu_ms()
    assert reply == b"cold-start", reply
    loaded = sorted({w for w in WATCHED for m in sys.modules if m == w or m.startswith(w + ".")})
    print(json.dumps({"stamps": stamps, "cpu_ms": cpu, "loaded": loaded, **extra}), flush=True)


if __name__ == "__main__":
    main()
