"""The token endpoint call shared by every grant: one request, retries, and error mapping.

Retries and backoff come from ``flyteauth_core.http.send_with_retries``; the response is parsed by
``flyteauth_core.token.token_from_response``.  OAuth2 error codes become typed errors whose messages
name the endpoint and status, never a secret.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import (
    ConfigError,
    DiscoveryError,
    InvalidClientError,
    InvalidGrantError,
    TokenRequestError,
    TokenResponseError,
)
from flyteauth_core.http import RetryPolicy, send_with_retries
from flyteauth_core.idps import IDP_PROFILE, IdpProfile, explain_aadsts, recognise
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.options import Option
from flyteauth_core.parsers import boolean
from flyteauth_core.token import Token, token_from_response


def _describe(body: Any) -> tuple[str | None, str, str | None]:
    """``(error code, text for the message, what an Entra AADSTS code in the description means)``."""
    if not isinstance(body, Mapping):
        return None, "", None
    error = body.get("error")
    description = body.get("error_description")
    error = error if isinstance(error, str) else None
    text = f": {error}" if error else ""
    if isinstance(description, str) and description:
        text += f" ({description[:200]})"
    return error, text, explain_aadsts(description if isinstance(description, str) else None)


def idp_profile(config: AuthConfig, url: str) -> IdpProfile:
    """The IdP behind ``url``: ``admin.idpProfile`` when set, else recognised from the URL (``flyteauth_core.idps``)."""
    return recognise(url, IDP_PROFILE.read(config))


#: Long runs of token characters (access/refresh tokens, secrets, assertions) in an IdP's error text.
_OPAQUE = re.compile(r"[A-Za-z0-9._~+=-]{24,}")


def idp_excerpt(response: Any, limit: int = 200) -> str | None:
    """The IdP's own words from an error response, for a human: markup dropped, whitespace collapsed, cut at
    ``limit``, long opaque strings (a token or secret it may echo) replaced by ``****``."""
    try:
        text = response.text
    except Exception:  # an undecodable body
        return None
    text = " ".join(re.sub(r"<[^>]*>", " ", str(text or "")).split())
    if not text:
        return None
    text = _OPAQUE.sub("****", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def raise_for_error(response: Any, endpoint: str) -> Any:
    """Return the JSON body of a successful response, or raise the typed error it means."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if status == 200:
        if body is None:
            kind = response.headers.get("content-type", "no content type")
            raise TokenResponseError(f"Token endpoint returned a non-JSON body ({kind})",
                                     endpoint=endpoint, status=status)
        return body
    error, text, entra = _describe(body)
    said = idp_excerpt(response)
    if error == "invalid_client" or (status == 401 and error is None):
        raise InvalidClientError(
            f"Identity provider rejected the client credentials{text}", endpoint=endpoint, status=status,
            error=error, hint=entra or "Check the client id and secret (admin.clientId, admin.clientSecretLocation "
            "or admin.clientSecretEnvVar) and the token endpoint auth method", idp_message=said,
        )
    if error == "invalid_grant":
        raise InvalidGrantError(f"The grant is no longer valid{text}", endpoint=endpoint, status=status,
                                error=error, hint=entra or "Log in again with `flyteauth login`", idp_message=said)
    raise TokenRequestError(f"Token request failed{text or ' with an unexpected response'}",
                            endpoint=endpoint, status=status, error=error, hint=entra, idp_message=said)


