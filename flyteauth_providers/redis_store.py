"""``redis``: one token per fleet.  A token store shared by every process that can reach one Redis.

Why: a map task fanned out to 500 pods starts 500 processes with the same service account; without a
shared store each asks the IdP for a token, and IdPs rate-limit per client.  With this store one process
fetches and the rest read.

* **Local first.**  The TokenManager serves calls from memory; Redis is read only on a miss or a refresh.
  Every Redis command has a short timeout (``redisTimeout``, 200 ms).  When Redis is down or slow the
  store logs once and falls back to a local store (``redisFallback``: ``file``, the default, so processes
  on one host still share one token and one lock; or ``memory``), and tries Redis again a second later.
  A call never fails because of Redis.
* **Encrypted at rest.**  A token in Redis is a bearer credential for anyone who can read Redis, so values
  are Fernet tokens (AES-128-CBC + HMAC-SHA256) under a key the fleet already shares:
  ``redisEncryptionKeyFile`` (mode 0600, one key per line: the first encrypts, all decrypt, for rotation)
  or ``FLYTEAUTH_REDIS_ENCRYPTION_KEY``.  Plaintext needs ``redisAllowPlaintext: true``.  A value that no
  key decrypts is a miss, logged once at WARNING.
* **Fleet-wide single flight.**  ``lock(key)`` takes the host lock (the file fallback's ``flock``) and then
  the fleet lock, redis-py's ``Lock`` (``SET NX PX`` with a token naming host and pid, renewed by a thread
  that checks every answer, released by its compare-and-delete script).  Waiters poll the lock and the token
  value; when another process stores a new token they return at once and the manager reads it.  A lock
  nobody renews (a dead holder; a ghost ``SET NX`` a frozen Redis applied after its client gave up) is
  treated as abandoned after about a second.  Saves under the lock are fenced (one Lua script: write only
  while the lock holds our token), and the manager sends a refresh token only after
  :meth:`FleetHold.exclusive` confirmed the lock with Redis: see docs/security.md.
* **Shared discovery.**  ``load_discovery``/``save_discovery`` keep AuthMetadataService answers for the
  fleet (see ``flyteauth_core.discovery_cache``), only when encrypted: a record names the token endpoint,
  and Fernet authenticates it.  A plaintext Redis keeps discovery in the local fallback store.

Keys: ``<prefix>{<sha256(store key)>}`` for values, ``<prefix>lock:{<sha256>}`` for locks (one hash tag: one
Redis Cluster slot, so the fenced save runs as one script).  A value's TTL is the
token's expiry (no TTL when it carries a refresh token, which outlives the access token).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.discovery_cache import DISCOVERY_TTL
from flyteauth_core.errors import ConfigError, TokenStoreError
from flyteauth_core.options import Option
from flyteauth_core.parsers import boolean, duration, url_parts
from flyteauth_core.token import Token

log = logging.getLogger("flyteauth.redis_store")

FORMAT_VERSION = 1
#: After a failed command, Redis is left alone this long (calls go to the fallback store meanwhile).
RETRY_INTERVAL = 1.0
INSTALL_HINT = "Install the extra: pip install 'flyteauth[redis]'"

#: This store's config keys, declared at registration: ``flyteauth config`` validates and masks them, and
#: ``load_config`` reads each from the ``flyteauth:``/``admin:`` section or its ``FLYTEAUTH_<KEY>`` variable.
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def _masked(url: str) -> str:
    """The URL without its user-info, query or fragment (for messages).  The user-info ends at the *last*
    ``@``: an unencoded ``/``, ``?`` or ``#`` in a password must not make the rest of it look like a path."""
    scheme, _, rest = url_parts(url)
    return f"{scheme}://{re.split(r'[?#]', rest, maxsplit=1)[0]}" if scheme else ""


def _port(key: str, url: str, text: str) -> None:
    if text and not (text.isdigit() and 0 < int(text) < 65536):
        raise ConfigError(f"{key} has a malformed port {text!r} in {_masked(url)!r}",
                          hint="A port is a number from 1 to 65535: redis://host:6379/0")


def _db(key: str, url: str, text: str) -> None:
    if text and not text.isdigit():
        raise ConfigError(f"{key} names database {text!r} in {_masked(url)!r}, which is not a number",
                          hint="The path is the database number: redis://host:6379/0")


