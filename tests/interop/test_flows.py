"""Every grant x client authentication method x token store, against each independent server (``peer``).

The Flyte side is a :class:`FlyteTestServer` advertising the IdP the way a Flyte deployment does (its
endpoints and public client in ``AuthMetadataService``), validating the tokens at the IdP (introspection
or JWKS): a call that succeeds is a token the server itself accepts.  ``benchmarks/interop.py`` prints
the outcomes as the matrix of docs/idps.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.testing import ECHO, FlyteTestServer

from .._leakscan import register_secret
from .._redis import RedisServer
from ._servers import Peer, browser_threads

STORES = ("memory", "file", "redis")
METHODS = ("client_secret_basic", "client_secret_post")


@pytest.fixture
def flyte_for(peer: Peer) -> Iterator[Callable[..., FlyteTestServer]]:
    """Factory: a started FlyteTestServer in front of ``peer`` (stopped after the test)."""
    servers: list[FlyteTestServer] = []

    def make(**kwargs: Any) -> FlyteTestServer:
        server = FlyteTestServer(peer.validate, **peer.flyte_server_kwargs(**kwargs)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def store_options(store: str, tmp_path: Path, request: pytest.FixtureRequest,
                  host: str = "host-a") -> dict[str, Any]:
    """The config a user writes for ``tokenStore: <store>`` (redis: encrypted, one key file per fleet)."""
    options: dict[str, Any] = {"tokenStorePath": str(tmp_path / host / "tokens")}
    if store == "redis":
        from cryptography.fernet import Fernet

        redis: RedisServer = request.getfixturevalue("redis_fresh")
        key_file = tmp_path / "redis.key"
        if not key_file.exists():
            key = Fernet.generate_key()
            register_secret(key.decode(), "interop redis key")
            key_file.write_bytes(key + b"\n")
            key_file.chmod(0o600)
        # redisTimeout: on a loaded CI machine a command can take longer than the 0.2 s default, and a slow
        # Redis counts as down (the file fallback): not what this suite is about
        options.update(redisURL=redis.url, redisEncryptionKeyFile=str(key_file), redisTimeout="2s")
    return options


def open_session(server: FlyteTestServer, store: str, options: dict[str, Any], *, interactive: bool = True,
                 **fields: Any) -> AuthSession:
    return AuthSession(AuthConfig(endpoint=server.target, insecure=True, options=options, **fields),
                       store=store, interactive=interactive)


def call_echo(session: AuthSession) -> bytes:
    """One authenticated unary call, as any Flyte RPC would be made."""
    channel = session.channel()
    try:
        answer: bytes = channel.unary_unary(ECHO["unary"])(b"ping", timeout=30)
    finally:
        channel.close()
    return answer


def needs(peer: Peer, row: str) -> None:
    if row in peer.lacks:
        pytest.skip(f"n/a: {peer.lacks[row]}")


def register_token(token: Any) -> None:
    register_secret(token.access_token)
    if token.refresh_token:
        register_secret(token.refresh_token)


# -- client credentials --------------------------------------------------------------------------------
@pytest.mark.interop_flow("client credentials, {method}")
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("method", METHODS)
def test_client_credentials(peer: Peer, flyte_for: Callable[..., FlyteTestServer], method: str, store: str,
                            tmp_path: Path, request: pytest.FixtureRequest) -> None:
    client_id, secret = peer.secret_clients[method]
    server = flyte_for()
    options = store_options(store, tmp_path, request)
    fields = {"auth_type": "ClientSecret", "client_id": client_id, "client_secret": secret,
              "token_endpoint_auth_method": method, "scopes": (peer.api_scope,)}
    with open_session(server, store, options, **fields) as session:
        assert call_echo(session) == b"ping"
        first = session.get_token()
    register_token(first)
    assert server.stats["rejected"] == 0
    if store != "memory":  # a second process of the same user reads the stored token, no IdP request
        with open_session(server, store, options, **fields) as again:
            assert again.get_token().access_token == first.access_token


@pytest.mark.interop_flow("client credentials, {method}")
@pytest.mark.parametrize("method", ("private_key_jwt", "client_secret_jwt"))
def test_client_credentials_with_a_client_assertion(peer: Peer, flyte_for: Callable[..., FlyteTestServer],
                                                    method: str, tmp_path: Path) -> None:
    """RFC 7523 client authentication: an assertion signed with the client's key (or its secret)."""
    needs(peer, f"client credentials, {method}")
    client_id, credential = peer.assertion_clients[method]
    fields: dict[str, Any] = {"auth_type": "ClientSecret", "client_id": client_id,
                              "token_endpoint_auth_method": method, "scopes": (peer.api_scope,)}
    if method == "private_key_jwt":
        fields["client_key_file_path"] = credential
    else:
        fields["client_secret"] = credential
    server = flyte_for()
    with open_session(server, "memory", {}, **fields) as session:
        assert call_echo(session) == b"ping"
    assert server.stats["rejected"] == 0


@pytest.mark.interop_flow("client credentials, tokenUrl without discovery")
def test_client_credentials_with_token_url_only(peer: Peer, flyte_for: Callable[..., FlyteTestServer],
                                                tmp_path: Path) -> None:
    """The config a user writes when Flyte's discovery is off limits: ``tokenUrl`` and the client."""
    client_id, secret = peer.secret_clients["client_secret_basic"]
    server = flyte_for(token_endpoint="", issuer="")  # advertises no token endpoint at all
    with open_session(server, "memory", {}, auth_type="ClientSecret", client_id=client_id, client_secret=secret,
                      token_url=peer.token_endpoint, scopes=(peer.api_scope,)) as session:
        assert call_echo(session) == b"ping"


