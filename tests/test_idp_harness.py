"""Self-tests of the oidc-provider test IdP (tests/idp, tests/_idp.py).

Run: ``python -m pytest tests/test_idp_harness.py -p tests._idp -q``
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests._idp import (
    CI_BASIC,
    CI_PKJWT_ID,
    CI_PKJWT_KEY_PATH,
    CI_POST,
    DEFAULT_AUDIENCE,
    DEFAULT_TOKEN_TTL,
    DEVICE_CODE_GRANT,
    NATIVE_CLIENT_ID,
    NATIVE_REDIRECT_URI,
    IdpServer,
    http_device_login,
    http_login,
    make_test_ca,
    native_redirect_uri,
)

pytestmark = pytest.mark.idp

CC = {"grant_type": "client_credentials"}


@pytest.fixture
def http() -> httpx2.Client:
    with httpx2.Client(trust_env=False, timeout=10) as client:
        yield client


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _basic(http: httpx2.Client, idp: IdpServer, creds: tuple[str, str], **form: str) -> httpx2.Response:
    return http.post(idp.token_endpoint, auth=creds, data={**CC, **form})


def _post(http: httpx2.Client, idp: IdpServer, creds: tuple[str, str], **form: str) -> httpx2.Response:
    client_id, secret = creds
    return http.post(idp.token_endpoint, data={**CC, "client_id": client_id, "client_secret": secret, **form})


def test_discovery_points_at_loopback(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    meta = http.get(idp_fresh.discovery_url).json()
    assert meta["issuer"] == idp_fresh.issuer
    assert meta["token_endpoint"] == idp_fresh.token_endpoint
    assert meta["jwks_uri"] == idp_fresh.jwks_uri
    assert idp_fresh.issuer.startswith("http://127.0.0.1:")


def test_basic_client_gets_verifiable_jwt(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    resp = _basic(http, idp_fresh, CI_BASIC, scope="all read bogus")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == DEFAULT_TOKEN_TTL
    assert body["scope"] == "all read"  # unknown scopes are dropped silently

    keys = KeySet.import_key_set(http.get(idp_fresh.jwks_uri).json())
    token = jwt.decode(body["access_token"], keys, algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    assert token.header["typ"] == "at+jwt"
    claims = token.claims
    assert claims == _claims(body["access_token"])
    assert claims["exp"] - claims["iat"] == DEFAULT_TOKEN_TTL
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["iss"] == idp_fresh.issuer
    assert claims["client_id"] == claims["sub"] == CI_BASIC[0]


def test_basic_client_rejects_post_auth(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    resp = _post(http, idp_fresh, CI_BASIC)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_client"


def test_post_client_works_with_post_and_rejects_basic(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    ok = _post(http, idp_fresh, CI_POST)
    assert ok.status_code == 200, ok.text
    assert _claims(ok.json()["access_token"])["client_id"] == CI_POST[0]

    bad = _basic(http, idp_fresh, CI_POST)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_client"


def test_wrong_secret_passes_provider_error_through(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    resp = _basic(http, idp_fresh, (CI_BASIC[0], "wrong"))
    assert resp.status_code == 401
    assert resp.json() == {"error": "invalid_client", "error_description": "client authentication failed"}


@pytest.mark.parametrize("audience", ["https://flyte.example.com", "flytepropeller"])
def test_audience_param_lands_in_aud(http: httpx2.Client, idp_fresh: IdpServer, audience: str) -> None:
    resp = _basic(http, idp_fresh, CI_BASIC, audience=audience)
    assert resp.status_code == 200, resp.text
    assert _claims(resp.json()["access_token"])["aud"] == audience


def test_resource_param_lands_in_aud(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    resp = _post(http, idp_fresh, CI_POST, resource="https://api.example.org/")
    assert resp.status_code == 200, resp.text
    assert _claims(resp.json()["access_token"])["aud"] == "https://api.example.org/"


def test_stats_count_every_attempt(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    assert idp_fresh.token_request_count() == 0
    _basic(http, idp_fresh, CI_BASIC)
    _basic(http, idp_fresh, CI_BASIC)
    _post(http, idp_fresh, CI_BASIC)  # rejected, still counted
    _post(http, idp_fresh, CI_POST)
    http.post(idp_fresh.token_endpoint, auth=CI_POST, data={"grant_type": "password"})

    stats = idp_fresh.stats()
    assert stats["token_requests"] == {"ci-basic": 3, "ci-post": 2}
    assert stats["by_grant"] == {"client_credentials": 4, "password": 1}
    assert stats["total"] == 5
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 3
    assert idp_fresh.token_request_count("nobody") == 0

    idp_fresh.reset()
    assert idp_fresh.stats()["total"] == 0


def test_fault_queue_is_fifo_then_passes_through(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    idp_fresh.inject_faults(
        [
            {"status": 503, "body": "upstream busy", "headers": {"Retry-After": "2"}},
            {"status": 500, "body": {"error": "server_error"}},
            {"delay_ms": 50},
        ]
    )
    first = _basic(http, idp_fresh, CI_BASIC)
    assert first.status_code == 503
    assert first.headers["retry-after"] == "2"
    assert first.text == "upstream busy"

    second = _basic(http, idp_fresh, CI_BASIC)
    assert second.status_code == 500
    assert second.json() == {"error": "server_error"}

    third = _basic(http, idp_fresh, CI_BASIC)  # delay-only fault: reaches the provider
    assert third.status_code == 200, third.text
    assert _basic(http, idp_fresh, CI_BASIC).status_code == 200
    stats = idp_fresh.stats()
    assert {k: stats[k] for k in ("token_requests", "by_grant", "total", "pending_faults")} == {
        "token_requests": {"ci-basic": 4},
        "by_grant": {"client_credentials": 4},
        "total": 4,
        "pending_faults": 0,
    }


def test_reset_clears_pending_faults(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    idp_fresh.inject_faults([{"status": 503}])
    idp_fresh.reset()
    assert _basic(http, idp_fresh, CI_BASIC).status_code == 200


def test_connection_reset_fault(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    idp_fresh.inject_faults([{"reset": True}])
    with pytest.raises(httpx2.TransportError):
        _basic(http, idp_fresh, CI_BASIC)
    assert _basic(http, idp_fresh, CI_BASIC).status_code == 200


# ---------------------------------------------------------------- private_key_jwt client
def _client_assertion(audience: str, key_path: Path = CI_PKJWT_KEY_PATH, client_id: str = CI_PKJWT_ID) -> str:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(key_path.read_bytes())
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_urlsafe(16)}
    claims.update(iat=now, exp=now + 60)
    return jwt.encode({"alg": "RS256"}, claims, key)


def _pkjwt_request(http: httpx2.Client, idp: IdpServer, assertion: str, **form: str) -> httpx2.Response:
    return http.post(
        idp.token_endpoint,
        data={
            **CC,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            **form,
        },
    )


def test_private_key_jwt_client_gets_token(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    resp = _pkjwt_request(http, idp_fresh, _client_assertion(idp_fresh.token_endpoint), scope="all")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "all"
    claims = _claims(body["access_token"])
    assert claims["client_id"] == claims["sub"] == CI_PKJWT_ID
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert idp_fresh.stats()["token_requests"] == {CI_PKJWT_ID: 1}  # counted by assertion iss


def test_private_key_jwt_rejects_replay_and_foreign_key(
    http: httpx2.Client, idp_fresh: IdpServer, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    assertion = _client_assertion(idp_fresh.token_endpoint)
    assert _pkjwt_request(http, idp_fresh, assertion).status_code == 200
    replay = _pkjwt_request(http, idp_fresh, assertion)  # same jti
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"

    other = tmp_path / "other.pem"
    other.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    foreign = _pkjwt_request(http, idp_fresh, _client_assertion(idp_fresh.token_endpoint, key_path=other))
    assert foreign.status_code == 401
    assert foreign.json()["error"] == "invalid_client"


# ---------------------------------------------------------------- native client (no browser)
def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _auth_url(idp: IdpServer, redirect_uri: str, challenge: str | None, **extra: str) -> str:
    params = {"response_type": "code", "client_id": NATIVE_CLIENT_ID, "redirect_uri": redirect_uri, "state": "st"}
    params["scope"] = "openid offline_access all offline"
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return f"{idp.authorization_endpoint}?{urllib.parse.urlencode(params)}"


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_discovery_advertises_interactive_endpoints(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    meta = http.get(idp_fresh.discovery_url).json()
    assert meta["authorization_endpoint"] == idp_fresh.authorization_endpoint
    assert meta["device_authorization_endpoint"] == idp_fresh.device_authorization_endpoint
    assert meta["revocation_endpoint"] == idp_fresh.revocation_endpoint
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert DEVICE_CODE_GRANT in meta["grant_types_supported"]
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


@pytest.mark.parametrize(
    "redirect_uri",
    [NATIVE_REDIRECT_URI, native_redirect_uri(1), native_redirect_uri(61234, "localhost")],
)
def test_native_client_accepts_any_loopback_port(http: httpx2.Client, idp_fresh: IdpServer, redirect_uri: str) -> None:
    resp = http.get(_auth_url(idp_fresh, redirect_uri, _pkce()[1]))
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"].startswith("/interaction/")


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:53593/other", "http://[::1]:53593/callback", "http://example.com:53593/callback"],
)
def test_native_client_rejects_unregistered_redirect(
    http: httpx2.Client, idp_fresh: IdpServer, redirect_uri: str
) -> None:
    resp = http.get(_auth_url(idp_fresh, redirect_uri, _pkce()[1]))
    assert resp.status_code == 400  # error page, no redirect
    assert "redirect_uri" in resp.text
    assert "googleapis" not in resp.text


def test_native_client_requires_pkce(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    resp = http.get(_auth_url(idp_fresh, NATIVE_REDIRECT_URI, None))
    assert resp.status_code == 303
    q = _query(resp.headers["location"])
    assert q["error"] == "invalid_request"
    assert "PKCE" in q["error_description"]


def test_pages_load_nothing_external(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    first = http.get(_auth_url(idp_fresh, NATIVE_REDIRECT_URI, _pkce()[1]))  # the client keeps the cookies
    login = http.get(urllib.parse.urljoin(idp_fresh.issuer, first.headers["location"]))
    assert login.status_code == 200
    assert 'data-page="login"' in login.text
    device = http.get(idp_fresh.device_verification_uri)
    assert 'data-page="device-input"' in device.text
    for text in (login.text, device.text):
        assert "googleapis" not in text
        assert "https://" not in text


def test_http_login_code_exchange_with_audience(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    verifier, challenge = _pkce()
    redirect_uri = native_redirect_uri(40000)
    final = http_login(idp_fresh, _auth_url(idp_fresh, redirect_uri, challenge, audience="flytepropeller"), "dave")
    q = _query(final)
    assert q["state"] == "st"
    resp = http.post(
        idp_fresh.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": redirect_uri,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert resp.status_code == 200, resp.text
    claims = _claims(resp.json()["access_token"])
    assert claims["aud"] == "flytepropeller"
    assert claims["sub"] == "dave"
    refreshed = http.post(
        idp_fresh.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": resp.json()["refresh_token"],
            "client_id": NATIVE_CLIENT_ID,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert _claims(refreshed.json()["access_token"])["aud"] == "flytepropeller"


def test_http_login_wrong_verifier_is_rejected(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    _, challenge = _pkce()
    final = http_login(idp_fresh, _auth_url(idp_fresh, NATIVE_REDIRECT_URI, challenge))
    resp = http.post(
        idp_fresh.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": _query(final)["code"],
            "redirect_uri": NATIVE_REDIRECT_URI,
            "client_id": NATIVE_CLIENT_ID,
            "code_verifier": _pkce()[0],
        },
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_login_mode_deny_and_validation(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    idp_fresh.set_login_mode("deny", times=2, error_description="denied for test")
    for _ in range(2):
        q = _query(http_login(idp_fresh, _auth_url(idp_fresh, NATIVE_REDIRECT_URI, _pkce()[1])))
        assert q == {
            "error": "access_denied",
            "error_description": "denied for test",
            "state": "st",
            "iss": idp_fresh.issuer,
        }
    assert "code" in _query(http_login(idp_fresh, _auth_url(idp_fresh, NATIVE_REDIRECT_URI, _pkce()[1])))

    idp_fresh.set_login_mode("deny", times=None)
    assert idp_fresh.stats()["login_mode"]["remaining"] is None
    idp_fresh.reset()
    assert idp_fresh.stats()["login_mode"] == {"mode": "normal"}

    bad = http.post(f"{idp_fresh.issuer}/_test/login_mode", json={"mode": "maybe"})
    assert bad.status_code == 400


# ---------------------------------------------------------------- device flow (no browser)
def _device(http: httpx2.Client, idp: IdpServer) -> dict[str, Any]:
    resp = http.post(idp.device_authorization_endpoint, data={"client_id": NATIVE_CLIENT_ID, "scope": "all"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _poll(http: httpx2.Client, idp: IdpServer, device_code: str) -> httpx2.Response:
    data = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": NATIVE_CLIENT_ID}
    return http.post(idp.token_endpoint, data=data)


def test_device_flow_pacing(http: httpx2.Client, idp_fresh: IdpServer) -> None:
    auth = _device(http, idp_fresh)
    assert auth["interval"] == 1
    assert _poll(http, idp_fresh, auth["device_code"]).json()["error"] == "authorization_pending"
    fast = _poll(http, idp_fresh, auth["device_code"])
    assert (fast.status_code, fast.json()["error"]) == (400, "slow_down")
    assert idp_fresh.slow_downs() == 1
    time.sleep(1)
    assert _poll(http, idp_fresh, auth["device_code"]).json()["error"] == "authorization_pending"

    assert http_device_login(idp_fresh, (auth["verification_uri"], auth["user_code"]), "erin") == "device-success"
    time.sleep(1)
    done = _poll(http, idp_fresh, auth["device_code"])
    assert done.status_code == 200, done.text
    assert _claims(done.json()["access_token"])["sub"] == "erin"
    assert done.json()["refresh_token"]
    # A consumed device code is not reusable.
    time.sleep(1)
    assert _poll(http, idp_fresh, auth["device_code"]).json()["error"] == "invalid_grant"
    assert idp_fresh.slow_downs() == 1


def test_device_flow_no_pacing_and_deny(http: httpx2.Client, idp_factory: Any) -> None:
    idp = idp_factory(device_interval=0)
    auth = _device(http, idp)
    assert auth["interval"] == 0
    for _ in range(3):
        assert _poll(http, idp, auth["device_code"]).json()["error"] == "authorization_pending"
    assert idp.slow_downs() == 0
    assert http_device_login(idp, auth["verification_uri_complete"], confirm=False) == "device-denied"
    assert _poll(http, idp, auth["device_code"]).json()["error"] == "access_denied"


# ---------------------------------------------------------------- factory / TLS
def test_idp_factory_other_ttl(http: httpx2.Client, idp_factory: Any) -> None:
    idp = idp_factory(token_ttl=7)
    resp = _basic(http, idp, CI_BASIC)
    assert resp.json()["expires_in"] == 7


def test_tls_mode(idp_factory: Any, tmp_path: Path) -> None:
    ca, cert, key = make_test_ca(tmp_path)
    idp = idp_factory(tls=(cert, key), ca_path=ca)
    assert idp.issuer.startswith("https://127.0.0.1:")
    with httpx2.Client(trust_env=False, verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as client:
        meta = client.get(idp.discovery_url).json()
        assert meta["issuer"] == idp.issuer
        assert meta["token_endpoint"] == idp.token_endpoint
        resp = client.post(idp.token_endpoint, auth=CI_BASIC, data=CC)
        assert resp.status_code == 200, resp.text
    assert idp.token_request_count() == 1  # control calls go over TLS too
    with httpx2.Client(trust_env=False, verify=idp.verify, timeout=10) as client:
        assert client.get(idp.jwks_uri).status_code == 200
    with httpx2.Client(trust_env=False, timeout=10) as untrusting, pytest.raises(httpx2.ConnectError):
        untrusting.get(idp.discovery_url)
    # Without the CA: the leaf certificate is trusted directly.
    bare = IdpServer(tls=(cert, key))
    with bare:
        assert bare.stats()["total"] == 0


def test_stop_is_idempotent_and_concurrent_starts_work(idp_factory: Any) -> None:
    servers: list[IdpServer] = []
    threads = [threading.Thread(target=lambda: servers.append(idp_factory())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({s.port for s in servers}) == 2
    servers[0].stop()
    servers[0].stop()
    assert not servers[0].running and servers[1].running