def redis_url(key: str, value: Any) -> str | None:
    """Parse ``redisURL`` as redis-py will, so a malformed one is a ConfigError naming the key (at
    ``flyteauth config`` and when the store is built), not a ValueError at the first refresh that silently
    costs the fleet its lock."""
    if value is None or str(value).strip() == "":
        return None
    url = str(value).strip()
    if any(c in url_parts(url)[1] for c in "/?#"):
        raise ConfigError(f"{key}: the user name or password in {_masked(url)!r} holds '/', '?' or '#'; "
                          "percent-encode them (/ is %2F, ? is %3F, # is %23, @ is %40)")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise ConfigError(f"{key} is not a URL: {_masked(url)!r}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"{key} has an unsupported scheme {parts.scheme!r}",
                          hint="Use redis://, rediss:// (TLS), unix:// or redis+sentinel://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{key} names no socket path: unix:///run/redis.sock?db=0")
        return url
    hosts = parts.netloc.rpartition("@")[2]
    if parts.scheme.endswith("+sentinel"):
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ConfigError(f"{key}: a redis+sentinel:// URL names the master",
                              hint="redis+sentinel://host:26379,host2:26379/mymaster/0")
        for item in hosts.split(","):
            host, colon, port = item.rpartition(":")
            if not (host if colon else item) or (colon and not host.strip("[]")):
                raise ConfigError(f"{key} lists an empty sentinel address in {_masked(url)!r}")
            _port(key, url, port if colon and "]" not in port else "")
        _db(key, url, path[1] if len(path) > 1 else "")
        return url
    if not hosts:
        raise ConfigError(f"{key} names no host: {_masked(url)!r}", hint="For example rediss://redis.example.com:6380/0")
    for item in hosts.split(","):  # several: Cluster nodes (redisCluster: true)
        host, colon, port = item.rpartition(":")
        if not (host if colon else item):
            raise ConfigError(f"{key} lists an empty address in {_masked(url)!r}")
        if colon and "]" not in port:
            _port(key, url, port)
    _db(key, url, parts.path.strip("/"))
    return url


URL = Option("redisURL", parse=redis_url, secret=True,  # may carry a password
             help="redis://, rediss:// (TLS), unix:// or redis+sentinel://host:26379,.../<master>/<db>")
KEY_FILE = Option("redisEncryptionKeyFile",
                  help="0600 file of Fernet keys, one a line: the first encrypts, all decrypt")
KEY = Option("redisEncryptionKey", secret=True,
             help="Fernet key(s), comma separated; set FLYTEAUTH_REDIS_ENCRYPTION_KEY rather than the file")
ALLOW_PLAINTEXT = Option("redisAllowPlaintext", parse=boolean, default=False,
                         help="store tokens unencrypted (only for a Redis nobody else can read)")
LOCK_TTL = Option("redisLockTTL", parse=duration, default=10.0,
                  help="lifetime of the fleet lock: how long a dead holder can block the fleet")
TIMEOUT = Option("redisTimeout", parse=duration, default=0.2, help="per command; slower counts as down")
PREFIX = Option("redisKeyPrefix", default="flyteauth:", help="prefix of every key this store writes")
FALLBACK = Option("redisFallback", default="file", help="store used while Redis is down: file or memory")
CLUSTER = Option("redisCluster", parse=boolean, default=False, help="redisURL names a Redis Cluster node")
PASSWORD = Option("redisPassword", secret=True, help="password (or set it in redisURL); prefer the environment")
LOCK_WAIT = Option("tokenStoreLockTimeout", parse=duration, default=30.0,
                   help="how long a process waits for another's refresh")
OPTIONS = (URL, KEY_FILE, KEY, ALLOW_PLAINTEXT, LOCK_TTL, TIMEOUT, PREFIX, FALLBACK, CLUSTER, PASSWORD, LOCK_WAIT)

#: The fenced save, the one script redis-py's ``Lock`` cannot express (it compares a lock's token only to
#: extend or release it): write the value only while the lock key holds our token (KEYS[1] lock, KEYS[2]
#: value; ARGV token, value, PX in ms or 0, the "abandoned" PTTL threshold in ms).  With an empty token (a
#: process that did not get the fleet lock) it writes only while no live holder does: no lock, or one whose
#: TTL shows it is no longer renewed.  Both keys share a hash tag, so it runs on one Redis Cluster slot.
_FENCED_SET = """
local owner = redis.call('get', KEYS[1])
if ARGV[1] == '' then
  if owner and redis.call('pttl', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
elseif owner ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
else redis.call('set', KEYS[2], ARGV[2]) end
return 1
"""


@attrs.frozen
class RedisSettings:
    """The store's configuration, parsed and checked (see :func:`redis_settings`)."""

    url: str = attrs.field(repr=False)  # may carry a password
    keys: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    allow_plaintext: bool = False
    lock_ttl: float = 10.0
    timeout: float = 0.2
    lock_wait: float = 30.0
    key_prefix: str = "flyteauth:"
    fallback: str = "file"
    cluster: bool = False
    password: str | None = attrs.field(default=None, repr=False)


