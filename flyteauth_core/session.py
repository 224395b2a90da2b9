"""AuthSession: the facade that wires config -> provider -> token manager -> transports.

A session owns its manager, store, discovery cache, gRPC channel and HTTP settings; nothing is shared
between sessions except the (read-only after load) plugin registry.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .config import AuthConfig
from .discovery import DEFAULT_METADATA_KEY, Discovery, ServerAuthInfo
from .discovery_cache import shared_fill
from .errors import DiscoveryError
from .events import TokenEvent
from .http import HttpClientFactory, RetryPolicy
from .identity import CredentialIdentity
from .lifecycle import EXPIRING, REPLAY, AcquireRequest, ManagerStats, TokenManager
from .plugins import PluginRegistry, default_registry
from .protocols import Accepting, Closeable, IdentitySource, IdpHeaderSource, NoWait, Revocable
from .token import RefreshPolicy, Token
from .types import AcquireReason

if TYPE_CHECKING:
    import grpc
    from grpc import aio

    from .protocols import Authenticator, Interceptor, Metadata, TokenStore

log = logging.getLogger("flyteauth.session")

#: Force interactive logins on (``1``) or off (``0``); by default only with a TTY and outside CI.
INTERACTIVE_ENV = "FLYTEAUTH_INTERACTIVE"


def interactive_default() -> bool:
    """Interactive flows may start only in a terminal and outside CI, unless forced by env."""
    forced = os.environ.get(INTERACTIVE_ENV)
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes", "on")
    ci = os.environ.get("CI", "").strip().lower()
    if ci and ci not in ("0", "false", "no", "off"):
        return False
    return bool(getattr(sys.stdin, "isatty", lambda: False)())


def store_key(config: AuthConfig, auth_type: str) -> str:
    """The store key of the identity the config alone describes (no provider parts).

    Kept for callers of 0.2.0; a session's own key is ``session.identity().store_key``, which adds what
    the provider contributes (a platform token's ``iss``/``sub``/``aud``, the OS user of a login).
    """
    return CredentialIdentity.build(config, auth_type).store_key


def _refused(config: AuthConfig, anonymous: bool) -> bool:
    from .trust import refusal

    return refusal(config, anonymous=anonymous) is not None


def _takes_timeout(part: Interceptor) -> bool:
    """Whether an interceptor's ``metadata`` accepts the caller's deadline (ours do; a plugin's extra
    interceptor written before 0.3.0 may not)."""
    if isinstance(part, TokenManager):
        return True
    try:
        params = inspect.signature(part.metadata).parameters
    except (TypeError, ValueError):
        return False
    return "timeout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _Composite:
    """The token interceptor followed by extra interceptors (proxy authorization, ...).

    The caller's deadline bounds them together: each part that may wait gets what the parts before it
    left."""

    def __init__(self, parts: list[Interceptor]) -> None:
        self._parts = parts
        self._timed = [_takes_timeout(part) for part in parts]
        # The keys each part last sent, so a rejection is handed back to the part that sent each pair
        # without asking any part for fresh metadata (which could block).
        self._keys: list[frozenset[str]] = [frozenset() for _ in parts]
        self._nowaits = [p.metadata_nowait if isinstance(p, NoWait) else None for p in parts]

    def _record(self, index: int, metadata: Metadata) -> Metadata:
        self._keys[index] = frozenset(k for k, _ in metadata)
        return metadata

    def metadata(self, timeout: float | None = None) -> Metadata:
        if timeout is None:
            return tuple(pair for i, part in enumerate(self._parts) for pair in self._record(i, part.metadata()))
        deadline = time.monotonic() + timeout
        out: list[tuple[str, str]] = []
        for i, part in enumerate(self._parts):
            got = part.metadata(deadline - time.monotonic()) if self._timed[i] else part.metadata()
            out.extend(self._record(i, got))
        return tuple(out)

    async def metadata_async(self, timeout: float | None = None) -> Metadata:
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[tuple[str, str]] = []
        for i, part in enumerate(self._parts):
            if deadline is not None and self._timed[i]:
                got = await part.metadata_async(deadline - time.monotonic())
            else:
                got = await part.metadata_async()
            out.extend(self._record(i, got))
        return tuple(out)

    def metadata_nowait(self) -> Metadata | None:
        """Every part's metadata when each can give it at once (``NoWait``), else None."""
        out: list[tuple[str, str]] = []
        for i, nowait in enumerate(self._nowaits):
            metadata = nowait() if nowait is not None else None
            if metadata is None:
                return None
            out.extend(self._record(i, metadata))
        return tuple(out)

    def rejected(self, sent: Metadata) -> bool:
        retry = False
        for part, keys in zip(self._parts, self._keys, strict=True):
            retry = part.rejected(tuple(p for p in sent if p[0] in keys)) or retry
        return retry

    def accepted(self, sent: Metadata) -> None:
        """A retry succeeded: tell each part that wants to know, with the pairs it sent."""
        for part, keys in zip(self._parts, self._keys, strict=True):
            if isinstance(part, Accepting):
                part.accepted(tuple(p for p in sent if p[0] in keys))


class AuthSession:
    """Authenticates calls to one Flyte endpoint.

    ``store``: a TokenStore, or the name of a registered one (default: the config's ``tokenStore``, else
    the provider's ``default_token_store`` (``keyring`` for Pkce/DeviceFlow), else ``memory``).
    ``interactive``: whether browser/device flows may start during a call (default:
    :func:`interactive_default`).  ``retry``: how IdP calls are retried (default ``RetryPolicy()``: 4
    attempts, backoff up to 8 s, ``Retry-After`` honoured up to 30 s).

    For SDKs that embed flyteauth (``docs/embedding.md``), all optional and none passed through
    ``config.options``:

    * ``authenticator``: a provider instance to use instead of resolving ``config.auth_type`` by name;
    * ``http_client_factory(for_url) -> httpx2.Client`` for every IdP call (return a new client each time:
      providers close it), or ``http_transport_factory() -> httpx2 transport`` to keep our TLS, proxy and
      timeout settings but carry the requests yourself;
    * ``discovery_channel() -> grpc.Channel`` for the AuthMetadataService calls (your channel, your
      interceptors), or ``channel_credentials`` for the session's own secure channel;
    * ``on_event(TokenEvent)``: this session's token events (the plugin hook sees every session's);
    * ``browser_opener(url) -> bool`` and ``device_prompt(code)`` for Pkce and DeviceFlow logins.

    The constructor does no I/O: the provider, store and plugins are resolved on first use, or in a worker
    thread by ``await AuthSession.create(config, ...)``.
    """

    #: Built on first use (or by ``await AuthSession.create(...)``), not in the constructor: resolving them
    #: loads entry points, probes the keyring, may read secret files.  See :meth:`_wire`.
    _WIRED = frozenset({"auth_type", "anonymous", "store", "manager", "interceptor", "_authenticator",
                        "_default_store"})
    auth_type: str
    anonymous: bool
    store: TokenStore | None
    manager: TokenManager
    interceptor: Interceptor

    def __init__(
        self,
        config: AuthConfig,
        *,
        registry: PluginRegistry | None = None,
        store: TokenStore | str | None = None,
        interactive: bool | None = None,
        policy: RefreshPolicy | None = None,
        channel_options: list[tuple[str, Any]] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        authenticator: Authenticator | None = None,
        http_client_factory: Callable[[str | None], Any] | None = None,
        http_transport_factory: Callable[[], Any] | None = None,
        discovery_channel: Callable[[], grpc.Channel] | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        on_event: Callable[[TokenEvent], None] | None = None,
        browser_opener: Callable[[str], bool] | None = None,
        device_prompt: Callable[[Any], None] | None = None,
    ) -> None:
        """Store what the session needs; no I/O here (see the class docstring for the embedding knobs)."""
        self.config = config
        self._retry = retry
        self._registry = registry or default_registry()
        self._store_arg = store
        self._policy = policy
        self._clock = clock
        self._authenticator_arg = authenticator
        self.interactive = interactive_default() if interactive is None else interactive
        self._channel_options = channel_options or []
        self._channel_credentials = channel_credentials
        self._raw_channel: grpc.Channel | None = None
        self._http = HttpClientFactory(config)
        self._http_client: Callable[[str | None], Any] = self._http.client
        if http_client_factory is not None:
            self._http_client = http_client_factory
        elif http_transport_factory is not None:
            self._http_client = lambda url: self._http.client(url, transport=http_transport_factory())
        self._discovery = Discovery(
            discovery_channel or self._raw, endpoint=config.endpoint, http_base_url=config.http_base_url,
            http_client=lambda: self._http_client(None), metadata=self._discovery_metadata,
            rejected=self._discovery_rejected,
        )
        self._header: str | None = config.authorization_header
        self._connect_info: ServerAuthInfo | None = None
        self._extras: list[Interceptor] = []
        self._on_event = on_event
        self._browser_opener = browser_opener
        self._device_prompt = device_prompt
        self._wire_lock = threading.Lock()

    @classmethod
    async def create(cls, config: AuthConfig, **kwargs: Any) -> AuthSession:
        """An AuthSession with its provider, store and plugins resolved in a worker thread, so an async
        SDK's event loop never blocks on entry-point loading, keyring probing or secret-file reads."""
        import asyncio

        session = cls(config, **kwargs)
        await asyncio.to_thread(session._wire)
        return session

    def __getattr__(self, name: str) -> Any:
        # Only reached while an attribute is missing: the wired ones, before the first use.
        if name in AuthSession._WIRED and "_wire_lock" in self.__dict__:
            self._wire()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _wire(self) -> None:
        """Resolve the provider, store and extra interceptors and build the token manager (once)."""
        with self._wire_lock:
            if "interceptor" in self.__dict__:
                return
            self._wire_locked()

    def _wire_locked(self) -> None:
        config = self.config
        # A per-directory config file the user has not trusted (flyteauth_core.trust) gets no provider, no
        # store and no extra interceptors: its first token request fails, before anything runs or is sent.
        untrusted = config.trust is not None and not config.trust.trusted
        if self._authenticator_arg is not None:
            self._authenticator = self._authenticator_arg
            self.auth_type = config.auth_type or type(self._authenticator_arg).__name__
            self.anonymous = False
            self._default_store = None
        else:
            registration = self._registry.authenticator(config.resolved_auth_type)
            self.auth_type = registration.name
            if config.auth_type and config.auth_type != registration.name:
                # Plugins see the registered name whatever the user wrote ("globex", an alias), as events do:
                # `config.auth_type == "Globex"` holds in providers, stores, interceptors and requests.
                config = self.config = attrs.evolve(config, auth_type=registration.name)
            #: Registered with ``anonymous=True`` (NoAuth): sends no token, so no store and no manager use.
            self.anonymous = registration.anonymous
            self._default_store = registration.default_store
        if untrusted and _refused(config, self.anonymous):
            from .trust import Refusing

            self._authenticator, self.anonymous = Refusing(config), False  # an embedder's provider too
        elif self._authenticator_arg is None:
            self._authenticator = registration.factory(config)
        store = None if self.anonymous or untrusted else self._resolve_store(self._store_arg)
        self._discovery.fill = shared_fill(store, config, key=lambda: self.identity().discovery_key)
        policy = self._policy
        if policy is None and config.token_refresh_window is not None:
            policy = RefreshPolicy(window=config.token_refresh_window)
        policy = self._long_enough(policy or RefreshPolicy())
        manager = TokenManager(
            self._acquire,
            header_key=self._header_key,
            store=store,
            store_key=lambda: self.identity().store_key,  # computed at each store access: sources rotate
            policy=policy,
            clock=self._clock,
            on_event=self._emit,
            auth_type=self.auth_type,
            endpoint=config.endpoint,
        )
        extras = [] if untrusted else [e for e in (r.factory(config) for r in self._registry.interceptors())
                                       if e is not None]
        self._extras = extras  # their metadata (proxy-authorization) goes with discovery, the bearer never
        for extra in extras:  # e.g. proxy authorization with proxyAuthForIdP: its header goes to the IdP too
            if isinstance(extra, IdpHeaderSource) and extra.send_to_idp:
                self._http.add_header_source(extra.metadata)
        parts: list[Interceptor] = [*([] if self.anonymous else [manager]), *extras]
        self.store = store
        self.manager = manager
        # A lone extra interceptor (an anonymous session) is wrapped too, so the drivers can always pass the
        # caller's deadline.  Last: marks the session wired.
        self.interceptor = parts[0] if len(parts) == 1 and parts[0] is manager else _Composite(parts)

    # -- wiring -------------------------------------------------------------------------------------
    def _resolve_store(self, store: TokenStore | str | None) -> TokenStore | None:
        """The store: ``store=`` wins, then the config's ``tokenStore``, then the provider's
        ``default_token_store`` (``keyring`` for interactive logins, so they survive the process), else
        ``memory`` (service accounts: a new token is one cheap request, and no bearer token rests on disk).
        ``disableKeyring: true`` turns any ``keyring`` choice into ``file``."""
        if store is not None and not isinstance(store, str):
            return store
        name = store or self.config.store or self._default_store or "memory"
        if name.lower() in ("none", "off"):
            return None
        if name.lower() == "keyring" and self.config.disable_keyring:
            name = "file"
        return self._registry.token_store(name).factory(self.config)  # type: ignore[no-any-return]

    def _request(self, previous: Token | None, reason: str) -> AcquireRequest:
        return AcquireRequest(
            config=self.config,
            previous=previous,
            reason=reason,
            interactive=self.interactive,
            server_info_fn=self._server_info,
            http_client_fn=self._http_client,
            retry=self._retry,
            browser_opener=self._browser_opener,
            device_prompt=self._device_prompt,
        )

    def _acquire(self, previous: Token | None, reason: str) -> Token:
        request = self._request(previous, reason)
        if reason in (EXPIRING, REPLAY) and request.interactive:
            # A background refresh (or the replay of a lost one) never opens a browser or prints a
            # device code from a worker thread; a caller left without a valid token may.
            request = attrs.evolve(request, interactive=False)
        token: Token = self._authenticator.acquire(request)
        return token

    def _server_info(self) -> ServerAuthInfo:
        """Discovery over gRPC (v2, v1, RFC 8414); if that fails, over Connect (an endpoint that speaks only
        Connect, as flyte 2.x servers may).  The first error is the one reported when both fail."""
        if self._connect_info is not None:
            return self._connect_info
        try:
            return self._discovery.get()
        except DiscoveryError as grpc_error:
            if not self._needs_discovery():
                raise  # tokenUrl given (or a provider that needs no server): no extra requests to guess
            from . import connect_discovery

            try:
                info = connect_discovery.discover(
                    self.config, lambda url, verify: self._http.client(url, verify=verify))
            except DiscoveryError:
                raise grpc_error from None
            self._connect_info = info
            return info

    def _long_enough(self, policy: RefreshPolicy) -> RefreshPolicy:
        """Waiters must outlast an interactive login this session may run (DeviceFlow: 600 s)."""
        login = getattr(self._authenticator, "timeout", None) if hasattr(self._authenticator, "login") else None
        if self.interactive and isinstance(login, (int, float)) and login + 30 > policy.acquire_timeout:
            return attrs.evolve(policy, acquire_timeout=float(login) + 30)
        return policy

    def _discovery_metadata(self) -> Metadata:
        """What discovery sends: the extra interceptors' metadata (an authenticating proxy's
        ``proxy-authorization``), never the bearer token (discovery is what tells us where it goes)."""
        return tuple(pair for extra in self._extras for pair in extra.metadata())

    def _discovery_rejected(self, sent: Metadata) -> bool:
        """A proxy refused discovery: each extra interceptor replaces what it sent, once."""
        retry = False
        for extra in self._extras:
            retry = extra.rejected(sent) or retry
        return retry

    def _header_key(self) -> str:
        """The metadata key the server reads: explicit config, else discovered, when a call first needs it.

        A failed discovery is not fatal when the provider did not need it (``tokenUrl`` set, a command,
        a passthrough token): the token goes under ``authorization`` for now, and discovery is tried
        again for the next token instead of fixing the key for the life of the session.
        """
        if self._header is not None:
            return self._header
        try:
            self._header = self._server_info().authorization_metadata_key or DEFAULT_METADATA_KEY
        except DiscoveryError as exc:
            if self._needs_discovery():
                raise
            log.warning("flyteauth: discovery failed (%s); sending the token under %r until it works",
                        exc.message, DEFAULT_METADATA_KEY)
            return DEFAULT_METADATA_KEY
        return self._header

    def _needs_discovery(self) -> bool:
        """Whether the provider cannot work without the server's metadata (no tokenUrl, and not a
        provider that declares ``needs_discovery = False``)."""
        return not self.config.token_url and getattr(self._authenticator, "needs_discovery", True)

    def _emit(self, event: TokenEvent) -> None:
        log.debug("flyteauth event: %s", event)
        self._registry.emit(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # an observer must never break token handling
                log.warning("flyteauth: the session's on_event callback raised %s", type(exc).__name__)

    def _credentials(self) -> grpc.ChannelCredentials:
        import grpc

        from .http import grpc_root_certificates

        if self._channel_credentials is not None:
            return self._channel_credentials
        return grpc.ssl_channel_credentials(root_certificates=grpc_root_certificates(self.config))

    def _raw(self) -> grpc.Channel:
        """The session's unauthenticated channel (discovery uses it; ``channel()`` wraps it)."""
        if self._raw_channel is None:
            import grpc

            target = self.config.grpc_target
            if self.config.use_plaintext:
                self._raw_channel = grpc.insecure_channel(target, options=self._channel_options)
            else:
                self._raw_channel = grpc.secure_channel(target, self._credentials(), options=self._channel_options)
        return self._raw_channel

    # -- the public surface ---------------------------------------------------------------------------
    def get_token(self) -> Token:
        """The current token: cached, refreshed as needed."""
        return self.manager.token()

    async def get_token_async(self) -> Token:
        return await self.manager.token_async()

    def server_info(self) -> ServerAuthInfo:
        """What the server advertised (discovery runs once per session)."""
        self._wire()  # the store may cache discovery (shared_fill): wire it before the first discovery
        return self._server_info()

    def identity(self) -> CredentialIdentity:
        """Whose token this session holds and what for: the config's part and the provider's
        (``IdentitySource``).  Every cache keys on it.  May read a platform token file; no network for the
        built-in providers."""
        if "interceptor" not in self.__dict__:
            self._wire()
        parts = {}
        if isinstance(self._authenticator, IdentitySource):
            parts = dict(self._authenticator.identity_parts(self._request(None, AcquireReason.INITIAL)))
        return CredentialIdentity.build(self.config, self.auth_type, parts)

    @property
    def stats(self) -> ManagerStats:
        return self.manager.stats

    def channel(self) -> grpc.Channel:
        """A ``grpc.Channel`` to the configured endpoint that authenticates all four call kinds."""
        from .transports.grpc_sync import AuthChannel

        return AuthChannel(self._raw(), self.interceptor)

    def intercept(self, channel: grpc.Channel) -> grpc.Channel:
        """Wrap an existing channel (yours to close)."""
        from .transports.grpc_sync import AuthChannel

        return AuthChannel(channel, self.interceptor)

    def grpc_interceptors(self) -> list[Any]:
        """The interceptor form, for ``grpc.intercept_channel(channel, *session.grpc_interceptors())``."""
        from .transports.grpc_sync import AuthClientInterceptor

        return [AuthClientInterceptor(self.interceptor)]

    def aio_interceptors(self) -> list[Any]:
        """One interceptor per call kind, for ``grpc.aio.*_channel(interceptors=...)``."""
        from .transports.grpc_aio import aio_interceptors

        return aio_interceptors(self.interceptor)

    def aio_channel(self) -> aio.Channel:
        """A new ``grpc.aio.Channel`` to the endpoint that authenticates all four call kinds (yours to close;
        it closes the underlying channel)."""
        from grpc import aio

        from .transports.grpc_aio import AioAuthChannel

        target = self.config.grpc_target
        if self.config.use_plaintext:
            raw = aio.insecure_channel(target, options=self._channel_options)
        else:
            raw = aio.secure_channel(target, self._credentials(), options=self._channel_options)
        return AioAuthChannel(raw, self.interceptor, owns_channel=True)

    def aio_intercept(self, channel: aio.Channel) -> aio.Channel:
        """Wrap an existing ``grpc.aio.Channel`` (yours to close) at the multicallable level."""
        from .transports.grpc_aio import AioAuthChannel

        return AioAuthChannel(channel, self.interceptor)

    def connect_interceptors(self) -> list[Any]:
        """Interceptors for async ConnectRPC clients (flyte 2.x's wire): ``Client(url, interceptors=...)``.
        Needs ``flyteauth[connect]`` (else :class:`~flyteauth_core.errors.MissingExtraError`)."""
        return [_connect_transport("session.connect_interceptors()").ConnectAuth(self.interceptor)]

    def connect_interceptors_sync(self) -> list[Any]:
        """Interceptors for sync ConnectRPC clients (``...ClientSync(url, interceptors=...)``)."""
        return [_connect_transport("session.connect_interceptors_sync()").ConnectAuthSync(self.interceptor)]

    def httpx_auth(self) -> Any:
        """An ``httpx2.Auth`` carrying the same token to the Flyte endpoint's origin and ``authOrigins``.

        What it guarantees: a request it is asked to authenticate gets our headers (the token under its
        header key, ``proxy-authorization``) only when its origin is allowed, so a presigned URL sent
        through the same client gets none, and a redirect you follow yourself
        (``client.send(response.next_request)``) is stripped.  What it cannot: httpx2 follows redirects
        (``follow_redirects=True``) without asking the auth again and strips only ``Authorization``, so
        any other header key, or ``proxy-authorization``, would reach the redirect's host.  Use
        :meth:`httpx_client` / :meth:`httpx_async_client` (they are safe across redirects), or keep
        ``follow_redirects=False`` (httpx2's default).  A cross-origin redirect followed with our
        headers is logged as a WARNING."""
        from .transports.httpx_auth import HttpxAuth

        return HttpxAuth(self.interceptor, (self.config.http_base_url, *self.config.auth_origins))

    def httpx_client(self, **kwargs: Any) -> Any:
        """An ``httpx2.Client(**kwargs)`` that authenticates requests to the Flyte origin (and
        ``authOrigins``) and never sends our headers to another origin, redirects included (a request
        hook strips them from every hop whose origin is not allowed; same-origin redirects keep them).
        Yours to close.  The request's timeout bounds the wait for the token too.  ``admin.caCertFilePath`` is
        trusted beside httpx2's own CAs, as on the gRPC channel (unless you pass ``verify=``)."""
        import httpx2

        from .http import with_flyte_ca
        from .transports.httpx_auth import scoped_client

        return scoped_client(self.httpx_auth(), httpx2.Client, with_flyte_ca(self.config, kwargs))

    def httpx_async_client(self, **kwargs: Any) -> Any:
        """:meth:`httpx_client` as an ``httpx2.AsyncClient``."""
        import httpx2

        from .http import with_flyte_ca
        from .transports.httpx_auth import scoped_client

        return scoped_client(self.httpx_auth(), httpx2.AsyncClient, with_flyte_ca(self.config, kwargs))

    def login(self) -> Token:
        """Run the provider's login now (interactive flows included) and store the result."""
        return self.manager.refresh()

    async def login_async(self) -> Token:
        """:meth:`login` in a worker thread: the event loop keeps running while a human logs in."""
        import asyncio

        return await asyncio.to_thread(self.login)

    async def logout_async(self, *, revoke: bool = True) -> bool:
        """:meth:`logout` in a worker thread (revocation is an HTTP call)."""
        import asyncio

        return await asyncio.to_thread(self.logout, revoke=revoke)

    def logout(self, *, revoke: bool = True) -> bool:
        """Forget the token in memory and in the store.  With ``revoke``, first ask the provider (if it
        can) to revoke the stored refresh token at the IdP, best effort; True when the IdP confirmed."""
        revoked = False
        if revoke and isinstance(self._authenticator, Revocable) and self.store is not None:
            try:
                stored = self.store.load(self.identity().store_key)
                if stored is not None:
                    revoked = bool(self._authenticator.revoke(self._request(stored, AcquireReason.LOGOUT), stored))
            except Exception as exc:  # best effort: logging out must work offline
                log.warning("flyteauth: token revocation failed (%s); forgetting the token anyway",
                            type(exc).__name__)
        self.manager.forget()
        return revoked

    def close(self) -> None:
        if "interceptor" in self.__dict__:  # never wired: nothing to close but the channel
            self.manager.close()
            if isinstance(self._authenticator, Closeable):
                self._authenticator.close()
        if self._raw_channel is not None:
            self._raw_channel.close()
            self._raw_channel = None

    def __enter__(self) -> AuthSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> AuthSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        auth_type = self.__dict__.get("auth_type") or self.config.auth_type  # repr never wires the session
        return f"AuthSession(endpoint={self.config.endpoint!r}, auth_type={auth_type!r})"


def _connect_transport(what: str) -> Any:
    """``transports.connect``, or a MissingExtraError naming ``flyteauth[connect]`` without connectrpc."""
    from .errors import import_extra

    return import_extra("flyteauth_core.transports.connect", extra="connect", package="connectrpc", what=what)
