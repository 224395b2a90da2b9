"""A real ``redis-server`` for tests and benchmarks (Debian's package; ``scripts/test`` installs it).

:class:`RedisServer` runs one on 127.0.0.1 at a free port, in a temporary directory, with persistence
off; ``stop()``/``start()`` keep the port, so tests can take Redis away and bring it back, and
``pause()``/``resume()`` (SIGSTOP/SIGCONT) make it hang instead of refusing connections.

Fixtures: ``redis_server`` (session scope) and ``redis_fresh`` (the same server, flushed, and running).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1."""

    def __init__(self, *, port: int = 0, password: str | None = None, extra: tuple[str, ...] = (),
                 tls: tuple[str, str, str] | None = None) -> None:
        """``tls=(ca, cert, key)`` PEM paths: serve TLS only (``rediss://``, see :attr:`url`)."""
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="flyteauth-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; scripts/test does it)")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args[args.index("--port") + 1] = "0"
            args += ["--tls-port", str(self.port), "--tls-ca-cert-file", self.tls[0], "--tls-cert-file", self.tls[1],
                     "--tls-key-file", self.tls[2], "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen([*args, *self.extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (port {self.port} taken?)")
            with contextlib.suppress(OSError):
                if self.command("PING") in ("+PONG", "-NOAUTH Authentication required."):
                    return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def command(self, *words: str) -> str:
        """Send one inline command and return the first reply line (enough for PING/FLUSHALL)."""
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", self.port), timeout=2))
            if self.tls:
                import ssl

                sock = stack.enter_context(ssl.create_default_context(cafile=self.tls[0]).wrap_socket(
                    sock, server_hostname="127.0.0.1"))
            prefix = f"AUTH {self.password}\r\n" if self.password else ""
            sock.sendall((prefix + " ".join(words) + "\r\n").encode())
            data = b""
            want = 2 if self.password else 1
            while data.count(b"\r\n") < want:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace").split("\r\n")[want - 1]

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(sig)
            proc.wait(timeout=10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_fresh(redis_server: RedisServer) -> Iterator[RedisServer]:
    if not redis_server.running:
        redis_server.start()
    redis_server.command("FLUSHALL")
    yield redis_server
    if not redis_server.running:
        redis_server.start()
    with contextlib.suppress(OSError):
        redis_server.resume()
