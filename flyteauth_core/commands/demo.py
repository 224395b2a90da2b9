"""``flyteauth demo``: run the whole loop against embedded servers (no Flyte needed)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to keep calling (default 6)")
    parser.add_argument("--ttl", type=float, default=2.0, help="token lifetime in seconds (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(seconds=args.seconds, ttl=args.ttl, out=sys.stdout)
