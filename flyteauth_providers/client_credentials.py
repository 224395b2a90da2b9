"""``ClientSecret`` (aliases ``client_credentials``, ``basic``): the OAuth2 client credentials grant.

Client authentication is authlib's ``ClientAuth`` (``client_secret_basic`` by default,
``client_secret_post`` by ``admin.tokenEndpointAuthMethod``, or ``private_key_jwt`` (RFC 7523, authlib's
``PrivateKeyJWT``) with the key from the PEM file ``admin.clientKeyFilePath``: RSA keys sign RS256, EC keys
ES256/ES384/ES512 by curve, Ed25519 EdDSA; the assertion's audience is the token endpoint URL, and
``admin.clientKeyId`` sets its ``kid`` header); the request, retries and refresh timing
are ours, so ``scope`` and ``audience`` go on every request (authlib's own auto-refresh drops
``audience``).
"""

from __future__ import annotations

from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError, DiscoveryError
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.options import Option
from flyteauth_core.parsers import boolean
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
        # fail at construction, not at the first RPC
        if config.token_endpoint_auth_method == "private_key_jwt":
            self._secret: Any = _load_private_key(config)
        else:
            self._secret = config.resolve_client_secret()
        self._endpoint = TokenEndpoint()
        self._auth: Any = None

    def __repr__(self) -> str:
        return f"ClientSecretAuthenticator(client_id={self._config.client_id!r})"

    def _client_auth(self) -> Any:
        if self._auth is None:
            from authlib.oauth2.auth import ClientAuth

            method: Any = self._config.token_endpoint_auth_method
            if method == "private_key_jwt":
                from authlib.oauth2.rfc7523 import PrivateKeyJWT

                kid = self._config.options.get("clientKeyId")
                method = PrivateKeyJWT(alg=_alg(self._secret), headers={"kid": str(kid)} if kid else None)
            elif method == "client_secret_basic":
                method = form_encoded_basic
            self._auth = ClientAuth(self._config.client_id, self._secret, method)
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
        refuse_plain_http(config, url)
        data = {"grant_type": "client_credentials", "scope": " ".join(scopes), "audience": audience or ""}
        return self._endpoint.request(request, url, data, client_auth=self._client_auth())

    def close(self) -> None:
        self._endpoint.close()


#: ``admin.allowInsecureTokenEndpoint: true`` lets client credentials go to a plain-http token endpoint.
ALLOW_HTTP_OPTION = "allowInsecureTokenEndpoint"
ALLOW_HTTP = Option(ALLOW_HTTP_OPTION, parse=boolean, default=False,
                    help="send client credentials to a plain-http token endpoint off loopback (default: refused)")


def refuse_plain_http(config: AuthConfig, url: str) -> None:
    """A confidential client's credentials never cross the network in clear text: a plain-http token
    endpoint (for example one learned from unauthenticated discovery) is refused, unless it is on this
    machine (loopback) or the config opts in."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or ALLOW_HTTP.read(config):
        return
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return
    import ipaddress

    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ConfigError(
        f"Refusing to send client credentials to the plain-http token endpoint {url}",
        hint=f"Use an https token endpoint (admin.tokenUrl), or set admin.{ALLOW_HTTP_OPTION}: true if the "
        "network path to it is trusted",
    )


def form_encoded_basic(client: Any, method: str, uri: str, headers: Any, body: Any) -> tuple[Any, Any, Any]:
    """``client_secret_basic`` as RFC 6749 §2.3.1 says: id and secret form-urlencoded (UTF-8) before
    base64, so a secret with ``:``, ``%``, ``+`` or non-latin-1 characters arrives intact (authlib
    encodes them raw, as latin-1, and raises ``UnicodeEncodeError`` carrying the secret otherwise)."""
    import base64
    from urllib.parse import quote_plus

    raw = f"{quote_plus(str(client.client_id))}:{quote_plus(str(client.client_secret))}"
    headers["Authorization"] = "Basic " + base64.b64encode(raw.encode("ascii")).decode("ascii")
    return uri, headers, body


def _load_private_key(config: AuthConfig) -> Any:
    """The joserfc key from ``clientKeyFilePath``; errors name the file, never its content."""
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    path = config.client_key_file_path or ""
    try:
        with open(path, "rb") as fh:
            pem = fh.read()
    except OSError as exc:
        raise ConfigError(f"Cannot read clientKeyFilePath {path!r} ({exc.strerror or type(exc).__name__})",
                          hint="Point admin.clientKeyFilePath at the client's PEM private key") from None
    for kind in (RSAKey, ECKey, OKPKey):
        try:
            key = kind.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
        if key.is_private:
            return key
    raise ConfigError(f"clientKeyFilePath {path!r} holds no RSA, EC or Ed25519 private key in PEM form",
                      hint="Use a PKCS#8 or traditional PEM private key (-----BEGIN PRIVATE KEY-----)")


def _alg(key: Any) -> str:
    from joserfc.jwk import ECKey, OKPKey

    if isinstance(key, ECKey):
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(key.curve_name), "ES256")
    if isinstance(key, OKPKey):
        return "EdDSA"
    return "RS256"


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("ClientSecret", ClientSecretAuthenticator, aliases=("client_credentials", "basic"),
             options=(Option("clientKeyId", help="private_key_jwt: the kid header of the client assertion"),
                      ALLOW_HTTP))
