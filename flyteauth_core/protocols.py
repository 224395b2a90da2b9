"""The contracts that plugins implement: Authenticator, TokenStore, Interceptor, and the optional
capabilities each may add.

They are ``typing.Protocol``s: a plugin needs no base class and no import of ours beyond what it chooses
to use.  A capability is used only when the object has it, and every one the core looks for is listed
here (the core checks ``isinstance(obj, Revocable)`` and so on, never an undocumented ``getattr``).
What is known before an object exists (which store a provider wants, whether it sends a token at all,
its own config keys) is registration metadata instead: see ``register(...)`` in ``docs/plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .hookspecs import RegisterFn
from .types import AcquireRequest, Metadata, Token

if TYPE_CHECKING:
    from .config import AuthConfig

__all__ = [
    "Accepting",
    "Authenticator",
    "AuthenticatorFactory",
    "Closeable",
    "Describable",
    "DiscoveryCache",
    "IdentitySource",
    "IdpHeaderSource",
    "Interceptor",
    "InterceptorFactory",
    "LockingTokenStore",
    "Metadata",
    "RegisterFn",
    "Revocable",
    "TokenStore",
    "TokenStoreFactory",
]


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
class Interceptor(Protocol):
    """Transport-independent logic that adds metadata to outgoing calls.

    The grpc, grpc.aio, Connect and httpx2 drivers call ``metadata(timeout)`` (or
    ``metadata_async(timeout)``) before each call and ``rejected(sent)`` when the server answers
    UNAUTHENTICATED (or HTTP 401) to a call that carried ``sent``; a true result means a retry may succeed.
    ``timeout`` is what is left of the caller's deadline (None: the call has none): an interceptor that
    has to wait (for a token) waits no longer, and raises ``TokenDeadlineError`` when it runs out.  An
    extra interceptor registered by a plugin may leave the parameter out; the session then calls it
    without one.
    """

    def metadata(self, timeout: float | None = None) -> Metadata: ...

    async def metadata_async(self, timeout: float | None = None) -> Metadata: ...

    def rejected(self, sent: Metadata) -> bool: ...


# -- optional capabilities ---------------------------------------------------------------------------
@runtime_checkable
class NoWait(Protocol):
    """An interceptor that can hand over its metadata at once when nothing needs to be waited for.

    ``metadata_nowait()`` returns what ``metadata_async()`` would return without awaiting anything, or
    None when the caller must await ``metadata_async()`` (no token yet, or one due for a refresh).  The
    grpc.aio wrapper uses it to start an accepted call without a coroutine of its own per call; an
    interceptor without it is simply awaited.
    """

    def metadata_nowait(self) -> Metadata | None: ...


@runtime_checkable
class Accepting(Protocol):
    """An interceptor that wants to know when a replacement token worked.

    After a rejection and a retry, the transports call ``accepted(sent)`` when the retried attempt,
    which carried ``sent``, succeeded.  Only on that path: an accepted first attempt says nothing
    (the hot path stays a metadata read).  ``TokenManager`` uses it to end its chain of rejections, so
    a server that revokes tokens now and then is told apart from one that rejects every token.
    """

    def accepted(self, sent: Metadata) -> None: ...


@runtime_checkable
class Revocable(Protocol):
    """An authenticator that can revoke a token at the IdP (``flyteauth logout``).

    ``request.reason`` is ``logout``; ``token`` is the stored token.  Returns True when the IdP confirmed
    the revocation, False when it has no revocation endpoint.  Best effort: the session logs a failure
    and forgets the token anyway.
    """

    def revoke(self, request: AcquireRequest, token: Token) -> bool: ...


@runtime_checkable
class Closeable(Protocol):
    """An authenticator, store or interceptor holding resources (clients, sockets, subprocesses) that
    the session releases in ``AuthSession.close()``."""

    def close(self) -> None: ...


@runtime_checkable
class LockingTokenStore(TokenStore, Protocol):
    """A store shared between processes that can serialize refreshes: while one process holds
    ``lock(key)`` and refreshes, the others wait and then read its token from the store (one IdP request
    for a fleet).  The context manager raises ``TokenStoreError`` if the lock is not obtained in time.

    A lock that can be lost or given up on (a lease in a remote store) yields an object with
    ``exclusive() -> bool`` (held right now, asked of the store) and ``acquire_exclusive() -> bool`` (wait
    for the lock itself): the manager sends a refresh token, which may rotate, only when ``exclusive()`` says
    so (the redis store's ``FleetHold``).  A lock that yields anything else counts as exclusive once entered."""

    def lock(self, key: str) -> AbstractContextManager[object]: ...


@runtime_checkable
class Describable(Protocol):
    """A store (or other plugin object) that can say where it keeps things, for ``flyteauth status``.

    The description must not contain a secret (a Redis URL's password, for example, is masked)."""

    def describe(self) -> str: ...


@runtime_checkable
class IdpHeaderSource(Protocol):
    """An extra interceptor whose metadata the IdP needs too (for example a proxy-authorization header
    when the IdP sits behind the same proxy).  ``send_to_idp`` is read once, when the session is built."""

    send_to_idp: bool

    def metadata(self) -> Metadata: ...


@runtime_checkable
class IdentitySource(Protocol):
    """An authenticator that adds to its credential's identity what the config alone does not say.

    The core builds a :class:`~flyteauth_core.identity.CredentialIdentity` from the config (endpoint, token
    endpoint, auth type, client id and method, scopes, audience) and adds these parts; every store, the
    discovery cache and ``flyteauth token`` key on the result, so two callers share a cached token only
    when everything that decides whose token it is agrees.  Contribute whatever else does: the claims of
    a platform or actor token (``iss``/``sub``/``aud``, which survive rotation, never the token), the
    ``resource``, the OS user and host of a person's login (``identity.os_user()``: ``name@host``).
    Values are short strings, never a token or secret (use a digest).  Read anything outside the config
    (a file, an env var, a command's output) through ``flyteauth_core.identity.observe`` so the
    credential helper can check it again on its warm path.  Called on every store access (off the hot
    path): keep it local and cheap.
    """

    def identity_parts(self, request: AcquireRequest) -> Mapping[str, str]: ...


@runtime_checkable
class DiscoveryCache(Protocol):
    """A store that keeps AuthMetadataService results for other processes (with a TTL).

    A store that has these two methods (and ideally ``lock(key)``) shares discovery; see
    ``flyteauth_core.discovery_cache``.  ``data`` is a JSON-able dict; nothing in it is secret, but it names
    the token endpoint, where clients send their secrets.  So ``load_discovery`` must return only a record
    it can vouch for: one it authenticated (the encrypted Redis store: Fernet's HMAC) or one from a place
    that passes the same ownership and permission checks as its tokens (the file store's private
    directory).  A store that cannot (plaintext Redis) returns None and saves nothing, or uses a local
    store that can.
    """

    def load_discovery(self, key: str) -> Mapping[str, Any] | None: ...

    def save_discovery(self, key: str, data: Mapping[str, Any], ttl: float) -> None: ...


#: A factory that builds an authenticator from the resolved config (the class itself, usually).
AuthenticatorFactory = Callable[["AuthConfig"], Authenticator]
#: A factory that builds a token store from the resolved config.
TokenStoreFactory = Callable[["AuthConfig"], TokenStore]
#: A factory for an extra interceptor; returning ``None`` means "not configured, skip me".
InterceptorFactory = Callable[["AuthConfig"], "Interceptor | None"]
