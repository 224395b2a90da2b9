"""``file``: tokens in files under the user's config directory, shared safely between processes.

* Where: ``admin.tokenStorePath``, else ``$FLYTEAUTH_TOKEN_DIR``, else ``$XDG_CONFIG_HOME/flyteauth/tokens``
  (``~/.config/flyteauth/tokens``; ``%APPDATA%\\flyteauth\\tokens`` on Windows).  The directory is 0700.
* One file per key, named by a hash of the key (keys hold endpoint names); each file records its key and
  is ignored if it does not match.  Mode 0600 from creation (``os.open``, not chmod after the fact).
* Writes go to a temporary file in the same directory, fsynced, then ``os.replace`` and an fsync of the
  directory: a reader sees the old token or the new one, never half of one, even after a crash.
* A directory another user owns, or that is group- or world-writable, is refused (``TokenStoreError``;
  the session then keeps tokens in memory).
* ``lock(key)``: an exclusive ``fcntl.flock`` on ``<file>.lock``, waited for up to ``lock_timeout``
  (``admin.tokenStoreLockTimeout``, default 30 s).  The TokenManager holds it around "read the store,
  refresh if still needed, save", so N processes sharing the directory make one refresh between them.
* A corrupt or unreadable file is reported once (a warning naming the file, never its content), treated
  as absent, and replaced by the next save.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig, parse_duration
from flyteauth_core.discovery_cache import DISCOVERY_TTL
from flyteauth_core.errors import TokenStoreError
from flyteauth_core.options import Option
from flyteauth_core.token import Token

log = logging.getLogger("flyteauth.file_store")

DIR_ENV = "FLYTEAUTH_TOKEN_DIR"
FORMAT_VERSION = 1
DEFAULT_LOCK_TIMEOUT = 30.0


def default_directory() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "flyteauth" / "tokens"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "flyteauth" / "tokens"


class FileTokenStore:
    """Token files with atomic replace and a cross-process lock."""

    def __init__(
        self,
        config: AuthConfig | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        options = config.options if config is not None else {}
        configured = options.get("tokenStorePath")
        self.directory = Path(directory or configured or default_directory()).expanduser()
        raw_timeout = options.get("tokenStoreLockTimeout")
        self.lock_timeout = lock_timeout if lock_timeout is not None else (
            parse_duration("admin.tokenStoreLockTimeout", raw_timeout) if raw_timeout is not None
            else DEFAULT_LOCK_TIMEOUT)
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.directory)!r})"

    def describe(self) -> str:
        return f"file ({self.directory})"

    def path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    # -- TokenStore -------------------------------------------------------------------------------
    def load(self, key: str) -> Token | None:
        record = self.load_record(key)
        return None if record is None else record[0]

    def load_record(self, key: str) -> tuple[Token, float] | None:
        """The stored token and when it was saved (epoch seconds; 0 when the record does not say)."""
        path = self.path(key)
        self._check_directory()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn_once(path, f"cannot be read ({exc.strerror or type(exc).__name__})")
            return None
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or record.get("key") != key:
                raise ValueError("not a record for this key")
            saved_at = record.get("saved_at")
            return Token.from_dict(record["token"]), (
                float(saved_at) if isinstance(saved_at, (int, float)) and not isinstance(saved_at, bool) else 0.0)
        except (ValueError, TypeError, KeyError, RecursionError):
            self._warn_once(path, "is corrupt")
            return None

    def save(self, key: str, token: Token) -> None:
        self._ensure_directory()
        path = self.path(key)
        data = json.dumps({"version": FORMAT_VERSION, "key": key, "saved_at": time.time(),
                           "token": token.to_dict()}).encode()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_directory(self.directory)  # the rename itself survives a crash
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._warn_lock:
            self._warned.discard(str(path))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    # -- discovery cache (optional store capability, see flyteauth_core.discovery_cache) -------------
    def load_discovery(self, key: str) -> Any:
        """The cached record, only from a directory and file that pass the token checks (a record names the
        token endpoint, where the client secret goes: whoever could write it must be this user)."""
        raw = self.read_private(self._discovery_path(key))  # TokenStoreError: the cache treats it as a miss
        try:
            record = json.loads(raw) if raw is not None else None
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or not time.time() < record.get("expires_at", 0):
            return None
        return record.get("discovery")

    def save_discovery(self, key: str, data: Any, ttl: float) -> None:
        record = {"version": FORMAT_VERSION, "key": key, "expires_at": time.time() + ttl, "discovery": dict(data)}
        self.write_private(self._discovery_path(key), json.dumps(record).encode())

    def read_private(self, path: Path) -> bytes | None:
        """A file of this store's directory, only when the directory passes the token checks
        (``TokenStoreError`` otherwise) and the file is this user's and writable by nobody else; None
        when absent or not private (reported once)."""
        self._check_directory()
        try:
            with open(path, "rb") as fh:
                if not _private(os.fstat(fh.fileno())):
                    self._warn_once(path, "is not a private file of this user")
                    return None
                return fh.read()
        except OSError:
            return None

    def write_private(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` in this store's directory: 0600 from creation, atomically replaced."""
        self._ensure_directory()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _discovery_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".discovery")  # not *.json: those are tokens

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the key's cross-process lock; ``TokenStoreError`` after ``lock_timeout`` seconds."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; single-flight stays per process
            yield
            return
        self._ensure_directory()
        lock_path = self.path(key).with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.lock_timeout
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                if time.monotonic() >= deadline:
                    raise TokenStoreError(
                        f"Timed out after {self.lock_timeout:g}s waiting for the token lock {str(lock_path)!r}",
                        hint="Another process is logging in or refreshing (a browser or device login can "
                        "take minutes); the lock is released when it finishes or exits, so nothing needs "
                        "deleting; raise admin.tokenStoreLockTimeout to wait longer",
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- helpers ----------------------------------------------------------------------------------
    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            # Every directory created on the way is private too (mkdir(parents=True) makes the parents 0755).
            for missing in reversed([d for d in (self.directory, *self.directory.parents) if not d.exists()]):
                with contextlib.suppress(FileExistsError):
                    missing.mkdir(mode=0o700)
        self._check_directory()

    def _check_directory(self) -> None:
        """Refuse a directory another user owns or can write to: they could read or plant tokens."""
        if os.name != "posix":
            return
        try:
            info = os.stat(self.directory)
        except FileNotFoundError:
            return
        problem = ""
        if info.st_uid != os.getuid():
            problem = f"is owned by uid {info.st_uid}, not by this user"
        elif info.st_mode & 0o022:
            problem = f"is group- or world-writable (mode {info.st_mode & 0o777:o})"
        if problem:
            raise TokenStoreError(
                f"Token directory {str(self.directory)!r} {problem}; not using it",
                hint=f"Use a private directory: chmod 700 {self.directory}, or set admin.tokenStorePath / "
                f"${DIR_ENV} elsewhere",
            )

    def _warn_once(self, path: Path, what: str) -> None:
        with self._warn_lock:
            if str(path) in self._warned:
                return
            self._warned.add(str(path))
        log.warning("flyteauth: token file %s %s; ignoring it (the next login or refresh replaces it)",
                    path, what)


def _private(info: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else (always true where there are no POSIX owners)."""
    if os.name != "posix":
        return True
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _fsync_directory(directory: Path) -> None:
    """fsync a directory (POSIX), so a rename in it is durable; a no-op where unsupported."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@hookimpl
def flyteauth_register_token_stores(register: Any) -> None:
    register("file", FileTokenStore, options=(
        Option("tokenStorePath", help="directory of the token files (default ~/.flyte/flyteauth)"),
        Option("tokenStoreLockTimeout", parse=parse_duration, default=DEFAULT_LOCK_TIMEOUT,
               help="how long a process waits for another's refresh"),
        DISCOVERY_TTL,
    ))
