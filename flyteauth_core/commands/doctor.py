"""``flyteauth doctor``: check each link of the auth chain (the logic is in :mod:`flyteauth_core.doctor`)."""

from __future__ import annotations

import argparse

from ._display import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per network check (default 10)")


def run(args: argparse.Namespace) -> int:
    from ..doctor import main

    return main(args.config, as_json=args.json, timeout=args.timeout)
