"""Token stores: the file store (permissions, atomicity, corruption, cross-process lock), the keyring store
(only recommended backends, fallback that never fails a call, Windows size), and the session's default chain.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession, Token
from flyteauth_core.errors import TokenStoreError
from flyteauth_providers import keyring_store
from flyteauth_providers.file_store import FileTokenStore, default_directory
from flyteauth_providers.keyring_store import WINDOWS_MAX_CHARS, KeyringTokenStore
from flyteauth_providers.memory_store import MemoryTokenStore

from ._interactive_helpers import REPO

KEY = "flyteauth:dns:///flyte.example.com:pkce:0123456789abcdef"
TOKEN = Token("AT-secret-access", expires_at=time.time() + 600, refresh_token="RT-secret-refresh",
              id_token="ID-secret", scopes=("all", "offline"))


# -- file store ---------------------------------------------------------------------------------------
def test_file_store_roundtrip_with_private_permissions(tmp_path: Path) -> None:
    store = FileTokenStore(directory=tmp_path / "tokens")
    assert store.load(KEY) is None
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    path = store.path(KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "flyte.example.com" not in path.name  # named by a hash of the key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    store.delete(KEY)
    store.delete(KEY)  # idempotent
    assert store.load(KEY) is None


def test_file_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYTEAUTH_TOKEN_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "flyteauth" / "tokens"
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "env"))
    assert FileTokenStore().directory == tmp_path / "env"
    config = AuthConfig(endpoint="dns:///x", options={"tokenStorePath": str(tmp_path / "opt")})
    assert FileTokenStore(config).directory == tmp_path / "opt"


def test_corrupt_file_is_reported_once_ignored_and_replaced(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    store = FileTokenStore(directory=tmp_path)
    store.save(KEY, TOKEN)
    store.path(KEY).write_text('{"version": 1, "key": "' + KEY + '", "token": {"access_token": 42')
    with caplog.at_level(logging.WARNING):
        assert store.load(KEY) is None
        assert store.load(KEY) is None
    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1 and "RT-secret" not in caplog.text
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


def test_a_file_for_another_key_is_ignored(tmp_path: Path) -> None:
    store = FileTokenStore(directory=tmp_path)
    store.save(KEY, TOKEN)
    other = KEY + "-other"
    store.path(KEY).rename(store.path(other))
    assert store.load(other) is None


def test_unreadable_file_is_ignored(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    store = FileTokenStore(directory=tmp_path)
    store.save(KEY, TOKEN)
    store.path(KEY).chmod(0)
    assert store.load(KEY) is None


LOCK_HOLDER = """
import sys, time
from flyteauth_providers.file_store import FileTokenStore
store = FileTokenStore(directory=sys.argv[1])
with store.lock(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_lock_excludes_other_processes_and_times_out(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path), KEY, "1.5"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    store = FileTokenStore(directory=tmp_path, lock_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TokenStoreError, match="Timed out"), store.lock(KEY):
        pass
    assert time.monotonic() - started < 1.0
    patient = FileTokenStore(directory=tmp_path, lock_timeout=10)
    with patient.lock(KEY):
        waited = time.monotonic() - started
    assert 0.8 < waited < 5
    holder.wait(5)
    with store.lock(KEY + "-other"):  # other keys are not blocked
        pass


# -- keyring store ------------------------------------------------------------------------------------
class MemoryKeyring:
    """A recommended (priority 5) in-memory backend, standing in for Keychain / Secret Service.

    Duck-typed, not a ``KeyringBackend`` subclass: subclasses register themselves with keyring globally.
    """

    priority = 5

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.fail: BaseException | None = None
        self.hang = 0.0

    def get_password(self, service: str, username: str) -> str | None:
        self._maybe_fail()
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._maybe_fail()
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._maybe_fail()
        if self.values.pop((service, username), None) is None:
            import keyring.errors

            raise keyring.errors.PasswordDeleteError(username)

    def _maybe_fail(self) -> None:
        if self.hang:
            time.sleep(self.hang)
        if self.fail is not None:
            raise self.fail


HEADLESS = """
import json, keyring
from flyteauth_providers.keyring_store import choose_backend
backend, why = choose_backend()
print(json.dumps({"default": type(keyring.get_keyring()).__module__, "chosen": repr(backend), "why": why}))
"""


def test_headless_machine_with_keyrings_alt_never_uses_the_plaintext_backend(tmp_path: Path) -> None:
    """A fresh interpreter, as a user's process would be: no secure backend here (no D-Bus, no Keychain)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", HEADLESS], capture_output=True, text=True, cwd=REPO, check=True,
                         env={**env, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    seen = json.loads(out.stdout)
    assert seen["default"].startswith("keyrings.alt"), seen  # keyring's own choice: the plaintext file
    assert seen["chosen"] == "None" and "no secure keyring backend" in seen["why"], seen
    fallback = FileTokenStore(directory=tmp_path)
    store = KeyringTokenStore(fallback=fallback)
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN and fallback.load(KEY) == TOKEN
    assert "keyring unavailable" in store.describe()


def test_recommended_backend_is_used_and_holds_one_json_value(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    fallback = FileTokenStore(directory=tmp_path)
    fallback.save(KEY, Token("old"))  # an older copy from a time the keyring was down
    store = KeyringTokenStore(backend=backend, fallback=fallback)
    store.save(KEY, TOKEN)
    assert json.loads(backend.values[("flyteauth", KEY)])["token"]["refresh_token"] == "RT-secret-refresh"
    assert fallback.load(KEY) is None  # the stale copy is gone
    assert store.load(KEY) == TOKEN
    store.delete(KEY)
    assert store.load(KEY) is None and not backend.values


def test_keyring_errors_warn_once_and_fall_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryKeyring()
    backend.fail = RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")
    store = KeyringTokenStore(backend=backend, fallback=FileTokenStore(directory=tmp_path))
    with caplog.at_level(logging.WARNING):
        assert store.load(KEY) is None
        store.save(KEY, TOKEN)
        assert store.load(KEY) == TOKEN
    assert len([r for r in caplog.records if "keyring" in r.getMessage()]) == 1
    assert "RT-secret" not in caplog.text and "AT-secret" not in caplog.text


def test_a_hanging_keyring_is_abandoned(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    backend.hang = 5
    store = KeyringTokenStore(backend=backend, fallback=FileTokenStore(directory=tmp_path), call_timeout=0.2)
    started = time.monotonic()
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    assert time.monotonic() - started < 1.5


def test_windows_size_limit_trims_then_falls_back(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    fallback = FileTokenStore(directory=tmp_path)
    store = KeyringTokenStore(backend=backend, fallback=fallback, max_value_chars=WINDOWS_MAX_CHARS)
    big = Token("A" * 700, expires_at=time.time() + 600, refresh_token="R" * 200, id_token="I" * 900)
    store.save(KEY, big)
    value = backend.values[("flyteauth", KEY)]
    assert len(value) <= WINDOWS_MAX_CHARS and len(value.encode("utf-16-le")) <= 2560
    loaded = store.load(KEY)
    assert loaded is not None and loaded.access_token == big.access_token and loaded.id_token is None
    bigger = Token("A" * 1500, expires_at=time.time() + 600, refresh_token="R" * 200)
    store.save(KEY, bigger)
    loaded = store.load(KEY)  # only the refresh token fits: loads as expired, so it is refreshed first
    assert loaded is not None and loaded.refresh_token == "R" * 200 and loaded.expires_at == 0.0
    huge = Token("A" * 10, refresh_token="R" * 2000)
    store.save(KEY, huge)
    assert ("flyteauth", KEY) not in backend.values and fallback.load(KEY) == huge
    assert store.load(KEY) == huge


# -- the session's default chain ----------------------------------------------------------------------
def _store_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth_type: str, store: str | None = None,
              **fields: Any) -> Any:
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path))
    config = AuthConfig(endpoint="dns:///127.0.0.1:1", auth_type=auth_type, client_id="c", client_secret="s",
                        store=store, **fields)
    with AuthSession(config, interactive=False) as session:
        return session.store


def test_default_store_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(_store_of(monkeypatch, tmp_path, "Pkce"), KeyringTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "DeviceFlow"), KeyringTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "ClientSecret"), MemoryTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "Pkce", disable_keyring=True), FileTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "Pkce", "keyring", disable_keyring=True), FileTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "Pkce", "memory"), MemoryTokenStore)
    assert isinstance(_store_of(monkeypatch, tmp_path, "ClientSecret", "file"), FileTokenStore)
    assert _store_of(monkeypatch, tmp_path, "Pkce", "none") is None


def test_keyring_module_never_imports_keyring_at_import_time() -> None:
    code = ("import sys, flyteauth_providers.keyring_store, flyteauth_providers.file_store; "
            "print('keyring' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
    assert keyring_store.SERVICE == "flyteauth"


def test_disable_keyring_from_a_config_file_selects_the_file_store(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from flyteauth_core import load_config

    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path))
    path = tmp_path / "config.yaml"
    path.write_text("admin:\n  endpoint: dns:///127.0.0.1:1\n  authType: Pkce\n  disableKeyring: true\n")
    with AuthSession(load_config(path), interactive=False) as session:
        assert isinstance(session.store, FileTokenStore)
