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
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginConflictError, PluginError, UnknownAuthTypeError
from .options import Option, coerce_options

if TYPE_CHECKING:
    from importlib import metadata as importlib_metadata

log = logging.getLogger("flyteauth.plugins")

ENTRY_POINT_GROUP = "flyteauth"
#: Comma-separated entry-point or distribution names that must not be loaded.
BLOCK_ENV = "FLYTEAUTH_DISABLE_PLUGINS"

KINDS = ("authenticator", "token store", "interceptor", "platform token source")
_HOOKS = {
    "authenticator": "flyteauth_register_authenticators",
    "token store": "flyteauth_register_token_stores",
    "interceptor": "flyteauth_register_interceptors",
    "platform token source": "flyteauth_register_platform_token_sources",
}
#: Methods a factory that is a class must have, per kind (checked at registration).
_REQUIRED_METHODS = {
    "authenticator": ("acquire",),
    "token store": ("load", "save", "delete"),
    "interceptor": ("metadata", "rejected"),
    "platform token source": ("read", "describe"),
}
#: Registration metadata each kind accepts besides name, factory, aliases, replace, options, description.
_KIND_METADATA = {"authenticator": ("default_store", "anonymous"), "token store": (), "interceptor": (),
                  "platform token source": ()}


@attrs.frozen
class Registration:
    """One name registered by a plugin, with what it declared about itself.

    ``default_store``: the store an authenticator wants when the config names none (``keyring`` for
    interactive logins).  ``anonymous``: the authenticator sends no token (NoAuth): no store, no manager.
    ``options``: the config keys the plugin reads (see :mod:`flyteauth_core.options`).  ``replace``: the
    plugin takes over a name another plugin registers.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...]
    plugin: str
    distribution: str
    replace: bool = False
    options: tuple[Option, ...] = ()
    default_store: str | None = None
    anonymous: bool = False
    description: str | None = None

    def label(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({', '.join(self.aliases)})" if self.aliases else "")


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


def _dist_of(ep: importlib_metadata.EntryPoint, cache: dict[int, tuple[Any, str, str]] | None = None,
             ) -> tuple[str, str]:
    """The distribution's name and version.  Parsing METADATA costs about 1 ms each time (an email
    parser), and the entry points of one distribution share one ``dist`` object: ``cache`` (by identity)
    parses it once."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    if cache is not None and (hit := cache.get(id(dist))) is not None and hit[0] is dist:
        return hit[1], hit[2]
    meta = dist.metadata
    name, version = meta.get("Name") or "unknown", meta.get("Version") or "?"
    if cache is not None:
        cache[id(dist)] = (dist, name, version)  # holds dist, so its id is not reused
    return name, version


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise PluginError(f"{what} must be a tuple of names, got the string {value!r}",
                          hint=f"Write {what}=({value!r},)")
    try:
        names = tuple(value)
    except TypeError:
        raise PluginError(f"{what} must be a tuple of names, got {type(value).__name__}") from None
    for item in names:
        if not isinstance(item, str) or not item.strip():
            raise PluginError(f"{what} must be non-empty strings, got {item!r}")
    return names


