"""What PKCE and the device flow share: refresh first, then (only if allowed) a human login.

:class:`InteractiveAuthenticator` implements ``acquire`` once:

1. ``request.reason == "login"`` (``flyteauth login``): skip the refresh token, run the login flow.
2. A previous token with a refresh token: try the refresh grant.  Success keeps the old refresh token
   when the IdP does not rotate it.  ``invalid_grant`` (expired, revoked, reused) falls through to 3.
   Transient failures (network, 5xx, 429) propagate: the manager retries later and stored credentials
   are never deleted.
3. ``request.interactive``: run the subclass's flow (browser or device code); otherwise raise
   ``InteractionRequired``, which tells the user to run ``flyteauth login``.

Subclasses implement :meth:`InteractiveAuthenticator.login`.  The public client (id, scopes, audience,
endpoints, redirect URI) comes from the server's discovery, with config overrides winning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import (
    ConfigError,
    FlyteAuthError,
    InteractionRequired,
    InvalidGrantError,
    TokenError,
)
from flyteauth_core.idps import IDP_PROFILE
from flyteauth_core.lifecycle import LOGIN, REPLAY, AcquireRequest
from flyteauth_core.options import Option
from flyteauth_core.token import Token

from ._oauth import TokenEndpoint, idp_profile, post_form, public_client_auth, refresh_grant

log = logging.getLogger("flyteauth.interactive")

DEFAULT_REDIRECT_URI = "http://localhost:53593/callback"


class LoginError(TokenError):
    """An interactive login did not complete (denied, failed at the IdP, wrong state, ...)."""

    def __init__(self, message: str, *, error: str | None = None, hint: str | None = None) -> None:
        self.error = error
        super().__init__(message, hint=hint or "Run `flyteauth login` to try again")


class LoginDeniedError(LoginError):
    """The user or the IdP refused the login (``access_denied`` and other ``error=`` answers)."""


class LoginStateError(LoginError):
    """The browser came back with a ``state`` that is not the one this login sent (CSRF, stale tab)."""


class LoginExpiredError(LoginError):
    """The device code expired before the user finished."""


class LoginTimeoutError(LoginError):
    """Nobody finished the login within the configured timeout."""

    transient = True  # nothing was wrong with stored credentials


def option(config: AuthConfig, section: str, key: str) -> Any:
    """``admin.<section>.<key>`` from the raw config options (nested mapping or a dotted flat key)."""
    nested = config.options.get(section)
    if isinstance(nested, Mapping) and nested.get(key) is not None:
        return nested[key]
    return config.options.get(f"{section}.{key}")


@attrs.frozen
class PublicClient:
    """The public client a human logs in with: server's config, overridden by ours."""

    client_id: str
    scopes: tuple[str, ...]
    audience: str | None
    token_endpoint: str
    authorization_endpoint: str
    device_authorization_endpoint: str
    redirect_uri: str
    issuer: str


#: Config keys the interactive providers read (declared at registration, so they are not "unknown").
INTERACTIVE_OPTIONS = (
    Option("revocationEndpoint", help="RFC 7009 endpoint for `flyteauth logout` (default: the IdP's discovery)"),
    IDP_PROFILE,
)


