"""The one HTTP client factory for calls to the identity provider, and the shared retry loop.

Every provider (ours and third-party) gets its ``httpx2.Client`` here, so timeouts, trust and proxy
settings for the IdP are applied the same way everywhere.  The IdP's trust is kept apart from the Flyte
endpoint's (``caCertFilePath``/``insecureSkipVerify`` apply to gRPC only): system trust by default, plus
``idpCaCertFilePath`` from the config options.  ``httpx2`` is imported on first use.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .errors import TransientTokenError

if TYPE_CHECKING:
    from .config import AuthConfig

log = logging.getLogger("flyteauth.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@attrs.frozen
class RetryPolicy:
    """Bounded exponential backoff with full jitter, honouring ``Retry-After`` up to ``max_delay``."""

    attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    #: A Retry-After longer than this is not waited for: the call fails with a typed error instead.
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return retry_after
        return rng.uniform(0, min(self.max_delay, self.initial_delay * 2**attempt))


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
    """Builds ``httpx2.Client`` objects for IdP calls from the session config."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config

    def client_kwargs(self, for_url: str | None = None) -> dict[str, Any]:
        options = self._config.options
        kwargs: dict[str, Any] = {"timeout": self._config.http_timeout, "trust_env": True}
        proxy = options.get("httpProxyURL")
        if proxy:
            kwargs["proxy"] = str(proxy)
        if for_url is not None and for_url.startswith("http://") and not proxy:
            # A plain-HTTP IdP (loopback, sandboxes): no TLS will happen (redirects are not followed), so
            # skip loading the system trust store, which costs ~100 ms at every process start.
            kwargs["verify"] = False
            return kwargs
        verify: Any = True
        ca = options.get("idpCaCertFilePath")
        if ca:
            import ssl

            verify = ssl.create_default_context(cafile=str(ca))
        if options.get("idpInsecureSkipVerify") is True:
            verify = False
        kwargs["verify"] = verify
        return kwargs

    def client(self, for_url: str | None = None, **overrides: Any) -> Any:
        """A new ``httpx2.Client`` for IdP calls; ``for_url`` lets a plain-HTTP endpoint skip TLS setup."""
        import httpx2

        kwargs = self.client_kwargs(for_url)
        kwargs.update(overrides)
        return httpx2.Client(**kwargs)


def send_with_retries(
    send: Callable[[], Any],
    *,
    endpoint: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> Any:
    """Call ``send()`` (which returns an ``httpx2.Response``) until it is not a transient failure.

    Retries 429/5xx and network errors with backoff; returns the last response for the caller to
    interpret (4xx, 2xx).  Raises ``TransientTokenError`` when attempts run out or a ``Retry-After``
    exceeds ``policy.max_retry_after``.
    """
    import httpx2

    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    last: str = ""
    status: int | None = None
    for attempt in range(policy.attempts):
        retry_after: float | None = None
        try:
            response = send()
        except httpx2.TimeoutException:
            last, status = "timed out", None
        except httpx2.TransportError as exc:
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
