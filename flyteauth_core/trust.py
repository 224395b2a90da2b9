"""Trust for per-directory config files: a file the working tree supplied runs nothing and sends nothing
until the user says so.

flyteauth (like flyte 2.x) reads ``./config.yaml``, ``./.flyte/config.yaml``, ``<git root>/.flyte/config.yaml``
and ``./flytekit.config`` when no file is named.  Whoever can write a repository can write those files, and
a config says which command runs (``command``, ``proxyCommand``, ``platformTokenCommand``) and where a
credential goes (``endpoint``, ``tokenUrl``, ``authOrigins``).  So, as ``direnv allow`` and ``mise trust`` do,
such a file is used to authenticate only after ``flyteauth trust`` recorded its content hash, and a changed
file needs trust again.  A file the user named (``--config``, ``$FLYTECTL_CONFIG``, ``$FLYTEAUTH_CONFIG``,
``$UCTL_CONFIG``, ``load_config(path)``, ``AuthConfig(...)`` in code) or a user-level file
(``~/.flyte/config.yaml``, ``~/.flyte/config``, ``~/.union/config.yaml``) is the user's own choice.

Records live in ``$XDG_CONFIG_HOME/flyteauth/trusted/`` (default ``~/.config/flyteauth/trusted/``), a 0700
directory of 0600 files, one per file trusted, named by a digest of its real path and holding that path and
the SHA-256 of the text flyteauth parsed.  Records in a directory that another user owns or can write are
ignored (they could trust anything).

Reading an untrusted file stays possible (``flyteauth config`` and ``doctor`` show it and say why it is not
used); what is refused is authenticating with it: an :class:`AuthSession` built from it gets no provider, no
token store and no extra interceptors, and its first token request raises
:class:`~flyteauth_core.errors.UntrustedConfigError` before any command runs or any secret is read.
A provider registered ``anonymous`` (``NoAuth``) with no ``proxyCommand`` sends nothing, so it still works.

A leaf module: it imports ``errors`` at load time, and ``config``/``config_report`` (and hashlib, json, ...)
only inside functions: ``load_config`` imports it only when it reads a per-directory file.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigError, UntrustedConfigError

if TYPE_CHECKING:
    from .config import AuthConfig
    from .lifecycle import AcquireRequest
    from .token import Token

__all__ = ["FileTrust", "Refusing", "records", "refusal", "revoke", "trust_directory", "trust_file"]

_VERSION = 1


@attrs.frozen
class FileTrust:
    """Whether a per-directory config file may be used to authenticate.

    ``path``: the file as found (absolute); ``digest``: SHA-256 of the text that was parsed; ``trusted``:
    a record for this path holds this digest; ``changed``: a record exists, for other content; ``reason``:
    why it is not trusted (for ``flyteauth config``).
    """

    path: str
    digest: str
    trusted: bool
    changed: bool = False
    reason: str = ""


def trust_directory() -> Path:
    """``$XDG_CONFIG_HOME/flyteauth/trusted`` (``~/.config/...``; ``%APPDATA%`` on Windows)."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "flyteauth" / "trusted"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "flyteauth" / "trusted"


