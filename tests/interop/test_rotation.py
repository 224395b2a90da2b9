"""Refresh-token rotation proven against real servers: a refreshed grant is never replayed.

The servers are the detectors.  django-oauth-toolkit runs with ``ROTATE_REFRESH_TOKEN`` and
``REFRESH_TOKEN_REUSE_PROTECTION``: each refresh revokes the refresh token it used, and presenting a revoked
one again revokes the whole grant (its token family).  glewlwyd's one-use refresh tokens: each refresh
disables the one it used, and a token used twice breaks the chain (its newest token is disabled too).

8 processes sharing one grant through the file store, and 2 hosts (2 token directories, 4 processes each)
sharing one through Redis, refresh it at least 10 times (1-second access tokens); the grant must survive
(exactly one live refresh token) and no process may see an error.  A control replay shows DOT's detector
does fire.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.testing import FlyteTestServer

from ._servers import REPO, browser_threads, http
from .test_flows import open_session, register_token, store_options

PROCS, REFRESHES = 8, 10
#: DOT issues this device client 1-second access tokens (settings.SHORT_LIVED_CLIENTS); glewlwyd's has its
#: own plugin instance with 1-second tokens.  A refresh about every half second.
ROTATE_CLIENT = "flyte-rotate"
pytestmark = pytest.mark.timeout(180)


@dataclass
class Detector:
    """A server whose reuse detection judges the fleet, and what the fleet needs to log in there."""

    token_endpoint: str
    server: FlyteTestServer
    approve: Callable[[Any, Any], Any]
    refresh_count: Callable[[str], int]
    grant_alive: Callable[[str], bool]
    mark: Callable[[], None] = lambda: None
    #: The server's own log, for a failed assertion.
    log_tail: Callable[[], str] = lambda: ""


@pytest.fixture
def dot_detector(dot_server: Any) -> Iterator[Detector]:
    peer = dot_server.peer()
    server = FlyteTestServer(peer.validate, **peer.flyte_server_kwargs(client_id=ROTATE_CLIENT)).start()
    assert peer.device_approve is not None
    yield Detector(peer.token_endpoint, server, peer.device_approve, dot_server.refresh_count,
                   dot_server.grant_alive)
    server.stop()


@pytest.fixture
def glewlwyd_detector(glewlwyd_server: Any) -> Iterator[Detector]:
    from ._glewlwyd import ROTATE_PLUGIN

    peer = glewlwyd_server.peer()
    issuer = f"{glewlwyd_server.api}/{ROTATE_PLUGIN}"
    server = FlyteTestServer(peer.validate, **peer.flyte_server_kwargs(
        client_id=ROTATE_CLIENT, issuer=issuer, token_endpoint=f"{issuer}/token",
        device_authorization_endpoint=f"{issuer}/device_authorization")).start()

    def approve(driver: Any, code: Any) -> Any:
        return glewlwyd_server.approve_device(driver, code, ROTATE_CLIENT, ROTATE_PLUGIN)

    yield Detector(f"{issuer}/token", server, approve, lambda _: glewlwyd_server.rotation_refresh_count(),
                   lambda _: glewlwyd_server.rotation_grant_alive(), glewlwyd_server.rotation_mark,
                   glewlwyd_server.log_tail)
    server.stop()


def _login(detector: Detector, browser: Any, store: str, options: dict[str, Any]) -> Any:
    def prompt(code: Any) -> None:
        start(detector.approve, browser, code)

    with browser_threads() as start, open_session(
            detector.server, store, {**options, "deviceFlowPrompt": prompt}, auth_type="DeviceFlow",
            client_id=ROTATE_CLIENT, token_url=detector.token_endpoint, device_flow_timeout=60) as session:
        token = session.login()
    register_token(token)
    return token


Fleet = list[tuple[subprocess.Popen[bytes], Path]]


def _start_fleet(detector: Detector, store: str, hosts: list[dict[str, Any]], tmp_path: Path) -> Fleet:
    """PROCS workers, spread over ``hosts`` (one options dict each), waiting for the start file (their
    interpreters start while the user logs in)."""
    procs: Fleet = []
    for i in range(PROCS):
        spec = {"endpoint": detector.server.target, "client_id": ROTATE_CLIENT,
                "token_url": detector.token_endpoint, "store": store, "options": hosts[i % len(hosts)],
                "stop_file": str(tmp_path / "stop"), "start_file": str(tmp_path / "start")}
        spec_path, out = tmp_path / f"worker-{i}.json", tmp_path / f"worker-{i}.out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen([sys.executable, "-m", "tests.interop._rotation_worker", str(spec_path), str(out)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append((proc, out))
    return procs


def _refreshes_seen(procs: Fleet) -> int:
    """Refreshes the fleet has made, as its workers saw them: distinct access tokens, less the login's."""
    seen: set[str] = set()
    for _, out in procs:
        progress = out.with_name(out.name + ".progress")
        if progress.exists():
            seen.update(line for line in progress.read_text().splitlines() if len(line) == 16)
    return max(len(seen) - 1, 0)


