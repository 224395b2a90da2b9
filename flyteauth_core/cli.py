"""The ``flyteauth`` command: a thin dispatcher over one module per subcommand.

Each subcommand lives in ``flyteauth_core/commands/<module>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``.  Only the module of the subcommand being run is imported: ``flyteauth token`` is run
by other programs on every request (ExternalCommand), so its start-up must not pay for the others.

Output meant for scripts (``flyteauth token``) goes to stdout alone; everything else a human reads goes
to stderr or is a plain table.  Errors print one line saying what to do and exit with status 1
(configuration/auth) or 2 (usage); ``flyteauth token`` documents its own finer exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from types import ModuleType
from typing import Any

# name -> (module under flyteauth_core.commands, one-line help).  Adding a subcommand = one line here
# plus its module; nothing else in this file changes.
COMMANDS: dict[str, tuple[str, str]] = {
    "token": ("token", "print an access token (only the token, on stdout); a credential helper"),
    "login": ("login", "log in now (browser or device code) and store the token"),
    "logout": ("logout", "forget the stored login and revoke its refresh token"),
    "status": ("status", "who is logged in, with what, until when (no secrets)"),
    "plugins": ("plugins", "list installed plugins, what they register, load errors"),
    "config": ("config", "what you set (in your own keys), where it came from, and what is wrong with it"),
    "doctor": ("doctor", "check each link of the auth chain; exit code = number of the first failing step"),
    "demo": ("demo", "run the whole loop against embedded servers (no Flyte needed); --serve: a Flyte for your SDK"),
    "trust": ("trust", "let a per-directory config file (./.flyte/config.yaml, ...) run commands and send "
                       "credentials"),
}


class _Version(argparse.Action):
    """``--version``, looked up only when asked: ``flyteauth token`` builds this parser on every call."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"flyteauth {_version()}")
        parser.exit()


def _version() -> str:
    """The installed distribution's version (what pip installed), else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flyteauth")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def _command_module(name: str) -> ModuleType:
    return import_module(f"flyteauth_core.commands.{COMMANDS[name][0]}")


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is one), so only its module is loaded."""
    return next((arg for arg in argv if arg in COMMANDS), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen subcommand's arguments are added (others: name and help)."""
    parser = argparse.ArgumentParser(prog="flyteauth", description="Authentication for Flyte clients")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets are never logged)")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = _chosen(argv) if argv is not None else None
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            _command_module(name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return _run(_command_module(args.command), args)


def _not_the_error_we_print(record: Any) -> bool:
    """Drop the lifecycle's warning about a failed first token request: that error reaches the command,
    which prints it as its one line on stderr (twice in a row buries it).  ``-v`` keeps everything."""
    return not (record.name == "flyteauth.lifecycle" and isinstance(record.args, tuple) and record.args
                and record.args[0] == "request")


def _run(module: ModuleType, args: argparse.Namespace) -> int:
    """Run a subcommand with the common error handling: one line on stderr, exit status 1.  A subcommand
    with finer exit codes (``token``) catches its own errors first."""
    import logging

    from .errors import FlyteAuthError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_not_the_error_we_print)
    try:
        code: int = module.run(args)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
    except BrokenPipeError:
        # `flyteauth plugins | head`: the reader left; no traceback. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again, and exit as a process killed by SIGPIPE would.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except FlyteAuthError as error:
        print(f"flyteauth: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
