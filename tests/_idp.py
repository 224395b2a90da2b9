"""A real OAuth2 identity provider for tests (panva ``oidc-provider`` under Node).

Use as a pytest plugin (``pytest_plugins = ["tests._idp"]`` or ``-p tests._idp``)
for the fixtures ``idp`` (session scope) and ``idp_fresh`` (function scope: the
session server with counters and faults reset), or use :class:`IdpServer` directly::

    with IdpServer(token_ttl=2) as idp:
        httpx2.post(idp.token_endpoint, auth=CI_BASIC, data={"grant_type": "client_credentials"})

The Node side lives in ``tests/idp/`` (``server.mjs``; see ``tests/idp/README.md``).
Everything is bound to 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IDP_DIR = Path(__file__).resolve().parent / "idp"
SERVER_JS = IDP_DIR / "server.mjs"

# (client_id, client_secret) pairs registered in tests/idp/server.mjs.
CI_BASIC = ("ci-basic", "ci-basic-secret-value")  # token_endpoint_auth_method=client_secret_basic
CI_POST = ("ci-post", "ci-post-secret-value")  # token_endpoint_auth_method=client_secret_post
CI_BASIC_ID, CI_BASIC_SECRET = CI_BASIC
CI_POST_ID, CI_POST_SECRET = CI_POST

# `aud` of tokens requested without `resource`/`audience`; scopes the resource server grants.
DEFAULT_AUDIENCE = "http://flyte.test/api"
SUPPORTED_SCOPES = ("all", "offline", "read")
DEFAULT_TOKEN_TTL = 2

READY_TIMEOUT_S = 30.0
NPM_CI_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 5.0

__all__ = [
    "CI_BASIC",
    "CI_BASIC_ID",
    "CI_BASIC_SECRET",
    "CI_POST",
    "CI_POST_ID",
    "CI_POST_SECRET",
    "DEFAULT_AUDIENCE",
    "DEFAULT_TOKEN_TTL",
    "SUPPORTED_SCOPES",
    "IdpError",
    "IdpServer",
    "NodeNotFound",
    "ensure_node_modules",
    "idp",
    "idp_fresh",
]


class IdpError(RuntimeError):
    """The test IdP could not be installed or started."""


class NodeNotFound(IdpError):
    """No ``node`` executable on PATH."""


def _node_exe() -> str:
    node = shutil.which("node")
    if not node:
        raise NodeNotFound("`node` was not found on PATH; the test IdP needs Node.js >= 20.18")
    return node


def _pinned_version() -> str | None:
    pkg = json.loads((IDP_DIR / "package.json").read_text())
    version = pkg.get("dependencies", {}).get("oidc-provider")
    return str(version) if version is not None else None


def _installed_version() -> str | None:
    try:
        pkg = json.loads((IDP_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = pkg.get("version")
    return str(version) if version is not None else None


def _modules_ok() -> bool:
    installed = _installed_version()
    return installed is not None and installed == _pinned_version()


def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/idp unless the pinned oidc-provider is installed.

    Serialised with an flock (in the temp dir, keyed by the idp path) so that parallel
    starts (xdist workers, concurrent sessions) don't run npm over each other.
    """
    if _modules_ok():
        return
    npm = shutil.which("npm")
    if not npm:
        raise IdpError(f"{IDP_DIR / 'node_modules'} is missing and `npm` is not on PATH")
    key = hashlib.sha256(str(IDP_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"flyteauth-idp-npm-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _modules_ok():  # another process finished it while we waited
                return
            try:
                proc = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    check=False,
                    cwd=IDP_DIR,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=NPM_CI_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise IdpError(f"`npm ci` in {IDP_DIR} timed out after {NPM_CI_TIMEOUT_S:.0f}s") from exc
            if proc.returncode != 0 or not _modules_ok():
                tail = (proc.stdout + proc.stderr)[-4000:]
                raise IdpError(f"`npm ci` in {IDP_DIR} failed (exit {proc.returncode}):\n{tail}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Servers started and not yet stopped; stopped at interpreter exit as a last resort.
_LIVE: weakref.WeakSet[IdpServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


# Control-endpoint calls never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class IdpServer:
    """One ``node tests/idp/server.mjs`` process on 127.0.0.1 (a free port)."""

    def __init__(
        self, token_ttl: int = DEFAULT_TOKEN_TTL, *, port: int = 0, env: dict[str, str] | None = None
    ):
        self.token_ttl = int(token_ttl)
        self._requested_port = int(port)
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self.port: int | None = None

    # ------------------------------------------------------------------ urls
    @property
    def issuer(self) -> str:
        if self.port is None:
            raise IdpError("IdpServer is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr_tail(self, lines: int = 40) -> str:
        return "".join(list(self._stderr_tail)[-lines:])

    # ------------------------------------------------------------- lifecycle
    def start(self) -> IdpServer:
        if self.running:
            return self
        node = _node_exe()
        ensure_node_modules()

        env = dict(os.environ)
        env.update(
            IDP_PORT=str(self._requested_port),
            IDP_TOKEN_TTL=str(self.token_ttl),
            IDP_EXIT_ON_STDIN_EOF="1",  # node exits if we die without stopping it
        )
        env.update(self._extra_env)
        self._stderr_tail.clear()
        proc = subprocess.Popen(
            [node, str(SERVER_JS)],
            cwd=IDP_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._proc = proc
        _LIVE.add(self)

        lines: queue.Queue[str | None] = queue.Queue()

        def pump_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self._stderr_tail.append(line)

        self._threads = [
            threading.Thread(target=pump_stdout, name="idp-stdout", daemon=True),
            threading.Thread(target=pump_stderr, name="idp-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()

        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise IdpError(self._failure(f"no READY line within {READY_TIMEOUT_S:.0f}s"))
                try:
                    line = lines.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    if proc.poll() is not None:
                        raise IdpError(self._failure(f"node exited with code {proc.returncode}")) from None
                    continue
                if line is None:
                    proc.wait(timeout=5)
                    raise IdpError(self._failure(f"node exited with code {proc.returncode}"))
                parts = line.split()
                if len(parts) == 2 and parts[0] == "READY" and parts[1].isdigit():
                    self.port = int(parts[1])
                    return self
                self._stderr_tail.append(f"[stdout] {line}")
        except BaseException:
            self.stop()
            raise

    def _failure(self, what: str) -> str:
        # Give the stderr pump a moment to collect the last words.
        if self._proc is not None and self._proc.poll() is not None:
            for t in self._threads:
                t.join(timeout=1.0)
        tail = self.stderr_tail() or "(no stderr output)\n"
        return f"test IdP ({SERVER_JS}) failed to start: {what}\n--- node stderr (tail) ---\n{tail}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.close()
            for t in self._threads:
                t.join(timeout=1.0)
            self._threads = []
            self.port = None

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"<IdpServer {state} ttl={self.token_ttl}>"

    # --------------------------------------------------------- test control
    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            f"{self.issuer}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        with _OPENER.open(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, Any]:
        """Counters: ``token_requests`` {client_id: n}, ``by_grant`` {grant_type: n}, ``total``.

        Every POST to the token endpoint counts (rejected and faulted ones too); requests
        whose client cannot be determined count under ``"_unknown"``.
        """
        stats: dict[str, Any] = self._call("GET", "/_test/stats")
        return stats

    def reset(self) -> None:
        """Zero the counters and drop queued faults."""
        self._call("POST", "/_test/reset", {})

    def inject_faults(self, faults: list[dict[str, Any]]) -> None:
        """Queue faults (FIFO); each following token request consumes one.

        A fault is ``{"status": 503, "body": "..." | {...}, "headers": {...}, "delay_ms": 0}``:
        after ``delay_ms`` the response is sent instead of reaching the provider. Without
        ``status`` it only delays, then the request is handled normally. ``{"reset": true}``
        drops the connection without a response.
        """
        self._call("POST", "/_test/faults", {"faults": list(faults)})

    def token_request_count(self, client_id: str | None = None) -> int:
        s = self.stats()
        if client_id is None:
            return int(s["total"])
        return int(s["token_requests"].get(client_id, 0))


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _node_or_skip() -> None:
    try:
        _node_exe()
    except NodeNotFound as exc:
        if _truthy_env("CI"):
            pytest.fail(f"{exc} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def idp() -> Iterator[IdpServer]:
    """A running test IdP (token TTL 2 s) shared by the whole session."""
    _node_or_skip()
    server = IdpServer(token_ttl=DEFAULT_TOKEN_TTL)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def idp_fresh(idp: IdpServer) -> IdpServer:
    """The session IdP with its counters and fault queue reset."""
    idp.reset()
    return idp


if __name__ == "__main__":  # manual use: python -m tests._idp [ttl]
    ttl = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TOKEN_TTL
    with IdpServer(token_ttl=ttl) as s:
        print(f"issuer {s.issuer}  token {s.token_endpoint}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while s.running:
                time.sleep(0.5)
