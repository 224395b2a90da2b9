"""Self-tests of the oidc-provider test IdP (tests/idp, tests/_idp.py).

Run: ``python -m pytest tests/test_idp_harness.py -p tests._idp -q``
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import pytest

from tests._idp import CI_BASIC, CI_POST, DEFAULT_AUDIENCE, DEFAULT_TOKEN_TTL, IdpServer

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
    assert idp_fresh.stats() == {
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
