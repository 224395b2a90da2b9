"""The three contracts that plugins implement: Authenticator, TokenStore, Interceptor.

They are ``typing.Protocol``s: a plugin needs no base class and no import of ours beyond what it
chooses to use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .config import AuthConfig
    from .lifecycle import AcquireRequest
    from .token import Token

#: gRPC metadata (and HTTP headers) as the transports send them: a tuple of (key, value) pairs.
Metadata = tuple[tuple[str, str], ...]


@runtime_checkable
class Authenticator(Protocol):
    """Obtains tokens for one auth type.

    ``acquire`` is synchronous and may block (network, browser, subprocess); the core calls it from
    exactly one thread at a time per session (single-flight) and never on an event loop.  It receives
    the previous token (with its refresh token, if any) in ``request.previous``.
    """

    def acquire(self, request: AcquireRequest) -> Token: ...


@runtime_checkable
class TokenStore(Protocol):
    """Persists tokens between processes.  Keys are opaque strings built by the core.

    A store may raise on any operation; the core reports it once and carries on in memory.
    """

    def load(self, key: str) -> Token | None: ...

    def save(self, key: str, token: Token) -> None: ...

    def delete(self, key: str) -> None: ...


@runtime_checkable
class DiscoveryCache(Protocol):
    """Optional store capability: keep AuthMetadataService results for other processes (with a TTL).

    A store that has these two methods (and ideally ``lock(key)``) shares discovery; see
    ``flyteauth_core.discovery_cache``.  ``data`` is a JSON-able dict; nothing in it is secret.
    """

    def load_discovery(self, key: str) -> Mapping[str, Any] | None: ...

    def save_discovery(self, key: str, data: Mapping[str, Any], ttl: float) -> None: ...


@runtime_checkable
class Interceptor(Protocol):
    """Transport-independent logic that adds metadata to outgoing calls.

    The grpc, grpc.aio and httpx2 adapters call ``metadata()`` (or ``metadata_async()``) before each
    call and ``rejected(sent)`` when the server answers UNAUTHENTICATED (or HTTP 401) to a call that
    carried ``sent``; a true result means a retry may succeed.
    """

    def metadata(self) -> Metadata: ...

    async def metadata_async(self) -> Metadata: ...

    def rejected(self, sent: Metadata) -> bool: ...


#: A factory that builds an authenticator from the resolved config (the class itself, usually).
AuthenticatorFactory = Callable[["AuthConfig"], Authenticator]
#: A factory that builds a token store from the resolved config.
TokenStoreFactory = Callable[["AuthConfig"], TokenStore]
#: A factory for an extra interceptor; returning ``None`` means "not configured, skip me".
InterceptorFactory = Callable[["AuthConfig"], "Interceptor | None"]
RegisterFn = Callable[..., Any]
