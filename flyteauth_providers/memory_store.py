"""``memory``: a per-session, in-process token store (the default when none is configured)."""

from __future__ import annotations

import threading
from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.token import Token


class MemoryTokenStore:
    """Keeps tokens in a dict; nothing survives the process."""

    #: Nothing is kept beyond the process: ``flyteauth login``/``status``/``logout`` say so instead of
    #: pretending to store a login (a store without this attribute is taken as persistent).
    persistent = False

    def __init__(self, config: AuthConfig | None = None) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def delete(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def describe(self) -> str:
        return "memory (this process only; nothing is kept)"


@hookimpl
def flyteauth_register_token_stores(register: Any) -> None:
    register("memory", MemoryTokenStore)
