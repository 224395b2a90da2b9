"""The `flyteauth` command as a user runs it: a real process, real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyteauth_core.testing import DemoTokenEndpoint, FlyteTestServer

SECRET = "cli-test-secret-6f1d"


def flyteauth(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # `flyteauth token` caches tokens: keep them out of the real home directory.
    env = {**os.environ, "FLYTEAUTH_TOKEN_DIR": str(Path(tempfile.gettempdir()) / "flyteauth-test-cli-tokens"),
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "flyteauth_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


@pytest.fixture
def peers() -> Iterator[tuple[DemoTokenEndpoint, FlyteTestServer]]:
    with DemoTokenEndpoint("cli", SECRET, ttl=60) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        yield idp, server


def write_config(tmp_path: Path, server: FlyteTestServer, secret: str = SECRET) -> Path:
    (tmp_path / "secret").write_text(secret + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: basic\n"
                      f"  clientId: cli\n  clientSecretLocation: {tmp_path / 'secret'}\n")
    return config


def test_demo_runs_the_whole_loop_and_reports() -> None:
    result = flyteauth("demo", "--seconds", "3", "--ttl", "1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "16 threads call a cold session at once" in out and "1 token request(s)" in out
    assert "0 waited, 0 failed" in out
    assert "server revokes the token" in out and "retried transparently" in out
    assert "FAIL" not in out and out.strip().endswith("demo passed")
    assert "readable by others" not in result.stderr  # the demo's own secret file is 0600 (0644 under umask 022)
    assert "WARNING" not in result.stderr, result.stderr


def test_token_prints_only_the_access_token(peers: tuple[DemoTokenEndpoint, FlyteTestServer], tmp_path: Path) -> None:
    idp, server = peers
    result = flyteauth("token", "--config", str(write_config(tmp_path, server)))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert idp.validate(token) is None  # a token the server accepts


def test_token_with_a_wrong_secret_fails_with_a_clear_message(peers: tuple[DemoTokenEndpoint, FlyteTestServer],
                                                              tmp_path: Path) -> None:
    _, server = peers
    wrong = "wrong-secret-a9c2"
    result = flyteauth("token", "--config", str(write_config(tmp_path, server, secret=wrong)))
    assert result.returncode == 4  # rejected by the IdP (documented exit codes of the credential helper)
    assert result.stdout == ""
    assert "Check the client id and secret" in result.stderr
    assert wrong not in result.stderr and "Traceback" not in result.stderr


def test_token_with_a_missing_config_file_fails_cleanly(tmp_path: Path) -> None:
    result = flyteauth("token", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2  # configuration
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_plugins_lists_the_builtin_providers() -> None:
    result = flyteauth("plugins")
    assert result.returncode == 0
    assert "client_credentials  [ok]  flyteauth" in result.stdout
    assert "registers authenticator ClientSecret (client_credentials, basic)" in result.stdout


def test_config_shows_sources_and_masks_the_secret(peers: tuple[DemoTokenEndpoint, FlyteTestServer],
                                                   tmp_path: Path) -> None:
    _, server = peers
    config = write_config(tmp_path, server)
    (tmp_path / "secret").chmod(0o600)
    result = flyteauth("config", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.split() == ["admin.clientId", "cli", str(config)] for line in result.stdout.splitlines())
    assert "explicit authType" in result.stdout
    assert SECRET not in result.stdout


def test_usage_error_exits_2() -> None:
    result = flyteauth("frobnicate")
    assert result.returncode == 2


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`flyteauth plugins | head -1`: the pipe closes before the output is written; exit quietly (141, as
    SIGPIPE would) instead of a BrokenPipeError traceback on the user's terminal."""
    proc = subprocess.Popen([sys.executable, "-m", "flyteauth_core.cli", "plugins"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has imported anything, let alone printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
