"""The suite-wide leak scan (tests/_leakscan.py) can fail: a tiny test run that leaks a registered secret
through a log record, a FlyteAuthError message and a token's way into a log is reported, and fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANARY = "leak-canary-5d1f0e9b77"

LEAKY_TESTS = f'''
import logging
from flyteauth_core.errors import ConfigError
from flyteauth_core.token import token_from_response
from tests._leakscan import register_secret

def test_logs_a_registered_secret():
    register_secret("{CANARY}")
    logging.getLogger("flyteauth.selftest").debug("connecting with %s", "{CANARY}")

def test_error_message_with_a_configured_secret():
    from flyteauth_core import AuthConfig
    AuthConfig(endpoint="flyte:443", client_id="c", client_secret="cfg-secret-31c9a7")
    ConfigError("bad value cfg-secret-31c9a7")

def test_token_logged():
    token = token_from_response({{"access_token": "tok-from-idp-8e2f4411"}}, now=0.0, endpoint="e")
    logging.getLogger("someapp").warning("got %s", token.access_token)

def test_clean():
    logging.getLogger("flyteauth.selftest").debug("nothing secret here")
'''


def test_leak_scan_reports_and_fails_the_session(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests._leakscan",
         "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout + proc.stderr
    assert "4 passed" in out, out  # every test passed ...
    assert proc.returncode == 1, out  # ... and the session failed
    assert "LEAK SCAN: 3 secret(s) found" in out, out
    assert "test_logs_a_registered_secret: log flyteauth.selftest contains leak… (22 chars)" in out, out
    assert "test_error_message_with_a_configured_secret: ConfigError message contains cfg-… (17 chars) " \
           "[AuthConfig.client_secret]" in out, out
    assert "test_token_logged: log someapp contains tok-… (21 chars) [token_from_response access_token]" in out, out
    assert "test_clean" not in out.split("LEAK SCAN")[1], out
    for secret in (CANARY, "cfg-secret-31c9a7", "tok-from-idp-8e2f4411"):
        assert secret not in out  # the report itself does not repeat the secret
