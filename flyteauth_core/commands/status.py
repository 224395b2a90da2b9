"""``flyteauth status``: endpoint, auth type, subject, scopes, expiry and store of the stored login.
Never a secret."""

from __future__ import annotations

import argparse

from ._display import add_config_argument, expiry, open_session, store_name, who


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    with open_session(args, interactive=False) as session:
        rows = [("endpoint", session.config.endpoint), ("auth type", session.auth_type),
                ("store", store_name(session.store))]
        token = session.store.load(session.identity().store_key) if session.store else None
        found = session.config.trust
        if found is not None and not found.trusted:  # the session opens no store for it: say why
            from ..trust import trust_command

            rows.append(("config trust", f"not trusted ({found.reason}): {found.path}; run "
                                         f"`{trust_command(found.path)}` after reading it"))
        elif token is None:
            rows.append(("logged in", "no stored token (run `flyteauth login`)"))
        else:
            rows += [("subject", who(token)), ("scopes", " ".join(token.scopes) or "(not stated)"),
                     ("expires", expiry(token)),
                     ("refresh token", "yes" if token.refresh_token else "no")]
    for name, value in rows:
        print(f"{name:<14} {value}")
    return 0
