"""Token values, their states and the policy that decides when a token is stale.

``Token`` is a frozen value: the lifecycle publishes a new one instead of mutating.  The three secret
fields are ``repr=False`` so that a token can be logged, printed or put in an exception safely.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import attrs

from .claims import unverified_claims
from .errors import TokenResponseError


def _scopes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(v) for v in value)


@attrs.frozen
class Token:
    """An access token and what is known about it.

    ``expires_at`` is in epoch seconds; ``None`` means unknown, and such a token is used until the
    server rejects it.
    """

    access_token: str = attrs.field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = attrs.field(default=None, repr=False)
    id_token: str | None = attrs.field(default=None, repr=False)
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_scopes)

    @property
    def authorization(self) -> str:
        """The value of the authorization header: ``Bearer <token>``."""
        kind = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return f"{kind} {self.access_token}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict for token stores (contains secrets: only for stores)."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "scopes": list(self.scopes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError`` on a malformed record."""
        access = data["access_token"]
        if not isinstance(access, str) or not access:
            raise ValueError("stored token has no access_token")
        expires_at = data.get("expires_at")
        if expires_at is not None:
            if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
                raise TypeError("stored expires_at is not a number")
            try:
                expires_at = float(expires_at)
            except OverflowError:
                expires_at = math.inf
            if not math.isfinite(expires_at):
                raise ValueError("stored expires_at is not finite")
        for key in ("refresh_token", "id_token"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise TypeError(f"stored {key} is not a string")
        return cls(
            access_token=access,
            token_type=str(data.get("token_type") or "Bearer"),
            expires_at=expires_at,
            refresh_token=data.get("refresh_token") or None,
            id_token=data.get("id_token") or None,
            scopes=data.get("scopes") or (),
        )


class TokenState(enum.Enum):
    """Where a token stands relative to its refresh window."""

    FRESH = "fresh"  # use it
    STALE = "stale"  # use it, and refresh in the background
    EXPIRED = "expired"  # do not send it; wait for a refresh


@attrs.frozen
class RefreshPolicy:
    """When to refresh.

    ``window``: refresh this many seconds before expiry (never more than ``max_window_fraction`` of the
    token's lifetime, so a 2-second token is not permanently stale).  ``jitter``: a random fraction of
    the window added per token, so that many processes holding tokens from one batch spread their
    refreshes.  ``clock_skew``: treat a token as expired this much early (at most a tenth of its
    lifetime), to absorb clock drift between us, the IdP and the server.
    """

    window: float = 300.0
    max_window_fraction: float = 0.5
    jitter: float = 0.1
    clock_skew: float = 10.0
    acquire_timeout: float = 120.0
    failure_backoff_initial: float = 1.0
    failure_backoff_max: float = 30.0

    def deadlines(self, token: Token, obtained_at: float, rng: random.Random) -> tuple[float, float]:
        """Return ``(stale_at, expired_at)`` in epoch seconds for a token obtained at ``obtained_at``."""
        if token.expires_at is None:
            return math.inf, math.inf
        lifetime = max(token.expires_at - obtained_at, 0.0)
        window = min(self.window, lifetime * self.max_window_fraction)
        window += window * self.jitter * rng.random()
        skew = min(self.clock_skew, lifetime / 10)
        expired_at = token.expires_at - skew
        return min(token.expires_at - window, expired_at), expired_at


def jwt_expiry(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT, without verifying it (we only need a hint of when to refresh)."""
    exp = unverified_claims(access_token).get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        try:
            exp = float(exp)
        except OverflowError:  # an integer beyond float range
            return None
        return exp if math.isfinite(exp) else None
    return None


def _number(body: Mapping[str, Any], key: str, endpoint: str, status: int | None) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):  # some IdPs (old Azure AD) send numbers as strings
        try:
            value = float(value)
        except ValueError:
            value = None
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range
            value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise TokenResponseError(
            f"Token response has an invalid {key!r}", endpoint=endpoint, status=status
        )
    return float(value)


def token_from_response(
    body: Any,
    *,
    now: float,
    endpoint: str,
    status: int | None = None,
    previous: Token | None = None,
) -> Token:
    """Build a Token from an RFC 6749 §5.1 response body, or raise ``TokenResponseError``.

    Expiry comes from ``expires_in``, else ``expires_at``, else the JWT ``exp`` claim, else unknown; a JWT
    ``exp`` earlier than the response's expiry (but still in the future) wins, as the server enforces it.
    A response without a refresh token keeps the previous one (RFC 6749 §6: rotation is optional).
    """
    if not isinstance(body, Mapping):
        raise TokenResponseError("Token response is not a JSON object", endpoint=endpoint, status=status)
    access = body.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenResponseError("Token response has no access_token", endpoint=endpoint, status=status)
    token_type = body.get("token_type") or "Bearer"
    if not isinstance(token_type, str):
        raise TokenResponseError("Token response has an invalid token_type", endpoint=endpoint, status=status)
    expires_in = _number(body, "expires_in", endpoint, status)
    expires_at = _number(body, "expires_at", endpoint, status)
    if expires_in is not None:
        expires_at = now + expires_in
    claimed = jwt_expiry(access)
    if expires_at is None:
        expires_at = claimed
    elif claimed is not None and now < claimed < expires_at:
        # The server enforces the JWT's own `exp`, a whole second that can be up to 1 s before
        # now + expires_in (the IdP floors `iat`); a claim already in the past means clock skew: ignore it.
        expires_at = claimed
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous.refresh_token if previous else None
    id_token = body.get("id_token")
    scope = body.get("scope")
    return Token(
        access_token=access.strip(),
        token_type=token_type,
        expires_at=expires_at,
        refresh_token=refresh,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        scopes=scope if isinstance(scope, (str, list, tuple)) else (),
    )
