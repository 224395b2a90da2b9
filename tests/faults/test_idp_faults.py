"""Faults at the identity provider (the real oidc-provider IdP, faults injected in front of its token
endpoint): transient errors, rate limiting, malformed answers, slowness and unreachability.

Every scenario runs with the default retry policy (``flyteauth_core.http.RetryPolicy``) and records a row
of the fault table.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from flyteauth_core.errors import FlyteAuthError, TokenResponseError, TransientTokenError
from flyteauth_core.http import RetryPolicy
from flyteauth_core.testing import ECHO
from tests._idp import CI_BASIC_ID, IdpServer

from ._kit import Row, closed_port, jwt_claims, retry_deadline

pytestmark = [pytest.mark.faults, pytest.mark.idp]

POLICY = RetryPolicy()


def test_503_twice_then_the_first_call_succeeds(fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    fault.scenario = "IdP answers 503 twice, then works"
    fault.expected = "first RPC succeeds after 3 token requests (backoff)"
    session, server = fault_session()
    idp_fresh.inject_faults([{"status": 503, "body": {"error": "server_error"}}] * 2)
    started = time.monotonic()
    assert session.channel().unary_unary(ECHO["unary"])(b"first") == b"first"
    elapsed = time.monotonic() - started
    requests = idp_fresh.token_request_count(CI_BASIC_ID)
    fault.see(f"RPC ok after {elapsed:.2f}s, {requests} token requests")
    assert requests == 3
    assert elapsed <= retry_deadline(POLICY, 0) + 1.0
    assert server.stats["rejected"] == 0


def test_429_retry_after_2_is_waited_for(fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    fault.scenario = "429 with Retry-After: 2"
    fault.expected = "next attempt >= 2 s later, then a token"
    session, _ = fault_session()
    session.server_info()  # discovery first: only the token request is timed
    idp_fresh.inject_faults([{"status": 429, "headers": {"Retry-After": "2"}, "body": {"error": "slow_down"}}])
    started = time.monotonic()
    token = session.get_token()
    elapsed = time.monotonic() - started
    requests = idp_fresh.token_request_count(CI_BASIC_ID)
    fault.see(f"token after {elapsed:.2f}s, {requests} requests")
    assert jwt_claims(token.access_token)["client_id"] == CI_BASIC_ID
    assert requests == 2
    assert 2.0 <= elapsed < 4.0


def test_retry_after_of_an_hour_is_a_typed_error_not_a_hang(
    fault: Row, fault_session: Any, idp_fresh: IdpServer
) -> None:
    fault.scenario = "429 with Retry-After: 3600"
    fault.expected = f"TransientTokenError at once (cap {POLICY.max_retry_after:.0f}s), nothing cached"
    session, _ = fault_session()
    session.server_info()
    idp_fresh.inject_faults([{"status": 429, "headers": {"Retry-After": "3600"}}])
    started = time.monotonic()
    with pytest.raises(TransientTokenError) as excinfo:
        session.get_token()
    elapsed = time.monotonic() - started
    fault.see(f"{type(excinfo.value).__name__} after {elapsed:.2f}s: {excinfo.value.message}")
    assert elapsed < 2.0
    assert excinfo.value.status == 429 and excinfo.value.transient
    assert idp_fresh.token_endpoint in str(excinfo.value)
    assert session.manager.state() is None
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1


MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "HTML error page": ({"status": 200, "body": "<html><body>Sign in</body></html>",
                         "headers": {"Content-Type": "text/html"}}, "non-JSON body"),
    "empty body": ({"status": 200, "body": ""}, "non-JSON body"),
    "truncated JSON": ({"status": 200, "body": '{"access_token": "eyJhbGciOi',
                        "headers": {"Content-Type": "application/json"}}, "non-JSON body"),
    "JSON without access_token": ({"status": 200, "body": {"token_type": "Bearer", "expires_in": 2}},
                                  "no access_token"),
    "expires_in is a non-numeric string": (
        {"status": 200, "body": {"access_token": "opaque-token-abc", "token_type": "Bearer", "expires_in": "soon"}},
        "invalid 'expires_in'"),
    "expires_in is negative": (
        {"status": 200, "body": {"access_token": "opaque-token-def", "token_type": "Bearer", "expires_in": -60}},
        "invalid 'expires_in'"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_token_response(name: str, fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    injected, expected_text = MALFORMED[name]
    fault.scenario = f"token response: {name}"
    fault.expected = "TokenResponseError naming endpoint + HTTP 200; nothing cached; next request works"
    session, _ = fault_session()
    idp_fresh.inject_faults([injected])
    with pytest.raises(TokenResponseError) as excinfo:
        session.get_token()
    message = str(excinfo.value)
    fault.see(f"{type(excinfo.value).__name__}: {excinfo.value.message}")
    assert expected_text in message
    assert idp_fresh.token_endpoint in message and "HTTP 200" in message
    assert excinfo.value.status == 200
    assert session.manager.state() is None  # nothing cached
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1  # a 200 is not retried
    assert jwt_claims(session.get_token().access_token)["client_id"] == CI_BASIC_ID
    fault.see("cached: nothing; next request: token")


def _unreachable(fault: Row, session: Any, endpoint: str, deadline: float, what: str) -> None:
    started = time.monotonic()
    with pytest.raises(TransientTokenError) as excinfo:
        session.get_token()
    elapsed = time.monotonic() - started
    fault.see(f"{type(excinfo.value).__name__} after {elapsed:.2f}s (deadline {deadline:.1f}s): "
              f"{excinfo.value.message}")
    assert isinstance(excinfo.value, FlyteAuthError) and excinfo.value.transient
    assert endpoint in str(excinfo.value)
    assert what in str(excinfo.value)
    assert elapsed <= deadline
    assert session.manager.state() is None


def test_idp_slower_than_the_timeout(fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    timeout = 0.5
    deadline = retry_deadline(POLICY, timeout) + 0.5
    fault.scenario = f"IdP slower than http_timeout={timeout}s"
    fault.expected = f"TransientTokenError 'timed out' within {deadline:.1f}s"
    session, _ = fault_session(http_timeout=timeout)
    session.server_info()
    idp_fresh.inject_faults([{"delay_ms": int(timeout * 3000)}] * POLICY.attempts)
    _unreachable(fault, session, idp_fresh.token_endpoint, deadline, "timed out")
    assert idp_fresh.token_request_count(CI_BASIC_ID) == POLICY.attempts


def test_idp_port_closed(fault: Row, fault_session: Any) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/token"
    deadline = retry_deadline(POLICY, 0) + 1.0
    fault.scenario = "IdP port closed"
    fault.expected = f"TransientTokenError 'could not connect' within {deadline:.1f}s"
    session, _ = fault_session({"token_endpoint": dead})
    session.server_info()
    _unreachable(fault, session, dead, deadline, "could not connect")


def test_idp_dns_name_does_not_resolve(fault: Row, fault_session: Any) -> None:
    dead = "http://idp.flyteauth-test.invalid/token"  # RFC 2606: .invalid never resolves
    deadline = retry_deadline(POLICY, 0) + 1.0
    fault.scenario = "IdP DNS name does not resolve"
    fault.expected = f"TransientTokenError 'could not connect' within {deadline:.1f}s"
    # a plain-http token endpoint off loopback must be opted into (issue 9: never send secrets in clear)
    session, _ = fault_session({"token_endpoint": dead}, options={"allowInsecureTokenEndpoint": True})
    session.server_info()
    _unreachable(fault, session, dead, deadline, "could not connect")


def test_idp_drops_the_connection_twice_then_works(fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    fault.scenario = "IdP resets the connection twice, then works"
    fault.expected = "token after 3 requests"
    session, _ = fault_session()
    idp_fresh.inject_faults([{"reset": True}] * 2)
    token = session.get_token()
    requests = idp_fresh.token_request_count(CI_BASIC_ID)
    fault.see(f"token after {requests} requests")
    assert jwt_claims(token.access_token)["client_id"] == CI_BASIC_ID
    assert requests == 3
