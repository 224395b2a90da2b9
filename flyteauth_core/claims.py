"""Unverified JWT claims, for display and diagnosis only (``flyteauth doctor``, ``status``, test servers).

Nothing here verifies a signature: the values are what the token *says*, which is exactly what a user
needs to compare with what the server expects (audience, issuer, issued-at against the local clock).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def unverified_claims(jwt: str | None) -> dict[str, Any]:
    """The payload of a compact JWT as a dict; ``{}`` for an opaque token or anything malformed."""
    parts = (jwt or "").split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def audiences(claims: dict[str, Any]) -> tuple[str, ...]:
    """The ``aud`` claim as a tuple (it may be one string or a list)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list):
        return tuple(a for a in aud if isinstance(a, str))
    return ()


def scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    """Scopes from ``scope`` (space separated, RFC 9068) or ``scp`` (a list, Okta/Entra)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return tuple(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return tuple(s for s in scp if isinstance(s, str))
    if isinstance(scp, str):
        return tuple(scp.split())
    return ()
