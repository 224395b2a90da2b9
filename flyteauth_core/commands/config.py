"""``flyteauth config``: resolved values, the source of each (secrets masked), problems, and the auth type
chosen and why."""

from __future__ import annotations

import argparse

from ._display import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..config import describe, load_config

    config = load_config(args.config)
    rows = describe(config)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value:<40}  {source}")
    print(f"{'auth type used':<{width}}  {config.resolved_auth_type!r:<40}  {config.auth_type_reason}")
    if config.problems:
        print("problems:")
        for problem in config.problems:
            print(f"  - {problem}")
    else:
        print("problems: none")
    return 0
