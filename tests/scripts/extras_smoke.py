"""Does ``pip install 'flyteauth[EXTRA]'`` give a set that works?  Run inside a venv holding only that install
(``scripts/check_extras`` makes one per extra); prints ``ok: <extra> ...`` and exits 0, or fails loudly.

* ``connect``: with the flyteidl2 pip picks beside it, flyteidl2's generated ``IdentityService`` clients
  (sync and async) call a real Connect server (connectrpc's own WSGI app on 127.0.0.1, flyteidl2's stubs)
  through ``session.connect_interceptors[_sync]()``, and the server sees the token;
* ``flytekit``: ``import flytekit`` loads our hook, ``FlyteRemote``'s ``Config.auto(config_file=path)`` path
  resolves ``admin.authType: flyteauth`` to our authenticator, which reads the file's ``flyteauth:`` section;
* ``redis``: the redis token store saves and loads (encrypted) through a redis-server started here;
* ``keyring``: the keyring store is built and works (falling back to the file store when no secure backend
  exists, as on a headless machine), and does not say the package is missing;
* ``none``: the bare install: each missing extra is a MissingExtraError / ConfigError naming the extra.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOKEN = "smoke-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def passthrough_config(endpoint: str) -> object:
    from flyteauth_core import AuthConfig

    return AuthConfig(endpoint=endpoint, auth_type="Passthrough", token=TOKEN, authorization_header="authorization",
                      insecure=True)


def check_connect() -> str:
    import asyncio
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import connectrpc
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError
    from flyteidl2.auth import identity_pb2
    from flyteidl2.auth.identity_connect import (
        IdentityServiceClient,
        IdentityServiceClientSync,
        IdentityServiceWSGIApplication,
    )

    from flyteauth_core import AuthSession

    seen: list[str] = []

    class Identity:
        def user_info(self, request: object, ctx: object) -> object:
            headers = ctx.request_headers  # type: ignore[attr-defined]
            value = (headers() if callable(headers) else headers).get("authorization")
            seen.append(value or "")
            if value != f"Bearer {TOKEN}":
                raise ConnectError(Code.UNAUTHENTICATED, "no token")
            return identity_pb2.UserInfoResponse(subject="smoke")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = make_server("127.0.0.1", port, IdentityServiceWSGIApplication(Identity()), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        with AuthSession(passthrough_config(url)) as session:  # type: ignore[arg-type]
            sync_client = IdentityServiceClientSync(url, interceptors=session.connect_interceptors_sync())
            assert sync_client.user_info(identity_pb2.UserInfoRequest()).subject == "smoke"

            async def call() -> str:
                client = IdentityServiceClient(url, interceptors=session.connect_interceptors())
                reply = await client.user_info(identity_pb2.UserInfoRequest())
                return str(reply.subject)

            assert asyncio.run(call()) == "smoke"
    finally:
        server.shutdown()
    assert seen == [f"Bearer {TOKEN}"] * 2, seen
    import importlib.metadata as md

    return f"connectrpc {md.version('connectrpc')} ({connectrpc.__name__}), flyteidl2 {md.version('flyteidl2')}: " \
           "sync and async UserInfo carried the token"


def check_flytekit() -> str:
    import importlib.metadata as md

    import flytekit  # noqa: F401  (loads the flytekit.plugins entry points, ours included)
    from flytekit.clients.auth_helper import get_authenticator
    from flytekit.configuration import Config

    from flyteauth_integrations import flytekit as plugin

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text("admin:\n  endpoint: dns:///127.0.0.1:1\n  insecure: true\n  authType: flyteauth\n"
                        "flyteauth:\n  authType: Passthrough\n  tokenEnvVar: SMOKE_TOKEN\n"
                        "  authorizationHeader: authorization\n")
        os.environ["SMOKE_TOKEN"] = TOKEN
        cfg = Config.auto(config_file=str(path)).platform
        authenticator = get_authenticator(cfg, None)
        assert isinstance(authenticator, plugin.FlyteauthAuthenticator), type(authenticator)
        assert authenticator.fetch_grpc_call_auth_metadata() == ("authorization", f"Bearer {TOKEN}")
        plugin.reset()
    return f"flytekit {md.version('flytekit')}: Config.auto(config_file=...) -> flyteauth's authenticator"


def check_redis() -> str:
    import importlib.metadata as md

    from flyteauth_core import AuthConfig
    from flyteauth_core.token import Token
    from flyteauth_providers.redis_store import RedisTokenStore

    binary = shutil.which("redis-server")
    if binary is None:
        return "redis: SKIPPED (no redis-server on PATH)"
    from cryptography.fernet import Fernet

    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        config = AuthConfig(endpoint="dns:///flyte.example.com", store="redis",
                            options={"redisURL": f"redis://127.0.0.1:{port}/0",
                                     "redisEncryptionKey": Fernet.generate_key().decode()})
        store = RedisTokenStore(config)
        store.save("smoke", Token(access_token=TOKEN, expires_at=time.time() + 300))
        loaded = store.load("smoke")
        assert loaded is not None and loaded.access_token == TOKEN
    finally:
        proc.terminate()
        proc.wait(10)
    return f"redis {md.version('redis')}, cryptography {md.version('cryptography')}: encrypted save/load"


def check_keyring() -> str:
    import importlib.metadata as md

    from flyteauth_core import AuthConfig
    from flyteauth_core.token import Token
    from flyteauth_providers.keyring_store import KeyringTokenStore

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FLYTEAUTH_TOKEN_DIR"] = tmp
        store = KeyringTokenStore(AuthConfig(endpoint="dns:///flyte.example.com"))
        store.save("smoke", Token(access_token=TOKEN, expires_at=time.time() + 300))
        loaded = store.load("smoke")
        assert loaded is not None and loaded.access_token == TOKEN
        described = store.describe()
        assert "not installed" not in described, described
    return f"keyring {md.version('keyring')}: {described}"


def check_none() -> str:
    from flyteauth_core import AuthConfig, AuthSession
    from flyteauth_core.errors import MissingExtraError

    with AuthSession(passthrough_config("http://127.0.0.1:1")) as session:  # type: ignore[arg-type]
        try:
            session.connect_interceptors()
        except MissingExtraError as error:
            assert "flyteauth[connect]" in str(error), error
        else:
            raise AssertionError("connect_interceptors() without connectrpc did not raise")
    try:
        import flyteauth_integrations.flytekit  # noqa: F401
    except MissingExtraError as error:
        assert "flyteauth[flytekit]" in str(error), error
    else:
        raise AssertionError("the flytekit integration imported without flytekit")
    try:
        from flyteauth_providers.redis_store import RedisTokenStore

        RedisTokenStore(AuthConfig(endpoint="dns:///x", store="redis",
                                   options={"redisURL": "redis://127.0.0.1:1/0"})).load("k")
    except MissingExtraError as error:
        assert "flyteauth[redis]" in str(error), error
    else:
        raise AssertionError("the redis store worked without redis")
    return "bare install: connect, flytekit and redis each name their extra"


CHECKS = {"connect": check_connect, "flytekit": check_flytekit, "redis": check_redis, "keyring": check_keyring,
          "none": check_none}

if __name__ == "__main__":
    for extra in sys.argv[1:] or list(CHECKS):
        print(f"ok: {extra}: {CHECKS[extra]()}", flush=True)