def digest(text: str) -> str:
    """The content hash of a config file: of the text as parsed (so what is trusted is what is read)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record_path(path: str | os.PathLike[str]) -> Path:
    import hashlib

    real = os.path.realpath(os.path.expanduser(os.fspath(path)))
    return trust_directory() / (hashlib.sha256(real.encode("utf-8")).hexdigest()[:40] + ".json")


def _unsafe(info: os.stat_result, what: str, where: Path) -> str | None:
    """Why records in ``where`` cannot be believed (another user owns it or can write it), else None."""
    if sys.platform == "win32":
        return None
    if info.st_uid != os.getuid():
        return f"{what} {where} is owned by uid {info.st_uid}, not by this user, so its records are ignored"
    if info.st_mode & 0o022:
        return (f"{what} {where} is writable by others (mode {stat.S_IMODE(info.st_mode):04o}), so its records "
                "are ignored")
    return None


def _load(entry: Path) -> tuple[dict[str, Any] | None, str]:
    """One record file (not followed if a symlink, owned by this user), and why it is ignored if it is."""
    import json

    try:
        fd = os.open(entry, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None, ""
    with os.fdopen(fd, "rb") as fh:
        problem = _unsafe(os.fstat(fh.fileno()), "the trust record", entry)
        if problem:
            return None, problem
        try:
            record = json.loads(fh.read(65536).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None, f"the trust record {entry} is not valid JSON, so it is ignored"
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None, f"the trust record {entry} has no sha256, so it is ignored"
    return record, ""


def _read_record(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str]:
    """The record for ``path`` (None when there is none or it cannot be believed), and why not."""
    directory = trust_directory()
    try:
        problem = _unsafe(directory.stat(), "the trust directory", directory)
    except OSError:
        return None, ""
    return (None, problem) if problem else _load(_record_path(path))


def assess(path: str | os.PathLike[str], text: str) -> FileTrust:
    """Whether the per-directory file ``path``, whose parsed text is ``text``, is trusted."""
    shown = os.path.abspath(os.path.expanduser(os.fspath(path)))
    content = digest(text)
    record, problem = _read_record(shown)
    if record is None:
        return FileTrust(shown, content, False, reason=problem or "never trusted")
    if record["sha256"] == content:
        return FileTrust(shown, content, True)
    return FileTrust(shown, content, False, changed=True,
                     reason=f"trusted on {record.get('trusted_at', 'an earlier day')} with other content")


def _ensure_directory() -> Path:
    directory = trust_directory()
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for created in reversed(missing):  # every level we create is ours alone
        created.mkdir(mode=0o700, exist_ok=True)
    info = directory.stat()
    if sys.platform != "win32":
        if info.st_uid != os.getuid():
            raise ConfigError(f"The trust directory {directory} is owned by uid {info.st_uid}, not by this user",
                              hint="Remove it, or set $XDG_CONFIG_HOME to a directory you own")
        if stat.S_IMODE(info.st_mode) != 0o700:
            directory.chmod(0o700)
    return directory


def trust_file(path: str | os.PathLike[str]) -> FileTrust:
    """Record that the user trusts ``path`` as it is now (``flyteauth trust PATH``)."""
    import contextlib
    import json
    import secrets
    import time

    from .config import _read_text

    file = Path(os.path.expanduser(os.fspath(path))).absolute()
    if not file.is_file():
        raise ConfigError(f"Config file {str(file)!r} does not exist", hint="Name an existing config file")
    text = _read_text(file)
    content = digest(text)
    directory = _ensure_directory()
    record = {"version": _VERSION, "path": os.path.realpath(file), "sha256": content,
              "trusted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    target = _record_path(file)
    temp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return FileTrust(str(file), content, True)


def revoke(path: str | os.PathLike[str]) -> bool:
    """Forget the trust of ``path``; True when there was a record."""
    try:
        _record_path(path).unlink()
    except FileNotFoundError:
        return False
    return True


def records() -> Iterator[dict[str, Any]]:
    """Every trust record (``flyteauth trust --list``), with ``state``: ``trusted``, ``changed`` or
    ``missing`` (the file is gone)."""
    from .config import _read_text

    directory = trust_directory()
    for entry in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        record, _ = _load(entry)
        if record is None:
            continue
        path = str(record.get("path", ""))
        try:
            state = "trusted" if digest(_read_text(Path(path))) == record["sha256"] else "changed"
        except ConfigError:
            state = "missing"
        yield {**record, "state": state}


def trust_command(path: str) -> str:
    """The exact command that trusts ``path``."""
    import shlex

    return f"flyteauth trust {shlex.quote(path)}"


# -- what an untrusted file would do ------------------------------------------------------------------
_COMMAND_TYPES = frozenset({"externalcommand", "external_process"})
_LOGIN_TYPES = frozenset({"pkce", "standard", "deviceflow", "device_flow"})


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def actions(config: AuthConfig) -> tuple[str, ...]:
    """What ``config`` would run and where it would send credentials, commands masked as ``flyteauth
    config`` masks them (the program; ``****`` per argument)."""
    from .config_report import format_value

    host = _host(config.http_base_url)
    kind = config.resolved_auth_type.lower()
    token_host = _host(config.token_url) if config.token_url else f"the token endpoint {host} advertises"
    out: list[str] = []
    if kind in _COMMAND_TYPES:
        out.append(f"run `{format_value('command', config.command)}` (authType {config.resolved_auth_type}) and "
                   f"send the token it prints to {host}")
    elif kind == "passthrough":
        out.append(f"send the token you hand in to {host}")
    elif kind in _LOGIN_TYPES:
        out.append(f"send your login (authType {config.resolved_auth_type}, at {token_host}) to {host}")
    elif kind not in ("noauth", "none", "no_auth", "anonymous"):
        out.append(f"send credentials (authType {config.resolved_auth_type}) to {token_host} and the token to "
                   f"{host}")
    raw = config.options.get("platformTokenCommand")
    if raw:  # masked like admin.command (a string form is split first)
        out.append(f"run `{format_value('command', raw)}` (platformTokenCommand)")
    if config.proxy_command:
        out.append(f"run `{format_value('proxy_command', config.proxy_command)}` (proxyCommand) and send its token "
                   f"to {host}")
    if config.auth_origins:
        out.append(f"send the token to {', '.join(_host(o) for o in config.auth_origins)} too (authOrigins)")
    return tuple(out)


def refusal(config: AuthConfig, *, anonymous: bool = False) -> UntrustedConfigError | None:
    """The error a session built from ``config`` raises instead of authenticating; None when the config
    may be used (no per-directory file, a trusted one, or an ``anonymous`` provider with no proxyCommand:
    nothing is run or sent)."""
    found = config.trust
    if found is None or found.trusted or (anonymous and not config.proxy_command):
        return None
    return UntrustedConfigError(found.path, actions=actions(config), command=trust_command(found.path),
                                changed=found.changed)


class Refusing:
    """The provider of a session whose config file is not trusted: every token request fails with
    :class:`UntrustedConfigError`, before any command runs or any credential is read or sent."""

    needs_discovery = False  # it contacts nothing

    def __init__(self, config: AuthConfig) -> None:
        self._config = config

    def __repr__(self) -> str:
        return "Refusing(untrusted config)"

    def acquire(self, request: AcquireRequest) -> Token:
        found = self._config.trust
        assert found is not None
        record, _ = _read_record(found.path)
        if record is not None and record["sha256"] == found.digest:
            # `flyteauth trust` ran after this session was wired without a provider: say so, rather than
            # repeat advice the user already followed.
            raise ConfigError(f"The config file {found.path} was trusted after this session was built",
                              hint="Build a new session (restart the program; with flytekit's plugin, "
                                   "flyteauth_integrations.flytekit.reset())")
        error = refusal(self._config)
        assert error is not None
        raise error
