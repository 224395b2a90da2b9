"""``flyteauth logout``: forget the stored login; revoke its refresh token at the IdP when it supports it."""

from __future__ import annotations

import argparse
import sys

from ._display import add_config_argument, keeps_tokens, open_session, store_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--no-revoke", action="store_true", help="do not contact the IdP")


def run(args: argparse.Namespace) -> int:
    from .token import clear_cache

    with open_session(args, interactive=False) as session:
        revoked = session.logout(revoke=not args.no_revoke)
        cleared = clear_cache()  # `flyteauth token` must not keep handing out the logged-out access token
        if not keeps_tokens(session.store):
            print(f"No stored login: authType {session.auth_type} keeps nothing (store: "
                  f"{store_name(session.store)}); removed {cleared} access token(s) cached by `flyteauth token`",
                  file=sys.stderr)
            return 0
        note = "the IdP revoked the refresh token" if revoked else "no revocation at the IdP"
        print(f"Logged out of {session.config.endpoint} ({session.auth_type}; {note}); removed from "
              f"{store_name(session.store)}", file=sys.stderr)
    return 0