def _stop_fleet(procs: Fleet, tmp_path: Path) -> None:
    (tmp_path / "stop").touch()
    for proc, _ in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _prove(detector: Detector, browser: Any, store: str, hosts: list[dict[str, Any]], tmp_path: Path) -> str:
    """Log in, let the fleet refresh the grant REFRESHES times, check no detection fired; returns the first
    refresh token (rotated away long since)."""
    procs = _start_fleet(detector, store, hosts, tmp_path)
    try:
        detector.mark()
        first = _login(detector, browser, store, hosts[0]).refresh_token
        (tmp_path / "start").touch()
        started, deadline = time.monotonic(), time.monotonic() + 60
        # Followed through the workers (see _rotation_worker), never the server's database while the fleet
        # refreshes: glewlwyd fails a write that meets a reader's sqlite lock, half-way, ending the grant.
        while _refreshes_seen(procs) < REFRESHES and time.monotonic() < deadline:
            if any(p.poll() is not None for p, _ in procs):
                break  # a worker died: its stderr says why
            time.sleep(0.2)
        took = time.monotonic() - started
    finally:
        _stop_fleet(procs, tmp_path)
    time.sleep(1.0)  # a refresh a worker left in flight as it exited is finished before the database is read
    print(f"{detector.refresh_count(first)} refreshes by {PROCS} processes ({store}) in {took:.1f} s")
    reports = []
    for proc, out in procs:
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.returncode == 0, stderr[-2000:]
        reports.append(json.loads(out.read_text()))
    assert [r["errors"] for r in reports] == [[]] * PROCS
    assert detector.refresh_count(first) >= REFRESHES
    # The grant survived: the server's reuse detection never fired.
    assert detector.grant_alive(first), f"the server's reuse detection ended the grant\n{detector.log_tail()}"
    # every worker went on with tokens refreshed by the others: they share one grant
    assert all(r["tokens"] >= 2 for r in reports), reports
    return str(first)


@pytest.mark.interop_flow("rotation proof: 8 processes sharing a file store, 10 refreshes",
                          peer="django-oauth-toolkit")
def test_eight_processes_sharing_a_file_store_never_replay(dot_detector: Detector, browser: Any, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    first = _prove(dot_detector, browser, "file", [store_options("file", tmp_path, request)], tmp_path)
    # Control: the detector works; replaying the first (rotated) refresh token revokes the grant.
    status, body, _ = http("POST", dot_detector.token_endpoint, form={
        "grant_type": "refresh_token", "refresh_token": first, "client_id": ROTATE_CLIENT})
    assert status == 400 and body.get("error") == "invalid_grant"
    assert not dot_detector.grant_alive(first)


@pytest.mark.interop_flow("rotation proof: 2 hosts sharing Redis, 10 refreshes", peer="django-oauth-toolkit")
def test_two_hosts_sharing_redis_never_replay(dot_detector: Detector, browser: Any, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    hosts = [store_options("redis", tmp_path, request, host=name) for name in ("host-a", "host-b")]
    _prove(dot_detector, browser, "redis", hosts, tmp_path)


@pytest.mark.interop_flow("rotation proof: 8 processes sharing a file store, 10 refreshes", peer="glewlwyd")
def test_eight_processes_sharing_a_file_store_never_replay_at_glewlwyd(
        glewlwyd_detector: Detector, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _prove(glewlwyd_detector, None, "file", [store_options("file", tmp_path, request)], tmp_path)


@pytest.mark.interop_flow("rotation proof: 2 hosts sharing Redis, 10 refreshes", peer="glewlwyd")
def test_two_hosts_sharing_redis_never_replay_at_glewlwyd(glewlwyd_detector: Detector, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    hosts = [store_options("redis", tmp_path, request, host=name) for name in ("host-a", "host-b")]
    _prove(glewlwyd_detector, None, "redis", hosts, tmp_path)