def build_registration(
    kind: str, plugin: str, distribution: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Registration:
    """Check one ``register(...)`` call and build its Registration, or raise ``PluginError`` saying
    what is wrong.  Accepts the 0.1.0 form ``register(name, factory, aliases=())`` unchanged."""
    accepted = ("name", "factory", "aliases", "replace", "options", "description", *_KIND_METADATA[kind])
    if len(args) > 3:
        raise PluginError(f"register() takes name, factory and aliases positionally, got {len(args)} arguments")
    given = dict(zip(("name", "factory", "aliases"), args, strict=False))
    for key, value in kwargs.items():
        if key in given:
            raise PluginError(f"register() got {key!r} twice")
        given[key] = value
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        others = sorted({k for meta in _KIND_METADATA.values() for k in meta} - set(accepted))
        where = f" (only for {', '.join(k for k, m in _KIND_METADATA.items() if unknown[0] in m)}s)" if (
            unknown[0] in others) else ""
        raise PluginError(f"register() of a {kind} got unknown argument(s) {', '.join(unknown)}{where}",
                          hint=f"A {kind} accepts {', '.join(accepted)}")
    name, factory = given.get("name"), given.get("factory")
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"register() needs a non-empty {kind} name, got {name!r}")
    where = f"{kind} {name!r}"
    if not callable(factory):
        raise PluginError(f"{where}: the factory must be callable (a class or a function taking the config), "
                          f"got {type(factory).__name__}")
    if isinstance(factory, type):
        missing = [m for m in _REQUIRED_METHODS[kind] if not callable(getattr(factory, m, None))]
        if missing:
            needs = ", ".join(_REQUIRED_METHODS[kind])
            raise PluginError(f"{where}: {factory.__name__} has no {', '.join(missing)} method",
                              hint=f"A {kind} implements the protocol in flyteauth_core.protocols ({needs})")
    aliases = _names(given.get("aliases", ()), "aliases")
    replace = given.get("replace", False)
    if not isinstance(replace, bool):
        raise PluginError(f"{where}: replace must be True or False, got {replace!r}")
    try:
        options = coerce_options(given.get("options"))
    except ConfigError as exc:
        raise PluginError(f"{where}: {exc.message}") from None
    description = given.get("description")
    if description is not None and not isinstance(description, str):
        raise PluginError(f"{where}: description must be a string")
    extra: dict[str, Any] = {}
    if kind == "authenticator":
        # 0.1.0 plugins said these as class attributes; still honoured when not registered explicitly.
        default_store = given.get("default_store", getattr(factory, "default_token_store", None))
        if default_store is not None and (not isinstance(default_store, str) or not default_store.strip()):
            raise PluginError(f"{where}: default_store must be a token store name, got {default_store!r}")
        anonymous = given.get("anonymous", getattr(factory, "anonymous", False))
        if not isinstance(anonymous, bool):
            raise PluginError(f"{where}: anonymous must be True or False, got {anonymous!r}")
        extra = {"default_store": default_store, "anonymous": anonymous}
    return Registration(kind, name, factory, aliases, plugin, distribution, replace=replace, options=options,
                        description=description, **extra)


class _ByIdentity:
    """Stands in for an unhashable plugin object (a ``SimpleNamespace``, a dict subclass): pluggy keeps
    plugins in sets when it restricts a hook call to some of them."""

    def __init__(self, plugin: object) -> None:
        self._plugin = plugin
        for name in dir(plugin):  # pluggy finds hooks with getattr_static: copy them onto this object
            if name.startswith(f"{hookspecs.PROJECT}_"):
                setattr(self, name, getattr(plugin, name))

    def __repr__(self) -> str:
        return repr(self._plugin)


def _hashable(plugin: object) -> object:
    try:
        hash(plugin)
    except TypeError:
        return _ByIdentity(plugin)
    return plugin


#: What flyteauth's own entry points register (module -> kind -> lower-case names and aliases; "option":
#: the config keys its registrations declare), so that a lookup imports only the built-in module that
#: provides the name asked for.  Third-party entry points are always all loaded before a lookup (they may
#: replace a built-in name or clash with one), and a name found nowhere that way loads everything before
#: it is called unknown: the table only saves imports, it cannot change an answer.
#: ``tests/test_plugins.py`` checks it against what the modules really register.
BUILTIN_PROVIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "flyteauth_providers.client_credentials": {
        "authenticator": ("clientsecret", "client_credentials", "basic"),
        "option": ("clientkeyid", "allowinsecuretokenendpoint", "platformtokensource", "platformtokenfile",
                   "platformtokenaudience", "platformtokencommand", "platformtokenenvvar", "clientcertfilepath",
                   "idpprofile"),
    },
    "flyteauth_providers.device_flow": {
        "authenticator": ("deviceflow", "device_flow"),
        "option": ("revocationendpoint", "idpprofile", "devicepkce"),
    },
    "flyteauth_providers.external_command": {
        "authenticator": ("externalcommand", "external_process"),
    },
    "flyteauth_providers.file_store": {
        "token store": ("file",),
        "option": ("tokenstorepath", "tokenstorelocktimeout", "discoverycachettl"),
    },
    "flyteauth_providers.keyring_store": {
        "token store": ("keyring",),
    },
    "flyteauth_providers.memory_store": {
        "token store": ("memory",),
    },
    "flyteauth_providers.passthrough": {
        "authenticator": ("passthrough", "noauth", "none", "no_auth", "anonymous"),
    },
    "flyteauth_providers.pkce": {
        "authenticator": ("pkce", "standard"),
        "option": ("revocationendpoint", "idpprofile"),
    },
    "flyteauth_providers.platform_sources": {
        "platform token source": ("file", "github-actions", "github_actions", "github", "command", "env", "auto",
                                  "gcp-metadata", "gcp", "gce", "gke"),
    },
    "flyteauth_providers.proxy_command": {
        "interceptor": ("proxy-authorization",),
        "option": ("proxytokensource", "proxytokenaudience"),
    },
    "flyteauth_providers.redis_store": {
        "token store": ("redis",),
        "option": ("redisurl", "redisencryptionkeyfile", "redisencryptionkey", "redisallowplaintext", "redislockttl",
                   "redistimeout", "rediskeyprefix", "redisfallback", "rediscluster", "redispassword",
                   "tokenstorelocktimeout", "discoverycachettl"),
    },
    "flyteauth_providers.token_exchange": {
        "authenticator": ("tokenexchange", "token_exchange", "urn:ietf:params:oauth:grant-type:token-exchange"),
        "option": ("platformtokensource", "platformtokenfile", "platformtokenaudience", "platformtokencommand",
                   "platformtokenenvvar", "subjecttokentype", "actortokenfile", "actortokentype", "resource",
                   "requestedtokentype", "allowinsecuretokenendpoint", "idpprofile"),
    },
}


