"""The Connect drivers against connectrpc's current release, in a child process (see the script's docstring)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "build" / "connectrpc-latest"


def test_connect_interceptors_work_with_connectrpc_latest() -> None:
    if not (LATEST / "connectrpc").is_dir():
        pytest.skip(f"connectrpc's current release is not installed in {LATEST} (scripts/test installs it)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LATEST), str(ROOT)])}
    script = ROOT / "tests" / "scripts" / "connectrpc_latest.py"
    proc = subprocess.run([sys.executable, str(script)], env=env, check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(LATEST) in proc.stdout and "ok: calls 9 rejected 4" in proc.stdout
