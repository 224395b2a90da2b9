"""The one HTTP client factory for calls to the identity provider, and the shared retry loop.

Every provider (ours and third-party) gets its ``httpx2.Client`` here, so timeouts, trust and proxy
settings for the IdP are applied the same way everywhere.  The IdP's trust is kept apart from the Flyte
endpoint's (``caCertFilePath``/``insecureSkipVerify`` apply to gRPC only): system trust (plus certifi's
bundle) by default, plus ``admin.idpCaCertFilePath``; ``admin.idpInsecureSkipVerify`` turns verification
off for the IdP only.  ``admin.httpProxyURL`` routes IdP calls through a proxy.  With
``admin.proxyAuthForIdP: true`` the session's proxy-authorization header (``proxyCommand``) is added to
IdP requests too; otherwise it never reaches the IdP.  ``httpx2`` is imported on first use.

:func:`grpc_root_certificates` is the gRPC side: roots for the Flyte endpoint from ``caCertFilePath``,
or, with ``insecureSkipVerify``, the certificate the server presents (fetched without verification and
pinned as the only root, as flytekit does).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, TokenRequestError, TransientTokenError
from .types import RetryPolicy

__all__ = ["HttpClientFactory", "RetryPolicy", "grpc_root_certificates", "parse_retry_after", "send_with_retries"]

if TYPE_CHECKING:
    from .config import AuthConfig
    from .types import Metadata

log = logging.getLogger("flyteauth.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Grants the IdP accepts once: after a lost answer they are not sent again (RFC 6749 §4.1.2, §10.4;
#: RFC 8628 §3.5).  Client credentials and token exchange are idempotent and may be retried.
SINGLE_USE_GRANTS = frozenset({
    "authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
})


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class HttpClientFactory:
    """Builds ``httpx2.Client`` objects for IdP calls from the session config.

    ``header_sources`` are called before every request (an httpx event hook) and their metadata added as
    headers: the session registers the proxy-authorization interceptor here when ``proxyAuthForIdP``.
    """

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self.header_sources: list[Callable[[], Metadata]] = []
        self._ssl: Any = None

    def add_header_source(self, source: Callable[[], Metadata]) -> None:
        self.header_sources.append(source)

    def ssl_context(self) -> Any:
        """System trust + certifi + ``idpCaCertFilePath`` (cached per factory)."""
        if self._ssl is None:
            import ssl

            context = ssl.create_default_context()
            try:
                import certifi

                context.load_verify_locations(cafile=certifi.where())
            except (ImportError, OSError):  # pragma: no cover - certifi ships with httpx2
                pass
            ca = self._config.idp_ca_cert_file_path
            if ca:
                try:
                    context.load_verify_locations(cafile=str(Path(ca).expanduser()))
                except (OSError, ssl.SSLError) as exc:
                    reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
                    raise ConfigError(f"Cannot load idpCaCertFilePath {ca!r} ({reason})",
                                      hint="Point admin.idpCaCertFilePath at a PEM file of CA certificates") from None
            self._ssl = context
        return self._ssl

    def client_kwargs(self, for_url: str | None = None) -> dict[str, Any]:
        config = self._config
        kwargs: dict[str, Any] = {"timeout": config.http_timeout, "trust_env": True}
        proxy = config.http_proxy_url or config.options.get("httpProxyURL")
        if proxy:
            kwargs["proxy"] = str(proxy)
        if self.header_sources:
            kwargs["event_hooks"] = {"request": [self._add_headers]}
        if for_url is not None and for_url.startswith("http://") and not proxy:
            # A plain-HTTP IdP (loopback, sandboxes): no TLS will happen (redirects are not followed), so
            # skip loading the system trust store, which costs ~100 ms at every process start.
            kwargs["verify"] = False
            return kwargs
        kwargs["verify"] = False if config.idp_insecure_skip_verify else self.ssl_context()
        return kwargs

    def _add_headers(self, request: Any) -> None:
        for source in self.header_sources:
            for key, value in source():
                request.headers[key] = value

    def client(self, for_url: str | None = None, **overrides: Any) -> Any:
        """A new ``httpx2.Client`` for IdP calls; ``for_url`` lets a plain-HTTP endpoint skip TLS setup."""
        import httpx2

        kwargs = self.client_kwargs(for_url)
        kwargs.update(overrides)
        return httpx2.Client(**kwargs)


def _tls_verify_failure(exc: BaseException) -> str | None:
    """The reason, when ``exc`` (or its cause chain) is a failed TLS certificate verification."""
    import ssl

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "certificate verify failed")
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return "certificate verify failed"
        current = current.__cause__ or current.__context__
    return None


def with_flyte_ca(config: AuthConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for an httpx2 client of the Flyte origin, trusting ``caCertFilePath`` as the gRPC channel does.

    Why: a user whose Flyte endpoint has a private CA names it once (``admin.caCertFilePath``); REST calls
    through ``session.httpx_client()`` to that endpoint must not fail where gRPC succeeds.  httpx2's own
    trust (certifi, ``SSL_CERT_FILE``) is kept, so a redirect to a public host (a presigned URL) still
    verifies.  A ``verify=`` the caller passes wins.
    """
    if "verify" in kwargs or not config.ca_cert_file_path:
        return kwargs
    import ssl

    import httpx2

    context = httpx2.create_ssl_context()
    try:
        context.load_verify_locations(cafile=str(Path(config.ca_cert_file_path).expanduser()))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"Cannot load caCertFilePath {config.ca_cert_file_path!r} ({reason})",
                          hint="Point admin.caCertFilePath at a PEM file of CA certificates") from None
    return {**kwargs, "verify": context}


