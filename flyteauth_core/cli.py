"""The ``flyteauth`` command: token, plugins, config, demo.

Output meant for scripts (``flyteauth token``) goes to stdout alone; everything else a human reads goes
to stderr or is a plain table.  Errors print one line saying what to do and exit with status 1
(configuration/auth) or 2 (usage).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .errors import FlyteAuthError


def _session(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import load_config
    from .session import AuthSession

    return AuthSession(load_config(args.config))


def cmd_token(args: argparse.Namespace) -> int:
    """Print only the access token, for ``curl -H "Authorization: Bearer $(flyteauth token)"``."""
    with _session(args) as session:
        print(session.get_token().access_token)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import default_registry

    plugins = default_registry().plugins()
    if not plugins:
        print("no flyteauth plugins installed")
        return 0
    for info in plugins:
        status = "blocked" if info.blocked else ("FAILED" if info.error else "ok")
        print(f"{info.name}  [{status}]  {info.distribution} {info.version}  ({info.module})")
        for item in info.registered:
            print(f"    registers {item}")
        if info.error:
            print(f"    error: {info.error}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import describe, load_config

    config = load_config(args.config)
    width = max(len(name) for name, _, _ in describe(config))
    for name, value, source in describe(config):
        print(f"{name:<{width}}  {value:<40}  {source}")
    if config.auth_type:
        why = "explicit authType"
    elif config.resolved_auth_type == "ClientSecret":
        why = "inferred: a client secret is configured"
    else:
        why = "default"
    print(f"{'auth type used':<{width}}  {config.resolved_auth_type!r:<40}  {why}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(seconds=args.seconds, ttl=args.ttl, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flyteauth", description="Authentication for Flyte clients")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets are never logged)")
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print an access token (only the token, on stdout)")
    token.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    token.set_defaults(func=cmd_token)
    plugins = sub.add_parser("plugins", help="list installed plugins, what they register, load errors")
    plugins.set_defaults(func=cmd_plugins)
    config = sub.add_parser("config", help="show the resolved config and where each value came from")
    config.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    config.set_defaults(func=cmd_config)
    demo = sub.add_parser("demo", help="run the whole loop against embedded servers (no Flyte needed)")
    demo.add_argument("--seconds", type=float, default=6.0, help="how long to keep calling (default 6)")
    demo.add_argument("--ttl", type=float, default=2.0, help="token lifetime in seconds (default 2)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except FlyteAuthError as error:
        print(f"flyteauth: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
