"""Child process for ``compare.py``: drives one client library against the parent's loopback peers.

    <venv>/bin/python benchmarks/_client_driver.py CLIENT PHASE TARGET CLIENT_ID SECRET

CLIENT: ``flyteauth`` | ``flytekit`` | ``flyte`` (flyte 2.x; TARGET is then the ``http://`` URL of a
``_connect_server.ConnectTestServer``) | ``flytekit+flyteauth`` (flytekit with ``authType: flyteauth``, the
plugin of ``flyteauth[flytekit]``) | ``flyte+helper`` (flyte 2.x with ``authType: ExternalCommand`` running
``flyteauth token``; the helper's config names ``tokenUrl`` from ``$BENCH_TOKEN_URL``) | ``flyte+session`` (flyte
2.x's own ClientSet built by ``flyteauth_integrations.flyte.client_set(AuthSession(...))``: route (b)).  The
last three run in flyteauth's own venv (they need flyteauth and the SDK).
PHASE: ``overhead`` | ``storm`` | ``storm_aio`` | ``expired_storm`` | ``expiry`` | ``cold``.
Prints JSON lines; ``{"mark": name}`` lines wait for one line on stdin, so the parent
can read its counters at that instant.  Kept free of flyteauth imports for the other clients (their venvs
do not have it).
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

UNARY = "/flyteauth.demo.Echo/Unary"
#: flyte 2.x clients (ConnectRPC over HTTP, async-only)
FLYTE2 = ("flyte", "flyte+helper", "flyte+session")


def out(**data):
    print(json.dumps(data), flush=True)


def mark(name):
    out(mark=name)
    sys.stdin.readline()


def make_channel(client, target, client_id, secret):
    if client == "flyteauth":
        from flyteauth_core import AuthConfig, AuthSession

        session = AuthSession(AuthConfig(endpoint=target, insecure=True, auth_type="ClientSecret",
                                         client_id=client_id, client_secret=secret), interactive=False)
        return session.channel()
    if client == "flytekit":
        from flytekit.clients.auth_helper import get_channel, upgrade_channel_to_authenticated
        from flytekit.configuration import PlatformConfig

        cfg = PlatformConfig(endpoint=target, insecure=True, auth_mode="client_credentials", client_id=client_id,
                             client_credentials_secret=secret)
        return upgrade_channel_to_authenticated(cfg, get_channel(cfg))
    if client == "flytekit+flyteauth":
        # what a user writes: admin.authType names flytekit's hook, flyteauth: holds the real provider.
        # Before importing flytekit: it caches the config file it finds (lru_cache) for the process.
        write_flyteauth_config(target, client_id, secret, hook="flyteauth")
        from flytekit.clients.auth_helper import get_channel, upgrade_channel_to_authenticated
        from flytekit.configuration import PlatformConfig

        cfg = PlatformConfig(endpoint=target, insecure=True, auth_mode="flyteauth")
        return upgrade_channel_to_authenticated(cfg, get_channel(cfg))
    if client in FLYTE2:
        return FlyteChannel(target, client_id, secret, route=client)
    raise SystemExit(f"unknown client {client}")


def write_flyteauth_config(target, client_id, secret, *, hook=None):
    """A flytectl config for flyteauth (``FLYTECTL_CONFIG``) and a fresh token cache for this process.

    ``hook``: what ``admin.authType`` says for the SDK (``flyteauth``); the provider then goes in ``flyteauth:``.
    Without a hook (the credential helper), the provider is in ``admin:`` and ``tokenUrl`` comes from
    ``$BENCH_TOKEN_URL`` (the Connect peers serve discovery over Connect only)."""
    import tempfile

    tmp = tempfile.mkdtemp(prefix="flyteauth-bench-")
    secret_file = os.path.join(tmp, "secret")
    with open(secret_file, "w") as fh:
        fh.write(secret)
    provider = f"  authType: ClientSecret\n  clientId: {client_id}\n  clientSecretLocation: {secret_file}\n"
    if hook:
        text = f"admin:\n  endpoint: {target}\n  insecure: true\n  authType: {hook}\nflyteauth:\n{provider}"
    else:
        text = (f"admin:\n  endpoint: {target}\n  insecure: true\n{provider}"
                f"  tokenUrl: {os.environ['BENCH_TOKEN_URL']}\n  authorizationHeader: authorization\n")
    path = os.path.join(tmp, "config.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    os.environ["FLYTECTL_CONFIG"] = path
    os.environ["FLYTEAUTH_TOKEN_DIR"] = os.path.join(tmp, "tokens")


def helper_command():
    """``flyteauth token``: the console script beside this python (flyteauth's venv)."""
    return [os.path.join(os.path.dirname(sys.executable), "flyteauth"), "token"]


async def flyte_client_set(target, client_id, secret, route="flyte"):
    """flyte 2.x's own authenticated client stack (what ``flyte.init(endpoint=..., auth_type="ClientSecret")``
    builds: ``ClientSet.for_endpoint`` -> ``create_session_config`` -> pyqwest + DefaultMetadata, Auth and Retry
    interceptors).  Called directly because ``flyte.init`` rewrites ``http://`` to ``dns:///`` and flyte 2.x
    skips auth altogether when ``insecure=True``; an explicit ``http://`` URL with ``insecure=False`` keeps
    plaintext HTTP/1.1 *and* the auth interceptors."""
    from flyte.remote._client.controlplane import ClientSet

    if route == "flyte+session":  # route (b): flyte's ClientSet, its interceptors from one AuthSession
        from flyteauth_core import AuthConfig, AuthSession
        from flyteauth_integrations.flyte import client_set

        session = AuthSession(AuthConfig(endpoint=target, auth_type="ClientSecret", client_id=client_id,
                                         client_secret=secret, token_url=os.environ["BENCH_TOKEN_URL"],
                                         authorization_header="authorization"), interactive=False)
        return await client_set(session, rpc_retries=3)
    if route == "flyte+helper":  # flyte 2.x's ExternalCommand route: the helper's cache is shared by every process
        write_flyteauth_config(target, client_id, secret)
        return await ClientSet.for_endpoint(target, insecure=False, auth_type="ExternalCommand",
                                            command=helper_command(), rpc_retries=3)
    return await ClientSet.for_endpoint(target, insecure=False, auth_type="ClientSecret", client_id=client_id,
                                        client_credentials_secret=secret, rpc_retries=3)


class FlyteChannel:
    """Sync facade over flyte 2.x's async client, for the thread phases: every call runs on one background
    event loop (as flyte's ``syncify`` does), so threads share one authenticator."""

    def __init__(self, target, client_id, secret, route="flyte"):
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.clients = self._run(flyte_client_set(target, client_id, secret, route))
        from flyteidl2.auth.identity_pb2 import UserInfoRequest

        self._request = UserInfoRequest()

    def _run(self, coro, timeout=None):
        return self._asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def unary_unary(self, path):
        def call(_payload, timeout=None):
            return self._run(self.clients.identity_service.user_info(self._request), timeout)

        return call


async def flyte_overhead(target, client_id, secret, token, route="flyte"):
    """Per-call overhead of flyte 2.x's client vs a raw connectrpc client on its own pyqwest client, same
    event loop, with a static ``authorization`` header."""
    from flyte.remote._client.auth._session import _build_pyqwest_client
    from flyteidl2.auth.identity_connect import IdentityServiceClient
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    clients = await flyte_client_set(target, client_id, secret, route)
    flyte_call = clients.identity_service.user_info
    raw_call = IdentityServiceClient(address=target, http_client=_build_pyqwest_client()).user_info
    req = UserInfoRequest()
    static = {"authorization": "Bearer " + token}
    await flyte_call(req)
    for _ in range(300):
        await raw_call(req, headers=static)
        await flyte_call(req)
    raw_s, client_s = [], []
    for _ in range(30):
        t = time.perf_counter()
        for _ in range(200):
            await raw_call(req, headers=static)
        raw_s.append((time.perf_counter() - t) / 200)
        t = time.perf_counter()
        for _ in range(200):
            await flyte_call(req)
        client_s.append((time.perf_counter() - t) / 200)
    return raw_s, client_s


def overhead_result(raw_s, client_s):
    diffs = [c - r for c, r in zip(client_s, raw_s, strict=True)]
    out(raw_us=statistics.median(raw_s) * 1e6, client_us=statistics.median(client_s) * 1e6,
        overhead_us=statistics.median(diffs) * 1e6,
        ratio=statistics.median(c / r for c, r in zip(client_s, raw_s, strict=True)))


def storm(call, n):
    barrier = threading.Barrier(n)
    errors = []

    def run():
        barrier.wait(30)
        try:
            call()
        except Exception as exc:
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=run) for _ in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return time.perf_counter() - started, errors


