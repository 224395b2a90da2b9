"""How login, logout and status describe a token and a store to a human (never a secret)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..session import AuthSession
    from ..token import Token


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")


def open_session(args: argparse.Namespace, *, interactive: bool | None = None) -> AuthSession:
    """An AuthSession for the config named by ``--config`` (or the usual search path)."""
    from ..config import load_config
    from ..session import AuthSession

    if interactive is None:
        return AuthSession(load_config(args.config))
    return AuthSession(load_config(args.config), interactive=interactive)


def jwt_claims(jwt: str | None) -> dict[str, Any] | None:
    """Unverified claims of a JWT; None when ``jwt`` is not one (opaque tokens)."""
    from ..claims import unverified_claims

    return unverified_claims(jwt) or None


def claims(token: Token) -> dict[str, Any]:
    """Unverified JWT claims of the id token, else the access token ({} for opaque tokens): for display."""
    for jwt in (token.id_token, token.access_token):
        decoded = jwt_claims(jwt)
        if decoded is not None:
            return decoded
    return {}


def who(token: Token) -> str:
    found = claims(token)
    sub = found.get("sub")
    name = next((found[k] for k in ("email", "preferred_username", "name") if isinstance(found.get(k), str)), None)
    if isinstance(sub, str) and name and name != sub:
        return f"{name} ({sub})"
    return str(name or sub or "unknown subject")


def expiry(token: Token, now: float | None = None) -> str:
    import time

    if token.expires_at is None:
        return "unknown"
    left = token.expires_at - (time.time() if now is None else now)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(token.expires_at))
    return f"{when} (in {span(left)})" if left > 0 else f"{when} (expired {span(left)} ago)"


def span(seconds: float) -> str:
    """``1h05m`` or ``1m59s``: rounded once, to whole seconds (119.7 s is ``2m00s``, never ``1m60s``)."""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def keeps_tokens(store: Any) -> bool:
    """Whether the session's store outlives the process (a ``memory`` store, or none, does not)."""
    return store is not None and getattr(store, "persistent", True)


def not_kept(session: AuthSession) -> str:
    """Why nothing is kept, in a way that fits the provider: a service account needs no login; an interactive
    login (a provider that asks for a persistent store by default) would be lost with the process."""
    if getattr(session, "_default_store", None):  # Pkce, DeviceFlow: they register default_store="keyring"
        return (f"authType {session.auth_type}'s login is not kept (store: {store_name(session.store)}), so each "
                "process logs in again; remove tokenStore (or set it to keyring or file) to keep it")
    # the store's own description says what is kept ("memory (this process only; nothing is kept)")
    return (f"authType {session.auth_type} needs no login: each process gets its own token "
            f"(store: {store_name(session.store)})")


def store_name(store: Any) -> str:
    if store is None:
        return "none (tokens are not kept)"
    from ..protocols import Describable

    return store.describe() if isinstance(store, Describable) else type(store).__name__
