"""``keyring``: tokens in the OS keyring (macOS Keychain, Windows Credential Locker, Secret Service), with a
file-store fallback that keeps every call working.

Backend choice: only a backend the keyring library rates as recommended (``keyring.core.recommended``:
priority >= 1), never one from ``keyrings.alt`` (its plaintext file backend is what ``keyring`` picks
silently on a headless Linux machine once keyrings.alt is installed), never the ``fail``/``null``
backends, and a chainer only through its recommended members.  With none available (headless Linux,
SSH, containers) the store falls back to :class:`~flyteauth_providers.file_store.FileTokenStore` (0600 files)
and says so at INFO level and in ``flyteauth status``.

Any keyring error (locked collection, D-Bus gone, a call hanging for more than ``call_timeout`` seconds)
is reported once as a warning; from then on this store uses the fallback, so no RPC fails because of
the keyring.  Loads fall through to the fallback too, so a token saved there while the keyring was down
is still found.

One JSON value per credential key (service ``flyteauth``, user name = the key).  Size: the Windows
Credential Manager caps a value at 2560 bytes (UTF-16, so 1280 characters).  On Windows the value is
trimmed to :data:`WINDOWS_MAX_CHARS`: first the ``id_token`` is dropped, then the access token (the record
keeps the refresh token and metadata, and loads as an already-expired token, so the next process spends
one refresh-grant request instead of a login); a refresh token too large even for that goes to the file
fallback.  Other platforms have no such limit and store the whole token.

The cross-process lock is the file store's (a lock file beside where the fallback would write), so
processes sharing a keyring still make one refresh between them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.token import Token

from .file_store import FileTokenStore

log = logging.getLogger("flyteauth.keyring_store")

SERVICE = "flyteauth"
WINDOWS_MAX_CHARS = 1200  # < 2560 bytes as UTF-16, with room for the backend's own framing
FORMAT_VERSION = 1
_NO_ACCESS = "-"  # placeholder access token of a trimmed record; expires_at=0 so it is never sent
_EXCLUDED_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyring.backends.chainer")


def _acceptable(backend: Any) -> bool:
    import keyring.core

    module = type(backend).__module__
    if module.startswith("keyrings.alt") or module in _EXCLUDED_MODULES:
        return False
    try:
        return bool(keyring.core.recommended(backend))
    except Exception:  # a backend whose priority probe fails is not viable
        return False


def choose_backend() -> tuple[Any, str]:
    """``(backend, "")`` for the best recommended backend, or ``(None, why not)``."""
    try:
        import keyring
        import keyring.backend
    except ImportError:
        return None, "the keyring package is not installed (pip install 'flyteauth[keyring]')"
    try:
        current = keyring.get_keyring()
    except Exception as exc:
        current, reason = None, f"keyring failed to initialise ({type(exc).__name__})"
    else:
        reason = f"the default backend {type(current).__module__}.{type(current).__name__} is not recommended"
    if current is not None and _acceptable(current):
        return current, ""
    candidates = list(getattr(current, "backends", []) or [])
    try:
        candidates += list(keyring.backend.get_all_keyring())
    except Exception as exc:
        log.debug("flyteauth: listing keyring backends failed (%s)", type(exc).__name__)
    usable = [b for b in candidates if _acceptable(b)]
    if not usable:
        return None, f"no secure keyring backend ({reason})"
    return max(usable, key=lambda b: float(b.priority)), ""


class KeyringTokenStore:
    """OS keyring first; the file store when there is no secure backend or it fails."""

    def __init__(
        self,
        config: AuthConfig | None = None,
        *,
        backend: Any = None,
        fallback: Any = None,
        max_value_chars: int | None = None,
        call_timeout: float = 10.0,
    ) -> None:
        self.fallback = fallback if fallback is not None else FileTokenStore(config)
        self.call_timeout = call_timeout
        self._max_value_chars = max_value_chars
        self.max_value_chars = max_value_chars
        self._warned = False
        self._lock = threading.Lock()
        self._backend: Any = backend
        self._chosen = backend is not None
        self.unavailable = ""
        if backend is not None:
            self._sized(backend)

    # Choosing a backend can block (D-Bus probing, an unlock prompt): it happens on first use, not when
    # the session is built, and is bounded by ``call_timeout``.
    @property
    def backend(self) -> Any:
        if not self._chosen:
            self._choose()
        return self._backend

    @backend.setter
    def backend(self, value: Any) -> None:
        self._backend, self._chosen = value, True

    def _choose(self) -> None:
        found: list[tuple[Any, str]] = []
        worker = threading.Thread(target=lambda: found.append(choose_backend()), name="flyteauth-keyring-choose",
                                  daemon=True)
        worker.start()
        worker.join(self.call_timeout)
        with self._lock:
            if self._chosen:
                return
            backend, why = found[0] if found else (None, f"choosing a keyring backend took more than "
                                                          f"{self.call_timeout:g}s")
            self._backend, self._chosen, self.unavailable = backend, True, why
        if backend is None:
            log.info("flyteauth: %s; storing tokens in %s", why, self._fallback_name())
        else:
            self._sized(backend)

    def _sized(self, backend: Any) -> None:
        if self._max_value_chars is None and type(backend).__module__.startswith("keyring.backends.Windows"):
            self.max_value_chars = WINDOWS_MAX_CHARS

    def __repr__(self) -> str:
        return f"KeyringTokenStore({self.describe()!r})"

    def describe(self) -> str:
        if self.backend is None:
            return f"keyring unavailable ({self.unavailable}); using {self._fallback_name()}"
        return f"keyring ({type(self.backend).__module__}.{type(self.backend).__name__})"

    def _fallback_name(self) -> str:
        describe = getattr(self.fallback, "describe", None)
        return str(describe()) if callable(describe) else type(self.fallback).__name__

    # -- backend calls, bounded and isolated ---------------------------------------------------------
    def _call(self, op: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run one backend call in a helper thread (a locked keyring can block on a prompt forever)."""
        result: list[Any] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(fn(*args))
            except BaseException as exc:
                error.append(exc)

        worker = threading.Thread(target=run, name=f"flyteauth-keyring-{op}", daemon=True)
        worker.start()
        worker.join(self.call_timeout)
        if worker.is_alive():
            self._fail(op, f"no answer within {self.call_timeout:g}s")
            return False, None
        if error:
            self._fail(op, type(error[0]).__name__)
            return False, None
        return True, result[0] if result else None

    def _fail(self, op: str, what: str) -> None:
        with self._lock:
            first = not self._warned and self._backend is not None
            self._warned = True
            backend, self._backend, self._chosen = self._backend, None, True
            self.unavailable = f"{op} failed: {what}"
        if first:
            log.warning("flyteauth: the OS keyring (%s) failed on %s (%s); storing tokens in %s instead",
                        type(backend).__name__, op, what, self._fallback_name())

    # -- TokenStore -----------------------------------------------------------------------------------
    def load(self, key: str) -> Token | None:
        """The newest of the keyring's copy and the fallback's.

        A keyring save that timed out (an unlock prompt) leaves the new token in the fallback and the old
        one in the keyring; another process whose keyring works must not present the old (rotated, so
        revoked) refresh token.  The newer copy wins (later expiry; on a tie the fallback, which is
        only written when the keyring failed), and the stale one is cleared.
        """
        backend = self.backend
        from_keyring: Token | None = None
        if backend is not None:
            ok, value = self._call("load", backend.get_password, SERVICE, key)
            if ok and value is not None:
                from_keyring = self._decode(value)
        from_file: Token | None = self.fallback.load(key)
        if from_keyring is None or from_file is None:
            return from_keyring or from_file
        if from_keyring == from_file:
            return from_keyring
        if _newer(from_keyring, from_file):
            self._forget_fallback(key)
            return from_keyring
        log.info("flyteauth: the keyring entry is older than the copy in %s; using the newer one",
                 self._fallback_name())
        if self.backend is not None:  # clear the stale entry (bounded; a failure disables the keyring)
            self._call("delete", _delete_password, self.backend, key)
        return from_file

    def _forget_fallback(self, key: str) -> None:
        try:  # never leave an older copy (with an older refresh token) in the fallback
            self.fallback.delete(key)
        except Exception as exc:
            log.debug("flyteauth: could not delete the fallback copy (%s)", type(exc).__name__)

    def save(self, key: str, token: Token) -> None:
        backend = self.backend
        value = self._encode(token) if backend is not None else None
        if backend is not None and value is not None:
            ok, _ = self._call("save", backend.set_password, SERVICE, key, value)
            if ok:
                self._forget_fallback(key)
                return
        elif backend is not None:
            log.info("flyteauth: token too large for the keyring; storing it in %s", self._fallback_name())
            self._call("delete", _delete_password, backend, key)
        self.fallback.save(key, token)

    def delete(self, key: str) -> None:
        backend = self.backend
        if backend is not None:
            self._call("delete", _delete_password, backend, key)
        self.fallback.delete(key)

    def lock(self, key: str) -> Any:
        lock = getattr(self.fallback, "lock", None)
        if lock is None:
            import contextlib

            return contextlib.nullcontext()
        return lock(key)

    # -- encoding -------------------------------------------------------------------------------------
    def _encode(self, token: Token) -> str | None:
        """The JSON value, trimmed to ``max_value_chars``; None when even the refresh token does not fit."""
        record = token.to_dict()
        limit = self.max_value_chars
        for drop in ((), ("id_token",), ("id_token", "access_token")):
            for field in drop:
                record[field] = None
            if "access_token" in drop:
                record["expires_at"] = 0.0  # loads as expired: refreshed before anything is sent
            value = json.dumps({"v": FORMAT_VERSION, "token": record}, separators=(",", ":"))
            if limit is None or len(value) <= limit:
                return value
            if not token.refresh_token:
                return None  # without a refresh token a trimmed record is useless
        return None

    def _decode(self, value: str) -> Token | None:
        try:
            record = json.loads(value)
            data = dict(record["token"])
            if not data.get("access_token"):
                data["access_token"], data["expires_at"] = _NO_ACCESS, 0.0
                if not data.get("refresh_token"):
                    raise ValueError("trimmed record without a refresh token")
            return Token.from_dict(data)
        except (ValueError, TypeError, KeyError, RecursionError):
            if not self._warned:
                log.warning("flyteauth: a keyring entry of service %r is corrupt; ignoring it", SERVICE)
            return None


def _newer(a: Token, b: Token) -> bool:
    """Whether ``a`` was issued after ``b`` (a later expiry; unknown expiry counts as oldest)."""
    return (a.expires_at if a.expires_at is not None else float("-inf")) > (
        b.expires_at if b.expires_at is not None else float("-inf"))


def _delete_password(backend: Any, key: str) -> None:
    try:
        backend.delete_password(SERVICE, key)
    except Exception as exc:
        import keyring.errors

        if not isinstance(exc, keyring.errors.PasswordDeleteError):
            raise


@hookimpl
def flyteauth_register_token_stores(register: Any) -> None:
    register("keyring", KeyringTokenStore)