# -- interactive logins ---------------------------------------------------------------------------------
def _refresh_once(session: AuthSession, before: Any, peer: Peer) -> Any:
    """Wait for the short-lived access token to go stale; the next call refreshes it (rotating)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        token = session.get_token()
        if token.access_token != before.access_token:
            register_token(token)
            return token
        time.sleep(0.2)
    raise AssertionError(f"{peer.name}: no refresh within 20 s")


@pytest.mark.interop_flow("authorization code + PKCE (browser), refresh")
@pytest.mark.parametrize("store", STORES)
def test_pkce_login_in_the_browser_then_refresh(peer: Peer, flyte_for: Callable[..., FlyteTestServer],
                                                browser: Any, store: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    assert peer.browser_login is not None
    server = flyte_for()
    opened: list[str] = []

    def opener(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        start(peer.browser_login, browser, url)
        return True

    options = {**store_options(store, tmp_path, request), "browserOpener": opener}
    with browser_threads() as start, open_session(server, store, options, auth_type="Pkce",
                                                  pkce_timeout=60) as session:
        token = session.login()
        register_token(token)
        assert token.refresh_token, f"{peer.name} issued no refresh token"
        assert "code_challenge_method=S256" in opened[0]
        assert call_echo(session) == b"ping"
        refreshed = _refresh_once(session, token, peer)
        assert call_echo(session) == b"ping"
    assert server.stats["rejected"] == 0
    assert refreshed.refresh_token and refreshed.refresh_token != token.refresh_token  # rotated
    if peer.grant_alive is not None:
        assert peer.grant_alive(refreshed.refresh_token)


@pytest.mark.interop_flow("device authorization grant (approved on its pages), refresh")
@pytest.mark.parametrize("store", STORES)
def test_device_login_then_refresh(peer: Peer, flyte_for: Callable[..., FlyteTestServer], browser: Any,
                                   store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert peer.device_approve is not None
    server = flyte_for(client_id=peer.device_client)
    shown: list[Any] = []
    pages: list[str] = []

    def prompt(code: Any) -> None:
        shown.append(code)
        start(lambda: pages.append(peer.device_approve(browser, code)))

    options = {**store_options(store, tmp_path, request), "deviceFlowPrompt": prompt}
    with browser_threads() as start, open_session(server, store, options, auth_type="DeviceFlow",
                                                  device_flow_timeout=60) as session:
        token = session.login()
        register_token(token)
        assert token.refresh_token, f"{peer.name} issued no refresh token"
        assert call_echo(session) == b"ping"
        refreshed = _refresh_once(session, token, peer)
        assert call_echo(session) == b"ping"
    assert len(shown) == 1 and shown[0].user_code
    assert refreshed.refresh_token != token.refresh_token
    if peer.grant_alive is not None:
        assert peer.grant_alive(refreshed.refresh_token)


@pytest.mark.interop_flow("revocation (flyteauth logout)")
def test_logout_revokes_the_refresh_token_at_the_idp(peer: Peer, flyte_for: Callable[..., FlyteTestServer],
                                                     browser: Any, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """``logout()`` finds the revocation endpoint in the IdP's own metadata (OIDC, then RFC 8414) and
    revokes; the refresh token is dead at the IdP afterwards."""
    from ._servers import http

    server = flyte_for(client_id=peer.device_client)

    def prompt(code: Any) -> None:
        assert peer.device_approve is not None
        start(peer.device_approve, browser, code)

    options = {**store_options("file", tmp_path, request), "deviceFlowPrompt": prompt}
    with browser_threads() as start, open_session(server, "file", options, auth_type="DeviceFlow",
                                                  device_flow_timeout=60) as session:
        token = session.login()
        register_token(token)
        revoked = session.logout(revoke=True)
    limit = peer.limits.get("revocation (flyteauth logout)")
    if limit:  # the server refuses; the local tokens are gone all the same
        assert revoked is False and not any((tmp_path / "host-a" / "tokens").glob("*.json"))
        pytest.xfail(f"server: {limit}")
    assert revoked is True
    status, body, _ = http("POST", peer.token_endpoint, form={
        "grant_type": "refresh_token", "refresh_token": token.refresh_token, "client_id": peer.device_client})
    assert status == 400 and body.get("error") == "invalid_grant", (status, body)


@pytest.mark.interop_flow("OIDC discovery served as Flyte's AuthMetadataService")
def test_the_idps_own_discovery_document_drives_a_login(peer: Peer, tmp_path: Path) -> None:
    """A Flyte deployment with an external authorization server answers ``GetOAuth2Metadata`` with the
    IdP's own metadata: here it is read from the IdP's ``/.well-known/openid-configuration`` (RFC 8414's
    document when OIDC's has no token endpoint), and nothing else is configured but the client."""
    from ._servers import http

    document: dict[str, Any] = {}
    for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        status, body, _ = http("GET", peer.issuer.rstrip("/") + suffix)
        if status == 200 and isinstance(body, dict) and body.get("token_endpoint"):
            document = body
            break
    assert document.get("issuer") == peer.issuer, document
    client_id, secret = peer.secret_clients["client_secret_basic"]
    server = FlyteTestServer(peer.validate, token_endpoint=document["token_endpoint"], issuer=document["issuer"],
                             authorization_endpoint=document.get("authorization_endpoint", ""),
                             device_authorization_endpoint=document.get("device_authorization_endpoint", ""),
                             client_id=peer.public_client).start()
    try:
        with open_session(server, "memory", {}, auth_type="ClientSecret", client_id=client_id,
                          client_secret=secret, scopes=(peer.api_scope,)) as session:
            assert call_echo(session) == b"ping"
    finally:
        server.stop()
    assert document.get("authorization_endpoint") == peer.authorization_endpoint
