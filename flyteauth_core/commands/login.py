"""``flyteauth login``: run the configured login now (browser or device code for Pkce/DeviceFlow) and store it."""

from __future__ import annotations

import argparse
import sys

from ._display import add_config_argument, expiry, open_session, store_name, who


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    with open_session(args, interactive=True) as session:
        token = session.login()
        print(f"Logged in to {session.config.endpoint} as {who(token)} ({session.auth_type}); token expires "
              f"{expiry(token)}; refresh token: {'yes' if token.refresh_token else 'no'}; stored in "
              f"{store_name(session.store)}", file=sys.stderr)
    return 0