def _read(option: Option, config: AuthConfig | None, env: Mapping[str, str]) -> Any:
    """The option from the config (file, or ``FLYTEAUTH_<KEY>`` when ``load_config`` built it), else from the
    environment (a config built in code), else its default."""
    if config is not None and config.options.get(option.key) not in (None, ""):
        return option.read(config)
    var = option.env_var
    if var and env.get(var, "").strip():
        return option.parse(f"${var}", env[var])
    return option.default


def redis_settings(config: AuthConfig | None, env: Mapping[str, str] | None = None) -> RedisSettings:
    """Read and check every ``redis*`` key (see :data:`OPTIONS`)."""
    env = os.environ if env is None else env
    url = _read(URL, config, env)
    if not url:
        raise ConfigError("tokenStore redis needs redisURL (or FLYTEAUTH_REDIS_URL)",
                          hint="For example redisURL: rediss://redis.example.com:6380/0")
    keys = _keys(_read(KEY_FILE, config, env), _read(KEY, config, env))
    allow_plaintext = bool(_read(ALLOW_PLAINTEXT, config, env))
    if not keys and not allow_plaintext:
        raise ConfigError(
            "tokenStore redis stores bearer tokens and needs an encryption key",
            hint="Set redisEncryptionKeyFile (a 0600 file with a Fernet key) or FLYTEAUTH_REDIS_ENCRYPTION_KEY; "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
            " Only for a Redis nobody else can read: redisAllowPlaintext: true",
        )
    lock_ttl, timeout = _read(LOCK_TTL, config, env), _read(TIMEOUT, config, env)
    if lock_ttl < 0.1:
        raise ConfigError(f"redisLockTTL must be at least 100ms, got {lock_ttl:g}s")
    if timeout <= 0:
        raise ConfigError("redisTimeout must be positive")
    cluster = bool(_read(CLUSTER, config, env))
    parts = urllib.parse.urlsplit(url)
    if "," in parts.netloc and not cluster and not parts.scheme.endswith("+sentinel"):
        raise ConfigError("redisURL lists several hosts, which only a Redis Cluster or Sentinel URL can",
                          hint="Set redisCluster: true for Cluster nodes, or use redis+sentinel://h1:26379,h2:26379/"
                          "<master>/<db>")
    fallback = str(_read(FALLBACK, config, env)).lower()
    if fallback not in ("file", "memory"):
        raise ConfigError(f"redisFallback must be file or memory, got {fallback!r}")
    return RedisSettings(
        url=url,
        keys=keys,
        allow_plaintext=allow_plaintext,
        lock_ttl=lock_ttl,
        timeout=timeout,
        lock_wait=_read(LOCK_WAIT, config, env),
        key_prefix=str(_read(PREFIX, config, env)),
        fallback=fallback,
        cluster=cluster,
        password=_read(PASSWORD, config, env),
    )


def _keys(key_file: Any, inline: str | None) -> tuple[bytes, ...]:
    """Fernet keys: the file's lines (or redisEncryptionKey's comma/space separated words); the first encrypts."""
    lines: list[tuple[str, str]] = []
    if key_file:
        path = os.path.expanduser(str(key_file))
        try:
            mode = os.stat(path).st_mode
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"Cannot read redisEncryptionKeyFile {path!r} ({reason})") from None
        if sys.platform != "win32" and mode & 0o077:
            raise ConfigError(f"redisEncryptionKeyFile {path!r} is readable by others (mode {mode & 0o777:o})",
                              hint=f"chmod 600 {path}")
        lines = [(f"line {i} of {path!r}", line.strip()) for i, line in enumerate(text.splitlines(), 1)
                 if line.strip() and not line.strip().startswith("#")]
        if not lines:
            raise ConfigError(f"redisEncryptionKeyFile {path!r} holds no key")
    elif inline:
        lines = [(f"key {i} of redisEncryptionKey", word) for i, word in enumerate(inline.replace(",", " ").split(), 1)]
    keys = []
    for where, value in lines:
        try:
            if len(base64.urlsafe_b64decode(value.encode())) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise ConfigError(f"The encryption key on {where} is not a Fernet key (urlsafe base64 of 32 bytes)",
                              hint="Make one with Fernet.generate_key()") from None
        keys.append(value.encode())
    return tuple(keys)


def _require_redis() -> None:
    """A MissingExtraError naming ``flyteauth[redis]`` when redis-py is not installed."""
    import importlib.util

    if importlib.util.find_spec("redis") is None:
        from flyteauth_core.errors import MissingExtraError

        raise MissingExtraError("tokenStore: redis", extra="redis", package="redis")


