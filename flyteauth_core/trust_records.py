"""Trust records for per-directory config files: who said which file (by real path and content hash) may be
used to authenticate.  See :mod:`flyteauth_core.trust` for the policy.

Kept apart from the policy so that ``config`` (which assesses a file as it reads it) and the policy (which
needs ``config`` to say what a file would do) never import each other: this module imports only ``errors``
and ``_files``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError

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

    from ._files import read_config_text as _read_text

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
    from ._files import read_config_text as _read_text

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