class TokenEndpoint:
    """Posts token requests for one provider, reusing one HTTP client (built by the core factory).

    ``client_auth`` is an authlib ``ClientAuth`` (``authlib.oauth2.auth``): it signs the form for
    ``client_secret_basic``, ``client_secret_post``, ``none`` or ``private_key_jwt``.  We use it directly
    instead of authlib's httpx integration, which costs ~100 ms of imports (OAuth1, JOSE, OIDC clients)
    that a command-line tool pays at every start.
    """

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self._client: Any = None
        self._client_scheme = ""
        self._retry = retry

    def request(
        self,
        request: AcquireRequest,
        url: str,
        data: Mapping[str, str],
        *,
        client_auth: Any = None,
        previous: Token | None = None,
    ) -> Token:
        from urllib.parse import urlencode

        if self._client is None or self._client_scheme != url.split(":", 1)[0]:
            self.close()
            self._client = request.http_client(url)
            self._client_scheme = url.split(":", 1)[0]
        client = self._client
        data = idp_profile(request.config, url).shape_token_form(data, grant=data.get("grant_type", ""))
        form = urlencode({k: v for k, v in data.items() if v})
        base_headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}

        def send() -> Any:
            # Client authentication is prepared per attempt: a private_key_jwt assertion gets a new
            # jti/iat/exp each time, so an IdP's replay cache never sees a retry as a replay.
            target, headers, body = url, dict(base_headers), form
            if client_auth is not None:
                target, headers, body = client_auth.prepare("POST", url, headers, body)
            return client.post(target, content=body, headers=headers)

        response = send_with_retries(
            send,
            endpoint=url,
            policy=self._retry or request.retry,
            grant=data.get("grant_type"),
        )
        body = raise_for_error(response, url)
        return token_from_response(body, now=time.time(), endpoint=url, status=response.status_code,
                                   previous=previous)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class FormClientAuth:
    """authlib's ``ClientAuth`` for the methods that only add a header or form fields, without importing
    authlib (``authlib.oauth2`` costs about 50 ms at a cold start, more than the token request itself).
    Same interface and wire format: ``prepare(method, uri, headers, body) -> (uri, headers, body)``."""

    __slots__ = ("_encode", "client_id", "client_secret")

    def __init__(self, client_id: str | None, client_secret: str | None,
                 encode: Callable[[Any, str, str, Any, Any], tuple[Any, Any, Any]]) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._encode = encode

    def __repr__(self) -> str:
        return f"FormClientAuth({self._encode.__name__}, client_id={self.client_id!r})"

    def prepare(self, method: str, uri: str, headers: Any, body: Any) -> tuple[Any, Any, Any]:
        return self._encode(self, method, uri, headers, body)


def add_form_fields(body: str | None, fields: list[tuple[str, str]]) -> str:
    """``body`` (an urlencoded form) with ``fields`` appended, as authlib's ``add_params_to_qs`` leaves it."""
    from urllib.parse import urlencode

    extra = urlencode(fields)
    return f"{body}&{extra}" if body else extra


def form_secret_post(client: Any, method: str, uri: str, headers: Any, body: Any) -> tuple[Any, Any, Any]:
    """``client_secret_post`` (RFC 6749 §2.3.1): id and secret in the form."""
    return uri, headers, add_form_fields(body, [("client_id", client.client_id),
                                                ("client_secret", client.client_secret or "")])


def form_none(client: Any, method: str, uri: str, headers: Any, body: Any) -> tuple[Any, Any, Any]:
    """``none``: a public client sends only its ``client_id`` in the form."""
    return uri, headers, add_form_fields(body, [("client_id", client.client_id)])


def public_client_auth(client_id: str) -> Any:
    """Client authentication for a public client (``none``: only ``client_id`` in the form)."""
    return FormClientAuth(client_id, None, form_none)


def refresh_grant(
    endpoint: TokenEndpoint,
    request: AcquireRequest,
    url: str,
    previous: Token,
    *,
    client_auth: Any,
    audience: str | None = None,
) -> Token:
    """RFC 6749 §6: trade ``previous.refresh_token`` for a new token.

    ``scope`` is not sent (the grant keeps its scopes).  A response without a new refresh token keeps the
    old one (``previous``).  ``invalid_grant`` raises ``InvalidGrantError``; transient failures raise
    ``TransientTokenError`` after retries, and the caller must keep the stored credentials.
    """
    if not previous.refresh_token:
        raise InvalidGrantError("No refresh token to use", endpoint=url)
    data = {"grant_type": "refresh_token", "refresh_token": previous.refresh_token, "audience": audience or ""}
    return endpoint.request(request, url, data, client_auth=client_auth, previous=previous)


def post_form(
    request: AcquireRequest, url: str, data: Mapping[str, str], *, client_auth: Any = None
) -> tuple[int, Any]:
    """POST a form to an IdP endpoint (device authorization, revocation) with retries.

    Returns ``(status, JSON body or None)``; raises ``TransientTokenError`` when retries run out.
    """
    from urllib.parse import urlencode

    data = idp_profile(request.config, url).shape_token_form(data, grant="")
    body = urlencode({k: v for k, v in data.items() if v})
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    if client_auth is not None:
        url, headers, body = client_auth.prepare("POST", url, headers, body)
    client = request.http_client(url)
    try:
        response = send_with_retries(lambda: client.post(url, content=body, headers=headers), endpoint=url,
                                     policy=request.retry)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        return response.status_code, parsed
    finally:
        client.close()


