"""AuthSession: the facade that wires config -> provider -> token manager -> transports.

A session owns its manager, store, discovery cache, gRPC channel and HTTP settings; nothing is shared
between sessions except the (read-only after load) plugin registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
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
from .lifecycle import EXPIRING, REPLAY, AcquireRequest, ManagerStats, TokenManager
from .plugins import PluginRegistry, default_registry
from .protocols import Closeable, IdpHeaderSource, Revocable
from .token import RefreshPolicy, Token
from .types import AcquireReason

if TYPE_CHECKING:
    import grpc
    from grpc import aio

    from .protocols import Interceptor, Metadata, TokenStore

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
    """A key that separates credentials by endpoint, auth type, client, scopes and audience.

    So a human's PKCE token is never sent by a service-account session on the same endpoint.
    """
    parts = [config.endpoint, auth_type.lower(), config.client_id or "", " ".join(sorted(config.scopes)),
             config.audience or ""]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return f"flyteauth:{config.endpoint}:{auth_type.lower()}:{digest}"


class _Composite:
    """The token interceptor followed by extra interceptors (proxy authorization, ...)."""

    def __init__(self, parts: list[Interceptor]) -> None:
        self._parts = parts
        # The keys each part last sent, so a rejection is handed back to the part that sent each pair
        # without asking any part for fresh metadata (which could block).
        self._keys: list[frozenset[str]] = [frozenset() for _ in parts]

    def _record(self, index: int, metadata: Metadata) -> Metadata:
        self._keys[index] = frozenset(k for k, _ in metadata)
        return metadata

    def metadata(self) -> Metadata:
        return tuple(pair for i, part in enumerate(self._parts) for pair in self._record(i, part.metadata()))

    async def metadata_async(self) -> Metadata:
        out: list[tuple[str, str]] = []
        for i, part in enumerate(self._parts):
            out.extend(self._record(i, await part.metadata_async()))
        return tuple(out)

    def rejected(self, sent: Metadata) -> bool:
        retry = False
        for part, keys in zip(self._parts, self._keys, strict=True):
            retry = part.rejected(tuple(p for p in sent if p[0] in keys)) or retry
        return retry


class AuthSession:
    """Authenticates calls to one Flyte endpoint.

    ``store``: a TokenStore, or the name of a registered one (default: the config's ``tokenStore``, else
    the provider's ``default_token_store`` (``keyring`` for Pkce/DeviceFlow), else ``memory``).
    ``interactive``: whether browser/device flows may start during a call (default:
    :func:`interactive_default`).  ``retry``: how IdP calls are retried (default ``RetryPolicy()``: 4
    attempts, backoff up to 8 s, ``Retry-After`` honoured up to 30 s).
    """

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
    ) -> None:
        self.config = config
        self._retry = retry
        self._registry = registry or default_registry()
        registration = self._registry.authenticator(config.resolved_auth_type)
        self.auth_type = registration.name
        self.interactive = interactive_default() if interactive is None else interactive
        self._channel_options = channel_options or []
        self._raw_channel: grpc.Channel | None = None
        self._http = HttpClientFactory(config)
        self._discovery = Discovery(
            self._raw, endpoint=config.endpoint, http_base_url=config.http_base_url,
            http_client=self._http.client, metadata=self._discovery_metadata,
            rejected=self._discovery_rejected,
        )
        self._authenticator = registration.factory(config)
        self._header: str | None = config.authorization_header
        self._extras: list[Interceptor] = []
        #: Registered with ``anonymous=True`` (NoAuth): sends no token, so no store and no manager use.
        self.anonymous = registration.anonymous
        self._default_store = registration.default_store
        self.store = None if self.anonymous else self._resolve_store(store)
        self._discovery.fill = shared_fill(self.store, config)
        if policy is None and config.token_refresh_window is not None:
            policy = RefreshPolicy(window=config.token_refresh_window)
        policy = self._long_enough(policy or RefreshPolicy())
        self.manager = TokenManager(
            self._acquire,
            header_key=self._header_key,
            store=self.store,
            store_key=store_key(config, self.auth_type),
            policy=policy,
            clock=clock,
            on_event=self._emit,
            auth_type=self.auth_type,
            endpoint=config.endpoint,
        )
        extras = [e for e in (r.factory(config) for r in self._registry.interceptors()) if e is not None]
        self._extras = extras  # their metadata (proxy-authorization) goes with discovery, the bearer never
        for extra in extras:  # e.g. proxy authorization with proxyAuthForIdP: its header goes to the IdP too
            if isinstance(extra, IdpHeaderSource) and extra.send_to_idp:
                self._http.add_header_source(extra.metadata)
        parts: list[Interceptor] = [*([] if self.anonymous else [self.manager]), *extras]
        self.interceptor: Interceptor = parts[0] if len(parts) == 1 else _Composite(parts)

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
            server_info_fn=self._discovery.get,
            http_client_fn=self._http.client,
            retry=self._retry,
        )

    def _acquire(self, previous: Token | None, reason: str) -> Token:
        request = self._request(previous, reason)
        if reason in (EXPIRING, REPLAY) and request.interactive:
            # A background refresh (or the replay of a lost one) never opens a browser or prints a
            # device code from a worker thread; a caller left without a valid token may.
            request = attrs.evolve(request, interactive=False)
        token: Token = self._authenticator.acquire(request)
        return token

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
            self._header = self._discovery.get().authorization_metadata_key or DEFAULT_METADATA_KEY
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

    def _credentials(self) -> grpc.ChannelCredentials:
        import grpc

        from .http import grpc_root_certificates

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
        return self._discovery.get()

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
        """Interceptors for async ConnectRPC clients (flyte 2.x's wire): ``Client(url, interceptors=...)``."""
        from .transports.connect import ConnectAuth

        return [ConnectAuth(self.interceptor)]

    def connect_interceptors_sync(self) -> list[Any]:
        """Interceptors for sync ConnectRPC clients (``...ClientSync(url, interceptors=...)``)."""
        from .transports.connect import ConnectAuthSync

        return [ConnectAuthSync(self.interceptor)]

    def httpx_auth(self) -> Any:
        """An ``httpx2.Auth`` carrying the same token to the Flyte endpoint's origin and ``authOrigins``
        (other hosts, such as presigned URLs, get no auth headers)."""
        from .transports.httpx_auth import HttpxAuth

        return HttpxAuth(self.interceptor, (self.config.http_base_url, *self.config.auth_origins))

    def login(self) -> Token:
        """Run the provider's login now (interactive flows included) and store the result."""
        return self.manager.refresh()

    def logout(self, *, revoke: bool = True) -> bool:
        """Forget the token in memory and in the store.  With ``revoke``, first ask the provider (if it
        can) to revoke the stored refresh token at the IdP, best effort; True when the IdP confirmed."""
        revoked = False
        if revoke and isinstance(self._authenticator, Revocable) and self.store is not None:
            try:
                stored = self.store.load(store_key(self.config, self.auth_type))
                if stored is not None:
                    revoked = bool(self._authenticator.revoke(self._request(stored, AcquireReason.LOGOUT), stored))
            except Exception as exc:  # best effort: logging out must work offline
                log.warning("flyteauth: token revocation failed (%s); forgetting the token anyway",
                            type(exc).__name__)
        self.manager.forget()
        return revoked

    def close(self) -> None:
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
        return f"AuthSession(endpoint={self.config.endpoint!r}, auth_type={self.auth_type!r})"
