"""The token endpoint call shared by every grant: one request, retries, and error mapping.

Retries and backoff come from ``flyteauth_core.http.send_with_retries``; the response is parsed by
``flyteauth_core.token.token_from_response``.  OAuth2 error codes become typed errors whose messages
name the endpoint and status, never a secret.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flyteauth_core.errors import (
    InvalidClientError,
    InvalidGrantError,
    TokenRequestError,
    TokenResponseError,
)
from flyteauth_core.http import RetryPolicy, send_with_retries
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token, token_from_response


def _describe(body: Any) -> tuple[str | None, str]:
    if not isinstance(body, Mapping):
        return None, ""
    error = body.get("error")
    description = body.get("error_description")
    error = error if isinstance(error, str) else None
    text = f": {error}" if error else ""
    if isinstance(description, str) and description:
        text += f" ({description[:200]})"
    return error, text


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
    error, text = _describe(body)
    if error == "invalid_client" or (status == 401 and error is None):
        raise InvalidClientError(
            f"Identity provider rejected the client credentials{text}", endpoint=endpoint, status=status,
            error=error, hint="Check the client id and secret (admin.clientId, admin.clientSecretLocation "
            "or admin.clientSecretEnvVar) and the token endpoint auth method",
        )
    if error == "invalid_grant":
        raise InvalidGrantError(f"The grant is no longer valid{text}", endpoint=endpoint, status=status,
                                error=error, hint="Log in again with `flyteauth login`")
    raise TokenRequestError(f"Token request failed{text or ' with an unexpected response'}",
                            endpoint=endpoint, status=status, error=error)


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


def public_client_auth(client_id: str) -> Any:
    """authlib ``ClientAuth`` for a public client (``none``: only ``client_id`` in the form)."""
    from authlib.oauth2.auth import ClientAuth

    return ClientAuth(client_id, None, "none")


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
