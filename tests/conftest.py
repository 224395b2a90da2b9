"""Shared fixtures: the real IdP (tests/_idp.py), JWT validation against it, and Flyte test servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests._idp", "tests._interactive_helpers")

from flyteauth_core import AuthConfig, AuthSession  # noqa: E402
from flyteauth_core.testing import FlyteTestServer  # noqa: E402

from ._idp import CI_BASIC, IdpServer  # noqa: E402

pytest_plugins = ["tests._idp", "tests._browser", "tests._leakscan", "tests._interactive_helpers", "tests._redis"]


def jwt_validator(idp: IdpServer) -> Callable[[str], str | None]:
    """Validate RS256 access tokens against the IdP's JWKS, as a Flyte server would."""
    import httpx2
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(httpx2.get(idp.jwks_uri).json())

    def validate(token: str) -> str | None:
        try:
            decoded = jwt.decode(token, keys)
        except (JoseError, ValueError) as exc:
            return f"bad signature ({type(exc).__name__})"
        exp = decoded.claims.get("exp")
        if not isinstance(exp, (int, float)) or time.time() >= exp:
            return "expired"
        return None

    return validate


@pytest.fixture
def tls_connect_server(idp_fresh: IdpServer, tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    """``(ConnectTestServer over TLS, its CA's PEM path)``: the Connect peer flyte 2.x needs (no auth on
    plaintext), validating the real IdP's tokens.  Needs connectrpc (the ``test`` extra)."""
    from ._connect_server import ConnectTestServer
    from ._idp import make_test_ca

    ca, cert, key = make_test_ca(tmp_path / "ca")
    with ConnectTestServer(jwt_validator(idp_fresh), token_endpoint=idp_fresh.token_endpoint,
                           tls=(str(cert), str(key))) as server:
        yield server, ca


@pytest.fixture
def flyte_server(idp: IdpServer) -> Iterator[Callable[..., FlyteTestServer]]:
    """Factory: a started FlyteTestServer whose discovery points at the real IdP; stopped after the test."""
    servers: list[FlyteTestServer] = []
    validate = jwt_validator(idp)

    def make(**kwargs: Any) -> FlyteTestServer:
        kwargs.setdefault("token_endpoint", idp.token_endpoint)
        kwargs.setdefault("issuer", idp.issuer)
        server = FlyteTestServer(kwargs.pop("validate", validate), **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def idp_session(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer]) -> Iterator[
    Callable[..., tuple[AuthSession, FlyteTestServer]]
]:
    """Factory: (AuthSession with the ci-basic client, its FlyteTestServer) against the real IdP."""
    sessions: list[AuthSession] = []

    def make(server_kwargs: dict[str, Any] | None = None, **config: Any) -> tuple[AuthSession, FlyteTestServer]:
        server = flyte_server(**(server_kwargs or {}))
        config.setdefault("auth_type", "ClientSecret")
        config.setdefault("client_id", CI_BASIC[0])
        config.setdefault("client_secret", CI_BASIC[1])
        session = AuthSession(AuthConfig(endpoint=server.target, insecure=True, **config))
        sessions.append(session)
        return session, server

    yield make
    for session in sessions:
        session.close()