def make_client(settings: RedisSettings) -> Any:
    """A redis-py client whose every command gives up after ``settings.timeout`` (no retries).

    ``redis://``/``rediss://``/``unix://`` URLs as redis-py reads them (TLS options such as ``ssl_ca_certs``
    go in the query string); ``redisCluster: true`` for Redis Cluster; ``redis+sentinel://[:password@]host:port,
    host:port/<master name>[/db]`` for Sentinel.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("tokenStore redis needs the redis package", hint=INSTALL_HINT) from None
    common: dict[str, Any] = {"socket_timeout": settings.timeout, "socket_connect_timeout": settings.timeout}
    if settings.password:
        common["password"] = settings.password
    parts = urllib.parse.urlsplit(settings.url)
    if parts.scheme.endswith("+sentinel"):
        from redis import sentinel as sentinel_module

        sentinel_cls: Any = sentinel_module.Sentinel  # untyped in redis-py
        hosts = []
        for item in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host or item, int(port or 26379)))
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ConfigError("A redis+sentinel:// URL names the master: redis+sentinel://host:26379/mymaster/0")
        if parts.password and "password" not in common:
            common["password"] = urllib.parse.unquote(parts.password)
        tls = {"ssl": True} if parts.scheme.startswith("rediss") else {}
        sentinel = sentinel_cls(hosts, sentinel_kwargs={"socket_timeout": settings.timeout,
                                                    "socket_connect_timeout": settings.timeout, **tls},
                            retry=Retry(NoBackoff(), 0), **common, **tls)
        return sentinel.master_for(path[0], db=int(path[1]) if len(path) > 1 else 0)
    userinfo, _, netloc_hosts = parts.netloc.rpartition("@")
    if settings.cluster:
        from redis import cluster as cluster_module

        cluster_node: Any = cluster_module.ClusterNode  # untyped in redis-py

        # redis://node1:6379,node2:6379/0: every listed node can bootstrap the client (one is enough; a
        # process started while that one is down would otherwise run on the fallback until it is back)
        listed = netloc_hosts.split(",")
        first = urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{listed[0]}" if userinfo else listed[0],
                                         parts.path, parts.query, ""))
        nodes = [cluster_node(host or port, int(port) if host else 6379)
                 for host, _, port in (item.rpartition(":") for item in listed[1:])]
        return cluster_module.RedisCluster.from_url(first, startup_nodes=nodes or None,
                                                    retry=Retry(NoBackoff(), 0), **common)
    return redis.Redis.from_url(settings.url, retry=Retry(NoBackoff(), 0), health_check_interval=0, **common)


#: Live stores, so a forked child gets fresh locks (a lock held by another thread at fork time would never be
#: released in the child).  redis-py's connection pool notices the new pid by itself.
_LIVE: weakref.WeakSet[RedisTokenStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store._guard = threading.Lock()
        store._local = threading.local()  # the parent's holds are not the child's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Down:
    """Marker: Redis did not answer; use the fallback."""


DOWN = _Down()


def _renew_interval(settings: RedisSettings) -> float:
    """How often a holder renews the fleet lock: often enough that a waiter tells a dead holder (or a ghost
    lock left by a frozen Redis) from a live one within about a second, whatever ``redisLockTTL`` is."""
    return min(settings.lock_ttl / 3, 0.5)


def _abandoned_after(settings: RedisSettings) -> float:
    """A lock whose remaining TTL fell this far below ``redisLockTTL`` has missed its renewals: no live
    holder renews it (same ``redisLockTTL`` fleet-wide assumed; a holder with a longer one only looks alive)."""
    return _renew_interval(settings) + 2 * settings.timeout + 0.3


class FleetHold:
    """What :meth:`RedisTokenStore.lock` yields: whether this process holds the fleet lock, and the means to
    make sure before doing what only the holder may do (refresh a rotating refresh token).

    ``held``: the fleet lock was taken (and is renewed by a thread).  ``lost``: it was held, and then a
    renewal, the ownership check or the fenced save found another token there (this process was paused
    past ``redisLockTTL``, or Redis lost the key in a failover).
    """

    def __init__(self, store: RedisTokenStore, key: str) -> None:
        self._store = store
        self._key = key
        self._lock: Any = None  # redis.lock.Lock, built with the client
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.held = False
        self.lost = False
        #: The last :meth:`RedisTokenStore.load` under this hold read Redis while the lock was held (not the
        #: fallback, not before the lock was taken): only then is its refresh token the fleet's newest.
        self.read_shared = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"FleetHold(held={self.held}, lost={self.lost})"

    def _redis_lock(self, client: Any) -> Any:
        if self._lock is None:
            self._lock = client.lock(self._store.lock_key(self._key), timeout=self._store.settings.lock_ttl,
                                     blocking=False, thread_local=False)
        return self._lock

    def take(self, deadline: float, *, early: bool) -> str:
        """Try for the fleet lock until ``deadline``.  ``early``: also stop waiting when another process
        stores a new value (``"stored"``) or the holder stopped renewing (``"abandoned"``); ``"down"`` when
        Redis does not answer, ``"held"`` once ours.  ``TokenStoreError`` at the deadline."""
        store, settings = self._store, self._store.settings
        store._forget_orphans()
        data_key, lock_key = store.data_key(self._key), store.lock_key(self._key)
        abandoned_pttl = store._abandoned_pttl_ms()
        seen: Any = DOWN
        delay = 0.005

        def acquire(client: Any) -> bool:
            return bool(self._redis_lock(client).acquire(blocking=False, token=self.token))

        while True:
            got = store._redis("lock", acquire)
            if got is DOWN:
                # the SET may still be applied by a Redis that froze after receiving it: release it later
                store._orphaned(lock_key, self.token)
                return "down"
            if got:
                self.held, self.lost, self.read_shared = True, False, False
                self._start_renewing()
                return "held"
            watched = store._redis("lock", lambda r: r.pipeline(transaction=False).get(data_key).pttl(lock_key)
                                   .execute())
            if watched is DOWN:
                return "down"
            current, expires_in = watched
            if early:
                if seen is DOWN:
                    seen = current
                elif current is not None and current != seen:
                    return "stored"  # another process stored a new value: the caller reads it
                if 0 <= expires_in < abandoned_pttl:
                    return "abandoned"  # nobody renews it: a dead holder, or a ghost of a frozen Redis
            if time.monotonic() >= deadline:
                raise TokenStoreError(
                    f"Timed out after {settings.lock_wait:g}s waiting for the Redis lock {lock_key}",
                    hint="Another process holds it and keeps renewing it (a slow login?); raise "
                    "tokenStoreLockTimeout, or look at the lock's value for the holder's host and pid",
                )
            pause = delay * (0.5 + random.random())
            time.sleep(min(pause, expires_in / 1000) if expires_in > 0 else pause)
            delay = min(delay * 2, 0.05)

    def exclusive(self) -> bool:
        """True when this process holds the fleet lock now, asked of Redis (one GET), and the record last
        loaded under it came from Redis with the lock held: call it right before sending a rotating refresh
        token.  False when it was never taken, was lost, Redis does not answer, or the record came from the
        fallback (then :meth:`acquire_exclusive`, and load again)."""
        if not self.held or self.lost or not self.read_shared:
            return False
        owned = self._store._redis("lock", lambda r: self._redis_lock(r).owned(), force=True)
        if owned is DOWN:
            return False
        if not owned:
            self.lost = True
            log.warning("flyteauth: this process lost the Redis fleet lock (paused past redisLockTTL?)")
        return bool(owned)

    def acquire_exclusive(self) -> bool:
        """Wait for the fleet lock itself (no early return), up to ``tokenStoreLockTimeout``: for a refresh
        that must not run outside it.  After True, read the store again: the previous holder may have
        stored a newer token.  False when Redis stayed unreachable that long."""
        store = self._store
        deadline = time.monotonic() + store.settings.lock_wait
        while self.held and not self.lost:  # held, but Redis did not confirm it: ask until it answers
            owned = store._redis("lock", lambda r: self._redis_lock(r).owned(), force=True)
            if owned is not DOWN:
                if owned:
                    return True
                self.lost = True
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(max(store._down_until - time.monotonic(), 0.05), max(deadline - time.monotonic(), 0)))
        self._stop_renewing()
        self.held, self.lost = False, False
        while time.monotonic() < deadline:
            self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
            if self._lock is not None:
                self._lock.local.token = None
            if self.take(deadline, early=False) == "held":
                return True
            # Redis down: try again once it may answer (the store leaves it alone RETRY_INTERVAL)
            time.sleep(min(max(self._store._down_until - time.monotonic(), 0.05), max(deadline - time.monotonic(), 0)))
        return False

    def _start_renewing(self) -> None:
        self._stop = threading.Event()
        interval = _renew_interval(self._store.settings)
        lock, store, stop = self._lock, self._store, self._stop

        def renew(client: Any) -> bool:
            from redis.exceptions import LockNotOwnedError

            try:
                return bool(lock.reacquire())  # back to the full TTL, only if the token is still ours
            except LockNotOwnedError:
                return False

        def renewing() -> None:
            last_ok = time.monotonic()
            while not stop.wait(interval):
                result = store._redis("renew", renew, force=True)
                if result is DOWN:
                    if time.monotonic() - last_ok > store.settings.lock_ttl:
                        self.lost = True  # unrenewed for a whole TTL: assume it expired
                        return
                    continue
                if not result:
                    self.lost = True
                    log.warning("flyteauth: the Redis fleet lock expired under this process (paused past "
                                "redisLockTTL?); it will not overwrite what the next holder saves")
                    return
                last_ok = time.monotonic()

        self._renewer = threading.Thread(target=renewing, name="flyteauth-redis-lock", daemon=True)
        self._renewer.start()

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self._store.settings.timeout * 2)
            self._renewer = None

    def release(self) -> None:
        self._stop_renewing()
        if not self.held:
            return
        self.held = False
        if self.lost:
            return
        lock = self._lock

        def release(client: Any) -> None:
            from redis.exceptions import LockError

            with contextlib.suppress(LockError):
                lock.release()

        if self._store._redis("unlock", release, force=True) is DOWN:
            self._store._orphaned(self._store.lock_key(self._key), self.token)


class RedisTokenStore:
    """Tokens (and discovery results) in Redis, encrypted, with a fleet-wide lock and a local fallback."""

    def __init__(self, config: AuthConfig | None = None, *, settings: RedisSettings | None = None,
                 fallback: Any = None) -> None:
        _require_redis()  # before the key checks: without the extra, installing it is the first fix
        self.settings = settings or redis_settings(config)
        self._config = config
        self._fernet: Any = None
        if self.settings.keys:
            try:
                from cryptography.fernet import Fernet, MultiFernet
            except ImportError:
                raise ConfigError("Encrypting the redis store needs the cryptography package",
                                  hint=INSTALL_HINT) from None
            self._fernet = MultiFernet([Fernet(k) for k in self.settings.keys])
        self._fallback = fallback
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._guard = threading.Lock()
        self._local = threading.local()  # the FleetHolds of this thread, by key (for the fenced save)
        #: Lock tokens whose SET or DEL timed out: released on the next contact (see _forget_orphans).
        self._orphans: list[tuple[str, str]] = []
        self._down_until = 0.0
        self._down = False
        self._warned: set[str] = set()
        self.commands = 0  # Redis commands sent (tests and benchmarks)
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"RedisTokenStore({self._where()!r})"

    def describe(self) -> str:
        return f"redis ({self._where()}, {'encrypted' if self._fernet else 'PLAINTEXT'}, " \
               f"fallback {self.settings.fallback})"

    def _where(self) -> str:
        return _masked(self.settings.url)  # never the password

    # -- keys -------------------------------------------------------------------------------------
    def _digest(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def data_key(self, key: str) -> str:
        # {hash tag}: the value and its lock live in one Redis Cluster slot (the fenced save touches both)
        return self.settings.key_prefix + "{" + self._digest(key) + "}"

    def lock_key(self, key: str) -> str:
        return self.settings.key_prefix + "lock:{" + self._digest(key) + "}"

    # -- talking to Redis, or not -------------------------------------------------------------------
    def _redis(self, op: str, fn: Callable[[Any], Any], *, force: bool = False) -> Any:
        """Run ``fn(client)``, or return :data:`DOWN` (Redis unreachable, slow or recently failed).

        ``force``: ask Redis even within :data:`RETRY_INTERVAL` of a failure.  The fleet lock's holder does
        (renewals, the read it refreshes from, the fenced save, the release): one command that timed out in
        another thread must not send its rotated refresh token to the fallback, where no other host sees it."""
        if not force and time.monotonic() < self._down_until:
            return DOWN
        try:
            import redis
        except ImportError:
            raise ConfigError("tokenStore redis needs the redis package", hint=INSTALL_HINT) from None
        try:
            if self._client is None:
                with self._guard:
                    if self._client is None:
                        self._client = make_client(self.settings)
            self.commands += 1
            result = fn(self._client)
        # RedisClusterException ("no reachable node") is not a RedisError
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            self._down_until = time.monotonic() + RETRY_INTERVAL
            if not self._down:
                self._down = True
                log.warning("flyteauth: Redis at %s failed on %s (%s); using the %s store until it answers again",
                            self._where(), op, type(exc).__name__, self.settings.fallback)
            return DOWN
        if self._down:
            self._down = False
            log.warning("flyteauth: Redis at %s answers again; sharing tokens through it", self._where())
        return result

    def _script(self, name: str, source: str) -> Callable[..., Any]:
        def run(client: Any, keys: list[str], args: list[Any]) -> Any:
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = client.register_script(source)
            return script(keys=keys, args=args, client=client)

        return run

    def fallback(self) -> Any:
        """The local store used while Redis is unreachable (built on first need)."""
        if self._fallback is None:
            with self._guard:
                if self._fallback is None:
                    if self.settings.fallback == "file":
                        from .file_store import FileTokenStore

                        self._fallback = FileTokenStore(self._config)
                    else:
                        from .memory_store import MemoryTokenStore

                        self._fallback = MemoryTokenStore(self._config)
        return self._fallback

    # -- values ---------------------------------------------------------------------------------------
    def _encode(self, key: str, field: str, value: Any) -> bytes:
        data = json.dumps({"version": FORMAT_VERSION, "key": key, "saved_at": time.time(), field: value}).encode()
        return self._fernet.encrypt(data) if self._fernet is not None else data

    def _decode(self, key: str, field: str, raw: bytes) -> Any:
        data = raw
        if self._fernet is not None:
            from cryptography.fernet import InvalidToken

            try:
                data = self._fernet.decrypt(raw)
            except InvalidToken:
                self._warn_once(key, "cannot be decrypted with any configured key (written with another key, or "
                                "in plaintext); treating it as absent")
                return None
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.get("key") != key or field not in record:
                raise ValueError("not a record for this key")
            return record[field]
        except (ValueError, TypeError, RecursionError):
            self._warn_once(key, "is not a readable record (encrypted with a key this process lacks?); "
                            "treating it as absent")
            return None

    def _warn_once(self, key: str, what: str) -> None:
        with self._guard:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("flyteauth: the Redis value %s %s", self.data_key(key), what)

    # -- TokenStore -------------------------------------------------------------------------------------
    def _hold(self, key: str) -> FleetHold | None:
        """This thread's :class:`FleetHold` on ``key``, inside :meth:`lock`."""
        hold: FleetHold | None = getattr(self._local, "holds", {}).get(key)
        return hold

    def load(self, key: str) -> Token | None:
        """The record in Redis (the fallback's while Redis does not answer).  Inside :meth:`lock` with the
        fleet lock held, Redis is asked even right after a failure, and the hold notes whether the record came
        from Redis: :meth:`FleetHold.exclusive` is True only then, so the refresh token the manager sends is
        the fleet's newest, never a host file's older copy."""
        hold = self._hold(key)
        held = hold is not None and hold.held
        raw = self._redis("load", lambda r: r.get(self.data_key(key)), force=held)
        if hold is not None:
            hold.read_shared = held and raw is not DOWN
        if raw is DOWN:
            stored: Token | None = self.fallback().load(key)
            return stored
        if raw is None:
            return None
        data = self._decode(key, "token", raw)
        if data is None:
            return None
        try:
            return Token.from_dict(data)
        except (ValueError, TypeError, KeyError):
            self._warn_once(key, "holds a malformed token; treating it as absent")
            return None

    def save(self, key: str, token: Token) -> None:
        """Write the token; inside :meth:`lock`, only while this process still holds the fleet lock (or, when
        it never got it, while nobody does): a holder paused past ``redisLockTTL`` never overwrites the newer
        record its successor saved.

        The holder's save of a token with a refresh token returns only once Redis has it (or the lock is known
        lost, or Redis stayed unreachable for ``tokenStoreLockTimeout``): a save that timed out is sent again,
        the lock renewed meanwhile.  Otherwise the next holder, on another host, would read the refresh token
        this one just rotated away from Redis and present it again: IdPs with reuse detection revoke the grant."""
        value = self._encode(key, "token", token.to_dict())
        ttl_ms = 0
        if token.expires_at is not None and token.refresh_token is None:
            ttl_ms = max(int((token.expires_at - time.time()) * 1000), 1)
        hold = self._hold(key)
        if hold is None:
            done = self._redis("save", lambda r: r.set(self.data_key(key), value, px=ttl_ms or None))
        else:
            fenced = self._script("fenced_set", _FENCED_SET)
            held = hold.held

            def attempt() -> Any:
                assert hold is not None
                return self._redis("save", lambda r: fenced(r, [self.lock_key(key), self.data_key(key)],
                                                            [hold.token if held else "", value, ttl_ms,
                                                             self._abandoned_pttl_ms()]), force=held)

            done = attempt()
            # A refresh token must reach the fleet (a token without one may go to the fallback at once).
            # Idempotent: the same value, written only while the lock is still ours.
            retry = held and token.refresh_token is not None
            deadline, delay = time.monotonic() + self.settings.lock_wait, 0.05
            while done is DOWN and retry and not hold.lost and time.monotonic() < deadline:
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
                delay = min(delay * 2, 0.5)
                done = attempt()
            if done is DOWN and retry:
                log.warning("flyteauth: Redis did not take the refreshed token under the fleet lock; it is kept "
                            "in the %s store only, and other hosts may present the refresh token it replaced "
                            "(an IdP with reuse detection then revokes the grant)", self.settings.fallback)
            if done is not DOWN and not done:
                hold.lost = hold.lost or hold.held
                log.warning("flyteauth: not saving the token to Redis: %s, so a newer value may be there "
                            "(this process keeps its token)", "this process lost the fleet lock (paused past "
                            "redisLockTTL?)" if hold.held else "another process holds the fleet lock")
                return
        if done is DOWN:
            self.fallback().save(key, token)

    def delete(self, key: str) -> None:
        self._redis("delete", lambda r: r.delete(self.data_key(key)))
        if self._fallback is not None or self.settings.fallback == "file":
            self.fallback().delete(key)

    # -- discovery cache (optional store capability, see flyteauth_core.discovery_cache) -------------
    # A record names the token endpoint, where the client secret goes.  Only the encrypted store shares it
    # (Fernet authenticates every record); a plaintext Redis keeps discovery in the local fallback store.
    def load_discovery(self, key: str) -> Mapping[str, Any] | None:
        if self._fernet is None:
            local = self._fallback_discovery("load_discovery", key)
            return local if isinstance(local, Mapping) else None
        raw = self._redis("load", lambda r: r.get(self.data_key(key)))
        if raw is DOWN:
            load = getattr(self.fallback(), "load_discovery", None)
            return load(key) if load is not None else None
        data = None if raw is None else self._decode(key, "discovery", raw)
        return data if isinstance(data, dict) else None

    def _fallback_discovery(self, method: str, *args: Any) -> Any:
        """The fallback store's discovery cache (a file store checks ownership; memory has none)."""
        call = getattr(self.fallback(), method, None)
        return call(*args) if call is not None else None

    def save_discovery(self, key: str, data: Mapping[str, Any], ttl: float) -> None:
        if self._fernet is None:
            self._fallback_discovery("save_discovery", key, data, ttl)
            return
        value = self._encode(key, "discovery", dict(data))
        ms = max(int(ttl * 1000), 1)
        if self._redis("save", lambda r: r.set(self.data_key(key), value, px=ms)) is DOWN:
            save = getattr(self.fallback(), "save_discovery", None)
            if save is not None:
                save(key, data, ttl)

    # -- the fleet lock -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[FleetHold]:
        """Hold the host lock and then, if Redis answers, the fleet lock for ``key``.

        The host lock (the file fallback's ``flock``) comes first and is kept throughout, so single flight
        holds on a host whatever Redis does: a process on the same host waits for the holder it knows
        of, never for a fallback lock the holder does not hold.  The fleet lock is redis-py's ``Lock``
        (``SET NX PX`` with this process's token, renewed by a thread, released by Lua).

        Yields a :class:`FleetHold`; ``hold.held`` is False when the fleet lock was not taken because
        another process stored a new value meanwhile (read it), its holder stopped renewing it (a dead
        holder or a ghost left by a frozen Redis), or Redis did not answer.  A caller about to refresh a
        rotating refresh token calls ``hold.exclusive()`` first (see :class:`FleetHold`).
        ``TokenStoreError`` after ``tokenStoreLockTimeout``.
        """
        with self._host_lock(key):
            hold = FleetHold(self, key)
            holds: dict[str, FleetHold] = self._local.__dict__.setdefault("holds", {})
            holds[key] = hold
            try:
                hold.take(time.monotonic() + self.settings.lock_wait, early=True)
                yield hold
            finally:
                holds.pop(key, None)
                hold.release()

    @contextlib.contextmanager
    def _host_lock(self, key: str) -> Iterator[None]:
        """The fallback's lock (an ``flock`` per host with ``redisFallback: file``), held under the fleet
        lock.  A fallback that cannot lock (no directory to write) costs the host lock, not the fleet lock."""
        lock = getattr(self.fallback(), "lock", None)
        held = None
        if lock is not None:
            try:
                held = lock(key)
                held.__enter__()
            except (OSError, ConfigError) as exc:
                held = None
                if "host-lock" not in self._warned:
                    self._warned.add("host-lock")
                    log.warning("flyteauth: cannot take the host lock of the %s fallback (%s); single flight "
                                "on this host relies on Redis alone", self.settings.fallback, exc)
        try:
            yield
        finally:
            if held is not None:
                held.__exit__(None, None, None)

    def _abandoned_pttl_ms(self) -> int:
        """A lock with less than this left (ms) has missed its renewals (see :func:`_abandoned_after`)."""
        return int((self.settings.lock_ttl - _abandoned_after(self.settings)) * 1000)

    def _forget_orphans(self) -> None:
        """Release lock tokens whose fate is unknown (an acquire or release that timed out): a frozen Redis
        may have applied the SET after the client gave up, leaving a ghost lock nobody renews.  redis-py's
        ``Lock.release`` deletes the key only if it still holds that token."""
        from redis.exceptions import LockError

        while self._orphans:
            lock_key, token = self._orphans[-1]

            def release(client: Any, name: str = lock_key, value: str = token) -> None:
                lock = client.lock(name, thread_local=False)
                lock.local.token = value.encode()
                with contextlib.suppress(LockError):
                    lock.release()

            if self._redis("unlock", release) is DOWN:
                return
            with contextlib.suppress(IndexError):
                self._orphans.pop()

    def _orphaned(self, lock_key: str, token: str) -> None:
        if (lock_key, token) not in self._orphans:
            self._orphans.append((lock_key, token))
            del self._orphans[:-16]  # a long outage must not grow it without bound

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


@hookimpl
def flyteauth_register_token_stores(register: Any) -> None:
    register("redis", RedisTokenStore, options=(*OPTIONS, DISCOVERY_TTL),
             description="tokens shared by a fleet through Redis, encrypted, with a fleet-wide refresh lock")
