"""Refresh-token rotation proven against a real server: a refreshed grant is never replayed.

django-oauth-toolkit runs with ``ROTATE_REFRESH_TOKEN`` and ``REFRESH_TOKEN_REUSE_PROTECTION``: each
refresh revokes the refresh token it used, and presenting a revoked one again revokes the whole grant (its
token family).  That is the detector: 8 processes sharing one grant through the file store, then 2 hosts
(2 token directories, 4 processes each) sharing it through Redis, refresh it at least 10 times; the grant
must survive (exactly one live refresh token in its family) and no process may see an error.  A control
replay at the end shows the detector does fire.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.testing import FlyteTestServer

from ._servers import REPO, DotServer, http
from .test_flows import open_session, register_token, store_options

PROCS, REFRESHES = 8, 10
#: DOT issues this device client 1-second access tokens: a refresh about every half second.
ROTATE_CLIENT = "flyte-rotate"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def device_server(dot_server: DotServer) -> Iterator[FlyteTestServer]:
    peer = dot_server.peer()
    server = FlyteTestServer(peer.validate, **peer.flyte_server_kwargs(client_id=ROTATE_CLIENT)).start()
    yield server
    server.stop()


def _login(dot_server: DotServer, server: FlyteTestServer, browser: Any, store: str,
           options: dict[str, Any]) -> Any:
    import threading

    peer = dot_server.peer()

    def prompt(code: Any) -> None:
        assert peer.device_approve is not None
        threading.Thread(target=peer.device_approve, args=(browser, code), daemon=True).start()

    with open_session(server, store, {**options, "deviceFlowPrompt": prompt}, auth_type="DeviceFlow",
                      client_id=ROTATE_CLIENT, token_url=peer.token_endpoint,
                      device_flow_timeout=60) as session:
        token = session.login()
    register_token(token)
    return token


def _start_fleet(dot_server: DotServer, server: FlyteTestServer, store: str, hosts: list[dict[str, Any]],
                 tmp_path: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """PROCS workers, spread over ``hosts`` (one options dict each), waiting for the start file."""
    peer = dot_server.peer()
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for i in range(PROCS):
        spec = {"endpoint": server.target, "client_id": ROTATE_CLIENT, "token_url": peer.token_endpoint,
                "store": store, "options": hosts[i % len(hosts)], "stop_file": str(tmp_path / "stop"),
                "start_file": str(tmp_path / "start")}
        spec_path, out = tmp_path / f"worker-{i}.json", tmp_path / f"worker-{i}.out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen([sys.executable, "-m", "tests.interop._rotation_worker", str(spec_path), str(out)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append((proc, out))
    return procs


def _stop_fleet(procs: list[tuple[subprocess.Popen[bytes], Path]], tmp_path: Path) -> None:
    (tmp_path / "stop").touch()
    for proc, _ in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _login_for(procs: list[tuple[subprocess.Popen[bytes], Path]], tmp_path: Path, *args: Any) -> Any:
    try:
        return _login(*args)
    except BaseException:
        _stop_fleet(procs, tmp_path)
        raise


def _run_fleet(dot_server: DotServer, procs: list[tuple[subprocess.Popen[bytes], Path]],
               first_refresh_token: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Let the workers go until the grant was refreshed REFRESHES times at the IdP; their reports."""
    (tmp_path / "start").touch()
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 90
        first_at = None
        while (count := dot_server.refresh_count(first_refresh_token)) < REFRESHES:
            if count and first_at is None:
                first_at = time.monotonic() - started
                print(f"first refresh after {first_at:.1f} s")
            assert time.monotonic() < deadline, f"only {dot_server.refresh_count(first_refresh_token)} refreshes"
            assert all(p.poll() is None for p, _ in procs), "a worker died"
            time.sleep(0.2)
        print(f"{REFRESHES} refreshes by {PROCS} processes in {time.monotonic() - started:.1f} s")
    finally:
        _stop_fleet(procs, tmp_path)
    reports = []
    for proc, out in procs:
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else proc.returncode
        if proc.stderr:
            proc.stderr.close()
        reports.append(json.loads(out.read_text()))
    return reports


def _assert_never_replayed(dot_server: DotServer, first_refresh_token: str, reports: list[dict[str, Any]]) -> None:
    assert [r["errors"] for r in reports] == [[]] * PROCS
    refreshes = dot_server.refresh_count(first_refresh_token)
    assert refreshes >= REFRESHES
    # The grant survived: reuse protection never fired (it revokes the whole family).
    assert dot_server.grant_alive(first_refresh_token), "DOT's reuse detection revoked the grant"
    # every worker used refreshed tokens that another process obtained: they share one grant
    assert all(r["tokens"] >= 2 for r in reports), reports


def _control_replay_is_detected(dot_server: DotServer, first_refresh_token: str) -> None:
    """The detector works: replaying the first (rotated) refresh token revokes the grant."""
    peer = dot_server.peer()
    status, body, _ = http("POST", peer.token_endpoint, form={
        "grant_type": "refresh_token", "refresh_token": first_refresh_token, "client_id": ROTATE_CLIENT})
    assert status == 400 and body.get("error") == "invalid_grant"
    assert not dot_server.grant_alive(first_refresh_token)


@pytest.mark.interop_flow("rotation proof: 8 processes sharing a file store, 10 refreshes",
                          peer="django-oauth-toolkit")
def test_eight_processes_sharing_a_file_store_never_replay(dot_server: DotServer, device_server: FlyteTestServer,
                                                           browser: Any, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    options = store_options("file", tmp_path, request)
    procs = _start_fleet(dot_server, device_server, "file", [options], tmp_path)
    token = _login_for(procs, tmp_path, dot_server, device_server, browser, "file", options)
    reports = _run_fleet(dot_server, procs, token.refresh_token, tmp_path)
    _assert_never_replayed(dot_server, token.refresh_token, reports)
    _control_replay_is_detected(dot_server, token.refresh_token)


@pytest.mark.interop_flow("rotation proof: 2 hosts sharing Redis, 10 refreshes", peer="django-oauth-toolkit")
def test_two_hosts_sharing_redis_never_replay(dot_server: DotServer, device_server: FlyteTestServer, browser: Any,
                                              tmp_path: Path, request: pytest.FixtureRequest) -> None:
    hosts = [store_options("redis", tmp_path, request, host=name) for name in ("host-a", "host-b")]
    procs = _start_fleet(dot_server, device_server, "redis", hosts, tmp_path)
    token = _login_for(procs, tmp_path, dot_server, device_server, browser, "redis", hosts[0])
    reports = _run_fleet(dot_server, procs, token.refresh_token, tmp_path)
    _assert_never_replayed(dot_server, token.refresh_token, reports)
