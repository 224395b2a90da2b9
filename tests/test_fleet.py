"""The short version of ``benchmarks/fleet.py``: 8 processes on 2 hosts sharing one client id, the real
IdP limited to 5 token requests/s, one real redis-server.  One subprocess run (~30 s) covers every
section; the assertions are counts, not timings (except the lock-TTL bound, with slack)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROCS, HOSTS, TTL, DURATION, LOCK_TTL = 8, 2, 3, 4.0, 2.0

pytestmark = [pytest.mark.idp, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("redis-server") is None or shutil.which("node") is None:
        pytest.skip("needs redis-server and node")
    out = tmp_path_factory.mktemp("fleet") / "fleet.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--procs", str(PROCS), "--hosts", str(HOSTS),
         "--ttl", str(TTL), "--duration", str(DURATION), "--lock-ttl", str(LOCK_TTL),
         "--outage", "2", "--outage-run", "7",
         "--rate-limit", "5", "--limit-all", "--configs", "file,redis", "--discovery-procs", "16",
         "--sections", "fleet,kill,outage,discovery,hotpath", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=220, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_fleet_shares_one_token_and_never_fails_a_call(fleet: dict[str, Any]) -> None:
    redis, file = fleet["fleet"]["redis"], fleet["fleet"]["file"]
    for row in (redis, file):
        assert row["errors"] == [] and row["reported"] == PROCS
        assert row["failed_calls"] == 0 and row["calls"] > PROCS * DURATION * 5
    refresh_intervals = DURATION / (TTL / 2)
    # one request at the cold start plus about one per refresh interval, for the whole fleet
    assert redis["token_requests"] <= refresh_intervals + 2
    assert redis["rate_limited"] == 0
    assert file["token_requests"] >= redis["token_requests"]


def test_killed_lock_holder_is_replaced_within_the_lock_ttl(fleet: dict[str, Any]) -> None:
    kill = fleet["kill"]
    assert kill["killed_pid"] is not None
    assert kill["recovered_s"] is not None
    assert kill["recovered_s"] <= kill["bound_s"] + 1.0  # lock TTL + one IdP round trip (+ a loaded CI machine)
    assert kill["failed_calls"] == 0 and kill["reported"] == PROCS - 1


def test_redis_outage_falls_back_to_one_token_per_host(fleet: dict[str, Any]) -> None:
    outage = fleet["outage"]
    assert outage["failed_calls"] == 0 and outage["reported"] == PROCS
    assert outage["during"] <= HOSTS + 1  # per host (file fallback), never per process
    assert outage["after"] is not None and outage["after"] <= 2  # back to about one for the fleet


def test_discovery_is_shared(fleet: dict[str, Any]) -> None:
    assert fleet["discovery"]["redis"]["metadata_rpcs"] == 2  # 16 processes, one discovery
    assert fleet["discovery"]["file"]["metadata_rpcs"] == 2 * HOSTS
    assert fleet["discovery"]["redis"]["failed_calls"] == 0


def test_hot_path_sends_nothing_to_redis(fleet: dict[str, Any]) -> None:
    hotpath = fleet["hotpath"]
    # counted over the rounds whose (3 s) token stayed fresh throughout; a round a loaded machine
    # stretched past the refresh window refreshes, and a refresh talks to Redis by design
    assert hotpath["fresh_rounds"] >= 1, hotpath
    assert hotpath["redis_commands_during"] == 0, hotpath


def test_idp_rate_limit_answers_429_with_retry_after() -> None:
    import base64
    import urllib.error
    import urllib.request

    from ._idp import CI_BASIC, IdpServer

    auth = base64.b64encode(f"{CI_BASIC[0]}:{CI_BASIC[1]}".encode()).decode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with IdpServer(env={"IDP_RATE_LIMIT": "2"}) as idp:
        statuses, retry_after = [], None
        for _ in range(3):
            request = urllib.request.Request(idp.token_endpoint, data=b"grant_type=client_credentials",
                                             headers={"Authorization": f"Basic {auth}"})
            try:
                with opener.open(request, timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                retry_after = error.headers.get("Retry-After")
        assert statuses == [200, 200, 429] and retry_after == "1"
        assert idp.stats()["rate_limited"] == 1
