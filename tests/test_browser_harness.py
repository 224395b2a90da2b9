"""Self-tests of the browser harness (tests/_browser.py) against the real test IdP.

Interactive flows done by hand (no flyteauth code): PKCE authorization code with a
loopback callback, refresh-token rotation and reuse detection, device flow with
slow_down pacing, and the IdP's deny mode.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from tests._browser import complete_device_login, complete_login, open_url_in_browser
from tests._idp import (
    DEFAULT_AUDIENCE,
    DEVICE_CODE_GRANT,
    NATIVE_CLIENT_ID,
    IdpServer,
    native_redirect_uri,
)

pytestmark = pytest.mark.idp


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 chars
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class CallbackServer:
    """Loopback HTTP server recording the requests to /callback (like a PKCE client's)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.requests: list[str] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append(self.path)
                body = b"<!DOCTYPE html><html><body data-page='callback'>done</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.redirect_uri = native_redirect_uri(self.port, "localhost" if host == "localhost" else "127.0.0.1")
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="callback", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def callback() -> Iterator[CallbackServer]:
    server = CallbackServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(trust_env=False, timeout=10) as client:
        yield client


def _authorization_url(idp: IdpServer, redirect_uri: str, challenge: str, state: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": NATIVE_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": "openid offline_access all offline",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{idp.authorization_endpoint}?{urllib.parse.urlencode(params)}"


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _refresh(http: httpx2.Client, idp: IdpServer, refresh_token: str) -> httpx2.Response:
    return http.post(
        idp.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": NATIVE_CLIENT_ID},
    )


def test_pkce_login_refresh_rotation_and_reuse_detection(
    browser: Any, idp_fresh: IdpServer, callback: CallbackServer, http: httpx2.Client
) -> None:
    idp = idp_fresh
    verifier, challenge = _pkce_pair()
    state = secrets.token_urlsafe(16)
    # Any loopback port works for the native client (registered: 53593).
    final = complete_login(browser, _authorization_url(idp, callback.redirect_uri, challenge, state))

    assert final.startswith(callback.redirect_uri + "?")
    q = _query(final)
    assert q["state"] == state
    assert q["iss"] == idp.issuer
    assert callback.requests and callback.requests[0].startswith("/callback?")

    token = http.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": callback.redirect_uri,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == idp.token_ttl
    assert set(body["scope"].split()) == {"all", "offline"}
    assert body["id_token"]
    claims = _claims(body["access_token"])
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["sub"] == "alice"
    assert claims["client_id"] == NATIVE_CLIENT_ID
    assert claims["exp"] - claims["iat"] == idp.token_ttl
    rt1 = body["refresh_token"]

    # Refresh rotates the refresh token.
    refreshed = _refresh(http, idp, rt1)
    assert refreshed.status_code == 200, refreshed.text
    rt2 = refreshed.json()["refresh_token"]
    assert rt2 != rt1
    assert _claims(refreshed.json()["access_token"])["sub"] == "alice"
    assert idp.refresh_reuse_detected() == 0

    # Reusing the rotated token: invalid_grant, and the whole grant is revoked.
    reused = _refresh(http, idp, rt1)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert idp.refresh_reuse_detected() == 1
    newest = _refresh(http, idp, rt2)
    assert newest.status_code == 400
    assert newest.json()["error"] == "invalid_grant"

    # The code is single use (reusing it would revoke the grant too: oidc-provider
    # revokes every token of a grant whose authorization code is presented twice).
    again = http.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": callback.redirect_uri,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"

    stats = idp.stats()
    assert stats["logins"] == 1
    assert stats["consents"] == 1
    assert stats["authorize_requests"] == 1
    assert stats["refresh_reuse_detected"] == 1
    assert stats["grants_revoked"] >= 1
    assert stats["by_grant"] == {"authorization_code": 2, "refresh_token": 3}
    assert stats["token_requests"] == {NATIVE_CLIENT_ID: 5}


def test_concurrent_duplicate_refresh_is_caught(
    browser: Any, idp_fresh: IdpServer, callback: CallbackServer, http: httpx2.Client
) -> None:
    idp = idp_fresh
    verifier, challenge = _pkce_pair()
    final = complete_login(browser, _authorization_url(idp, callback.redirect_uri, challenge, "s"))
    token = http.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": _query(final)["code"],
            "redirect_uri": callback.redirect_uri,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    rt = token.json()["refresh_token"]
    results: list[int] = []

    def refresh() -> None:
        with httpx2.Client(trust_env=False, timeout=10) as c:
            results.append(_refresh(c, idp, rt).status_code)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [200, 400, 400, 400]
    assert idp.refresh_reuse_detected() == 3


def test_opener_drives_login_in_background(
    browser: Any, idp_fresh: IdpServer, callback: CallbackServer, http: httpx2.Client
) -> None:
    verifier, challenge = _pkce_pair()
    opener = open_url_in_browser(browser, username="bob")
    url = _authorization_url(idp_fresh, callback.redirect_uri, challenge, "xyz", scope="all")
    assert opener(url) is True  # returns at once, the browser works in a thread
    final = opener.wait()
    assert opener.urls == [url]
    q = _query(final)
    assert q["state"] == "xyz"
    token = http.post(
        idp_fresh.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": callback.redirect_uri,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["scope"] == "all"
    assert "id_token" not in body  # no openid scope
    assert body["refresh_token"]  # issued without offline_access too
    assert _claims(body["access_token"])["sub"] == "bob"


def test_login_mode_deny_redirects_access_denied(browser: Any, idp_fresh: IdpServer, callback: CallbackServer) -> None:
    _, challenge = _pkce_pair()
    idp_fresh.set_login_mode("deny", error_description="nope")
    final = complete_login(browser, _authorization_url(idp_fresh, callback.redirect_uri, challenge, "st"))
    q = _query(final)
    assert q["error"] == "access_denied"
    assert q["error_description"] == "nope"
    assert q["state"] == "st"
    assert "code" not in q
    stats = idp_fresh.stats()
    assert stats["denied"] == 1
    assert stats["logins"] == 0
    assert stats["login_mode"] == {"mode": "normal"}  # one-shot by default

    # The user denying consent also ends at the callback with access_denied.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    final = complete_login(
        browser, _authorization_url(idp_fresh, callback.redirect_uri, challenge, "st2"), consent=False
    )
    q = _query(final)
    assert q["error"] == "access_denied"
    assert q["state"] == "st2"


def _device_authorize(http: httpx2.Client, idp: IdpServer, scope: str = "all offline") -> dict[str, Any]:
    resp = http.post(idp.device_authorization_endpoint, data={"client_id": NATIVE_CLIENT_ID, "scope": scope})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _poll(http: httpx2.Client, idp: IdpServer, device_code: str) -> httpx2.Response:
    return http.post(
        idp.token_endpoint,
        data={"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": NATIVE_CLIENT_ID},
    )


def test_device_flow_slow_down_then_success(browser: Any, idp_fresh: IdpServer, http: httpx2.Client) -> None:
    idp = idp_fresh
    auth = _device_authorize(http, idp)
    assert auth["interval"] == idp.device_interval == 1
    assert auth["verification_uri"] == idp.device_verification_uri
    assert auth["verification_uri_complete"].startswith(idp.device_verification_uri + "?user_code=")

    first = _poll(http, idp, auth["device_code"])
    assert first.status_code == 400
    assert first.json()["error"] == "authorization_pending"
    fast = _poll(http, idp, auth["device_code"])  # too soon
    assert fast.status_code == 400
    assert fast.json()["error"] == "slow_down"
    assert idp.slow_downs() == 1

    assert complete_device_login(browser, auth["verification_uri_complete"]) == "device-success"

    time.sleep(auth["interval"])
    done = _poll(http, idp, auth["device_code"])
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["refresh_token"]
    assert set(body["scope"].split()) == {"all", "offline"}
    claims = _claims(body["access_token"])
    assert claims["sub"] == "alice"
    assert claims["aud"] == DEFAULT_AUDIENCE
    stats = idp.stats()
    assert stats["slow_down_sent"] == 1
    assert stats["device_authorizations"] == 1
    assert stats["by_grant"] == {DEVICE_CODE_GRANT: 3}


def test_device_flow_typed_code_and_deny(browser: Any, idp_fresh: IdpServer, http: httpx2.Client) -> None:
    idp = idp_fresh
    auth = _device_authorize(http, idp)
    idp.set_login_mode("deny")
    page = complete_device_login(browser, (auth["verification_uri"], auth["user_code"]), username="carol")
    assert page == "device-denied"
    denied = _poll(http, idp, auth["device_code"])
    assert denied.status_code == 400
    assert denied.json()["error"] == "access_denied"

    # The user aborting on the confirmation page: same outcome.
    auth = _device_authorize(http, idp)
    page = complete_device_login(browser, auth["verification_uri_complete"], confirm=False)
    assert page == "device-denied"
    assert _poll(http, idp, auth["device_code"]).json()["error"] == "access_denied"
