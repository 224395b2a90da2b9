"""``flyteauth config``: what the user set, in their own keys, where it came from, and every problem that
can be found offline (the logic is in :mod:`flyteauth_core.config_report`)."""

from __future__ import annotations

import argparse

from ._display import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--all", action="store_true", help="also list every setting left at its default")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on a warning too (default: only on an error, a config that will not work)")


def run(args: argparse.Namespace) -> int:
    from ..config_report import main

    return main(args.config, include_defaults=args.all, as_json=args.json, strict=args.strict)
