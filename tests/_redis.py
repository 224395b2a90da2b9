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
from pathlib import Path
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


# -- Sentinel and Cluster: started on loopback by the tests that use them --------------------------------------
def _redis_cli(port: int, *words: str, timeout: float = 10) -> str:
    exe = shutil.which("redis-cli")
    if exe is None:
        pytest.skip("redis-cli is not installed (Debian's redis-tools, a dependency of redis-server)")
    return subprocess.run([exe, "-h", "127.0.0.1", "-p", str(port), *words], capture_output=True, text=True,
                          timeout=timeout, check=False).stdout


def _wait(what: str, ready: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


#: A replica's first sync starts at once (Redis waits 5 s by default for more replicas to join it).
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class SentinelGroup:
    """A master, a replica and 3 sentinels (quorum 2) on 127.0.0.1, each in a temporary directory; the
    sentinels call a master down after 500 ms, so a killed master is replaced within about 2 s.

    ``url`` is the store's ``redis+sentinel://`` form; :meth:`master` the server sentinels currently name.
    """

    NAME = "fleet"

    def __init__(self) -> None:
        self.master_server = RedisServer(extra=FAST_SYNC)
        self.replica = RedisServer(extra=("--replica-announce-ip", "127.0.0.1", *FAST_SYNC))
        self.servers = [self.master_server, self.replica]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.dir = tempfile.mkdtemp(prefix="flyteauth-sentinel-")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.NAME}/0"

    def start(self) -> SentinelGroup:
        exe = shutil.which("redis-sentinel") or shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server redis-sentinel)")
        self.master_server.start()
        self.replica.extra = (*self.replica.extra, "--replicaof", "127.0.0.1", str(self.master_server.port))
        self.replica.start()
        _wait("the replica to sync", lambda: "master_link_status:up" in _redis_cli(self.replica.port, "INFO",
                                                                                    "replication"))
        # Each sentinel is told the others and the replica up front (ids fixed here), instead of learning
        # them from hello messages every 2 s: the group is ready as soon as the processes answer.
        ids = [os.urandom(20).hex() for _ in self.sentinel_ports]
        for i, port in enumerate(self.sentinel_ports):
            conf = Path(self.dir) / f"sentinel-{i}.conf"
            others = "".join(f"sentinel known-sentinel {self.NAME} 127.0.0.1 {p} {ids[j]}\n"
                             for j, p in enumerate(self.sentinel_ports) if j != i)
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\nsentinel myid {ids[i]}\n"
                            f"sentinel monitor {self.NAME} 127.0.0.1 {self.master_server.port} 2\n"
                            f"sentinel down-after-milliseconds {self.NAME} 500\n"
                            f"sentinel failover-timeout {self.NAME} 1500\n"
                            f"sentinel known-replica {self.NAME} 127.0.0.1 {self.replica.port}\n{others}")
            args = [exe, str(conf)] + ([] if exe.endswith("redis-sentinel") else ["--sentinel"])
            self.sentinels.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, cwd=self.dir))

        def known() -> bool:  # every sentinel answers and knows the replica and the two other sentinels
            for port in self.sentinel_ports:
                words = _redis_cli(port, "SENTINEL", "MASTER", self.NAME).split()
                fields = dict(zip(words[::2], words[1::2], strict=False))
                if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                    return False
            return True

        _wait("the sentinels to find the replica and each other", known, timeout=20)
        return self

    def master(self) -> RedisServer:
        """The server the sentinels name as master now."""
        port = _redis_cli(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.NAME).split()[1]
        return next(s for s in self.servers if str(s.port) == port)

    def close(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait(timeout=10)
        for server in self.servers:
            server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterGroup:
    """A Redis Cluster of 3 masters and 3 replicas on 127.0.0.1, made with ``redis-cli --cluster create``;
    ``cluster-node-timeout`` 1 s, so a killed master's replica takes over within about 2 s."""

    def __init__(self, nodes: int = 6) -> None:
        self.nodes = [RedisServer(port=free_cluster_port()) for _ in range(nodes)]
        for node in self.nodes:
            node.extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "1000", "--cluster-announce-ip", "127.0.0.1", *FAST_SYNC)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        out = _redis_cli(self.nodes[0].port, "--cluster", "create",
                         *[f"127.0.0.1:{node.port}" for node in self.nodes],
                         "--cluster-replicas", "1", "--cluster-yes", timeout=60)
        if "[OK] All 16384 slots covered" not in out:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out[-2000:]}")

        def synced() -> bool:
            infos = [_redis_cli(node.port, "INFO", "replication") for node in self.nodes]
            return (all("cluster_state:ok" in _redis_cli(node.port, "CLUSTER", "INFO") for node in self.nodes)
                    and sum("master_link_status:up" in info for info in infos) == len(self.nodes) // 2)

        _wait("the cluster to settle", synced, timeout=30)
        return self

    def master_of(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot now."""
        asked = next(node for node in self.nodes if node.running).port
        slot = int(_redis_cli(asked, "CLUSTER", "KEYSLOT", key).strip())
        for line in _redis_cli(asked, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = fields[1].split("@")[0].rsplit(":", 1)[1]
                    return next(node for node in self.nodes if str(node.port) == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


@pytest.fixture
def redis_sentinel() -> Iterator[SentinelGroup]:
    group = SentinelGroup()
    try:
        yield group.start()
    finally:
        group.close()


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterGroup]:
    group = RedisClusterGroup()
    try:
        yield group.start()
    finally:
        group.close()