def token_request_target(config: AuthConfig, request: AcquireRequest) -> tuple[str, tuple[str, ...], str | None]:
    """``(token endpoint, scopes, audience)`` for a service grant: the config's, else what the server advertises.

    Discovery runs only for what the config leaves unset; a failed discovery is fatal only when the token
    endpoint itself is unknown.
    """
    url, scopes, audience = config.token_url, config.scopes, config.audience
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
    return url, tuple(scopes), audience


def rehint(exc: TokenRequestError, hint: str, cls: type[TokenRequestError] | None = None,
           message: str | None = None) -> TokenRequestError:
    """The same token endpoint error with a hint that fits the grant (the generic one names client secrets)."""
    text = message or exc.message.rsplit(" at ", 1)[0]
    return (cls or type(exc))(text, endpoint=exc.endpoint, status=exc.status, error=exc.error, hint=hint,
                              transient=exc.transient)


JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _federated_assertion(auth: Any, method: str, uri: str, headers: Any, body: str) -> tuple[str, Any, str]:
    """Client auth method: the platform token as an RFC 7523 client assertion (a federated credential)."""
    params = [("client_assertion_type", JWT_BEARER_ASSERTION), ("client_assertion", auth.client_secret)]
    if auth.client_id:
        params.insert(0, ("client_id", auth.client_id))
    return uri, headers, add_form_fields(body, params)


#: ``admin.allowInsecureTokenEndpoint: true`` lets client credentials go to a plain-http token endpoint.
ALLOW_HTTP_OPTION = "allowInsecureTokenEndpoint"
ALLOW_HTTP = Option(ALLOW_HTTP_OPTION, parse=boolean, default=False,
                    help="send client credentials to a plain-http token endpoint off loopback (default: refused)")


def refuse_plain_http(config: AuthConfig, url: str, what: str = "client credentials") -> None:
    """A confidential client's credentials (or a platform token) never cross the network in clear text: a
    plain-http token endpoint (for example one learned from unauthenticated discovery) is refused, unless
    it is on this machine (loopback) or the config opts in."""
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
        f"Refusing to send {what} to the plain-http token endpoint {url}",
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


class ClientAuthentication:
    """How a client authenticates at the token endpoint, chosen once from the config; shared by every grant.

    ``client_secret_basic``/``client_secret_post``: the resolved secret; ``client_secret_jwt`` (RFC 7523): an
    HS256 assertion signed with it (glewlwyd, Keycloak, Okta accept it).  ``private_key_jwt`` (RFC 7523,
    authlib's ``PrivateKeyJWT``): the PEM key from ``admin.clientKeyFilePath`` (RSA signs RS256, EC by curve,
    Ed25519 EdDSA; ``admin.clientKeyId`` sets ``kid``); the assertion's audience is the token endpoint URL.
    ``none``: only ``client_id`` (nothing when there is none).  ``federated_jwt``: the platform token,
    passed per request, as ``client_assertion``.  Secrets and keys are loaded here, so a missing file fails
    at construction rather than at the first RPC.
    """

    def __init__(self, config: AuthConfig, method: str | None = None) -> None:
        self.client_id = config.client_id or ""
        self.method = method or config.token_endpoint_auth_method
        self._key_id = config.options.get("clientKeyId")
        self._credential: Any = None
        self._thumbprints: dict[str, str] = {}
        if self.method == "private_key_jwt":
            self._credential = load_client_key(config)
            cert_path = CLIENT_CERT.read(config)
            if cert_path:
                self._thumbprints = certificate_thumbprints(str(cert_path), self._credential)
        elif self.method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
            self._credential = config.resolve_client_secret()
        self._auth: Any = None

    def __repr__(self) -> str:
        return f"ClientAuthentication({self.method!r}, client_id={self.client_id!r})"

    def __call__(self, assertion: str | None = None) -> Any:
        """The client authentication for one request (None: send none): :class:`FormClientAuth` for the
        methods that only add fields, authlib's ``ClientAuth`` for ``private_key_jwt`` (a signed JWT)."""
        if self.method == "federated_jwt":
            return FormClientAuth(self.client_id, assertion, _federated_assertion)
        if self.method == "none":
            return FormClientAuth(self.client_id, None, form_none) if self.client_id else None
        if self._auth is None:
            if self.method == "client_secret_basic":
                self._auth = FormClientAuth(self.client_id, self._credential, form_encoded_basic)
            elif self.method == "client_secret_post":
                self._auth = FormClientAuth(self.client_id, self._credential, form_secret_post)
            else:
                from authlib.oauth2.auth import ClientAuth

                method: Any = self.method
                if method == "private_key_jwt":
                    from authlib.oauth2.rfc7523 import PrivateKeyJWT

                    kid = self._key_id
                    headers = {**({"kid": str(kid)} if kid else {}), **self._thumbprints}
                    method = PrivateKeyJWT(alg=_alg(self._credential), headers=headers or None)
                elif method == "client_secret_jwt":
                    from authlib.oauth2.rfc7523 import ClientSecretJWT

                    method = ClientSecretJWT()  # HS256 over the secret, audience the token endpoint (RFC 7523)
                self._auth = ClientAuth(self.client_id, self._credential, method)
        return self._auth


