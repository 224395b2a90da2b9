"""``flyteauth demo --serve`` as a user runs it: a real subprocess, then each SDK pointed at the config it prints.

flytekit (``FlyteRemote.client.list_projects_paginated()`` through ``authType: flyteauth``), flyte 2.x (its
own ``flyte.init_from_config`` with the helper config, and flyteauth's ``ClientSet`` route), ``flyteauth
token`` and a plain ``AuthSession`` all authenticate against it; a call without a token is refused; SIGINT
stops it with exit status 0 and the port closed.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flyteauth_core import AuthSession, load_config
from flyteauth_core._proto.admin_pb2 import Projects
from flyteauth_core.testing import ADMIN

pytest.importorskip("flytekit")
pytest.importorskip("flyte")


class Served:
    def __init__(self, proc: subprocess.Popen[str], config: Path, lines: list[str]) -> None:
        self.proc, self.config, self.lines = proc, config, lines

    @property
    def port(self) -> int:
        return int(load_config(self.config).endpoint.rsplit(":", 1)[1])


def sdk_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
    env.update(HOME=str(tmp_path), FLYTEAUTH_TOKEN_DIR=str(tmp_path / "tokens"), FLYTEAUTH_INTERACTIVE="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def start_serve(tmp_path: Path, *extra: str) -> Served:
    """Start ``flyteauth demo --serve`` and wait for its ``config: PATH`` line (what a user waits for)."""
    proc = subprocess.Popen([sys.executable, "-m", "flyteauth_core.cli", "demo", "--serve", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=sdk_env(tmp_path),
                            cwd=tmp_path)
    lines: list[str] = []
    found: list[Path] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("config: ") and not found:
                found.append(Path(line[len("config: "):].strip()))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 90
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("flyteauth demo --serve printed no config line:\n" + "\n".join(lines))
        time.sleep(0.05)
    return Served(proc, found[0], lines)


def stop_serve(served: Served) -> int:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGINT)
    try:
        return served.proc.wait(30)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    served = start_serve(tmp, "--dir", str(tmp / "demo"))
    yield served
    assert stop_serve(served) == 0, "\n".join(served.lines)


def run_python(tmp_path: Path, code: str, *, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env or sdk_env(tmp_path), cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_flytekit_lists_projects(served: Served, tmp_path: Path) -> None:
    """The README's flytekit route exactly: ``Config.auto(config_file=...)``, no FLYTECTL_CONFIG, no other step."""
    out = run_python(tmp_path, f"""
        from flytekit.configuration import Config
        from flytekit.remote import FlyteRemote

        remote = FlyteRemote(Config.auto(config_file={str(served.config)!r}))
        projects, _ = remote.client.list_projects_paginated()
        print([p.id for p in projects])
    """)
    assert out.strip().splitlines()[-1] == "['flytesnacks']"


def test_flyte2_own_config_route(served: Served, tmp_path: Path) -> None:
    """flyte 2.x's own init with the helper config: its ExternalCommand runs ``flyteauth token``."""
    helper = served.config.with_name("flyte.yaml")
    out = run_python(tmp_path, f"""
        import asyncio
        import flyte
        from flyte._initialize import get_client
        from flyteidl2.auth.identity_pb2 import UserInfoRequest

        async def main():
            await flyte.init_from_config.aio({str(helper)!r})
            print((await get_client().identity_service.user_info(UserInfoRequest())).subject)

        asyncio.run(main())
    """)
    assert out.strip().splitlines()[-1] == "flyteauth-demo"


def test_flyte2_client_set_route(served: Served, tmp_path: Path) -> None:
    out = run_python(tmp_path, f"""
        import asyncio
        import flyte.remote
        from flyteidl2.auth.identity_pb2 import UserInfoRequest
        from flyteauth_core import AuthSession, load_config
        from flyteauth_integrations import flyte as flyteauth_flyte

        async def main():
            session = await AuthSession.create(load_config({str(served.config)!r}))
            await flyteauth_flyte.init(session, project="flytesnacks", domain="development")
            user = await flyte.remote.User.get.aio()
            print(user.pb2.subject)

        asyncio.run(main())
    """)
    assert out.strip().splitlines()[-1] == "flyteauth-demo"


