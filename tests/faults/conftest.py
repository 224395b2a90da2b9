"""The fault suite's table: every scenario test records a :class:`~tests.faults._kit.Row`, its pass/fail
comes from the test's own outcome, and the table is printed at the end of any run that collected one
(``scripts/faults``, or the normal suite).

Fixtures: ``fault`` (this test's row) and ``fault_session`` (an AuthSession against the real IdP with a
choice of store, refresh policy and server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import FlyteTestServer
from tests._idp import CI_BASIC, IdpServer

from ._kit import Row, fault_table

ROWS = pytest.StashKey[list[Row]]()
ROW = pytest.StashKey[Row]()


def _rows(config: pytest.Config) -> list[Row]:
    if ROWS not in config.stash:
        config.stash[ROWS] = []
    return config.stash[ROWS]


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[Row]:
    """This test's row in the fault table: set ``scenario``/``expected``, call ``see(...)`` as you go."""
    row = Row(scenario=request.node.name)
    request.node.stash[ROW] = row
    _rows(request.config).append(row)
    started = time.monotonic()
    yield row
    row.seconds = time.monotonic() - started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    row = item.stash.get(ROW, None)
    if row is not None:
        if report.when == "call":
            row.passed = report.passed
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                row.see("FAILED: " + (crash.message.splitlines()[0][:160] if crash else "see report"))
        elif report.failed:  # setup or teardown error
            row.passed = False
            row.see(f"ERROR in {report.when}")
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    passed = sum(1 for r in rows if r.passed)
    terminalreporter.write_sep("=", f"fault suite: {passed}/{len(rows)} scenarios pass")
    terminalreporter.write_line(fault_table(rows))


SessionFactory = Callable[..., tuple[AuthSession, FlyteTestServer]]


@pytest.fixture
def fault_session(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer]) -> Iterator[SessionFactory]:
    """Factory: ``(session, server)``; ``server_kwargs`` go to FlyteTestServer (``validate=``,
    ``token_endpoint=``...), ``store``/``policy`` to AuthSession, the rest to AuthConfig (ci-basic client)."""
    sessions: list[AuthSession] = []

    def make(server_kwargs: dict[str, Any] | None = None, *, store: Any = None, policy: Any = None,
             **config: Any) -> tuple[AuthSession, FlyteTestServer]:
        server = flyte_server(**(server_kwargs or {}))
        config.setdefault("auth_type", "ClientSecret")
        config.setdefault("client_id", CI_BASIC[0])
        config.setdefault("client_secret", CI_BASIC[1])
        session = AuthSession(AuthConfig(endpoint=server.target, insecure=True, **config), store=store,
                              policy=policy, interactive=False)
        sessions.append(session)
        return session, server

    yield make
    for session in sessions:
        session.close()