#: The first authlib whose ``PrivateKeyJWT`` signs with joserfc keys of every kind (1.7.0 took RSA only,
#: 1.6 had no joserfc at all); pyproject.toml declares the same floor.
AUTHLIB_FOR_PRIVATE_KEY_JWT = (1, 7, 2)


def _private_key_jwt_libraries() -> None:
    """A typed error naming the fix when the installed authlib/joserfc cannot sign client assertions (an
    install with ``--no-deps``, or an older authlib pinned by another package), not a raw ImportError at
    the first request."""
    from importlib import metadata

    fix = "pip install 'authlib>=1.7.2' 'joserfc>=1.6' (flyteauth's own requirements)"
    try:
        import joserfc.jwk  # noqa: F401
    except ImportError:
        raise ConfigError("tokenEndpointAuthMethod private_key_jwt needs the joserfc package, which is not "
                          "installed", hint=fix) from None
    try:
        version = metadata.version("authlib")
    except metadata.PackageNotFoundError:
        return  # a vendored or source checkout: trust it
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    if parts < AUTHLIB_FOR_PRIVATE_KEY_JWT:
        raise ConfigError(f"tokenEndpointAuthMethod private_key_jwt needs authlib >= 1.7.2; {version} is "
                          "installed", hint=fix)


def load_client_key(config: AuthConfig) -> Any:
    """The joserfc key from ``clientKeyFilePath``; errors name the file, never its content."""
    _private_key_jwt_libraries()
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


#: ``admin.clientCertFilePath``: the PEM certificate of the private_key_jwt key, for IdPs that identify the key
#: by its certificate's thumbprint (Entra ID: without ``x5t#S256`` it answers AADSTS700027).
CLIENT_CERT = Option("clientCertFilePath", help="private_key_jwt: PEM certificate of the key in clientKeyFilePath; "
                     "its thumbprint goes in the assertion's x5t#S256 and x5t headers (Entra ID needs it)")


def certificate_thumbprints(path: str, key: Any) -> dict[str, str]:
    """``{"x5t#S256": ..., "x5t": ...}`` (RFC 7515 §4.1.8/§4.1.7: base64url SHA-256 and SHA-1 of the DER
    certificate) for the certificate in ``path``, which must hold the public half of ``key``."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with open(path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
    except OSError as exc:
        raise ConfigError(f"Cannot read clientCertFilePath {path!r} ({exc.strerror or type(exc).__name__})",
                          hint="Point admin.clientCertFilePath at the PEM certificate of the client's key") from None
    except ValueError:
        raise ConfigError(f"clientCertFilePath {path!r} holds no PEM certificate",
                          hint="Use the certificate uploaded to the IdP (-----BEGIN CERTIFICATE-----)") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.get_op_key("sign").public_key().public_bytes(serialization.Encoding.DER, spki)
    if cert.public_key().public_bytes(serialization.Encoding.DER, spki) != ours:
        raise ConfigError(f"The certificate in clientCertFilePath {path!r} is not for the key in clientKeyFilePath",
                          hint="Use the certificate issued for that private key")
    der = cert.public_bytes(serialization.Encoding.DER)

    def b64(digest: bytes) -> str:
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    return {"x5t#S256": b64(hashlib.sha256(der).digest()), "x5t": b64(hashlib.sha1(der).digest())}


def _alg(key: Any) -> str:
    from joserfc.jwk import ECKey, OKPKey

    if isinstance(key, ECKey):
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(key.curve_name), "ES256")
    if isinstance(key, OKPKey):
        return "EdDSA"
    return "RS256"
