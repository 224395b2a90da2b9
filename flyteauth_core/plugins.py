"""The plugin registry: finds providers, stores and interceptors through the ``flyteauth`` entry points.

Built-in providers are found the same way as third-party ones.  Unlike pluggy's
``load_setuptools_entrypoints``, one plugin that fails to import is recorded and skipped instead of
aborting the whole load, and two plugins claiming one name are reported naming both distributions.
Loading is lazy (first lookup) and happens once per registry.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from importlib import metadata as importlib_metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginConflictError, UnknownAuthTypeError

log = logging.getLogger("flyteauth.plugins")

ENTRY_POINT_GROUP = "flyteauth"
#: Comma-separated entry-point or distribution names that must not be loaded.
BLOCK_ENV = "FLYTEAUTH_DISABLE_PLUGINS"

KINDS = ("authenticator", "token store", "interceptor", "platform token source")


@attrs.frozen
class Registration:
    """One name registered by a plugin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...]
    plugin: str
    distribution: str


@attrs.define
class PluginInfo:
    """What ``flyteauth plugins`` shows about one entry point."""

    name: str
    distribution: str
    version: str
    module: str
    registered: list[str] = attrs.field(factory=list)
    error: str | None = None
    blocked: bool = False


def _normalize(name: str) -> str:
    """PEP 503 normalisation, so ``acme_flyteauth`` blocks the distribution ``acme-flyteauth``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _dist_of(ep: importlib_metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    return dist.metadata["Name"] or "unknown", dist.version or "?"


class PluginRegistry:
    """Loads the ``flyteauth`` entry points once and resolves names to factories."""

    def __init__(
        self,
        group: str = ENTRY_POINT_GROUP,
        *,
        entry_points: Iterable[importlib_metadata.EntryPoint] | None = None,
        blocked: Iterable[str] | None = None,
    ) -> None:
        self._group = group
        self._explicit_eps = list(entry_points) if entry_points is not None else None
        self._blocked = set(blocked) if blocked is not None else None
        self._lock = threading.Lock()
        self._loaded = False
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._names: dict[tuple[str, str], list[Registration]] = {}

    # -- loading -------------------------------------------------------------------------------
    def _blocked_names(self) -> set[str]:
        if self._blocked is not None:
            return self._blocked
        raw = os.environ.get(BLOCK_ENV, "")
        return {_normalize(n) for n in raw.replace(" ", ",").split(",") if n.strip()}

    def _entry_points(self) -> list[importlib_metadata.EntryPoint]:
        if self._explicit_eps is not None:
            return self._explicit_eps
        return list(importlib_metadata.entry_points(group=self._group))

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            blocked = {_normalize(b) for b in self._blocked_names()}
            for ep in self._entry_points():
                self._load_one(ep, blocked)
            self._loaded = True

    def _load_one(self, ep: importlib_metadata.EntryPoint, blocked: set[str]) -> None:
        dist, version = _dist_of(ep)
        key = ep.name if ep.name not in self._plugins else f"{dist}:{ep.name}"
        info = PluginInfo(name=ep.name, distribution=dist, version=version, module=ep.value)
        self._plugins[key] = info
        if _normalize(ep.name) in blocked or _normalize(dist) in blocked:
            info.blocked = True
            return
        try:
            plugin = ep.load()
            self._pm.register(plugin, name=key)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.warning("flyteauth plugin %r from %s failed to load: %s", ep.name, dist, info.error)
            return
        self.register_module(plugin, key, info)

    def register_module(self, plugin: ModuleType | object, key: str, info: PluginInfo | None = None) -> None:
        """Run one plugin's registration hooks, attributing what it registers to it."""
        info = info or self._plugins.setdefault(key, PluginInfo(key, "local", "?", repr(plugin)))
        if self._pm.get_plugin(key) is None:
            self._pm.register(plugin, name=key)
        hooks = (
            ("authenticator", "flyteauth_register_authenticators"),
            ("token store", "flyteauth_register_token_stores"),
            ("interceptor", "flyteauth_register_interceptors"),
            ("platform token source", "flyteauth_register_platform_token_sources"),
        )
        for kind, hook_name in hooks:
            function = getattr(plugin, hook_name, None)
            if function is None:
                continue

            def register(
                name: str, factory: Callable[..., Any], aliases: Iterable[str] = (), *, _kind: str = kind
            ) -> None:
                reg = Registration(_kind, name, factory, tuple(aliases), key, info.distribution)
                for label in (name, *reg.aliases):
                    self._names.setdefault((_kind, label.lower()), []).append(reg)
                info.registered.append(f"{_kind} {name}" + (f" ({', '.join(reg.aliases)})" if reg.aliases else ""))

            try:
                function(register=register)
            except Exception as exc:
                info.error = f"{hook_name} failed: {type(exc).__name__}: {exc}"
                log.warning("flyteauth plugin %r: %s", key, info.error)

    # -- lookup --------------------------------------------------------------------------------
    def _resolve(self, kind: str, name: str) -> Registration:
        self._ensure_loaded()
        regs = self._names.get((kind, name.lower()), [])
        distinct = {(r.plugin, r.name) for r in regs}
        if not regs:
            raise UnknownAuthTypeError(kind, name, self.names(kind))
        if len(distinct) > 1:
            who = " and ".join(f"{r.name!r} from {r.distribution} (entry point {r.plugin})" for r in regs)
            raise PluginConflictError(
                f"Two plugins claim the {kind} name {name!r}: {who}",
                hint=f"Uninstall one, or block one with {BLOCK_ENV}=<distribution name>",
            )
        return regs[0]

    def authenticator(self, name: str) -> Registration:
        return self._resolve("authenticator", name)

    def token_store(self, name: str) -> Registration:
        return self._resolve("token store", name)

    def platform_token_source(self, name: str) -> Registration:
        return self._resolve("platform token source", name)

    def interceptors(self) -> list[Registration]:
        self._ensure_loaded()
        seen: dict[tuple[str, str], Registration] = {}
        for (kind, _), regs in self._names.items():
            if kind == "interceptor":
                for r in regs:
                    seen[(r.plugin, r.name)] = r
        return list(seen.values())

    def names(self, kind: str = "authenticator") -> list[str]:
        """Canonical names of a kind, sorted."""
        self._ensure_loaded()
        return sorted({r.name for (k, _), regs in self._names.items() if k == kind for r in regs})

    def plugins(self) -> list[PluginInfo]:
        self._ensure_loaded()
        return list(self._plugins.values())

    @property
    def hook(self) -> Any:
        self._ensure_loaded()
        return self._pm.hook

    def emit(self, event: Any) -> None:
        """Hand a lifecycle event to every ``flyteauth_token_event`` implementation; never raises.

        Each implementation is called on its own (pluggy would stop at the first exception), so one
        failing observer does not hide events from the others.
        """
        kwargs = {"event": event}
        for impl in reversed(self.hook.flyteauth_token_event.get_hookimpls()):
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                log.warning("a flyteauth_token_event hook (plugin %r) failed", impl.plugin_name, exc_info=True)


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> PluginRegistry:
    """The process-wide registry (the one piece of global state we keep: what is installed)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PluginRegistry()
    return _default