def grpc_root_certificates(config: AuthConfig, timeout: float = 10.0) -> bytes | None:
    """Root certificates for the gRPC channel to the Flyte endpoint (None: the system's).

    ``caCertFilePath``: that file.  ``insecureSkipVerify``: grpc-python cannot turn verification off, so
    the certificate the server presents is fetched (unverified) and pinned as the only root.  This
    works for self-signed servers (the common case of skip-verify); a server whose certificate is issued
    by a private CA needs ``caCertFilePath`` instead.  The host name is still checked.
    """
    if config.ca_cert_file_path:
        try:
            with open(Path(config.ca_cert_file_path).expanduser(), "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise ConfigError(f"Cannot read caCertFilePath {config.ca_cert_file_path!r} ({exc.strerror})") from None
    if not config.insecure_skip_verify:
        return None
    import ssl

    target = config.grpc_target
    if target.startswith("dns:"):
        target = target.split("/")[-1]
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        host, port = target, "443"
    try:
        pem = ssl.get_server_certificate((host, int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"insecureSkipVerify: could not fetch the certificate of {host}:{port} ({type(exc).__name__})",
            hint="Check the endpoint, or set admin.caCertFilePath to the server's CA instead",
        ) from None
    from .logs import warn_once

    warn_once(log, f"flyteauth: insecureSkipVerify: trusting the certificate {host}:{port} presents without "
              "verification")
    return pem.encode()


def _lost(grant: str, endpoint: str, exc: BaseException) -> Exception:
    """The typed error for a single-use grant whose answer was lost."""
    from .errors import ResponseLostError

    what = {"authorization_code": "authorization code", "refresh_token": "refresh token"}.get(grant, "device code")
    return ResponseLostError(
        f"The identity provider may have used up the {what}, but its answer was lost "
        f"({type(exc).__name__}); it works only once, so it was not sent again",
        endpoint=endpoint, grant=grant,
        hint="Run `flyteauth login` again" if grant != "refresh_token" else
        "The refresh is replayed at most once by the token manager; if that fails, run `flyteauth login`",
    )


def send_with_retries(
    send: Callable[[], Any],
    *,
    endpoint: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    grant: str | None = None,
) -> Any:
    """Call ``send()`` (which returns an ``httpx2.Response``) until it is not a transient failure.

    Retries 429/5xx and network errors with backoff; returns the last response for the caller to
    interpret (4xx, 2xx).  Raises ``TransientTokenError`` when attempts run out or a ``Retry-After``
    exceeds ``policy.max_retry_after``.  ``send`` is called afresh for every attempt, so a client
    assertion built inside it is new each time (``private_key_jwt``: new ``jti``, ``iat``, ``exp``).

    ``grant``: the OAuth2 grant type sent.  A single-use grant (:data:`SINGLE_USE_GRANTS`) whose request
    may have reached the IdP (a read timeout, a dropped connection after the request was written) is not
    replayed: :class:`~flyteauth_core.errors.ResponseLostError` says what happened instead.  Failures
    before the request left (connect errors, pool timeouts) are retried for every grant.
    """
    import httpx2

    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    last: str = ""
    status: int | None = None
    single_use = grant in SINGLE_USE_GRANTS
    # Failures that happen before the request leaves: safe to retry whatever the grant.
    not_sent = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.UnsupportedProtocol)
    for attempt in range(policy.attempts):
        retry_after: float | None = None
        try:
            response = send()
        except httpx2.TransportError as exc:
            reason = _tls_verify_failure(exc)
            if reason is not None:  # not transient: retrying cannot fix the trust configuration
                raise TokenRequestError(
                    f"TLS verification of the identity provider failed ({reason})", endpoint=endpoint,
                    hint="If the IdP uses a private CA, set admin.idpCaCertFilePath to its PEM file "
                    "(admin.caCertFilePath applies to the Flyte endpoint only)",
                ) from None
            if single_use and not isinstance(exc, not_sent):
                raise _lost(grant or "", endpoint, exc) from None
            if isinstance(exc, httpx2.TimeoutException):
                last, status = "timed out", None
            else:
                last, status = f"could not connect ({type(exc).__name__})", None
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            status = response.status_code
            last = "is overloaded" if status == 429 else "answered with a server error"
            retry_after = parse_retry_after(response.headers.get("retry-after"), clock())
            if retry_after is not None and retry_after > policy.max_retry_after:
                raise TransientTokenError(
                    f"Identity provider asked to retry after {retry_after:.0f}s (limit "
                    f"{policy.max_retry_after:.0f}s)",
                    endpoint=endpoint, status=status, transient=True,
                    hint="The IdP is rate limiting this client; try again later",
                )
        if attempt + 1 < policy.attempts:
            delay = policy.delay(attempt, retry_after, rng)
            log.debug("flyteauth: %s %s; retrying in %.2fs", endpoint, last, delay)
            sleep(delay)
    raise TransientTokenError(
        f"Identity provider {last} after {policy.attempts} attempts",
        endpoint=endpoint, status=status, transient=True,
        hint="Check that the IdP is reachable from here; stored credentials were kept",
    )
