"""A discovery cache shared through the token store, so a fleet starting at once makes 2 metadata RPCs.

Every process otherwise runs the two AuthMetadataService RPCs again.  A store that implements
:class:`~flyteauth_core.protocols.DiscoveryCache` (the file and redis stores do) keeps the answer for
``discoveryCacheTTL`` (default 1 h; ``0`` turns the cache off).  The cache is filled under the store's
``lock()``: the first process discovers and saves, the others wait for the lock (or see the value appear)
and read it.  Any failure of the cache falls back to plain discovery: the cache never fails a call.

The answer names the token endpoint, where providers send client secrets, so a cached record decides
where a credential goes.  It is keyed on the credential's identity (``CredentialIdentity.discovery_key``)
and the stores vouch for what they return (``DiscoveryCache``): the encrypted Redis store authenticates
each record (Fernet), the file store reads only from a directory that passes its token checks, and a
plaintext Redis shares no discovery (its local fallback store does, on one host).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .options import Option
from .parsers import duration

if TYPE_CHECKING:
    from .config import AuthConfig
    from .discovery import ServerAuthInfo

log = logging.getLogger("flyteauth.discovery")

DEFAULT_TTL = 3600.0
#: Declared by the stores that cache discovery (file, redis); ``0`` turns the cache off.
DISCOVERY_TTL = Option("discoveryCacheTTL", parse=duration, default=DEFAULT_TTL,
                       help="how long the store keeps the server's auth metadata for other processes (0: off)")

Discover = Callable[[], "ServerAuthInfo"]


def to_dict(info: ServerAuthInfo) -> dict[str, Any]:
    return attrs.asdict(info)


def from_dict(data: Mapping[str, Any]) -> ServerAuthInfo | None:
    """The cached record as a ServerAuthInfo; None when it does not fit (written by another version)."""
    from .discovery import ServerAuthInfo

    fields = attrs.fields_dict(ServerAuthInfo)
    try:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        info = ServerAuthInfo(**values)
    except (TypeError, ValueError):
        return None
    return info if info.token_endpoint or info.client_id else None


def shared_fill(store: Any, config: AuthConfig, key: Callable[[], str] | None = None,
                ) -> Callable[[Discover], ServerAuthInfo] | None:
    """A wrapper for ``Discovery`` that consults ``store`` first; None when the store cannot cache or the
    cache is off.  ``key()`` is the identity's discovery key (computed when discovery runs); without it,
    the config's identity with no provider parts."""
    if not (callable(getattr(store, "load_discovery", None)) and callable(getattr(store, "save_discovery", None))):
        return None
    ttl: float = DISCOVERY_TTL.read(config)
    if ttl <= 0:
        return None
    if key is None:
        from .identity import CredentialIdentity

        fixed = CredentialIdentity.build(config, config.resolved_auth_type).discovery_key
        key = lambda: fixed  # noqa: E731

    def load(key: str) -> ServerAuthInfo | None:
        try:
            data = store.load_discovery(key)
        except Exception as exc:
            log.debug("flyteauth: discovery cache read failed (%s)", type(exc).__name__)
            return None
        return from_dict(data) if isinstance(data, Mapping) else None

    channel = channel_marker(config)

    def fill(discover: Discover) -> ServerAuthInfo:
        try:
            name = key() + channel
        except Exception as exc:  # the identity cannot be told now (an unreadable platform token): no cache
            log.debug("flyteauth: no discovery cache without an identity (%s)", type(exc).__name__)
            return discover()
        info = load(name)
        if info is not None:
            return info
        with _locked(store, name):
            info = load(name)
            if info is not None:
                return info
            info = discover()
            try:
                store.save_discovery(name, to_dict(info), ttl)
            except Exception as exc:
                log.debug("flyteauth: discovery cache write failed (%s)", type(exc).__name__)
            return info

    return fill


def channel_marker(config: AuthConfig) -> str:
    """How the answer was fetched: plaintext, TLS without verification, or TLS with a given CA.  Configs that
    differ only there have one identity, but an answer fetched over the weaker channel (which someone on the
    path could forge, naming their token endpoint) must not serve the stricter one."""
    if config.insecure:
        return ":plaintext"
    if config.insecure_skip_verify:
        return ":tls-unverified"
    if config.ca_cert_file_path:
        import hashlib

        return ":tls-ca-" + hashlib.sha256(str(config.ca_cert_file_path).encode()).hexdigest()[:12]
    return ":tls"


@contextlib.contextmanager
def _locked(store: Any, key: str) -> Iterator[None]:
    lock = getattr(store, "lock", None)
    held = None
    if callable(lock):
        try:
            held = lock(key)
            held.__enter__()
        except Exception as exc:
            log.debug("flyteauth: discovery cache lock failed (%s); discovering without it", type(exc).__name__)
            held = None
    try:
        yield
    finally:
        if held is not None:
            held.__exit__(None, None, None)
