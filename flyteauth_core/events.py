"""Lifecycle events handed to the ``flyteauth_token_event`` hook: names and numbers, never secrets."""

from __future__ import annotations

import attrs


@attrs.frozen
class TokenEvent:
    """One thing that happened to a session's token.

    ``kind`` is one of ``acquired`` (first token), ``refreshed``, ``loaded`` (from a store),
    ``failed``, ``invalidated`` (the server rejected it).
    """

    kind: str
    auth_type: str
    endpoint: str
    expires_at: float | None = None
    reason: str | None = None
    error: str | None = None
    duration: float | None = None
