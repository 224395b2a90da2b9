"""The ClientSecret provider against the real oidc-provider IdP: client auth methods, scopes and audience,
error mapping, retries (Retry-After), malformed responses, an unreachable IdP and secret sources."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import (
    ConfigError,
    InvalidClientError,
    TokenResponseError,
    TransientTokenError,
)
from flyteauth_core.testing import FlyteTestServer

from ._idp import CI_BASIC, CI_BASIC_ID, CI_POST, CI_POST_ID, DEFAULT_AUDIENCE, IdpServer

pytestmark = pytest.mark.idp

SessionFactory = Callable[..., tuple[AuthSession, FlyteTestServer]]


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- client authentication methods ----------------------------------------------------------------
def test_client_secret_basic_is_the_default(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, _ = idp_session()
    claims = _claims(session.get_token().access_token)
    assert claims["client_id"] == CI_BASIC_ID
    assert claims["iss"] == idp_fresh.issuer
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1


def test_client_secret_post(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, _ = idp_session(client_id=CI_POST[0], client_secret=CI_POST[1],
                             token_endpoint_auth_method="client_secret_post")
    assert _claims(session.get_token().access_token)["client_id"] == CI_POST_ID
    assert idp_fresh.token_request_count(CI_POST_ID) == 1


@pytest.mark.parametrize(
    ("creds", "method"),
    [(CI_POST, "client_secret_basic"), (CI_BASIC, "client_secret_post")],
    ids=["post-client-with-basic", "basic-client-with-post"],
)
def test_wrong_auth_method_is_invalid_client(
    idp_session: SessionFactory, idp_fresh: IdpServer, creds: tuple[str, str], method: str
) -> None:
    session, _ = idp_session(client_id=creds[0], client_secret=creds[1], token_endpoint_auth_method=method)
    with pytest.raises(InvalidClientError) as excinfo:
        session.get_token()
    assert excinfo.value.endpoint == idp_fresh.token_endpoint
    assert excinfo.value.status == 400 and excinfo.value.error == "invalid_client"
    assert "token endpoint auth method" in str(excinfo.value)
    assert idp_fresh.token_request_count(creds[0]) == 1  # a client error is not retried


def test_wrong_secret_names_the_endpoint_and_never_the_secret(
    idp_session: SessionFactory, idp_fresh: IdpServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "definitely-wrong-secret-4711"
    session, _ = idp_session(client_secret=secret)
    with caplog.at_level(logging.DEBUG), pytest.raises(InvalidClientError) as excinfo:
        session.get_token()
    message = str(excinfo.value)
    assert idp_fresh.token_endpoint in message
    assert "HTTP 401" in message
    assert "Check the client id and secret" in message
    rendered = "".join(traceback.format_exception(excinfo.value)) + repr(excinfo.value) + repr(session)
    assert secret not in rendered
    assert secret not in caplog.text
    assert session.manager.state() is None  # nothing cached


# -- scope and audience -------------------------------------------------------------------------------
def test_scope_and_audience_reach_the_token_on_first_request_and_on_refresh(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    audience = "https://flyte.example.com/api"
    session, _ = idp_session(scopes=("all", "read"), audience=audience)
    first = session.get_token()
    claims = _claims(first.access_token)
    assert claims["aud"] == audience
    assert set(claims["scope"].split()) == {"all", "read"}

    assert first.expires_at is not None
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.1)  # let it expire: the next call refreshes
    second = session.get_token()
    assert second.access_token != first.access_token
    claims = _claims(second.access_token)
    assert claims["aud"] == audience  # authlib's own auto-refresh would drop it
    assert set(claims["scope"].split()) == {"all", "read"}
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


def test_scopes_from_discovery_when_not_configured(idp_session: SessionFactory) -> None:
    session, _ = idp_session({"scopes": ("read",)})
    assert _claims(session.get_token().access_token)["scope"] == "read"


# -- transient IdP failures ------------------------------------------------------------------------------
def test_two_503s_then_success(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, _ = idp_session()
    idp_fresh.inject_faults([{"status": 503}, {"status": 503}])
    token = session.get_token()
    assert _claims(token.access_token)["client_id"] == CI_BASIC_ID
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 3
    assert idp_fresh.stats()["pending_faults"] == 0


def test_429_retry_after_is_honoured(idp_session: SessionFactory, idp_fresh: IdpServer) -> None:
    session, _ = idp_session()
    session.server_info()  # discovery first, so only the token request is timed
    idp_fresh.inject_faults([{"status": 429, "headers": {"Retry-After": "1"}, "body": {"error": "slow_down"}}])
    started = time.monotonic()
    session.get_token()
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, elapsed
    assert elapsed < 5.0, elapsed
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


def test_long_retry_after_fails_fast_with_transient_error(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, _ = idp_session()
    session.server_info()
    idp_fresh.inject_faults([{"status": 429, "headers": {"Retry-After": "3600"}}])
    started = time.monotonic()
    with pytest.raises(TransientTokenError) as excinfo:
        session.get_token()
    assert time.monotonic() - started < 5.0
    assert excinfo.value.transient and excinfo.value.status == 429
    assert idp_fresh.token_endpoint in str(excinfo.value)
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1
    assert session.get_token().access_token  # the IdP is fine again: the next request works


def test_unreachable_idp_is_a_transient_error_within_the_deadline(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/token"
    session, _ = idp_session({"token_endpoint": dead})
    started = time.monotonic()
    with pytest.raises(TransientTokenError) as excinfo:
        session.get_token()
    # Default policy: 4 attempts with at most 0.5 + 1 + 2 s of backoff between them.
    assert time.monotonic() - started < 5.0
    message = str(excinfo.value)
    assert dead in message and "could not connect" in message
    assert excinfo.value.transient
    assert session.manager.state() is None


def test_a_session_retry_policy_bounds_idp_attempts(idp_fresh: IdpServer) -> None:
    """`AuthSession(retry=...)`: a caller that prefers failing fast to waiting out an outage."""
    from flyteauth_core.http import RetryPolicy

    idp_fresh.inject_faults([{"status": 503}] * 3)
    config = AuthConfig(endpoint="127.0.0.1:1", insecure=True, auth_type="ClientSecret", client_id=CI_BASIC_ID,
                        client_secret=CI_BASIC[1], token_url=idp_fresh.token_endpoint,
                        authorization_header="authorization")
    with AuthSession(config, retry=RetryPolicy(attempts=2, initial_delay=0.01)) as session:
        with pytest.raises(TransientTokenError, match="after 2 attempts"):
            session.get_token()
        assert idp_fresh.token_request_count(CI_BASIC_ID) == 2
        assert session.get_token().access_token  # one fault left, then the IdP answers: attempt 1 fails, 2 works
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 4


# -- malformed success responses -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 200, "body": "<html><body>Sign in</body></html>", "headers": {"Content-Type": "text/html"}},
         "non-JSON body (text/html"),
        ({"status": 200, "body": {"token_type": "Bearer", "expires_in": 2}}, "no access_token"),
        ({"status": 200, "body": '{"access_token": "eyJhbGciOi', "headers": {"Content-Type": "application/json"}},
         "non-JSON body"),
    ],
    ids=["html", "no-access-token", "truncated-json"],
)
def test_malformed_token_response(
    idp_session: SessionFactory, idp_fresh: IdpServer, fault: dict[str, Any], expected: str
) -> None:
    session, _ = idp_session()
    idp_fresh.inject_faults([fault])
    with pytest.raises(TokenResponseError) as excinfo:
        session.get_token()
    message = str(excinfo.value)
    assert expected in message
    assert idp_fresh.token_endpoint in message and "HTTP 200" in message
    assert session.manager.state() is None  # nothing cached
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1  # a 200 is not retried

    token = session.get_token()  # the IdP answers properly again
    assert _claims(token.access_token)["client_id"] == CI_BASIC_ID
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2


# -- configuration ------------------------------------------------------------------------------------------
def test_missing_client_id_fails_before_any_network(flyte_server: Callable[..., FlyteTestServer]) -> None:
    server = flyte_server()
    session = AuthSession(AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret",
                                     client_secret=CI_BASIC[1]))  # no I/O in the constructor: checked on first use
    with pytest.raises(ConfigError) as excinfo:
        session.get_token()
    assert "client id" in str(excinfo.value) and "clientId" in str(excinfo.value)
    assert CI_BASIC[1] not in str(excinfo.value)
    assert server.stats["discovery_v2"] == 0  # no network before the config is valid


def test_secret_from_env_var_is_trimmed(
    idp_session: SessionFactory, idp_fresh: IdpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYTEAUTH_TEST_SECRET", CI_BASIC[1] + "\n")
    session, _ = idp_session(client_secret=None, client_secret_env_var="FLYTEAUTH_TEST_SECRET")
    assert _claims(session.get_token().access_token)["client_id"] == CI_BASIC_ID


def test_secret_from_file_with_trailing_newline_is_trimmed(
    idp_session: SessionFactory, idp_fresh: IdpServer, tmp_path: Path
) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CI_BASIC[1] + "\n")
    session, _ = idp_session(client_secret=None, client_secret_location=str(secret_file))
    assert _claims(session.get_token().access_token)["client_id"] == CI_BASIC_ID
