"""The public helper for plugin authors: call a token endpoint the way our own providers do.

Stable API (see ``docs/plugins.md``)::

    from flyteauth_providers.oauth import client_auth, request_token

    def acquire(self, request):
        return request_token(request, {"grant_type": "client_credentials", "scope": "all"},
                             auth=client_auth(request.config.client_id, self.secret))

What you get: the session's HTTP client for the IdP (``httpTimeout``, ``idpCaCertFilePath``,
``idpInsecureSkipVerify``, ``httpProxyURL``, ``proxyAuthForIdP``), retries with backoff that honour
``Retry-After`` and ``AuthSession(retry=...)``, client authentication prepared afresh on every attempt
(a ``private_key_jwt`` assertion is never replayed), typed errors (``InvalidClientError``,
``InvalidGrantError``, ``TokenRequestError``, ``TransientTokenError``) that name the endpoint and never a
secret, and a ``Token`` parsed from the RFC 6749 response (expiry from ``expires_in``, ``expires_at`` or
the JWT; the previous refresh token kept when the IdP does not rotate it).

The implementation lives in ``flyteauth_providers._oauth`` (private: it may change); this module is the
contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteauth_core.errors import ConfigError
from flyteauth_core.token import Token
from flyteauth_core.types import AcquireRequest

from ._oauth import TokenEndpoint, post_form, raise_for_error

__all__ = ["TokenEndpoint", "client_auth", "post_form", "raise_for_error", "request_token", "token_url"]


def token_url(request: AcquireRequest) -> str:
    """The token endpoint: ``admin.tokenUrl`` if set, else the one the Flyte server advertises."""
    url = request.config.token_url or request.server_info().token_endpoint
    if not url:
        raise ConfigError("No token endpoint configured or discovered",
                          hint="Set tokenUrl in the flyteauth: (or admin:) section")
    return url


def client_auth(client_id: str | None, secret: str | None = None, method: str = "client_secret_basic") -> Any:
    """Client authentication for a token request: ``client_secret_basic`` (default), ``client_secret_post``
    or ``none`` (a public client: only ``client_id`` in the form)."""
    from authlib.oauth2.auth import ClientAuth

    if method == "none" or secret is None:
        return ClientAuth(client_id, None, "none")
    return ClientAuth(client_id, secret, method)


def request_token(
    request: AcquireRequest,
    data: Mapping[str, str],
    *,
    url: str | None = None,
    auth: Any = None,
) -> Token:
    """POST ``data`` (a form: ``grant_type`` and the grant's parameters) to the token endpoint and return
    the token.  ``url`` defaults to :func:`token_url`; ``auth`` is :func:`client_auth` (or any authlib
    ``ClientAuth``).  ``request.previous`` supplies the refresh token to keep if the IdP sends none.

    For many requests from one provider, keep a ``TokenEndpoint()`` (it reuses its HTTP connection) and
    call ``endpoint.request(request, url, data, client_auth=auth)``; close it in your ``close()``.
    """
    endpoint = TokenEndpoint()
    try:
        return endpoint.request(request, url or token_url(request), data, client_auth=auth,
                                previous=request.previous)
    finally:
        endpoint.close()
