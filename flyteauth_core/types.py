"""The value types a plugin sees, in one leaf module: Token, AcquireRequest, AcquireReason, Metadata,
RetryPolicy.

A leaf: at run time it imports only ``token`` and ``errors``; ``config`` and ``discovery`` are named for
the type checker only, and neither imports this module back (``tests/test_import_cycles.py`` checks it,
counting imports inside functions and under ``TYPE_CHECKING``).  Everything here is part of the public,
stable plugin contract: see ``docs/plugins.md``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .errors import FlyteAuthError
from .token import Token

if TYPE_CHECKING:
    from .config import AuthConfig
    from .discovery import ServerAuthInfo

__all__ = ["AcquireReason", "AcquireRequest", "Metadata", "RetryPolicy", "Token"]

#: gRPC metadata (and HTTP headers) as the transports send them: a tuple of (key, value) pairs.
Metadata = tuple[tuple[str, str], ...]


class AcquireReason(str, enum.Enum):
    """Why the core asks a provider for a token.

    A ``str`` enum: ``request.reason == "login"`` keeps working for plugins written against 0.1.0.
    """

    #: No token yet in this process (nothing in the store either).
    INITIAL = "initial"
    #: The current token is inside its refresh window; the caller keeps using it meanwhile.
    EXPIRING = "expiring"
    #: The current token has expired, or the server rejected it.
    EXPIRED = "expired"
    #: An explicit login (``flyteauth login``, ``session.login()``): skip the refresh token, run the
    #: interactive flow.
    LOGIN = "login"
    #: A refresh whose answer was lost, sent once more: an ``invalid_grant`` now means the rotated refresh
    #: token is gone (the IdP consumed it), not that the user's grant was revoked.
    REPLAY = "replay"
    #: ``flyteauth logout``: the request handed to ``revoke()``; never passed to ``acquire()``.
    LOGOUT = "logout"

    def __str__(self) -> str:  # "login", not "AcquireReason.LOGIN", in messages and f-strings
        return self.value


def _reason(value: AcquireReason | str) -> AcquireReason:
    try:
        return AcquireReason(value)
    except ValueError:
        raise FlyteAuthError(
            f"Unknown acquire reason {value!r}", hint=f"Use one of {', '.join(r.value for r in AcquireReason)}"
        ) from None


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


@attrs.frozen
class AcquireRequest:
    """What the core knows when it asks a provider for a token.

    ``previous`` is the token being replaced (its refresh token may be used); ``reason`` says why (an
    :class:`AcquireReason`); ``interactive`` says whether a browser or device-code flow may start now.
    ``server_info()`` runs discovery on first use (cached per session); ``http_client()`` returns an
    ``httpx2.Client`` configured for the IdP (timeouts, trust, proxy).  Both are wired by the session;
    ``flyteauth_core.testing.acquire_request(config)`` builds a fully wired request for plugin tests.
    """

    config: AuthConfig
    previous: Token | None = None
    reason: AcquireReason = attrs.field(default=AcquireReason.INITIAL, converter=_reason)
    interactive: bool = False
    server_info_fn: Callable[[], ServerAuthInfo] | None = attrs.field(default=None, repr=False)
    http_client_fn: Callable[[str | None], Any] | None = attrs.field(default=None, repr=False)
    #: How providers retry IdP calls; None means ``RetryPolicy()``.
    retry: RetryPolicy | None = None
    #: An embedding SDK's ``browser_opener(url) -> bool`` (Pkce) and ``device_prompt(code)`` (DeviceFlow).
    browser_opener: Callable[[str], bool] | None = attrs.field(default=None, repr=False)
    device_prompt: Callable[[Any], None] | None = attrs.field(default=None, repr=False)

    def server_info(self) -> ServerAuthInfo:
        if self.server_info_fn is None:
            raise FlyteAuthError("Discovery is not available to this request")
        return self.server_info_fn()

    def http_client(self, for_url: str | None = None) -> Any:
        """An ``httpx2.Client`` for calls to ``for_url`` (or to any IdP URL when omitted)."""
        if self.http_client_fn is None:
            raise FlyteAuthError(
                "No HTTP client factory in this request",
                hint="Build it with flyteauth_core.testing.acquire_request(config), or pass http_client_fn",
            )
        return self.http_client_fn(for_url)