def main():  # noqa: PLR0915 (one flat script per phase reads best here)
    client, phase, target, client_id, secret = sys.argv[1:6]
    if phase == "cold":
        channel = make_channel(client, target, client_id, secret)
        unary = channel.unary_unary(UNARY)
        unary(b"cold", timeout=30)
        out(first_call_ms=(time.perf_counter() - T0) * 1e3)
        mark("cold")
        unary(b"warm", timeout=30)
        mark("warm")
        return
    if phase == "storm_aio" and client in FLYTE2:
        import asyncio

        from flyteidl2.auth.identity_pb2 import UserInfoRequest

        async def run_flyte():
            clients = await flyte_client_set(target, client_id, secret, client)
            started = time.perf_counter()
            results = await asyncio.gather(*(clients.identity_service.user_info(UserInfoRequest())
                                             for _ in range(256)), return_exceptions=True)
            errors = [type(r).__name__ for r in results if isinstance(r, BaseException)]
            out(seconds=time.perf_counter() - started, errors=len(errors))

        asyncio.run(run_flyte())
        mark("done")
        return
    if phase == "overhead" and client in FLYTE2:
        import asyncio

        overhead_result(*asyncio.run(flyte_overhead(target, client_id, secret, os.environ["BENCH_STATIC_TOKEN"],
                                                    client)))
        return
    if phase == "storm_aio":
        import asyncio

        from flyteauth_core import AuthConfig, AuthSession

        async def run():
            session = AuthSession(AuthConfig(endpoint=target, insecure=True, auth_type="ClientSecret",
                                             client_id=client_id, client_secret=secret), interactive=False)
            async with session.aio_channel() as channel:
                unary = channel.unary_unary(UNARY)
                started = time.perf_counter()
                results = await asyncio.gather(*(unary(b"x") for _ in range(256)), return_exceptions=True)
                errors = [type(r).__name__ for r in results if isinstance(r, BaseException)]
                out(seconds=time.perf_counter() - started, errors=len(errors))
            session.close()

        asyncio.run(run())
        mark("done")
        return
    channel = make_channel(client, target, client_id, secret)
    unary = channel.unary_unary(UNARY)
    if phase == "overhead":
        import grpc

        raw = grpc.insecure_channel(target).unary_unary(UNARY)
        static = (("flyte-authorization", "Bearer " + os.environ["BENCH_STATIC_TOKEN"]),)
        unary(b"warm")
        for _ in range(300):
            raw(b"x", metadata=static)
            unary(b"x")
        raw_s, client_s = [], []
        for _ in range(30):
            t = time.perf_counter()
            for _ in range(200):
                raw(b"x", metadata=static)
            raw_s.append((time.perf_counter() - t) / 200)
            t = time.perf_counter()
            for _ in range(200):
                unary(b"x")
            client_s.append((time.perf_counter() - t) / 200)
        overhead_result(raw_s, client_s)
        return
    if phase == "storm":
        mark("start")
        seconds, errors = storm(lambda: unary(b"x", timeout=30), 32)
        out(seconds=seconds, errors=len(errors))
        mark("done")
        return
    if phase == "expired_storm":
        unary(b"warm", timeout=30)
        time.sleep(float(os.environ["BENCH_TTL"]) + 0.5)  # idle until the token has expired
        mark("start")
        seconds, errors = storm(lambda: unary(b"x", timeout=30), 32)
        out(seconds=seconds, errors=len(errors))
        mark("done")
        return
    if phase == "reject_storm":
        mark("start")
        stop = time.perf_counter() + float(os.environ["BENCH_SECONDS"])
        counts = {}
        lock = threading.Lock()

        def reject_loop():
            while time.perf_counter() < stop:
                try:
                    unary(b"x", timeout=30)
                    kind = "ok"
                except Exception as exc:
                    code = getattr(exc, "code", None)
                    code = code() if callable(code) else code
                    kind = type(exc).__name__ + (f" {getattr(code, 'name', code)}" if code is not None else "")
                with lock:
                    counts[kind] = counts.get(kind, 0) + 1

        threads = [threading.Thread(target=reject_loop) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(float(os.environ["BENCH_SECONDS"]) + 60)
        out(calls=sum(counts.values()), errors=counts)
        mark("done")
        return
    if phase == "expiry":
        unary(b"warm", timeout=30)
        mark("start")
        stop = time.perf_counter() + float(os.environ["BENCH_SECONDS"])
        calls = slow = failed = 0
        worst = 0.0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                unary(b"x", timeout=30)
            except Exception:
                failed += 1
            took = time.perf_counter() - t
            worst = max(worst, took)
            slow += took > 0.05
            calls += 1
            time.sleep(0.01)
        out(calls=calls, slow=slow, failed=failed, worst_ms=worst * 1e3)
        mark("done")
        return
    raise SystemExit(f"unknown phase {phase}")


if __name__ == "__main__":
    main()
    if sys.argv[1] in FLYTE2:
        # flyte 2.x's HTTP client (pyqwest) sometimes aborts the interpreter's teardown (SIGABRT) while the
        # background event loop thread is alive; every result is printed and flushed by now, so skip teardown.
        sys.stdout.flush()
        os._exit(0)
