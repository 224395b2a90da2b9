"""The ``flyteauth`` command: token, login, logout, status, plugins, config, doctor, demo.

Output meant for scripts (``flyteauth token``) goes to stdout alone; everything else a human reads goes
to stderr or is a plain table.  Errors print one line saying what to do and exit with status 1
(configuration/auth) or 2 (usage).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import FlyteAuthError

if TYPE_CHECKING:
    from .token import Token


def _session(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import load_config
    from .session import AuthSession

    return AuthSession(load_config(args.config))


def cmd_token(args: argparse.Namespace) -> int:
    """Print only the access token, for ``curl -H "Authorization: Bearer $(flyteauth token)"``."""
    with _session(args) as session:
        print(session.get_token().access_token)
    return 0


def _claims(token: Token) -> dict[str, Any]:
    """Unverified JWT claims of the id token, else the access token ({} for opaque tokens): for display."""
    import base64
    import binascii
    import json

    for jwt in (token.id_token, token.access_token):
        parts = (jwt or "").split(".")
        if len(parts) != 3:
            continue
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            continue
        if isinstance(claims, dict):
            return claims
    return {}


def _who(token: Token) -> str:
    claims = _claims(token)
    sub = claims.get("sub")
    name = next((claims[k] for k in ("email", "preferred_username", "name") if isinstance(claims.get(k), str)), None)
    if isinstance(sub, str) and name and name != sub:
        return f"{name} ({sub})"
    return str(name or sub or "unknown subject")


def _expiry(token: Token) -> str:
    import time

    if token.expires_at is None:
        return "unknown"
    left = token.expires_at - time.time()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(token.expires_at))
    span = f"{abs(left) // 3600:.0f}h{abs(left) % 3600 // 60:02.0f}m" if abs(left) >= 3600 else (
        f"{abs(left) // 60:.0f}m{abs(left) % 60:02.0f}s")
    return f"{when} (in {span})" if left > 0 else f"{when} (expired {span} ago)"


def _store_name(store: Any) -> str:
    if store is None:
        return "none (tokens are not kept)"
    describe = getattr(store, "describe", None)
    return str(describe()) if callable(describe) else type(store).__name__


def cmd_login(args: argparse.Namespace) -> int:
    """Run the configured login now (a browser or device-code flow for Pkce/DeviceFlow) and store it."""
    from .config import load_config
    from .session import AuthSession

    with AuthSession(load_config(args.config), interactive=True) as session:
        token = session.login()
        print(f"Logged in to {session.config.endpoint} as {_who(token)} ({session.auth_type}); token expires "
              f"{_expiry(token)}; refresh token: {'yes' if token.refresh_token else 'no'}; stored in "
              f"{_store_name(session.store)}", file=sys.stderr)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Forget the stored login; revoke its refresh token at the IdP when the IdP supports it."""
    from .config import load_config
    from .session import AuthSession

    with AuthSession(load_config(args.config), interactive=False) as session:
        revoked = session.logout(revoke=not args.no_revoke)
        note = "the IdP revoked the refresh token" if revoked else "no revocation at the IdP"
        print(f"Logged out of {session.config.endpoint} ({session.auth_type}; {note}); removed from "
              f"{_store_name(session.store)}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Endpoint, auth type, subject, scopes, expiry and store of the stored login.  Never a secret."""
    from .config import load_config
    from .session import AuthSession, store_key

    with AuthSession(load_config(args.config), interactive=False) as session:
        rows = [("endpoint", session.config.endpoint), ("auth type", session.auth_type),
                ("store", _store_name(session.store))]
        token = session.store.load(store_key(session.config, session.auth_type)) if session.store else None
        if token is None:
            rows.append(("logged in", "no stored token (run `flyteauth login`)"))
        else:
            rows += [("subject", _who(token)), ("scopes", " ".join(token.scopes) or "(not stated)"),
                     ("expires", _expiry(token)),
                     ("refresh token", "yes" if token.refresh_token else "no")]
    for name, value in rows:
        print(f"{name:<14} {value}")
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
    from .config_report import main

    return main(args.config, include_defaults=args.all, as_json=args.json)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import main

    return main(args.config, as_json=args.json, timeout=args.timeout)


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
    login = sub.add_parser("login", help="log in now (browser or device code) and store the token")
    login.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    login.set_defaults(func=cmd_login)
    logout = sub.add_parser("logout", help="forget the stored login and revoke its refresh token")
    logout.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    logout.add_argument("--no-revoke", action="store_true", help="do not contact the IdP")
    logout.set_defaults(func=cmd_logout)
    status = sub.add_parser("status", help="who is logged in, with what, until when (no secrets)")
    status.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    status.set_defaults(func=cmd_status)
    plugins = sub.add_parser("plugins", help="list installed plugins, what they register, load errors")
    plugins.set_defaults(func=cmd_plugins)
    config = sub.add_parser("config", help="what you configured, where it came from, and what is wrong with it")
    config.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    config.add_argument("--all", action="store_true", help="also list every setting left at its default")
    config.add_argument("--json", action="store_true", help="print machine-readable JSON")
    config.set_defaults(func=cmd_config)
    doctor = sub.add_parser("doctor", help="check each link of the auth chain; exit code = first failing step")
    doctor.add_argument("--config", help="flytectl config.yaml (default: the usual search path)")
    doctor.add_argument("--json", action="store_true", help="print the steps as JSON")
    doctor.add_argument("--timeout", type=float, default=10.0, help="seconds per network check (default 10)")
    doctor.set_defaults(func=cmd_doctor)
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
