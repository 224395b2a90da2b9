"""Refresh tokens: tried before any login, used once however many callers or processes ask, never lost to a
transient failure.  Against the in-process OAuth server (rotation + reuse detection); the real-IdP versions
are in test_e2e_interactive-style tests below, marked ``idp``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flyteauth_core import Token
from flyteauth_core.errors import InteractionRequired, TransientTokenError
from flyteauth_core.testing import ECHO, FlyteTestServer
from flyteauth_providers.file_store import FileTokenStore

from ._interactive_helpers import HttpBrowser, session_for, thread_storm
from ._oauth_fake import FakeOAuthServer

Peers = Callable[..., tuple[FakeOAuthServer, FlyteTestServer]]


def expire(store: FileTokenStore, key: str) -> Token:
    """Rewrite the stored token as expired (keeping its refresh token), as if the process slept an hour."""
    token = store.load(key)
    assert token is not None
    expired = Token(token.access_token, expires_at=time.time() - 60, refresh_token=token.refresh_token,
                    scopes=token.scopes)
    store.save(key, expired)
    return expired


def logged_in(fake_peers: Peers, tmp_path: Path, **fake_kwargs: object) -> tuple[FakeOAuthServer, FlyteTestServer,
                                                                                   FileTokenStore, str]:
    fake, server = fake_peers(**fake_kwargs)
    with session_for(server, tmp_path, browserOpener=HttpBrowser()) as session:
        session.login()
        store, key = session.store, session.identity().store_key
    assert isinstance(store, FileTokenStore)
    return fake, server, store, key


def test_refresh_comes_before_any_login_and_keeps_an_unrotated_refresh_token(fake_peers: Peers,
                                                                               tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path, rotate=False)
    old = expire(store, key)
    opened: list[str] = []
    with session_for(server, tmp_path, browserOpener=opened.append) as session:
        token = session.get_token()
    assert opened == [] and fake.stats["grant:refresh_token"] == 1
    assert token.refresh_token == old.refresh_token  # not rotated: kept
    assert store.load(key) == token


def test_64_concurrent_callers_after_expiry_make_one_refresh_and_no_reuse(fake_peers: Peers,
                                                                           tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path)
    expire(store, key)
    with session_for(server, tmp_path, interactive=False) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        results = thread_storm(64, lambda i: unary(b"%d" % i))
    assert results == [b"%d" % i for i in range(64)]
    assert fake.stats["grant:refresh_token"] == 1
    assert fake.reuse_detected == 0 and not fake.revoked_grants
    assert server.stats["rejected"] == 0


def test_invalid_grant_runs_the_login_when_allowed(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path)
    expire(store, key)
    fake.revoked_grants.update(e["grant"] for e in fake._refresh.values())
    browser = HttpBrowser()
    with session_for(server, tmp_path, browserOpener=browser) as session:
        assert fake.validate(session.get_token().access_token) is None
    assert len(browser.urls) == 1 and fake.stats["grant:refresh_token"] == 1


def test_invalid_grant_without_interaction_says_to_log_in(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path)
    expire(store, key)
    fake.revoked_grants.update(e["grant"] for e in fake._refresh.values())
    with session_for(server, tmp_path, interactive=False) as session, \
            pytest.raises(InteractionRequired, match="flyteauth login"):
        session.get_token()


def test_a_transient_failure_keeps_the_stored_login(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path)
    stored = expire(store, key)
    fake.fail_next = [(503, {"error": "temporarily_unavailable"})] * 4
    with session_for(server, tmp_path, interactive=False) as session:
        with pytest.raises(TransientTokenError):
            session.get_token()
        assert store.load(key) == stored  # kept
        assert session.get_token().refresh_token != stored.refresh_token  # the next try works
    assert fake.reuse_detected == 0


def test_login_skips_the_refresh_token(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server, _, _ = logged_in(fake_peers, tmp_path)
    with session_for(server, tmp_path, browserOpener=HttpBrowser()) as session:
        session.login()
    assert fake.stats["grant:refresh_token"] == 0 and fake.stats["grant:authorization_code"] == 2


SCRIPT = """
import sys
from flyteauth_core import AuthConfig, AuthSession
config = AuthConfig(endpoint={target!r}, insecure=True, auth_type="Pkce", store="file")
with AuthSession(config, interactive=False) as session:
    sys.stdin.readline()  # start together
    print(session.get_token().access_token[-12:])
"""


def start_processes(n: int, code: str, env: dict[str, str]) -> list[str]:
    import os
    import subprocess
    import sys

    from ._interactive_helpers import REPO

    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO), **env}) for _ in range(n)]
    time.sleep(1.5)  # let every interpreter import and build its session
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_16_processes_on_an_expired_stored_token_make_one_refresh(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server, store, key = logged_in(fake_peers, tmp_path)
    expire(store, key)
    outputs = start_processes(16, SCRIPT.format(target=server.target),
                              {"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "tokens")})
    assert fake.stats["grant:refresh_token"] == 1, dict(fake.stats)
    assert len(set(outputs)) == 1 and fake.reuse_detected == 0


@pytest.mark.idp
def test_real_idp_rotating_refresh_tokens_are_used_once_by_64_threads_and_16_processes(
        native_peers: object, browser: object, tmp_path: Path) -> None:
    """oidc-provider rotates refresh tokens and revokes the grant when a rotated one is presented again, so a
    duplicate refresh anywhere shows up as ``refresh_reuse_detected`` (and the next refresh would fail).

    Tokens live 60 s and expiry is simulated by rewriting the stored expiry: with the default 2 s lifetime the
    refreshed token is already half-used (so legitimately refreshed again) when the last processes start."""
    from ._browser import open_url_in_browser

    idp, server = native_peers(token_ttl=60)  # type: ignore[operator]
    with session_for(server, tmp_path, browserOpener=open_url_in_browser(browser)) as session:
        first = session.login()
        store, key = session.store, session.identity().store_key
    assert isinstance(store, FileTokenStore) and first.expires_at is not None
    expire(store, key)

    # 64 threads of one process, after expiry: one refresh-token request.
    with session_for(server, tmp_path, interactive=False) as session:
        results = thread_storm(64, lambda i: session.get_token().access_token)
    assert len(set(results)) == 1 and isinstance(results[0], str) and results[0] != first.access_token
    stats = idp.stats()
    assert stats["by_grant"].get("refresh_token") == 1, stats
    assert stats["refresh_reuse_detected"] == 0 and stats["grants_revoked"] == 0, stats

    # 16 processes sharing the token directory, on an expired token: one refresh-token request between them.
    expire(store, key)
    outputs = start_processes(16, SCRIPT.format(target=server.target),
                              {"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "tokens")})
    stats = idp.stats()
    assert stats["by_grant"].get("refresh_token") == 2, stats
    assert stats["refresh_reuse_detected"] == 0 and stats["grants_revoked"] == 0, stats
    assert len(set(outputs)) == 1