class InteractiveAuthenticator:
    """Base class of the providers that need a human for the first token (PKCE, device flow)."""

    #: The name used in messages: "browser (PKCE)", "device code".
    flow_name = "interactive"
    #: ``AuthSession`` uses this store unless the config names one: logins should survive the process.
    default_token_store = "keyring"

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self._endpoint = TokenEndpoint()
        self._cancelled = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self._config.endpoint!r})"

    def identity_parts(self, request: AcquireRequest) -> dict[str, str]:
        """``IdentitySource``: a person's login belongs to the OS user who ran it, so a shared store (file
        directory, Redis) never hands it to another user with the same config."""
        from flyteauth_core.identity import os_user

        return {"os_user": os_user()}

    # -- configuration --------------------------------------------------------------------------------
    def refresh_client(self, request: AcquireRequest) -> PublicClient:
        """The client for a refresh: with ``tokenUrl`` and ``clientId`` configured, no discovery (a
        refresh needs neither the authorization endpoints nor the redirect URI)."""
        config = self._config
        if not (config.token_url and config.client_id):
            return self.client(request)
        return PublicClient(
            client_id=config.client_id, scopes=config.scopes, audience=config.audience or None,
            token_endpoint=config.token_url, authorization_endpoint="", device_authorization_endpoint="",
            redirect_uri=str(option(config, "pkceConfig", "redirectUri") or DEFAULT_REDIRECT_URI), issuer="",
        )

    def client(self, request: AcquireRequest) -> PublicClient:
        config = self._config
        server = request.server_info()
        client_id = config.client_id or server.client_id
        if not client_id:
            raise ConfigError(
                f"{config.endpoint} advertises no public client id for a {self.flow_name} login",
                hint="Set admin.clientId",
            )
        token_endpoint = config.token_url or server.token_endpoint
        if not token_endpoint:
            raise ConfigError(f"No token endpoint for {config.endpoint}: the server advertises none",
                              hint="Set admin.tokenUrl")
        redirect = option(config, "pkceConfig", "redirectUri") or server.redirect_uri or DEFAULT_REDIRECT_URI
        return PublicClient(
            client_id=client_id,
            scopes=config.scopes or server.scopes,
            audience=config.audience or server.audience or None,
            token_endpoint=token_endpoint,
            authorization_endpoint=server.authorization_endpoint,
            device_authorization_endpoint=server.device_authorization_endpoint,
            redirect_uri=str(redirect),
            issuer=server.issuer,
        )

    # -- the one acquire ------------------------------------------------------------------------------
    def acquire(self, request: AcquireRequest) -> Token:
        previous = request.previous
        if request.reason != LOGIN and previous is not None and previous.refresh_token:
            refresh = self.refresh_client(request)
            try:
                return refresh_grant(self._endpoint, request, refresh.token_endpoint, previous,
                                     client_auth=public_client_auth(refresh.client_id), audience=refresh.audience)
            except InvalidGrantError as exc:
                if request.reason == REPLAY:
                    raise  # the replay of a lost refresh: the manager says what happened, no login here
                log.info("flyteauth: refresh token for %s no longer valid (%s); a new login is needed",
                         self._config.endpoint, exc.error or "invalid_grant")
        if not request.interactive:
            raise InteractionRequired(
                f"{self._config.endpoint} needs a {self.flow_name} login, and this session may not start "
                "one (no terminal, CI is set, or FLYTEAUTH_INTERACTIVE=0)",
            )
        self._cancelled.clear()
        client = self.client(request)
        token = self.login(request, client)
        if not token.refresh_token:
            self._warn_without_refresh(client)
        return token

    def _warn_without_refresh(self, client: PublicClient) -> None:
        """A login with no refresh token means a new login at every expiry; Keycloak and Okta do that unless
        the login asked for ``offline_access``: say so once, in the user's keys."""
        hint = idp_profile(self._config, client.token_endpoint).refresh_hint(tuple(client.scopes))
        if hint:
            log.warning("flyteauth: the login at %s brought no refresh token; %s", client.token_endpoint, hint)

    def login(self, request: AcquireRequest, client: PublicClient) -> Token:
        raise NotImplementedError

    def exchange(self, request: AcquireRequest, client: PublicClient, data: Mapping[str, str]) -> Token:
        """Post a grant (code, device code) to the token endpoint as the public client."""
        return self._endpoint.request(request, client.token_endpoint, data,
                                      client_auth=public_client_auth(client.client_id))

    # -- logout -----------------------------------------------------------------------------------
    def revoke(self, request: AcquireRequest, token: Token) -> bool:
        """Revoke ``token``'s refresh token (else its access token) at the IdP (RFC 7009); best effort.

        The revocation endpoint is not in Flyte's metadata: it comes from the IdP's own discovery
        document (OIDC, then RFC 8414).  Returns True when the IdP confirmed.
        """
        secret, hint = (token.refresh_token, "refresh_token") if token.refresh_token else (
            token.access_token, "access_token")
        try:
            client = self.client(request)
            url = self._revocation_endpoint(request, client.issuer)
            if not url:
                return False
            status, _ = post_form(request, url, {"token": secret, "token_type_hint": hint},
                                  client_auth=public_client_auth(client.client_id))
        except FlyteAuthError as exc:
            log.warning("flyteauth: could not revoke the token at the IdP (%s)", type(exc).__name__)
            return False
        if status != 200:
            log.warning("flyteauth: the IdP answered HTTP %s to the token revocation", status)
        return status == 200

    def _revocation_endpoint(self, request: AcquireRequest, issuer: str) -> str | None:
        explicit = self._config.options.get("revocationEndpoint")
        if explicit:
            return str(explicit)
        if not issuer:
            return None
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            url = issuer.rstrip("/") + suffix
            http = request.http_client(url)
            try:
                response = http.get(url, headers={"Accept": "application/json"})
                body = response.json() if response.status_code == 200 else None
            except Exception as exc:  # best effort: any failure means "no revocation"
                log.debug("flyteauth: %s unavailable (%s)", url, type(exc).__name__)
                body = None
            finally:
                http.close()
            if isinstance(body, Mapping) and isinstance(body.get("revocation_endpoint"), str):
                return str(body["revocation_endpoint"])
        return None

    def close(self) -> None:
        """Stop a login in progress (it ends with ``LoginError``) and release HTTP clients."""
        self._cancelled.set()
        self._endpoint.close()
