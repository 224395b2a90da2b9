"""``ClientSecret`` (aliases ``client_credentials``, ``basic``): the OAuth2 client credentials grant.

Client authentication is authlib's ``ClientAuth`` (``client_secret_basic`` by default,
``client_secret_post`` by ``admin.tokenEndpointAuthMethod``); the request, retries and refresh timing
are ours, so ``scope`` and ``audience`` go on every request (authlib's own auto-refresh drops
``audience``).
"""

from __future__ import annotations

from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError, DiscoveryError
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token

from ._oauth import TokenEndpoint


class ClientSecretAuthenticator:
    """Service-account tokens from a client id and secret."""

    def __init__(self, config: AuthConfig) -> None:
        if not config.client_id:
            raise ConfigError(
                "authType ClientSecret needs a client id",
                hint="Set admin.clientId (or pass client_id=...)",
            )
        self._config = config
        self._secret = config.resolve_client_secret()  # fail at construction, not at the first RPC
        self._endpoint = TokenEndpoint()
        self._auth: Any = None

    def __repr__(self) -> str:
        return f"ClientSecretAuthenticator(client_id={self._config.client_id!r})"

    def _client_auth(self) -> Any:
        if self._auth is None:
            from authlib.oauth2.auth import ClientAuth

            self._auth = ClientAuth(
                self._config.client_id, self._secret, self._config.token_endpoint_auth_method
            )
        return self._auth

    def acquire(self, request: AcquireRequest) -> Token:
        config = self._config
        url = config.token_url
        scopes = config.scopes
        audience = config.audience
        if not url or not scopes or (config.use_audience_from_admin and not audience):
            try:
                server = request.server_info()
            except DiscoveryError:
                if not url:
                    raise
                server = None
            if server is not None:
                url = url or server.token_endpoint
                scopes = scopes or server.scopes
                if config.use_audience_from_admin and not audience:
                    audience = server.audience or None
        if not url:
            raise ConfigError(
                f"No token endpoint for {config.endpoint}: the server advertises none",
                hint="Set admin.tokenUrl",
            )
        data = {"grant_type": "client_credentials", "scope": " ".join(scopes), "audience": audience or ""}
        return self._endpoint.request(request, url, data, client_auth=self._client_auth())

    def close(self) -> None:
        self._endpoint.close()


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("ClientSecret", ClientSecretAuthenticator, aliases=("client_credentials", "basic"))
