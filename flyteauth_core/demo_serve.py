"""``flyteauth demo --serve``: a Flyte to point an SDK at, on 127.0.0.1, until interrupted.

What it runs (all bound to 127.0.0.1):

* a token endpoint (:class:`~flyteauth_core.testing.DemoTokenEndpoint`: client credentials, one client
  whose secret is written to a 0600 file);
* a Flyte-compatible admin (:class:`~flyteauth_core.testing.FlyteTestServer`): AuthMetadataService v2 and
  v1, IdentityService.UserInfo and AdminService ListProjects / GetVersion, the first calls of flytekit's
  ``FlyteRemote`` and ``pyflyte``, each checking the token;
* when connectrpc is installed (the ``connect`` extra), the same discovery and UserInfo over Connect
  for flyte 2.x (:mod:`flyteauth_core.demo_connect`);
* one TLS port in front of both (:mod:`flyteauth_core.frontdoor`), since flyte 2.x sends no token to a
  plaintext endpoint and a config file names one endpoint.  The CA is written beside the config.

It writes ``config.yaml`` (``admin.authType: flyteauth`` plus a ``flyteauth:`` ClientSecret section: what
flytekit, ``flyteauth token`` and ``load_config`` read) and ``flyte.yaml`` (``authType: ExternalCommand``
running ``flyteauth token``: what flyte 2.x's own ``flyte.init_from_config`` reads), checks that
everything answers with a real session, then prints ``config: <path>`` on a line of its own.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .testing import DemoTokenEndpoint, FlyteTestServer

CLIENT_ID = "flyteauth-demo"
PROJECT, DOMAIN = "flytesnacks", "development"


def connect_available() -> bool:
    """Whether the Connect side can be served (connectrpc, the ``connect`` extra, imports)."""
    try:
        import connectrpc.server  # noqa: F401
    except ImportError:
        return False
    return True


class DemoFlyte:
    """The servers and files of ``flyteauth demo --serve``; a context manager.  Also used by the docs tests.

    ``directory`` receives ``config.yaml``, ``flyte.yaml``, ``client_secret`` (0600, kept across runs so
    a token cached by ``flyteauth token`` stays valid while it lives), ``ca.pem`` and the server key.
    """

    def __init__(self, directory: Path, *, port: int = 0, ttl: float = 300.0, connect: bool | None = None,
                 other_clients: dict[str, str] | None = None) -> None:
        """``other_clients``: more ``{client_id: secret}`` the token endpoint accepts (the docs tests)."""
        self.directory = Path(directory)
        self._other_clients = other_clients
        self.ttl = ttl
        self._port = port
        self.connect = connect_available() if connect is None else connect
        self.config_path = self.directory / "config.yaml"
        self.helper_config_path = self.directory / "flyte.yaml"
        self.secret_path = self.directory / "client_secret"
        self.ca_path = self.directory / "ca.pem"
        self._stack: list[Any] = []
        self.idp: DemoTokenEndpoint
        self.server: FlyteTestServer
        self.port = 0

    # -- addresses --------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``admin.endpoint`` as flytectl writes it."""
        return f"dns:///127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The same endpoint as a URL (Connect clients, httpx)."""
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> DemoFlyte:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from .democerts import make_loopback_certificates
        from .frontdoor import FrontDoor

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = self._client_secret()
        # tokens signed with a key derived from the secret: a restart in the same directory (same secret)
        # still accepts a token a client cached from the run before
        key = hashlib.sha256(b"flyteauth demo tokens\0" + secret.encode()).digest()
        self.idp = self._push(DemoTokenEndpoint(CLIENT_ID, secret, ttl=self.ttl, other_clients=self._other_clients,
                                                signing_key=key).start())
        self.server = self._push(FlyteTestServer(self.idp.validate, token_endpoint=self.idp.url,
                                                 projects=(PROJECT,)).start())
        http_port = None
        if self.connect:
            from .demo_connect import ConnectDemoServer

            http_port = self._push(ConnectDemoServer(self.server).start()).port
        _ca, cert, server_key = make_loopback_certificates(self.directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, server_key)
        try:
            door = FrontDoor(self.server.port, http_port, port=self._port, ssl_context=context).start()
        except OSError as exc:
            from .errors import ConfigError

            raise ConfigError(f"flyteauth demo --serve cannot listen on 127.0.0.1:{self._port} ({exc.strerror}); "
                              "choose another --port, or omit it for a free one") from None
        self._push(door)
        self.port = door.port
        self._write_configs()

    def _push(self, peer: Any) -> Any:
        self._stack.append(peer)
        return peer

    def _client_secret(self) -> str:
        """The secret in ``client_secret``, made (0600) on first use and reused by later runs in this directory."""
        if self.secret_path.is_file():
            existing = self.secret_path.read_text().strip()
            if existing:
                self.secret_path.chmod(0o600)
                return existing
        secret = secrets.token_urlsafe(24)
        fd = os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        self.secret_path.chmod(0o600)
        return secret

    def _write_configs(self) -> None:
        common = (f"  endpoint: {self.endpoint}\n"
                  "  insecure: false\n"
                  f"  caCertFilePath: {self.ca_path}\n")
        provider = ("flyteauth:                         # what flyteauth does (token, load_config, plugin)\n"
                    "  authType: ClientSecret\n"
                    f"  clientId: {CLIENT_ID}\n"
                    f"  clientSecretLocation: {self.secret_path}\n")
        task = f"task:                              # flyte 2.x's defaults\n  project: {PROJECT}\n  domain: {DOMAIN}\n"
        header = "# Written by `flyteauth demo --serve` (127.0.0.1 only); valid while it runs.\n"
        self.config_path.write_text(
            header + "admin:\n" + common
            + "  authType: flyteauth                # flytekit hands authentication to flyteauth\n"
            + provider + task)
        helper = [sys.executable, "-m", "flyteauth_core.cli", "token", "--config", str(self.helper_config_path)]
        self.helper_config_path.write_text(
            header + "# flyte 2.x (and flytectl) run the credential helper: `flyteauth token`.\n"
            + "admin:\n" + common + "  authType: ExternalCommand\n"
            + f"  command: [{', '.join(_yaml_str(a) for a in helper)}]\n" + provider + task)

    def check(self) -> list[str]:
        """Prove that everything answers: a real session lists projects over gRPC (through the TLS port,
        with a token from the token endpoint) and, when served, Connect answers discovery.  Returns what
        was checked; raises on the first failure."""
        import grpc

        from ._proto.admin_pb2 import Projects
        from .config import load_config
        from .session import AuthSession
        from .testing import ADMIN

        checked = []
        with AuthSession(load_config(self.config_path), store="memory") as session:
            projects = session.channel().unary_unary(ADMIN["list_projects"], request_serializer=None,
                                                     response_deserializer=Projects.FromString)
            answer = projects(b"", timeout=30)
            if [p.id for p in answer.projects] != [PROJECT]:
                raise grpc.RpcError(f"ListProjects answered {answer}")
            checked.append("gRPC ListProjects with a token")
        if self.connect:
            _connect_probe(self.port, self.ca_path)
            checked.append("Connect discovery")
        return checked

    def stop(self) -> None:
        while self._stack:
            peer = self._stack.pop()
            try:
                peer.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"flyteauth demo: stopping {type(peer).__name__} failed: {exc}", file=sys.stderr)

    def __enter__(self) -> DemoFlyte:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _yaml_str(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a YAML string: quotes, backslashes and spaces are safe


def _connect_probe(port: int, ca: Path) -> None:
    """One anonymous Connect call (GetPublicClientConfig) through the TLS port."""
    import http.client

    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        conn.request("POST", "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig", body=b"",
                     headers={"content-type": "application/proto"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"Connect discovery answered HTTP {response.status}")
    finally:
        conn.close()


def serve(*, directory: Path | None, port: int, ttl: float, out: TextIO,
          stop: threading.Event | None = None) -> int:
    """Run :class:`DemoFlyte` until SIGINT or SIGTERM (or ``stop`` is set); exit status 0 on a clean stop."""
    keep = directory is not None
    where = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="flyteauth-demo-"))
    stop = stop or threading.Event()
    previous = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with DemoFlyte(where, port=port, ttl=ttl) as demo:
            checked = demo.check()
            def say(line: str) -> None:
                print(line, file=out, flush=True)

            say("flyteauth demo --serve: a Flyte to try flyteauth on (127.0.0.1 only; Ctrl-C stops it)")
            say(f"  Flyte endpoint  {demo.endpoint}  (TLS, CA {demo.ca_path})")
            say("    gRPC: AuthMetadataService, IdentityService, AdminService ListProjects/GetVersion (flytekit)")
            say("    Connect: AuthMetadataService, IdentityService (flyte 2.x)" if demo.connect else
                "    Connect: not served (no connectrpc; `pip install -e '.[connect]'` in the clone, for flyte 2.x)")
            say(f"  token endpoint  {demo.idp.url}  (client {CLIENT_ID}, secret in {demo.secret_path}, "
                f"tokens live {ttl:g}s)")
            say(f"  checked: {', '.join(checked)}")
            say(f"  flyte 2.x helper config: {demo.helper_config_path}")
            say(f"  try: flyteauth token --config {demo.config_path}")
            say(f"config: {demo.config_path}")
            while not stop.wait(0.5):
                pass
            say("flyteauth demo --serve: stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not keep:
            shutil.rmtree(where, ignore_errors=True)
    return 0
