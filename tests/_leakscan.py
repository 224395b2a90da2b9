"""Suite-wide secret leak scan (a pytest plugin, listed in ``tests/conftest.py`` ``pytest_plugins``).

For the whole run it collects what a user could see, then fails the session if a known secret or token
shows up in any of it:

* every log record, formatted at DEBUG with its exception text (a root handler; the ``flyteauth``,
  ``httpx2``, ``httpcore2`` and ``authlib`` loggers are lowered to DEBUG so their debug records exist);
* the message of every ``FlyteAuthError`` constructed (``FlyteAuthError.__init__`` is wrapped);
* ``repr``/``str`` of the public objects tests create (AuthConfig, Token, AuthSession and its
  authenticator and store, TokenManager, AcquireRequest, ServerAuthInfo, TokenEvent), taken at construction;
* ``repr`` of everything a manager holds (each attribute, its published state) and of the metadata a
  transport frame holds (what a traceback capturing locals, as Sentry does, would show), per new token.

Known secrets: the client secrets of the test IdP and peers, every ``AuthConfig.client_secret`` and
resolved client secret (also as the HTTP Basic credential), every access / refresh / id token that
``token_from_response`` returns, and anything a test passes to :func:`register_secret`.  Values shorter
than 8 characters are ignored (they would match by accident), and nothing is registered while a test
marked ``fuzz`` or driven by hypothesis runs (its random "secrets" are not secrets).

The scan runs once at session end (a few substring searches over the de-duplicated texts); the report
names the test and the source, and shows a secret only as its first 4 characters and length.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

MIN_SECRET_LENGTH = 8
DEBUG_LOGGERS = ("flyteauth", "httpx2", "httpcore2", "authlib")


class _State:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # secret -> where it came from
        self.texts: dict[str, tuple[str, str]] = {}  # text -> (first test that produced it, source)
        self.current = "(session setup)"
        self.paused = False
        self.lock = threading.Lock()
        self.leaks: list[tuple[str, str, str, str]] = []
        self.active = False


_STATE = _State()


def register_secret(value: Any, origin: str = "registered by a test") -> None:
    """Declare ``value`` a secret: the session fails if it shows up in a log, error message or repr."""
    if not _STATE.active or _STATE.paused or not isinstance(value, str):
        return
    value = value.strip()
    if len(value) >= MIN_SECRET_LENGTH and len(set(value)) > 2:
        _STATE.secrets.setdefault(value, origin)


def _seen(text: str, source: str) -> None:
    if text and text not in _STATE.texts:
        _STATE.texts[text] = (_STATE.current, source)


class _Handler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a record that cannot be formatted is the caller's bug, not ours
            _seen(self.format(record), f"log {record.name}")


# -- wrapping ------------------------------------------------------------------------------------------------
_UNDO: list[Callable[[], None]] = []


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
    setattr(owner, name, make(original))
    _UNDO.append(lambda: setattr(owner, name, original))


def _record_repr(obj: Any, kind: str) -> None:
    try:
        _seen(repr(obj), f"repr({kind})")
        _seen(str(obj), f"str({kind})")
    except Exception:
        pass


def _wrap_init(cls: type, extra: Callable[[Any], None] | None = None) -> None:
    def make(original: Any) -> Any:
        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if extra is not None:
                extra(self)
            _record_repr(self, cls.__name__)

        return __init__

    _patch(cls, "__init__", make)


def _config_secrets(config: Any) -> None:
    secret = getattr(config, "client_secret", None)
    register_secret(secret, "AuthConfig.client_secret")
    if isinstance(secret, str) and config.client_id:
        register_secret(base64.b64encode(f"{config.client_id}:{secret.strip()}".encode()).decode(),
                        "HTTP Basic credential")


def _session_parts(session: Any) -> None:
    # Read without triggering the session's lazy wiring (its constructor does no I/O); the parts are
    # recorded again when the session wires itself (AuthSession._wire, patched below).
    for attr in ("_authenticator", "store", "manager"):
        part = session.__dict__.get(attr)
        if part is not None:
            _record_repr(part, f"AuthSession.{attr}")


def _wrap_wire(original: Any) -> Any:
    @functools.wraps(original)
    def _wire(self: Any) -> None:
        original(self)
        _session_parts(self)
        _record_repr(self, "AuthSession")

    return _wire


def _install() -> None:
    import flyteauth_core.config as config_mod
    import flyteauth_core.errors as errors_mod
    import flyteauth_core.token as token_mod
    from flyteauth_core.discovery import ServerAuthInfo
    from flyteauth_core.events import TokenEvent
    from flyteauth_core.lifecycle import AcquireRequest, TokenManager
    from flyteauth_core.session import AuthSession

    def make_error_init(original: Any) -> Any:
        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            with contextlib.suppress(Exception):
                _seen(str(self), f"{type(self).__name__} message")

        return __init__

    _patch(errors_mod.FlyteAuthError, "__init__", make_error_init)

    def make_token_from_response(original: Any) -> Any:
        @functools.wraps(original)
        def token_from_response(*args: Any, **kwargs: Any) -> Any:
            token = original(*args, **kwargs)
            for field in ("access_token", "refresh_token", "id_token"):
                register_secret(getattr(token, field, None), f"token_from_response {field}")
            return token

        return token_from_response

    _patch(token_mod, "token_from_response", make_token_from_response)
    import sys

    oauth = sys.modules.get("flyteauth_providers._oauth")  # bound the name at import: patch it there too
    if oauth is not None and hasattr(oauth, "token_from_response"):
        _patch(oauth, "token_from_response", lambda _original: token_mod.token_from_response)

    def make_resolve(original: Any) -> Any:
        @functools.wraps(original)
        def resolve_client_secret(self: Any, *args: Any, **kwargs: Any) -> Any:
            value = original(self, *args, **kwargs)
            register_secret(value, "resolved client secret")
            if isinstance(value, str) and self.client_id:
                register_secret(base64.b64encode(f"{self.client_id}:{value}".encode()).decode(),
                                "HTTP Basic credential")
            return value

        return resolve_client_secret

    _patch(config_mod.AuthConfig, "resolve_client_secret", make_resolve)
    _wrap_init(config_mod.AuthConfig, _config_secrets)
    _wrap_init(AuthSession, _session_parts)
    _patch(AuthSession, "_wire", _wrap_wire)
    for cls in (token_mod.Token, TokenManager, AcquireRequest, ServerAuthInfo, TokenEvent):
        _wrap_init(cls)

    def make_metadata_of(original: Any) -> Any:
        # Once per published token: what a traceback capturing locals would show of a manager's frame
        # (every attribute of the manager, its state) and of a transport's (the metadata it sends).
        @functools.wraps(original)
        def _metadata_of(self: Any, st: Any) -> Any:
            metadata = original(self, st)
            with contextlib.suppress(Exception):
                _record_repr(st, "TokenManager._state")
                _seen(repr(metadata), "repr(metadata sent by a transport)")
                _seen(repr((("x-caller", "v"), *metadata)), "repr(merged call metadata)")
                for name, value in vars(self).items():
                    _seen(repr(value), f"repr(TokenManager.{name})")
            return metadata

        return _metadata_of

    _patch(TokenManager, "_metadata_of", make_metadata_of)


def _known_constants() -> None:
    from tests._idp import CI_BASIC, CI_POST

    for client_id, secret in (CI_BASIC, CI_POST):
        register_secret(secret, "tests/_idp.py client secret")
        register_secret(base64.b64encode(f"{client_id}:{secret}".encode()).decode(), "HTTP Basic credential")
    try:
        from tests.soak._peers import CLIENT_SECRET
    except ImportError:
        return
    register_secret(CLIENT_SECRET, "tests/soak/_peers.py client secret")


# -- pytest hooks --------------------------------------------------------------------------------------------
_HANDLER = _Handler()
_LEVELS: dict[str, int] = {}


def pytest_configure(config: pytest.Config) -> None:
    if _STATE.active:
        return
    _STATE.active = True
    _install()
    root = logging.getLogger()
    root.addHandler(_HANDLER)
    for name in DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        _LEVELS[name] = logger.level
        if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    _known_constants()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _STATE.current = item.nodeid
    # Values that hypothesis invents (fuzz targets, property tests) are not secrets: registering them
    # would flag the same invented strings when another generated test happens to log them.
    _STATE.paused = item.get_closest_marker("fuzz") is not None or bool(
        getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
    )
    try:
        return (yield)
    finally:
        _STATE.paused = False
        _STATE.current = "(between tests)"


def _mask(secret: str) -> str:
    return f"{secret[:4]}… ({len(secret)} chars)"


def scan() -> list[tuple[str, str, str, str]]:
    """(test, source, masked secret, origin) for every text that contains a known secret."""
    leaks = []
    secrets = list(_STATE.secrets.items())
    for text, (test, source) in list(_STATE.texts.items()):
        for secret, origin in secrets:
            if secret in text:
                leaks.append((test, source, _mask(secret), origin))
    return leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _STATE.active:
        return
    _STATE.leaks = scan()
    if _STATE.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _STATE.active:
        return
    if _STATE.leaks:
        terminalreporter.write_sep("=", f"LEAK SCAN: {len(_STATE.leaks)} secret(s) found", red=True)
        for test, source, masked, origin in _STATE.leaks[:50]:
            terminalreporter.write_line(f"{test}: {source} contains {masked} [{origin}]")
    else:
        terminalreporter.write_line(
            f"leak scan: {len(_STATE.secrets)} secrets/tokens checked against {len(_STATE.texts)} distinct "
            "log lines, error messages and reprs: none leaked"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _STATE.active:
        return
    logging.getLogger().removeHandler(_HANDLER)
    for name, level in _LEVELS.items():
        logging.getLogger(name).setLevel(level)
    while _UNDO:
        _UNDO.pop()()
    _STATE.active = False
