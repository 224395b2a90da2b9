"""The IdP processed the grant, then the connection dropped before its answer (``drop_response`` in the
real oidc-provider IdP).  Each grant must end in a token or in a typed error that says what happened,
never in an ``invalid_client`` that blames credentials that are fine.

* client credentials: idempotent, retried: a token.
* private_key_jwt: retried with a fresh assertion (oidc-provider remembers every ``jti``): a token.
* refresh with rotation: the store is re-read, the refresh replayed once; oidc-provider sees the reuse
  and revokes the grant, so: :class:`RefreshTokenRotatedError` ("a new login is needed").
* authorization-code exchange: single use, never replayed: :class:`ResponseLostError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import InvalidClientError, RefreshTokenRotatedError, ResponseLostError
from flyteauth_core.testing import FlyteTestServer
from flyteauth_core.token import Token
from tests._idp import (
    CI_BASIC_ID,
    CI_PKJWT_ID,
    CI_PKJWT_KEY_PATH,
    DEVICE_CODE_GRANT,
    NATIVE_CLIENT_ID,
    IdpServer,
    http_login,
    native_redirect_uri,
)
from tests._interactive_helpers import free_port

from ._kit import Row, jwt_claims

pytestmark = [pytest.mark.faults, pytest.mark.idp]

DROP = [{"drop_response": True}]


def _dropped(idp: IdpServer) -> int:
    return int(idp.stats()["responses_dropped"])


def test_client_credentials_answer_lost_is_retried(fault: Row, fault_session: Any, idp_fresh: IdpServer) -> None:
    fault.scenario = "lost answer: client credentials"
    fault.expected = "retried (idempotent): a token after 2 requests"
    session, _ = fault_session()
    session.server_info()
    idp_fresh.inject_faults(DROP)
    token = session.get_token()
    fault.see(f"token after {idp_fresh.token_request_count(CI_BASIC_ID)} requests")
    assert jwt_claims(token.access_token)["client_id"] == CI_BASIC_ID
    assert _dropped(idp_fresh) == 1 and idp_fresh.token_request_count(CI_BASIC_ID) == 2


def test_private_key_jwt_answer_lost_is_retried_with_a_fresh_assertion(
    fault: Row, idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer]
) -> None:
    fault.scenario = "lost answer: private_key_jwt"
    fault.expected = "retried with a new jti: a token, no invalid_client"
    server = flyte_server()
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_PKJWT_ID,
                        token_endpoint_auth_method="private_key_jwt", client_key_file_path=str(CI_PKJWT_KEY_PATH))
    with AuthSession(config, store="memory", interactive=False) as session:
        session.server_info()
        idp_fresh.inject_faults(DROP)
        try:
            token = session.get_token()
        except InvalidClientError as exc:  # 0.1.0: the replayed jti
            fault.see(f"{type(exc).__name__}: {exc.message}")
            raise
    fault.see(f"token after {idp_fresh.token_request_count(CI_PKJWT_ID)} requests")
    assert jwt_claims(token.access_token)["client_id"] == CI_PKJWT_ID
    assert _dropped(idp_fresh) == 1 and idp_fresh.token_request_count(CI_PKJWT_ID) == 2


class _HttpBrowser:
    """A browser-free opener: logs in at the real IdP with plain HTTP, then follows the redirect to the
    loopback callback, as a browser would."""

    def __call__(self, url: str) -> bool:
        final = http_login(self.idp, url)
        httpx2.get(final, timeout=10, trust_env=False)
        return True

    def __init__(self, idp: IdpServer) -> None:
        self.idp = idp


def _native_server(idp: IdpServer, flyte_server: Callable[..., FlyteTestServer]) -> FlyteTestServer:
    return flyte_server(
        token_endpoint=idp.token_endpoint, issuer=idp.issuer, authorization_endpoint=idp.authorization_endpoint,
        device_authorization_endpoint=idp.device_authorization_endpoint, client_id=NATIVE_CLIENT_ID,
        redirect_uri=native_redirect_uri(free_port()), scopes=("openid", "offline_access", "all"),
        grant_types=("authorization_code", "refresh_token", DEVICE_CODE_GRANT), validate=lambda token: None,
    )


def _native_session(idp: IdpServer, server: FlyteTestServer, tmp_path: Path) -> AuthSession:
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="Pkce",
                        options={"tokenStorePath": str(tmp_path / "tokens"), "browserOpener": _HttpBrowser(idp)})
    return AuthSession(config, store="file", interactive=True)


def _logged_in_then_expired(idp: IdpServer, server: FlyteTestServer, tmp_path: Path) -> tuple[Any, str]:
    """Log in (a rotating refresh token in the file store), then mark the stored token expired."""
    with _native_session(idp, server, tmp_path) as session:
        first = session.login()
        assert session.store is not None and first.refresh_token
        store, key = session.store, session.identity().store_key
    store.save(key, Token(first.access_token, expires_at=time.time() - 60, refresh_token=first.refresh_token))
    return store, key


def test_authorization_code_answer_lost_is_not_replayed(
    fault: Row, idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path
) -> None:
    fault.scenario = "lost answer: authorization-code exchange"
    fault.expected = "ResponseLostError (code single use), 1 exchange, no invalid_client/invalid_grant"
    with _native_session(idp_fresh, _native_server(idp_fresh, flyte_server), tmp_path) as session:
        session.server_info()
        idp_fresh.inject_faults(DROP)
        with pytest.raises(ResponseLostError) as excinfo:
            session.login()
        fault.see(f"{type(excinfo.value).__name__}: {excinfo.value.message}")
        assert excinfo.value.grant == "authorization_code" and "flyteauth login" in str(excinfo.value)
        assert idp_fresh.stats()["by_grant"].get("authorization_code") == 1  # the used code was not replayed
        assert session.login().refresh_token  # logging in again works
    assert _dropped(idp_fresh) == 1


def test_rotated_refresh_answer_lost_is_replayed_once_then_a_typed_error(
    fault: Row, idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path
) -> None:
    fault.scenario = "lost answer: refresh with rotation (strict IdP)"
    fault.expected = "store re-read, one replay, RefreshTokenRotatedError saying a new login is needed"
    server = _native_server(idp_fresh, flyte_server)
    _logged_in_then_expired(idp_fresh, server, tmp_path)
    with _native_session(idp_fresh, server, tmp_path) as session:
        session.interactive = False
        idp_fresh.inject_faults(DROP)
        with pytest.raises(RefreshTokenRotatedError) as excinfo:
            session.get_token()
        fault.see(f"{type(excinfo.value).__name__}: {excinfo.value.message}")
        assert "new login" in str(excinfo.value) and "answer was lost" in str(excinfo.value)
        assert session.stats.replays == 1
    stats = idp_fresh.stats()
    assert stats["by_grant"].get("refresh_token") == 2, stats  # the lost one and one replay, no more
    assert _dropped(idp_fresh) == 1


def test_rotated_refresh_answer_lost_uses_what_another_process_stored(
    fault: Row, idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path
) -> None:
    fault.scenario = "lost answer: refresh with rotation, another process stored the new token"
    fault.expected = "the stored token is used; no replay, no reuse"
    server = _native_server(idp_fresh, flyte_server)
    store, key = _logged_in_then_expired(idp_fresh, server, tmp_path)
    newer = Token("from-another-process", expires_at=time.time() + 3600, refresh_token="rotated-elsewhere")

    with _native_session(idp_fresh, server, tmp_path) as session:
        session.interactive = False
        original = session._acquire

        def acquire(previous: Token | None, reason: str) -> Token:
            try:
                return original(previous, reason)
            finally:  # while our answer is lost, another process finishes its own refresh and stores it
                if reason != "replay":
                    store.save(key, newer)

        session.manager._acquire = acquire
        idp_fresh.inject_faults(DROP)
        token = session.get_token()
        fault.see(f"token from the store ({token.access_token}), replays={session.stats.replays}")
        assert token.access_token == "from-another-process" and session.stats.replays == 0
    assert idp_fresh.stats()["by_grant"].get("refresh_token") == 1
