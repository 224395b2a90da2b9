"""``TokenExchange`` (aliases ``token_exchange``, ``urn:ietf:params:oauth:grant-type:token-exchange``): RFC 8693.

The platform token (see ``platform_token``: a Kubernetes projected token, a GitHub Actions OIDC token, ...)
is the ``subject_token``, ``subject_token_type`` ``admin.subjectTokenType`` (default
``urn:ietf:params:oauth:token-type:jwt``).  Optional: an actor token (``admin.actorTokenFile``, re-read at
every request, ``admin.actorTokenType``), ``audience`` (``admin.audience``, or the server's with
``useAudienceFromAdmin``), ``resource`` (``admin.resource``), ``scope`` (``admin.scopes``, else the
server's) and ``requested_token_type`` (``admin.requestedTokenType``).  The token endpoint is
``admin.tokenUrl`` or discovered.

Client authentication is optional (Google STS wants none; Okta and Keycloak want a client):
``tokenEndpointAuthMethod`` ``none`` (``client_id`` only, when set; the default when no secret or key is
configured), ``client_secret_basic``/``client_secret_post``, ``private_key_jwt`` or ``federated_jwt`` (the
platform token is also the client assertion).  Every refresh reads the platform token again and exchanges
it; the result never outlives the platform token's ``exp``.

RFC 8693 §2.2.2 errors become :class:`TokenExchangeError` with a hint naming the setting to change.
"""

from __future__ import annotations

from typing import Any

import attrs

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig, read_secret_file
from flyteauth_core.errors import TokenExchangeError, TokenRequestError
from flyteauth_core.idps import IDP_PROFILE
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token

from ._oauth import ALLOW_HTTP, ClientAuthentication, TokenEndpoint, refuse_plain_http, rehint, token_request_target
from .platform_token import EXCHANGE_OPTIONS, PLATFORM_OPTIONS, PlatformToken, PlatformTokenReader, cap_expiry

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"

#: RFC 8693 §2.2.2 (and the errors IdPs use for a refused subject token) -> what to change.
_HINTS = {
    "invalid_target": "The IdP will not issue a token for the requested target: set admin.audience and/or "
    "admin.resource to a target this client may exchange for (now audience={audience!r}, resource={resource!r})",
    "invalid_request": "The IdP refused the exchange request: check admin.subjectTokenType (now {subject_type!r}), "
    "admin.requestedTokenType and that the platform token from {origin} (iss {iss!r}, aud {aud}) is one this IdP "
    "trusts (issuer registered, audience it expects, not expired)",
    "invalid_grant": "The IdP refused the platform token from {origin} (iss {iss!r}, sub {sub!r}, aud {aud}): "
    "register its issuer and subject with the IdP (workload identity pool, federated credential or trust policy)",
    "unauthorized_client": "This client may not use token exchange at the IdP: allow the grant "
    "urn:ietf:params:oauth:grant-type:token-exchange for admin.clientId ({client_id!r})",
    "invalid_client": "The IdP rejected the client authentication: check admin.clientId ({client_id!r}) and "
    "admin.tokenEndpointAuthMethod ({method!r}); a public exchange client needs tokenEndpointAuthMethod none",
}


def _default_method(config: AuthConfig) -> str:
    """``none`` unless a secret or key is configured or a method was set explicitly."""
    method = config.token_endpoint_auth_method
    explicit = "token_endpoint_auth_method" in config.sources or method != "client_secret_basic"
    if explicit or config.client_secret or config.client_secret_env_var or config.client_secret_location:
        return method
    return "none"


