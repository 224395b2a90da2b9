"""CLI gaps a first-time user met (issue 17): `--version`, exit codes in `token --help`, and status, login and
logout that tell the truth for a provider whose tokens are not kept (ClientSecret: a token per process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flyteauth_core import __version__
from flyteauth_core.commands._display import span
from flyteauth_core.testing import DemoTokenEndpoint, FlyteTestServer

from .test_cli import flyteauth, peers, write_config

__all__ = ["peers"]  # the fixture, re-exported for pytest


def test_version() -> None:
    """0.2.0: a usage error (exit 2)."""
    result = flyteauth("--version")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"flyteauth \d+\.\d+\.\d+\S*\n", result.stdout)
    assert result.stdout.split()[1].startswith(__version__.rsplit(".", 1)[0])


def test_token_help_lists_the_exit_codes() -> None:
    """The README promises exit codes 0-5; 0.2.0's `--help` did not say them."""
    out = flyteauth("token", "--help").stdout
    assert "exit codes:" in out
    for code, words in (("0", "ok"), ("1", "unexpected"), ("2", "configuration"), ("3", "flyteauth login"),
                        ("4", "rejected"), ("5", "transient")):
        assert re.search(rf"^  {code}  .*{words}", out, re.M), (code, out)


@pytest.mark.parametrize(("seconds", "shown"), [(119.7, "2m00s"), (59.6, "1m00s"), (61.2, "1m01s"),
                                                (3599.6, "1h00m"), (3725, "1h02m"), (-90.4, "1m30s")])
def test_spans_round_once(seconds: float, shown: str) -> None:
    """0.2.0 printed "(in 1m60s)" for 119.7 s (minutes floored, seconds rounded separately)."""
    assert span(seconds) == shown


def test_status_login_logout_for_client_secret_say_nothing_is_kept(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer], tmp_path: Path) -> None:
    """0.2.0: status said "no stored token (run `flyteauth login`)", and login "stored" the token in a
    memory store that died with the command."""
    idp, server = peers
    config = str(write_config(tmp_path, server))
    env = {"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "tokens")}

    status = flyteauth("status", "--config", config, env=env)
    assert status.returncode == 0, status.stderr
    assert "flyteauth login" not in status.stdout and "needs no login" in status.stdout
    assert "memory (this process only; nothing is kept)" in status.stdout
    assert "helper cache   none" in status.stdout and idp.requests == 0  # offline without --check

    login = flyteauth("login", "--config", config, env=env)
    assert login.returncode == 0, login.stderr
    assert "needs no login" in login.stderr and "nothing is kept" in login.stderr
    assert "Logged in" not in login.stderr and "stored in" not in login.stderr
    assert idp.requests == 1  # one token, to check the credentials

    checked = flyteauth("status", "--check", "--config", config, env=env)
    assert checked.returncode == 0 and "obtained now for " in checked.stdout and "not kept" in checked.stdout
    assert idp.requests == 2

    assert flyteauth("token", "--config", config, env=env).returncode == 0
    cached = flyteauth("status", "--config", config, env=env)
    assert "`flyteauth token` holds one for " in cached.stdout

    logout = flyteauth("logout", "--config", config, env=env)
    assert logout.returncode == 0, logout.stderr
    assert "No stored login" in logout.stderr and "removed 1 access token(s)" in logout.stderr
    assert "helper cache   none" in flyteauth("status", "--config", config, env=env).stdout


def test_status_check_with_a_wrong_secret_fails_with_the_idps_answer(
        peers: tuple[DemoTokenEndpoint, FlyteTestServer], tmp_path: Path) -> None:
    _, server = peers
    config = str(write_config(tmp_path, server, secret="not-the-secret"))
    result = flyteauth("status", "--check", "--config", config, env={"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "t")})
    assert result.returncode == 1 and "rejected the client credentials" in result.stderr
