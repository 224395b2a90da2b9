"""Soak settings: the ``soak`` marker, the duration, and the soak table at the end of the run.

Duration: ``$FLYTEAUTH_SOAK_SECONDS`` if set; else 60 s when the run selects the marker explicitly
(``pytest -m soak``); else 15 s (the short version that runs in the normal suite and in CI).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

SOAK_ENV = "FLYTEAUTH_SOAK_SECONDS"
LONG, SHORT = 60.0, 15.0
RESULTS = pytest.StashKey[list[list[tuple[str, str]]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"soak: long-running load test (duration: ${SOAK_ENV}, 60 s with -m soak, "
                                       "else 15 s)")


def soak_seconds(config: pytest.Config) -> float:
    value = os.environ.get(SOAK_ENV, "").strip()
    if value:
        return float(value)
    return LONG if "soak" in (config.option.markexpr or "") else SHORT


@pytest.fixture
def soak_report(request: pytest.FixtureRequest) -> list[tuple[str, str]]:
    """Rows ``(metric, value)`` for the soak table printed at the end of the run."""
    rows: list[tuple[str, str]] = []
    request.config.stash.setdefault(RESULTS, []).append(rows)
    return rows


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from tests.faults._kit import markdown_table

    for rows in config.stash.get(RESULTS, []):
        if rows:
            terminalreporter.write_sep("=", "soak")
            terminalreporter.write_line(markdown_table(["metric", "value"], rows))