def test_flyteauth_token_helper(served: Served, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token", "--config", str(served.config)],
                            capture_output=True, text=True, env=sdk_env(tmp_path), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    channel = grpc.secure_channel(f"127.0.0.1:{served.port}", grpc.ssl_channel_credentials(
        served.config.with_name("ca.pem").read_bytes()))
    with channel:
        projects = channel.unary_unary(ADMIN["list_projects"], response_deserializer=Projects.FromString)
        assert [p.id for p in projects(b"", metadata=[("flyte-authorization", f"Bearer {token}")],
                                       timeout=30).projects] == ["flytesnacks"]
        with pytest.raises(grpc.RpcError) as refused:  # the server does check: no token, no projects
            projects(b"", timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_authsession_and_files(served: Served) -> None:
    with AuthSession(load_config(served.config)) as session:
        projects = session.channel().unary_unary(ADMIN["list_projects"], response_deserializer=Projects.FromString)
        answer = projects(b"", timeout=30)
        # REST through httpx_client() trusts caCertFilePath as gRPC does: no SSL_CERT_FILE needed
        with session.httpx_client() as http:
            rest = http.get(f"https://127.0.0.1:{served.port}/api/v1/projects", timeout=30)
        assert rest.raise_for_status().json()["projects"][0]["id"] == "flytesnacks"
    assert [(p.id, [d.id for d in p.domains]) for p in answer.projects] == [
        ("flytesnacks", ["development", "staging", "production"])]
    secret = served.config.with_name("client_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() not in served.config.read_text()
    assert any("Connect: AuthMetadataService" in line for line in served.lines)  # the dev env has connectrpc


def test_doctor_passes_every_step_without_a_warning(served: Served, tmp_path: Path) -> None:
    """A new user's first doctor run is on the demo: its front door routes by ALPN (gRPC clients offer
    "grpc-exp"), and doctor's TLS probe offers what grpcio offers, so step 2 is "ok", not "did not agree to HTTP/2"."""
    result = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "doctor", "--config", str(served.config)],
                            capture_output=True, text=True, env=sdk_env(tmp_path), timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN" not in result.stdout and "HTTP/2" not in result.stdout, result.stdout
    assert "[2/6] endpoint  ok" in result.stdout and "all steps passed" in result.stdout


def test_sigint_stops_cleanly_and_closes_the_port(tmp_path: Path) -> None:
    served = start_serve(tmp_path)  # no --dir: a temporary directory, removed on exit
    port = served.port
    assert stop_serve(served) == 0, "\n".join(served.lines)
    assert "flyteauth demo --serve: stopping" in served.lines
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert not served.config.parent.exists()


def test_without_connectrpc_it_serves_grpc_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``connect`` extra: gRPC still answers with a token, HTTP clients get a 503, and the banner says why."""
    import http.client
    import io
    import ssl

    from flyteauth_core.demo_serve import serve

    monkeypatch.setitem(sys.modules, "connectrpc", None)  # what `import connectrpc` does without the extra
    monkeypatch.setitem(sys.modules, "connectrpc.server", None)
    out, stop = io.StringIO(), threading.Event()
    worker = threading.Thread(target=lambda: serve(directory=tmp_path / "demo", port=0, ttl=60, out=out, stop=stop))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while "config: " not in out.getvalue():
            assert worker.is_alive() and time.monotonic() < deadline, out.getvalue()
            time.sleep(0.05)
        assert "Connect: not served (no connectrpc; `pip install -e '.[connect]'`" in out.getvalue()
        config = tmp_path / "demo" / "config.yaml"
        with AuthSession(load_config(config)) as session:
            projects = session.channel().unary_unary(ADMIN["list_projects"], response_deserializer=Projects.FromString)
            assert [p.id for p in projects(b"", timeout=30).projects] == ["flytesnacks"]
        port = int(load_config(config).endpoint.rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ssl.create_default_context(
            cafile=str(tmp_path / "demo" / "ca.pem")))
        conn.request("GET", "/api/v1/projects")
        response = conn.getresponse()
        assert response.status == 503  # and says why, for a user's curl: not an empty body
        assert b"pip install -e '.[connect]'" in response.read()
        conn.close()
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    from flyteauth_core.demo_serve import DemoFlyte
    from flyteauth_core.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port} .*choose another --port"):
            DemoFlyte(tmp_path, port=port).start()


def test_a_restart_in_the_same_dir_accepts_cached_tokens(tmp_path: Path) -> None:
    """`flyteauth token` caches a token across processes; after the demo restarts in the same --dir (same
    secret), a client handing that token out again must still get through (else flyte 2.x's helper route
    fails until the token expires).  Another directory's demo refuses it."""
    from flyteauth_core.demo_serve import DemoFlyte

    def list_with(demo: DemoFlyte, token: str) -> grpc.StatusCode:
        creds = grpc.ssl_channel_credentials(demo.ca_path.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{demo.port}", creds) as channel:
            try:
                channel.unary_unary(ADMIN["list_projects"])(
                    b"", metadata=[("flyte-authorization", f"Bearer {token}")], timeout=30)
            except grpc.RpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    with DemoFlyte(tmp_path / "a") as first, AuthSession(load_config(first.config_path)) as session:
        token = session.get_token().access_token
        assert list_with(first, token) == grpc.StatusCode.OK
    with DemoFlyte(tmp_path / "a") as again:
        assert list_with(again, token) == grpc.StatusCode.OK
        assert list_with(again, token[:-1] + ("0" if token[-1] != "0" else "1")) == grpc.StatusCode.UNAUTHENTICATED
    with DemoFlyte(tmp_path / "b") as other:
        assert list_with(other, token) == grpc.StatusCode.UNAUTHENTICATED
