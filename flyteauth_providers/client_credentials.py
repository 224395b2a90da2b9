"""``ClientSecret`` (aliases ``client_credentials``, ``basic``): the OAuth2 client credentials grant.

Client authentication is authlib's ``ClientAuth`` (``client_secret_basic`` by default,
``client_secret_post`` by ``admin.tokenEndpointAuthMethod``, or ``private_key_jwt`` (RFC 7523, authlib's
``PrivateKeyJWT``) with the key from the PEM file ``admin.clientKeyFilePath``: RSA keys sign RS256, EC keys
ES256/ES384/ES512 by curve, Ed25519 EdDSA; the assertion's audience is the token endpoint URL, and
``admin.clientKeyId`` sets its ``kid`` header), or ``federated_jwt``: the platform token (a Kubernetes or
GitHub Actions token, see ``platform_token``) as the RFC 7523 ``client_assertion`` of a federated
credential, with the token capped at the platform token's ``exp``; the request, retries and refresh timing
are ours, so ``scope`` and ``audience`` go on every request (authlib's own auto-refresh drops
``audience``).
"""

from __future__ import annotations

from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError, InvalidClientError
from flyteauth_core.idps import IDP_PROFILE
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.options import Option
from flyteauth_core.token import Token

from ._oauth import (
    ALLOW_HTTP,
    CLIENT_CERT,
    ClientAuthentication,
    TokenEndpoint,
    idp_profile,
    refuse_plain_http,
    rehint,
    token_request_target,
)
from .platform_token import PLATFORM_OPTIONS, PlatformTokenReader, cap_expiry


class ClientSecretAuthenticator:
    """Service-account tokens from a client id and secret (or key, or federated platform token)."""

    def __init__(self, config: AuthConfig) -> None:
        if not config.client_id:
            raise ConfigError(
                "authType ClientSecret needs a client id",
                hint="Set admin.clientId (or pass client_id=...)",
            )
        if config.token_endpoint_auth_method == "none":
            raise ConfigError("authType ClientSecret needs client authentication, not tokenEndpointAuthMethod none",
                              hint="Use TokenExchange for a public client, or set a secret, key or federated_jwt")
        self._config = config
        # fail at construction, not at the first RPC
        self._client_auth = ClientAuthentication(config)
        self._platform: Any = None
        if config.token_endpoint_auth_method == "federated_jwt":
            self._platform = PlatformTokenReader(config)
        self._endpoint = TokenEndpoint()

    def __repr__(self) -> str:
        return f"ClientSecretAuthenticator(client_id={self._config.client_id!r})"

    def acquire(self, request: AcquireRequest) -> Token:
        url, scopes, audience = token_request_target(self._config, request)
        refuse_plain_http(self._config, url)
        problem = idp_profile(self._config, url).check_client_credentials_scopes(tuple(scopes), bool(audience))
        if problem:
            raise ConfigError(problem, hint="Set admin.scopes: [api://<application id of the Flyte API>/.default]")
        data = {"grant_type": "client_credentials", "scope": " ".join(scopes), "audience": audience or ""}
        if self._platform is None:
            return self._endpoint.request(request, url, data, client_auth=self._client_auth())
        platform = self._platform.read(request)  # read again at every request: the platform rotates it
        try:
            token = self._endpoint.request(request, url, data, client_auth=self._client_auth(platform.value))
        except InvalidClientError as exc:
            claims = platform.summary()
            raise rehint(exc, f"The IdP did not accept the platform token from {platform.origin} (iss "
                         f"{claims.get('iss')!r}, sub {claims.get('sub')!r}, aud {claims.get('aud')}) as a federated "
                         f"credential of client {self._config.client_id!r}: register one with exactly this issuer, "
                         "subject and audience") from None
        return cap_expiry(token, platform)

    def identity_parts(self, request: AcquireRequest) -> dict[str, str]:
        """``IdentitySource``: with ``federated_jwt``, the platform token's iss/sub/aud (it is the client's
        credential, and each workload's may name another subject)."""
        return {} if self._platform is None else {"platform": self._platform.identity(request)}

    def describe(self) -> str:
        """One line (``Describable``): the client, its auth method and, with ``federated_jwt``, the platform
        token it presents (origin and claims, never the token)."""
        text = f"client credentials of {self._config.client_id!r} ({self._client_auth.method})"
        return text + (f" with the platform token from {self._platform.describe()}" if self._platform else "")

    def details(self) -> dict[str, Any]:
        """The same as data, for ``flyteauth config``/``doctor --json``."""
        out: dict[str, Any] = {"client_id": self._config.client_id, "auth_method": self._client_auth.method}
        if self._platform is not None:
            out["platform_token"] = self._platform.details()
        return out

    def close(self) -> None:
        self._endpoint.close()


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("ClientSecret", ClientSecretAuthenticator, aliases=("client_credentials", "basic"),
             options=(Option("clientKeyId", help="private_key_jwt: the kid header of the client assertion"),
                      CLIENT_CERT, IDP_PROFILE, ALLOW_HTTP, *PLATFORM_OPTIONS))
