"""Keyring at the edges (issue 9, item 3, and the backend-choice minor).

Process A's keyring save times out (an unlock prompt), so its new token goes to the file fallback while
the keyring keeps the old one; process B, whose keyring works, must not read the old (rotated, revoked)
refresh token from the keyring.  And choosing a backend never blocks session construction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.token import Token
from flyteauth_providers import keyring_store
from flyteauth_providers.file_store import FileTokenStore
from flyteauth_providers.keyring_store import SERVICE, KeyringTokenStore

KEY = "flyteauth:dns:///flyte.example:pkce:0123"


class SharedKeyring:
    """One OS keyring, as several processes see it: a dict.  ``hang_on_set`` makes set_password block
    (an unlock prompt nobody answers) in this process's view."""

    def __init__(self, entries: dict[tuple[str, str], str], *, hang_on_set: bool = False) -> None:
        self.entries = entries
        self.hang_on_set = hang_on_set
        self.release = threading.Event()

    def get_password(self, service: str, user: str) -> str | None:
        return self.entries.get((service, user))

    def set_password(self, service: str, user: str, value: str) -> None:
        if self.hang_on_set:
            self.release.wait(30)
            return  # the prompt was dismissed: nothing written
        self.entries[(service, user)] = value

    def delete_password(self, service: str, user: str) -> None:
        self.entries.pop((service, user), None)


@pytest.fixture
def hung() -> Iterator[list[SharedKeyring]]:
    backends: list[SharedKeyring] = []
    yield backends
    for backend in backends:
        backend.release.set()


def test_a_newer_fallback_copy_wins_over_an_old_keyring_entry(tmp_path: Path, hung: list[SharedKeyring]) -> None:
    entries: dict[tuple[str, str], str] = {}
    old = Token("access-1", expires_at=time.time() + 60, refresh_token="refresh-1")
    new = Token("access-2", expires_at=time.time() + 3600, refresh_token="refresh-2")

    # Both processes share the keyring and the fallback directory; the old token is in the keyring.
    KeyringTokenStore(backend=SharedKeyring(entries), fallback=FileTokenStore(directory=tmp_path)).save(KEY, old)

    # Process A refreshes; its keyring hangs on set, so the new token lands in the file fallback.
    slow = SharedKeyring(entries, hang_on_set=True)
    hung.append(slow)
    a = KeyringTokenStore(backend=slow, fallback=FileTokenStore(directory=tmp_path), call_timeout=0.2)
    a.save(KEY, new)
    assert a.backend is None  # A stopped using its keyring

    # Process B's keyring works: it must see the newer copy, and the stale entry must not survive.
    b = KeyringTokenStore(backend=SharedKeyring(entries), fallback=FileTokenStore(directory=tmp_path))
    loaded = b.load(KEY)
    assert loaded is not None and loaded.refresh_token == "refresh-2"  # 0.1.0: refresh-1 (revokes the grant)
    assert (SERVICE, KEY) not in entries
    assert b.load(KEY) == loaded

    # B's next save goes to the keyring and removes the fallback copy: one copy again.
    newest = Token("access-3", expires_at=time.time() + 7200, refresh_token="refresh-3")
    b.save(KEY, newest)
    assert b.load(KEY) == newest and FileTokenStore(directory=tmp_path).load(KEY) is None


def test_an_older_fallback_copy_is_cleared(tmp_path: Path) -> None:
    entries: dict[tuple[str, str], str] = {}
    fallback = FileTokenStore(directory=tmp_path)
    fallback.save(KEY, Token("old", expires_at=time.time() + 10, refresh_token="r-old"))
    store = KeyringTokenStore(backend=SharedKeyring(entries), fallback=fallback)
    entries[(SERVICE, KEY)] = store._encode(Token("new", expires_at=time.time() + 3600, refresh_token="r-new")) or ""
    loaded = store.load(KEY)
    assert loaded is not None and loaded.access_token == "new"
    assert fallback.load(KEY) is None


def test_choosing_a_backend_does_not_block_construction(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = threading.Event()

    def stuck() -> tuple[Any, str]:
        release.wait(30)  # a D-Bus probe that never answers
        return None, "never"

    monkeypatch.setattr(keyring_store, "choose_backend", stuck)
    try:
        started = time.monotonic()
        store = KeyringTokenStore(fallback=FileTokenStore(directory=tmp_path), call_timeout=1.0)
        # 0.1.0: blocks here, with no bound (30 s); a construction bounded by call_timeout would take 1 s
        assert time.monotonic() - started < 1.0
        token = Token("t", expires_at=time.time() + 60)
        store.save(KEY, token)  # the first use chooses, within call_timeout, then falls back
        assert time.monotonic() - started < 5
        assert store.load(KEY) == token and "took more than" in store.describe()
    finally:
        release.set()
