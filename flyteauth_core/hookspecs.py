"""pluggy hook specifications of the ``flyteauth`` project.

Registration hooks are synchronous and declarative: they call ``register(...)`` and do no I/O, so
listing plugins is cheap and side-effect free.  Every hook is called through pluggy's hook caller, so
``@hookimpl(tryfirst=True)`` / ``trylast=True`` order plugins as pluggy documents (for extra
interceptors, the order their metadata is added).

``register(name, factory, aliases=(), *, replace=False, options=(), description=None, **metadata)``:

* ``name``/``aliases``: matched case-insensitively against ``authType`` or ``tokenStore``;
* ``replace=True``: take over a name that another plugin (a built-in, usually) registers; without it, two
  plugins claiming one name is an error naming both;
* ``options``: the plugin's own config keys (``flyteauth_core.options.Option``), so ``flyteauth config``
  validates them and never calls them unknown;
* authenticators only: ``default_store="keyring"`` (the store used when the config names none) and
  ``anonymous=True`` (sends no token: no store, no token manager).

A malformed call raises ``PluginError`` at load; ``flyteauth plugins`` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .events import TokenEvent

PROJECT = "flyteauth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The ``register`` callback handed to the registration hooks (see the module docstring).
RegisterFn = Callable[..., Any]


@hookspec
def flyteauth_register_authenticators(register: RegisterFn) -> None:
    """Register authenticator factories: ``register("Acme", AcmeAuthenticator, aliases=("acme",))``."""


@hookspec
def flyteauth_register_token_stores(register: RegisterFn) -> None:
    """Register token store factories: ``register("file", FileStore, aliases=())``."""


@hookspec
def flyteauth_register_interceptors(register: RegisterFn) -> None:
    """Register extra interceptor factories (e.g. proxy authorization); a factory may return None."""


@hookspec
def flyteauth_register_platform_token_sources(register: RegisterFn) -> None:
    """Register platform token sources (workload identity): ``register("file", FileSource, aliases=())``.

    A factory takes the ``AuthConfig`` and returns an object with ``read(request) -> str`` (the platform's
    signed identity token) and ``describe() -> str`` (where it came from, never the token).
    """


@hookspec
def flyteauth_token_event(event: TokenEvent) -> None:
    """Observe the token lifecycle (acquired, refreshed, failed, invalidated) for metrics and audit.

    The event never contains a secret.  Exceptions raised here are logged and ignored.
    """
