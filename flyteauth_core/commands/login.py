"""``flyteauth login``: run the configured login now (browser or device code for Pkce/DeviceFlow) and store it.

With a store that keeps nothing (``memory``: ClientSecret and the other service-account types get a token
per process, no login), login fetches one token to check the credentials and says that nothing is kept,
instead of "storing" it in a store that dies with the command."""

from __future__ import annotations

import argparse
import sys

from ._display import add_config_argument, expiry, keeps_tokens, not_kept, open_session, store_name, who


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    with open_session(args, interactive=True) as session:
        token = session.login()
        if not keeps_tokens(session.store):
            print(f"{not_kept(session)}. Checked the credentials: a token for {who(token)}, expires "
                  f"{expiry(token)}. `flyteauth token` caches one across processes.", file=sys.stderr)
            return 0
        print(f"Logged in to {session.config.endpoint} as {who(token)} ({session.auth_type}); token expires "
              f"{expiry(token)}; refresh token: {'yes' if token.refresh_token else 'no'}; stored in "
              f"{store_name(session.store)}", file=sys.stderr)
    return 0
