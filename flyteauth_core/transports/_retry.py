"""The retry decision shared by every transport: one retry after a rejection, never a loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..protocols import Interceptor, Metadata


def merge(call_metadata: Sequence[tuple[str, Any]] | None, auth: Metadata) -> Metadata:
    """The caller's metadata followed by ours (ours last, so a caller cannot shadow it by accident)."""
    if not call_metadata:
        return auth
    return (*tuple(call_metadata), *auth)


def should_retry(interceptor: Interceptor, sent: Metadata, *, replayable: bool) -> bool:
    """After UNAUTHENTICATED: invalidate what was sent (always), retry only if the call can be replayed.

    Invalidating even when not retrying means the caller's next call gets a fresh token.
    """
    retry = interceptor.rejected(sent)
    return retry and replayable


def replayable(request_iterator: Any) -> bool:
    """A client stream can be replayed only if it is a concrete sequence, not a consumed iterator."""
    return isinstance(request_iterator, (list, tuple))