class TokenExchangeAuthenticator:
    """Exchanges the platform token for an access token at the IdP (no secret on disk)."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self._platform = PlatformTokenReader(config)
        self.options = self._platform.options
        self._client_auth = ClientAuthentication(config, _default_method(config))
        self._endpoint = TokenEndpoint()

    def __repr__(self) -> str:
        source, client = self._platform.source_name, self._config.client_id
        return f"TokenExchangeAuthenticator(source={source!r}, client_id={client!r})"

    def acquire(self, request: AcquireRequest) -> Token:
        url, scopes, audience = token_request_target(self._config, request)
        refuse_plain_http(self._config, url, "the platform token")
        platform = self._platform.read(request)
        options = self.options
        data = {
            "grant_type": GRANT_TYPE,
            "subject_token": platform.value,
            "subject_token_type": options.subject_token_type,
            "audience": audience or "",
            "resource": options.resource or "",
            "scope": " ".join(scopes),
            "requested_token_type": options.requested_token_type or "",
        }
        if options.actor_token_file:
            data["actor_token"] = read_secret_file(options.actor_token_file, "the actor token file",
                                                   "Fix admin.actorTokenFile")
            data["actor_token_type"] = options.actor_token_type
        try:
            token = self._endpoint.request(request, url, data, client_auth=self._client_auth(platform.value))
        except TokenRequestError as exc:
            raise self._explain(exc, platform, audience) from None
        if token.token_type.upper() == "N_A":  # RFC 8693 §2.2.1: the issued token is not an access token
            token = attrs.evolve(token, token_type="Bearer")
        return cap_expiry(token, platform)

    def _explain(self, exc: TokenRequestError, platform: PlatformToken, audience: str | None) -> TokenRequestError:
        hint = _HINTS.get(exc.error or "")
        if hint is None or exc.transient:
            return exc
        claims = platform.summary()
        hint = hint.format(
            audience=audience, resource=self.options.resource, subject_type=self.options.subject_token_type,
            origin=platform.origin, iss=claims.get("iss"), sub=claims.get("sub"), aud=claims.get("aud"),
            client_id=self._config.client_id, method=self._client_auth.method,
        )
        _, sep, reason = exc.message.rsplit(" at ", 1)[0].partition(":")
        reason = reason if sep else f" {exc.error}"
        # RFC 8693's own errors become TokenExchangeError; invalid_client/invalid_grant keep their class
        # (code that catches InvalidClientError still does), with a hint that fits token exchange.
        cls = TokenExchangeError if exc.error in ("invalid_target", "invalid_request") else type(exc)
        return rehint(exc, hint, cls, f"Token exchange refused:{reason}")

    def identity_parts(self, request: AcquireRequest) -> dict[str, str]:
        """``IdentitySource``: the platform (and actor) token's iss/sub/aud, resource, token types and the
        effective client auth method; never a token."""
        from flyteauth_core.identity import observe

        options = self.options
        parts = {
            "platform": self._platform.identity(request),
            "auth_method": self._client_auth.method,
            "resource": options.resource or "",
            "requested_token_type": options.requested_token_type or "",
            "subject_token_type": options.subject_token_type,
        }
        if options.actor_token_file:
            parts["actor"] = observe("file", options.actor_token_file)
            parts["actor_token_type"] = options.actor_token_type
        return parts

    def describe(self) -> str:
        """One line (``Describable``): how the exchange authenticates and the platform token it uses."""
        client = f"client {self._config.client_id!r}, " if self._config.client_id else ""
        return f"RFC 8693 token exchange ({client}auth {self._client_auth.method}) of {self._platform.describe()}"

    def details(self) -> dict[str, Any]:
        """For ``flyteauth config``/``doctor --json``: the exchange settings, where the platform token comes
        from and its claims (iss, sub, aud, exp), never the token."""
        options = self.options
        return {
            "grant": GRANT_TYPE,
            "client_id": self._config.client_id,
            "auth_method": self._client_auth.method,
            "subject_token_type": options.subject_token_type,
            "requested_token_type": options.requested_token_type,
            "audience": self._config.audience,
            "resource": options.resource,
            "actor_token_file": options.actor_token_file,
            "platform_token": self._platform.details(),
        }

    def close(self) -> None:
        self._endpoint.close()


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("TokenExchange", TokenExchangeAuthenticator, aliases=("token_exchange", GRANT_TYPE),
             options=(*PLATFORM_OPTIONS, *EXCHANGE_OPTIONS, ALLOW_HTTP, IDP_PROFILE),
             description="RFC 8693: the platform's identity token (Kubernetes, GitHub Actions) for an access token")
