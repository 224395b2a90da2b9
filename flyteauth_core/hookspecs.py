"""pluggy hook specifications of the ``flyteauth`` project.

Registration hooks are synchronous and declarative: they call ``register(name, factory, aliases=())``
and do no I/O, so listing plugins is cheap and side-effect free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .events import TokenEvent
    from .protocols import RegisterFn

PROJECT = "flyteauth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
