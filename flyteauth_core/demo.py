"""``flyteauth demo``: the whole loop against embedded peers, with a short readable report.

An embedded Flyte-compatible gRPC server (AuthMetadataService v2 + v1, an Echo service that checks
tokens under ``flyte-authorization``) and an embedded token endpoint, both on 127.0.0.1; a flytectl
config file naming ``authType: ClientSecret``; a session resolved through the plugin registry.  Then:
a cold burst of concurrent callers, calls across several token expiries, every call kind, and a
server-side revocation.  Exit status 0 when every check held.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import grpc

from .config import load_config
from .session import AuthSession
from .testing import ECHO, DemoTokenEndpoint, FlyteTestServer

CLIENT_ID = "flyteauth-demo"


def run_demo(*, seconds: float = 6.0, ttl: float = 2.0, out: TextIO) -> int:
    import secrets

    secret = secrets.token_urlsafe(16)
    checks: list[tuple[str, str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="flyteauth-demo-") as tmp, \
            DemoTokenEndpoint(CLIENT_ID, secret, ttl=ttl) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        secret_file = Path(tmp, "client_secret")
        # 0600 from the start: a secret file others can read is a config warning the demo must not trigger
        with os.fdopen(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secret + "\n")
        config_file = Path(tmp, "config.yaml")
        config_file.write_text(
            "admin:\n"
            f"  endpoint: dns:///{server.target}\n"
            "  insecure: true\n"
            "  authType: ClientSecret\n"
            f"  clientId: {CLIENT_ID}\n"
            f"  clientSecretLocation: {secret_file}\n"
        )
        print(f"flyteauth demo: Flyte server {server.target} (token header {server.header_key!r}), "
              f"token endpoint {idp.url} (tokens live {ttl:g}s)", file=out)
        with AuthSession(load_config(config_file)) as session:
            print(f"  session: authType {session.auth_type} resolved through the plugin registry", file=out)
            channel: Any = session.channel()
            unary = channel.unary_unary(ECHO["unary"])
            errors: list[BaseException] = []

            def call() -> None:
                try:
                    unary(b"ping", timeout=10)
                except grpc.RpcError as exc:
                    errors.append(exc)

            # 1. a cold burst
            barrier = threading.Barrier(16)
            def burst() -> None:
                barrier.wait()
                call()

            threads = [threading.Thread(target=burst) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            checks.append(("16 threads call a cold session at once", f"{idp.requests} token request(s)",
                           idp.requests == 1 and not errors))

            # 2. calls across expiries
            before_requests, before_waits = idp.requests, session.stats.waits
            deadline, calls = time.monotonic() + seconds, 0
            while time.monotonic() < deadline:
                call()
                calls += 1
                time.sleep(0.02)
            new_tokens = idp.requests - before_requests
            waited = session.stats.waits - before_waits
            checks.append((f"{calls} calls over {seconds:g}s ({seconds / ttl:.0f} token lifetimes)",
                           f"{new_tokens} background refreshes, {waited} waited, {len(errors)} failed",
                           not errors and waited == 0 and new_tokens >= int(seconds / ttl) - 1))

            # 3. every call kind
            kinds_ok = (
                unary(b"a") == b"a"
                and list(channel.unary_stream(ECHO["server_stream"])(b"s")) == [b"s0", b"s1", b"s2"]
                and channel.stream_unary(ECHO["client_stream"])(iter([b"c", b"d"])) == b"cd"
                and list(channel.stream_stream(ECHO["bidi"])(iter([b"e", b"f"]))) == [b"e", b"f"]
            )
            checks.append(("unary, server stream, client stream, bidi", "ok" if kinds_ok else "FAILED",
                           kinds_ok))

            # 4. server-side revocation
            rejected_before, requests_before = server.stats["rejected"], idp.requests
            server.revoke(session.get_token().access_token)
            call()
            retried = server.stats["rejected"] - rejected_before
            checks.append(("server revokes the token, next call", f"{retried} rejection, "
                           f"{idp.requests - requests_before} new token, retried transparently",
                           not errors and retried == 1 and session.stats.invalidations == 1))

            stats = session.stats
        width = max(len(c[0]) for c in checks) + 2
        for label, observed, ok in checks:
            print(f"  {'ok  ' if ok else 'FAIL'} {label:.<{width}} {observed}", file=out)
        print(f"  totals: {server.stats['calls']} calls, {idp.requests} token requests "
              f"(1 cold + {stats.background_refreshes} background + {stats.invalidations} after rejection), "
              f"{server.stats['rejected']} rejected by the server, {len(errors)} errors seen by callers",
              file=out)
    passed = all(ok for _, _, ok in checks)
    print("demo passed" if passed else "demo FAILED", file=out)
    return 0 if passed else 1
