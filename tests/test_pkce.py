"""PKCE: the login, the loopback callback server's failure modes, and the non-interactive rule.

Against an in-process OAuth server (tests/_oauth_fake.py) with an HTTP "browser" that follows redirects;
the real IdP + headless Chromium test is at the end (marked ``idp``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from flyteauth_core import AuthSession
from flyteauth_core.errors import ConfigError, InteractionRequired
from flyteauth_core.testing import FlyteTestServer
from flyteauth_providers import pkce
from flyteauth_providers._interactive import (
    LoginDeniedError,
    LoginError,
    LoginStateError,
    LoginTimeoutError,
)
from flyteauth_providers.pkce import CallbackServer

from ._interactive_helpers import HttpBrowser, config_for, session_for
from ._oauth_fake import FakeOAuthServer

Peers = Callable[..., tuple[FakeOAuthServer, FlyteTestServer]]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_login_through_the_callback_server(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers()
    browser = HttpBrowser()
    with session_for(server, tmp_path, browserOpener=browser) as session:
        token = session.login()
        assert fake.validate(token.access_token) is None
        assert token.refresh_token
        assert browser.pages[0][0] == 200 and "logged in" in browser.pages[0][1].lower()
        sent = query(browser.urls[0])
        assert sent["code_challenge_method"] == "S256" and sent["client_id"] == "native"
        assert sent["scope"] == "all offline"
        assert urlsplit(sent["redirect_uri"]).hostname == "127.0.0.1" and urlsplit(sent["redirect_uri"]).port
        # A second login: a fresh verifier (hence challenge) and state.
        session.login()
        again = query(browser.urls[1])
        assert again["state"] != sent["state"] and again["code_challenge"] != sent["code_challenge"]
        assert fake.stats["grant:authorization_code"] == 2
        # A session call uses the stored login.
        assert session.get_token().access_token != token.access_token


def test_a_favicon_and_a_second_tab_are_ignored(fake_peers: Peers, tmp_path: Path) -> None:
    _, server = fake_peers()
    strays: list[int] = []

    def stray(url: str) -> None:
        base = query(url)["redirect_uri"]
        origin = base.rsplit("/", 1)[0]
        strays.append(httpx2.get(origin + "/favicon.ico", timeout=5).status_code)
        strays.append(httpx2.get(base, timeout=5).status_code)  # a tab without parameters
        strays.append(httpx2.get(origin + "/other?state=x&code=y", timeout=5).status_code)

    with session_for(server, tmp_path, browserOpener=HttpBrowser(before=stray)) as session:
        started = time.monotonic()
        assert session.login().access_token
    assert strays == [404, 404, 404]
    assert time.monotonic() - started < 5


def test_an_error_redirect_ends_promptly_with_the_idps_description(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers()
    fake.mode = "deny"
    browser = HttpBrowser()
    with session_for(server, tmp_path, browserOpener=browser) as session:
        started = time.monotonic()
        with pytest.raises(LoginDeniedError, match=r"access_denied.*The user said no") as info:
            session.login()
    assert time.monotonic() - started < 5  # not the 2-minute timeout
    assert info.value.error == "access_denied"
    assert browser.pages[0][0] == 400 and "Login failed" in browser.pages[0][1]


def test_a_wrong_state_is_ignored_and_the_login_goes_on(fake_peers: Peers, tmp_path: Path) -> None:
    """Any local page could otherwise abort a login by sending a request with a wrong state."""
    _, server = fake_peers()
    forged: list[int] = []

    def forge(url: str) -> None:
        reply = httpx2.get(query(url)["redirect_uri"] + "?state=forged&code=abc", timeout=5)
        forged.append(reply.status_code)

    with session_for(server, tmp_path, browserOpener=HttpBrowser(before=forge)) as session:
        token = session.login()
    assert token.access_token and forged == [400]


def test_an_answer_from_another_issuer_is_refused(fake_peers: Peers, tmp_path: Path) -> None:
    """RFC 9207: an ``iss`` naming another IdP (mix-up attack) ends the login; the code is not exchanged."""
    fake, server = fake_peers()

    def mixed_up(url: str) -> bool:
        params = query(url)
        httpx2.get(params["redirect_uri"] + f"?state={params['state']}&code=abc&iss=https://evil.example",
                   timeout=5)
        return True

    with session_for(server, tmp_path, browserOpener=mixed_up) as session, \
            pytest.raises(LoginStateError, match=r"evil\.example"):
        session.login()
    assert fake.token_requests() == 0


def test_no_answer_ends_at_the_configured_timeout(fake_peers: Peers, tmp_path: Path) -> None:
    _, server = fake_peers()
    opened: list[str] = []
    with session_for(server, tmp_path, browserOpener=lambda url: opened.append(url) or True,
                     pkce_timeout=1) as session:
        started = time.monotonic()
        with pytest.raises(LoginTimeoutError, match="within 1s"):
            session.login()
    assert 0.9 < time.monotonic() - started < 4
    assert len(opened) == 1


def test_without_a_browser_the_url_is_printed(fake_peers: Peers, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, server = fake_peers()
    with session_for(server, tmp_path, browserOpener=lambda url: False, pkce_timeout=0.3) as session, \
            pytest.raises(LoginTimeoutError):
        session.login()
    err = capsys.readouterr().err
    assert "open this URL in a browser" in err and "code_challenge=" in err


def test_non_interactive_sessions_raise_interaction_required_and_open_nothing(
        fake_peers: Peers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, server = fake_peers()
    opened: list[str] = []
    monkeypatch.setattr(pkce, "open_browser", lambda url: opened.append(url) or True)
    with session_for(server, tmp_path, interactive=False) as session, \
            pytest.raises(InteractionRequired, match="flyteauth login"):
        session.get_token()
    # The default: CI=true means non-interactive, whatever the TTY.
    monkeypatch.delenv("FLYTEAUTH_INTERACTIVE", raising=False)
    monkeypatch.setenv("CI", "true")
    with AuthSession(config_for(server), store="memory") as session:
        assert session.interactive is False
        with pytest.raises(InteractionRequired):
            session.get_token()
    assert opened == [] and fake.stats["authorize"] == 0


def test_default_opener_is_used_and_can_be_replaced(fake_peers: Peers, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = fake_peers()
    browser = HttpBrowser()
    monkeypatch.setattr(pkce, "open_browser", browser)
    with session_for(server, tmp_path) as session:
        assert session.login().access_token
    assert len(browser.urls) == 1


def test_headless_linux_does_not_start_a_console_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    monkeypatch.setattr("sys.platform", "linux")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("webbrowser.open called"))
    assert pkce.open_browser("http://127.0.0.1/x") is False


def test_a_busy_port_is_a_typed_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LoginError, match="Cannot listen"):
            CallbackServer(f"http://localhost:{port}/callback", "state")


def test_a_non_loopback_redirect_is_refused() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        CallbackServer("https://example.com/callback", "state")


def test_the_callback_server_answers_once_and_then_404s() -> None:
    with CallbackServer("http://127.0.0.1:0/cb", "s1") as callback:
        done = threading.Event()
        codes: list[str] = []

        def wait() -> None:
            codes.append(callback.wait(5))
            done.set()

        threading.Thread(target=wait).start()
        assert httpx2.get(callback.redirect_uri + "?state=s1&code=c1", timeout=5).status_code == 200
        assert done.wait(5) and codes == ["c1"]
        late = httpx2.get(callback.redirect_uri + "?state=s1&code=c2", timeout=5)
        assert late.status_code == 404 and "already finished" in late.text
        assert callback.stray_requests == 1


def test_the_error_page_escapes_the_idps_description() -> None:
    with CallbackServer("http://127.0.0.1:0/cb", "s") as callback:
        page = httpx2.get(callback.redirect_uri, params={"state": "s", "error": "server_error",
                                                         "error_description": "<script>x</script>"}, timeout=5)
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text
        with pytest.raises(LoginError, match="server_error"):
            callback.wait(1)


def test_alias_standard_resolves_to_pkce(fake_peers: Peers) -> None:
    _, server = fake_peers()
    with AuthSession(config_for(server, "standard"), store="memory", interactive=False) as session:
        assert session.auth_type == "Pkce"


# -- the real IdP, in real headless Chromium -------------------------------------------------------------
@pytest.mark.idp
def test_pkce_login_in_headless_chromium_then_a_second_process_needs_no_idp_request(
        native_peers: Any, browser: Any, tmp_path: Path) -> None:
    from ._browser import open_url_in_browser
    from ._interactive_helpers import flyteauth, write_config

    idp, native_server = native_peers(token_ttl=300)
    opener = open_url_in_browser(browser)
    with session_for(native_server, tmp_path, browserOpener=opener) as session:
        token = session.login()
        assert token.refresh_token and token.expires_at
        assert "/callback?" in opener.wait() and opener.calls == 1
    stats = idp.stats()
    assert stats["by_grant"].get("authorization_code") == 1 and stats["authorize_requests"] >= 1
    before = idp.token_request_count()

    config = write_config(tmp_path / "config.yaml", native_server)
    result = flyteauth("token", "--config", str(config),
                       env={"FLYTEAUTH_TOKEN_DIR": str(tmp_path / "tokens"), "FLYTEAUTH_INTERACTIVE": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == token.access_token
    assert idp.token_request_count() == before  # 0 requests to the IdP from the second process


def test_port_zero_binds_a_free_port_not_80() -> None:
    with CallbackServer("http://127.0.0.1:0/cb", "s") as callback:
        port = urlsplit(callback.redirect_uri).port
        assert port not in (None, 0, 80)
