"""``flyteauth token``: print only the access token, for ``curl -H "Authorization: Bearer $(flyteauth token)"``
and for every client that supports ExternalCommand."""

from __future__ import annotations

import argparse

from ._display import add_config_argument, open_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        print(session.get_token().access_token)
    return 0
