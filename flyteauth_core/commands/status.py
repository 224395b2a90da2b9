"""``flyteauth status``: endpoint, auth type, subject, scopes, expiry and store of the stored login.
Never a secret.

A provider whose store keeps nothing (``memory``: ClientSecret and the other service-account types) has no
stored login to show: status says so, shows the access token ``flyteauth token`` has cached for this config
(if any), and with ``--check`` fetches one now to show that one can be obtained."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._display import add_config_argument, expiry, keeps_tokens, not_kept, open_session, store_name, who

if TYPE_CHECKING:
    from ..session import AuthSession


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--check", action="store_true",
                        help="when nothing is stored (ClientSecret and other service accounts): fetch a token now "
                             "to show one can be obtained (it is not kept)")


def run(args: argparse.Namespace) -> int:
    with open_session(args, interactive=False) as session:
        rows = [("endpoint", session.config.endpoint), ("auth type", session.auth_type),
                ("store", store_name(session.store))]
        found = session.config.trust
        if found is not None and not found.trusted:  # the session opens no store for it: say why
            from ..trust import trust_command

            rows.append(("config trust", f"not trusted ({found.reason}): {found.path}; run "
                                         f"`{trust_command(found.path)}` after reading it"))
        elif session.anonymous:
            rows.append(("token", f"none: authType {session.auth_type} sends no token"))
        elif not keeps_tokens(session.store):
            rows += _unstored(session, args)
        else:
            token = session.store.load(session.identity().store_key) if session.store else None
            if token is None:
                rows.append(("logged in", "no stored token (run `flyteauth login`)"))
            else:
                rows += [("subject", who(token)), ("scopes", " ".join(token.scopes) or "(not stated)"),
                         ("expires", expiry(token)),
                         ("refresh token", "yes" if token.refresh_token else "no")]
    for name, value in rows:
        print(f"{name:<14} {value}")
    return 0


def _unstored(session: AuthSession, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows for a provider whose tokens are not kept: nothing to log in to; what the credential helper has
    cached; and, with ``--check``, whether a token can be obtained now."""
    from .token import _cache, _token_key, cache_key

    rows = [("logged in", not_kept(session))]
    cache = _cache()
    key = _token_key(cache, cache_key(args.config))
    record = None if key is None else cache.load_record(key)
    if record is None:
        rows.append(("helper cache", "none (`flyteauth token` caches an access token across processes)"))
    else:
        cached = record[0]
        rows.append(("helper cache", f"`flyteauth token` holds one for {who(cached)}, expires {expiry(cached)}"))
    if args.check:
        token = session.get_token()  # an error is printed by the CLI as one line, exit 1
        rows.append(("token", f"obtained now for {who(token)} (scopes {' '.join(token.scopes) or '(not stated)'}), "
                              f"expires {expiry(token)}; not kept"))
    else:
        rows.append(("token", "not fetched (`flyteauth status --check` or `flyteauth doctor` fetch one)"))
    return rows
