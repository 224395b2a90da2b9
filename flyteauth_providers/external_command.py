"""``ExternalCommand`` (alias ``external_process``): a command of the user's prints the token.

``admin.command`` is an argv list (run without a shell; a string is split as JSON array, commas or shell
words).  The command must finish within ``admin.commandTimeout`` (default 30s) or it is killed with its
process group.  Its stdout is either

* a raw token (one line, no spaces): used until the server rejects it (or until its JWT ``exp``), or
* a JSON token response ``{"access_token": ..., "token_type": ..., "expires_in": n | "expires_at": t}``:
  cached until that expiry.

A failure (cannot start, non-zero exit, timeout, unusable output) is a typed ``CommandError`` (or
``TokenTimeoutError``) carrying the trimmed tail of the command's stderr, never its stdout.
:func:`run_token_command` is shared with ``proxyCommand``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import CommandError, ConfigError, TokenResponseError, TokenTimeoutError
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token, jwt_expiry, token_from_response

STDERR_TAIL_CHARS = 2000
#: A raw token is one line of printable ASCII without spaces.
_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


def _tail(data: bytes, secret: str | None) -> str:
    text = data.decode("utf-8", "replace").strip()
    if secret and len(secret) >= 8:
        text = text.replace(secret, "****")
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-STDERR_TAIL_CHARS:]
    return text


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - no process groups
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def parse_command_output(stdout: bytes, *, name: str, key: str, now: float) -> Token:
    """A Token from a command's stdout: a JSON token response or a single raw token."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        raise CommandError(f"{key} ({name}) printed nothing on stdout", command=name,
                           hint="The command must print the token (or a JSON token response) on stdout")
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            raise CommandError(f"{key} ({name}) printed something that looks like JSON but is not",
                               command=name) from None
        try:
            token = token_from_response(body, now=now, endpoint=f"{key} ({name})")
        except TokenResponseError as exc:
            raise CommandError(exc.message, command=name,
                               hint='Print {"access_token": "...", "expires_in": 3600} or the bare token') from None
        if token.expires_at is not None and token.expires_at <= now:
            # Sending it would only be rejected, and run the command again on every RPC.
            raise CommandError(f"{key} ({name}) printed a token that had already expired "
                               f"({now - token.expires_at:.0f}s ago)", command=name,
                               hint="The command may be printing a cached token; have it refresh first")
        return token
    if len(text.splitlines()) != 1 or not set(text) <= _TOKEN_CHARS:
        raise CommandError(
            f"{key} ({name}) printed something that is neither a token nor a JSON token response",
            command=name,
            hint="Print only the token (one line) or a JSON object with access_token; send other output to stderr",
        )
    return Token(access_token=text, expires_at=jwt_expiry(text))


def run_token_command(argv: Sequence[str], *, timeout: float, key: str = "admin.command") -> Token:
    """Run ``argv`` (no shell) and parse its stdout as a token, within ``timeout`` seconds."""
    if not argv:
        raise ConfigError(f"{key} is empty", hint=f"Set {key} to the argv of a command that prints a token")
    name = os.path.basename(str(argv[0]))
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        raise CommandError(f"{key} ({name}) could not be started ({exc.strerror or type(exc).__name__})",
                           command=name, hint=f"Check that {argv[0]!r} exists and is executable") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        try:
            _, stderr = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # a grandchild outside the group holds the pipes
            stderr = b""
        tail = _tail(stderr, None)
        raise TokenTimeoutError(
            f"{key} ({name}) did not finish within {timeout:g}s and was killed"
            + (f"; stderr:\n{tail}" if tail else ""),
            hint="Raise admin.commandTimeout if the command is slow (it may be waiting for input it cannot get)",
        ) from None
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): do not leave it running
            _kill(proc)
            proc.wait()
    if proc.returncode != 0:
        raise CommandError(
            f"{key} ({name}) exited with status {proc.returncode}", command=name, exit_code=proc.returncode,
            stderr=_tail(stderr, stdout.decode("utf-8", "replace").strip() or None),
            hint="Run the command yourself to see what it needs",
        )
    try:
        return parse_command_output(stdout, name=name, key=key, now=time.time())
    except CommandError as exc:
        exc.stderr = _tail(stderr, None)
        raise


class ExternalCommandAuthenticator:
    """Tokens printed by ``admin.command``."""

    #: The command knows where tokens come from: a token never waits for the Flyte server's discovery.
    needs_discovery = False

    def __init__(self, config: AuthConfig) -> None:
        if not config.command:
            raise ConfigError(
                "authType ExternalCommand needs a command",
                hint="Set admin.command to an argv list, e.g. [gcloud, auth, print-access-token] "
                "(or FLYTE_AUTH_COMMAND / FLYTE_CREDENTIALS_COMMAND)",
            )
        self.argv = tuple(config.command)
        self.timeout = config.command_timeout

    def __repr__(self) -> str:
        return f"ExternalCommandAuthenticator(command={os.path.basename(self.argv[0])!r})"

    def acquire(self, request: AcquireRequest) -> Token:
        return run_token_command(self.argv, timeout=self.timeout)

    def identity_parts(self, request: AcquireRequest) -> dict[str, str]:
        """``IdentitySource``: the command (a digest of its argv) and the OS user whose environment it runs
        in (``gcloud auth print-access-token`` prints each user's own token)."""
        import hashlib

        from flyteauth_core.identity import os_user

        return {"command": hashlib.sha256("\0".join(self.argv).encode()).hexdigest()[:32], "os_user": os_user()}


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("ExternalCommand", ExternalCommandAuthenticator, aliases=("external_process",))