class PluginRegistry:
    """Loads the ``flyteauth`` entry points once and resolves names to factories.

    A lookup by name (``authenticator("ClientSecret")``, ``token_store("file")``) loads every third-party
    entry point but only the built-in module that provides that name (:data:`BUILTIN_PROVIDES`); listing
    anything (``names()``, ``plugins()``, ``registrations()``) loads them all.
    """

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
        self._lock = threading.RLock()
        self._loaded = False
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._names: dict[tuple[str, str], list[Registration]] = {}
        #: (kind, lower-case name) -> why that plugin's registration of it failed
        self._failed: dict[tuple[str, str], tuple[str, str]] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        #: Entry points found but not loaded yet (built-in ones a lookup has not needed), by plugin key.
        self._pending: dict[str, importlib_metadata.EntryPoint] | None = None
        self._dists: dict[int, tuple[Any, str, str]] = {}
        self._order: dict[str, int] = {}  # plugin key -> position in the entry-point list

    # -- loading -------------------------------------------------------------------------------
    def _blocked_names(self) -> set[str]:
        if self._blocked is not None:
            return self._blocked
        raw = os.environ.get(BLOCK_ENV, "")
        return {_normalize(n) for n in raw.replace(" ", ",").split(",") if n.strip()}

    def _entry_points(self) -> list[importlib_metadata.EntryPoint]:
        if self._explicit_eps is not None:
            return self._explicit_eps
        from ._entry_points import entry_points  # importlib.metadata's answer, without its import cost

        return entry_points(self._group)

    def _scan(self) -> dict[str, importlib_metadata.EntryPoint]:
        """Read the entry points (once) and give each its plugin key; load the third-party ones now."""
        if self._pending is not None:
            return self._pending
        pending: dict[str, importlib_metadata.EntryPoint] = {}
        third_party: list[str] = []
        for ep in self._entry_points():
            key = ep.name if ep.name not in pending else f"{_dist_of(ep, self._dists)[0]}:{ep.name}"
            pending[key] = ep
            if ep.value not in BUILTIN_PROVIDES:
                third_party.append(key)
        self._order = {key: i for i, key in enumerate(pending)}
        self._pending = pending
        self._load_batch(third_party)
        return pending

    def _load_batch(self, keys: list[str]) -> None:
        pending = self._pending
        assert pending is not None
        if not keys:
            return
        blocked = {_normalize(b) for b in self._blocked_names()}
        loaded = [key for key in keys if self._load_one(key, pending.pop(key), blocked) is not None]
        self._callers.clear()  # a cached subset caller would include the plugins registered since
        self._run_registration_hooks(loaded)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._load_batch(list(self._scan()))
            self._loaded = True

    def _ensure_provides(self, kind: str, name: str | None = None) -> None:
        """Load what a lookup of ``name`` (None: every name) of ``kind`` needs: the third-party plugins and
        the built-in modules that register it."""
        if self._loaded:
            return
        with self._lock:
            pending = self._scan()
            wanted = name.lower() if name is not None else None
            needed = [key for key, ep in pending.items()
                      if (names := BUILTIN_PROVIDES.get(ep.value, {}).get(kind)) is not None
                      and (wanted is None or wanted in names)]
            self._load_batch(needed)

    def _load_one(self, key: str, ep: importlib_metadata.EntryPoint, blocked: set[str]) -> str | None:
        dist, version = _dist_of(ep, self._dists)
        info = PluginInfo(name=ep.name, distribution=dist, version=version, module=ep.value)
        self._plugins[key] = info
        if _normalize(ep.name) in blocked or _normalize(dist) in blocked:
            info.blocked = True
            return None
        try:
            plugin = ep.load()
            self._pm.register(_hashable(plugin), name=key)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.warning("flyteauth plugin %r from %s failed to load: %s", ep.name, dist, info.error)
            return None
        return key

    def register_module(self, plugin: ModuleType | object, key: str, info: PluginInfo | None = None) -> None:
        """Add an in-process plugin (an application's own provider) and run its registration hooks."""
        with self._lock:
            self._scan()  # the third-party plugins; built-in modules stay lazy
            if info is not None:
                self._plugins[key] = info
            self._plugins.setdefault(key, PluginInfo(key, "local", "?", repr(plugin)))
            if self._pm.get_plugin(key) is None:
                self._pm.register(_hashable(plugin), name=key)
            self._callers.clear()
            self._run_registration_hooks([key])

    def _caller(self, hook_name: str, key: str) -> Any:
        """pluggy's hook caller for ``hook_name`` restricted to one plugin (cached): each plugin is called
        through pluggy, in pluggy's order, with its failure kept to itself."""
        caller = self._callers.get((hook_name, key))
        if caller is None:
            others = [p for name, p in self._pm.list_name_plugin() if name != key]
            caller = self._callers[(hook_name, key)] = self._pm.subset_hook_caller(hook_name, others)
        return caller

    def _call_order(self, hook_name: str, keys: Iterable[str] | None = None) -> list[str]:
        """Plugin names in the order pluggy calls ``hook_name`` (tryfirst first, trylast last)."""
        impls = reversed(getattr(self._pm.hook, hook_name).get_hookimpls())
        wanted = None if keys is None else set(keys)
        return [i.plugin_name for i in impls if wanted is None or i.plugin_name in wanted]

    def _run_registration_hooks(self, keys: list[str]) -> None:
        for kind in KINDS:
            hook_name = _HOOKS[kind]
            for key in self._call_order(hook_name, keys):
                self._register_from(kind, hook_name, key)

    def _register_from(self, kind: str, hook_name: str, key: str) -> None:
        info = self._plugins[key]

        def register(*args: Any, **kwargs: Any) -> None:
            try:
                reg = build_registration(kind, key, info.distribution, args, kwargs)
            except PluginError as exc:
                name = args[0] if args else kwargs.get("name")
                if isinstance(name, str) and name.strip():
                    self._failed.setdefault((kind, name.lower()),
                                            (name, f"plugin {key!r} ({info.distribution}): {exc}"))
                raise
            for label in (reg.name, *reg.aliases):
                self._names.setdefault((kind, label.lower()), []).append(reg)
            info.registered.append(reg.label())

        try:
            self._caller(hook_name, key)(register=register)
        except Exception as exc:
            what = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            error = f"{hook_name} failed: {what}"
            info.error = error if info.error is None else f"{info.error}; {error}"
            log.warning("flyteauth plugin %r: %s", key, error)

    # -- lookup --------------------------------------------------------------------------------
    def _replacements(self) -> dict[tuple[str, str, str], Registration]:
        """(kind, plugin, name) of each registration taken over by a ``replace=True`` one -> the taker.

        Replacing a name takes over the whole registration that owned it, aliases included."""
        out: dict[tuple[str, str, str], Registration] = {}
        for (kind, label), regs in self._names.items():
            for taker in regs:
                if not taker.replace or label not in (taker.name.lower(), *(a.lower() for a in taker.aliases)):
                    continue
                for old in regs:
                    if old.plugin != taker.plugin and not old.replace:
                        out[(kind, old.plugin, old.name)] = taker
        return out

    def _resolve(self, kind: str, name: str) -> Registration:
        self._ensure_provides(kind, name)
        regs = self._names.get((kind, name.lower()), [])
        if not regs and not self._loaded:  # not where BUILTIN_PROVIDES says: look everywhere before failing
            self._ensure_loaded()
            regs = self._names.get((kind, name.lower()), [])
        if not regs:
            failed = self._failed.get((kind, name.lower()))
            if failed is not None:
                raise PluginError(f"The {kind} {failed[0]!r} failed to register: {failed[1]}",
                                  hint="Fix or upgrade that plugin; `flyteauth plugins` shows the error")
            raise UnknownAuthTypeError(kind, name, self.names(kind))
        replaced = self._replacements()
        distinct: dict[tuple[str, str], Registration] = {}
        for r in regs:
            winner = replaced.get((kind, r.plugin, r.name), r)
            distinct[(winner.plugin, winner.name)] = winner
        if len(distinct) == 1:
            return next(iter(distinct.values()))
        replacing = {key: r for key, r in distinct.items() if r.replace}
        if len(replacing) == 1:
            return next(iter(replacing.values()))
        who = " and ".join(f"{r.name!r} from {r.distribution} (entry point {r.plugin})" for r in distinct.values())
        hint = f"Uninstall one, or block one with {BLOCK_ENV}=<distribution name>"
        if not replacing:
            hint += "; a plugin meant to take over a name registers it with replace=True"
        raise PluginConflictError(f"Two plugins claim the {kind} name {name!r}: {who}", hint=hint)

    def authenticator(self, name: str) -> Registration:
        return self._resolve("authenticator", name)

    def token_store(self, name: str) -> Registration:
        return self._resolve("token store", name)

    def platform_token_source(self, name: str) -> Registration:
        return self._resolve("platform token source", name)

    def interceptors(self) -> list[Registration]:
        """Extra interceptors, in pluggy's call order of their plugins (``tryfirst`` first)."""
        self._ensure_provides("interceptor")
        order = {key: i for i, key in enumerate(self._call_order(_HOOKS["interceptor"]))}
        seen: dict[tuple[str, str], Registration] = {}
        for (kind, _), regs in self._names.items():
            if kind == "interceptor":
                for r in regs:
                    seen[(r.plugin, r.name)] = r
        return sorted(seen.values(), key=lambda r: order.get(r.plugin, len(order)))

    def replaced(self, registration: Registration) -> list[Registration]:
        """What a ``replace=True`` registration takes over (for ``flyteauth plugins``)."""
        self._ensure_loaded()
        if not registration.replace:
            return []
        found: dict[tuple[str, str], Registration] = {}
        for (kind, plugin, name), taker in self._replacements().items():
            if taker is registration:
                found[(plugin, name)] = next(r for r in self._names[(kind, name.lower())] if r.plugin == plugin)
        return list(found.values())

    def names(self, kind: str = "authenticator") -> list[str]:
        """Canonical names of a kind, sorted."""
        self._ensure_loaded()
        return sorted({r.name for (k, _), regs in self._names.items() if k == kind for r in regs})

    def registrations(self, kind: str | None = None, plugin: str | None = None) -> list[Registration]:
        """Every registration (of one kind, by one plugin), each once."""
        self._ensure_loaded()
        return self._registered(kind, plugin)

    def _registered(self, kind: str | None = None, plugin: str | None = None) -> list[Registration]:
        """The registrations of the plugins loaded so far."""
        seen: dict[tuple[str, str, str], Registration] = {}
        for (k, _), regs in self._names.items():
            if kind is None or k == kind:
                for r in regs:
                    if plugin is None or r.plugin == plugin:
                        seen[(r.kind, r.plugin, r.name)] = r
        return list(seen.values())

    def declared_options(self, keys: Iterable[str] | None = None) -> dict[str, list[tuple[Option, Registration]]]:
        """Config keys declared by plugins: key -> [(its Option, who declared it)].

        ``keys``: the keys a config holds; then only the plugins that may declare them are loaded (every
        third-party one, the built-in ones that do), and the answer covers those plugins' keys."""
        if keys is None:
            self._ensure_loaded()
        else:
            for key in keys:
                self._ensure_provides("option", key)
        out: dict[str, list[tuple[Option, Registration]]] = {}
        for reg in self._registered():
            for option in reg.options:
                out.setdefault(option.key, []).append((option, reg))
        return out

    def plugins(self) -> list[PluginInfo]:
        """Every entry point (and in-process plugin) in the order they were found."""
        self._ensure_loaded()
        last = len(self._order)
        keys = sorted(self._plugins, key=lambda k: self._order.get(k, last))  # stable: local ones keep theirs
        return [self._plugins[k] for k in keys]

    @property
    def hook(self) -> Any:
        self._ensure_loaded()
        return self._pm.hook

    def emit(self, event: Any) -> None:
        """Hand a lifecycle event to every ``flyteauth_token_event`` implementation; never raises.

        Each plugin is called through pluggy's hook caller (so ``tryfirst``/``trylast`` order them), one
        at a time, so one failing observer does not hide events from the others.  No built-in module
        observes events, so this loads only the third-party plugins.
        """
        self._ensure_provides("token event")
        for key in self._call_order("flyteauth_token_event"):
            try:
                self._caller("flyteauth_token_event", key)(event=event)
            except Exception:
                log.warning("a flyteauth_token_event hook (plugin %r) failed", key, exc_info=True)


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
