"""``flyteauth login | status | token | logout`` with a stored PKCE login, and nothing secret in what they print.

``login`` runs in-process (so the test can be the browser); the others are real processes sharing the token
directory, against the in-process OAuth server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from flyteauth_core import cli
from flyteauth_core.testing import FlyteTestServer
from flyteauth_providers import pkce

from ._interactive_helpers import HttpBrowser, flyteauth, write_config
from ._oauth_fake import FakeOAuthServer

Peers = Callable[..., tuple[FakeOAuthServer, FlyteTestServer]]


def test_login_status_token_logout(fake_peers: Peers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    fake, server = fake_peers()
    config = write_config(tmp_path / "config.yaml", server)
    tokens = tmp_path / "tokens"
    env = {"FLYTEAUTH_TOKEN_DIR": str(tokens), "FLYTEAUTH_INTERACTIVE": "0"}
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tokens))
    monkeypatch.setattr(pkce, "open_browser", HttpBrowser())

    with caplog.at_level(logging.DEBUG):
        assert cli.main(["login", "--config", str(config)]) == 0
    login_out = capsys.readouterr()
    assert "Logged in to" in login_out.err and "alice@example.com" in login_out.err and login_out.out == ""
    assert len(list(tokens.glob("*.json"))) == 1
    before = fake.token_requests()

    status = flyteauth("status", "--config", str(config), env=env)
    assert status.returncode == 0, status.stderr
    assert "alice@example.com" in status.stdout and "Pkce" in status.stdout and "file (" in status.stdout
    assert "all offline" in status.stdout and "refresh token  yes" in status.stdout

    printed = flyteauth("token", "--config", str(config), env=env)
    assert printed.returncode == 0, printed.stderr
    access = printed.stdout.strip()
    assert fake.validate(access) is None
    assert fake.token_requests() == before  # the second process used the stored login: 0 IdP requests

    secrets = [access, *(e for e in fake._refresh)]
    for text in (login_out.err, status.stdout, status.stderr, printed.stderr, caplog.text):
        assert not any(s in text for s in secrets)

    logout = flyteauth("logout", "--config", str(config), env=env)
    assert logout.returncode == 0, logout.stderr
    assert "revoked" in logout.stderr and fake.stats["revoke"] == 1 and fake.revoked_grants
    assert not list(tokens.glob("*.json"))
    after = flyteauth("status", "--config", str(config), env=env)
    assert "no stored token" in after.stdout
    denied = flyteauth("token", "--config", str(config), env=env)
    assert denied.returncode == 3 and "flyteauth login" in denied.stderr  # interaction required
    for text in (logout.stderr, after.stdout, denied.stderr):
        assert not any(s in text for s in secrets)


def test_logout_works_offline(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:1\n  insecure: true\n  authType: Pkce\n"
                      "  tokenStore: file\n")
    result = flyteauth("logout", "--config", str(config), env={"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "t")},
                       timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Logged out" in result.stderr


def test_login_failure_is_one_clear_line(fake_peers: Peers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake, server = fake_peers()
    fake.mode = "deny"
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "tokens"))
    monkeypatch.setattr(pkce, "open_browser", HttpBrowser())
    assert cli.main(["login", "--config", str(write_config(tmp_path / "c.yaml", server))]) == 1
    err = capsys.readouterr().err
    assert "access_denied" in err and "Traceback" not in err
