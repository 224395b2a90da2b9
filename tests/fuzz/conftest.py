"""Fuzz targets: register the ``fuzz`` marker (profiles: see _profiles.py and README.md)."""

from __future__ import annotations

import pytest

from ._profiles import FUZZING


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: hypothesis fuzz targets (FLYTEAUTH_FUZZ=1 for 10,000 examples each)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if FUZZING:  # 10,000 examples outlast the suite's 120 s per-test timeout
        for item in items:
            if item.get_closest_marker("fuzz"):
                item.add_marker(pytest.mark.timeout(3600))
