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
* **Fleet-wide single flight.**  ``lock(key)`` is ``SET NX PX`` with a random owner value, renewed while
  the refresh runs and released by a compare-and-delete script; a dead holder blocks the fleet for at
  most ``redisLockTTL`` (10 s).  Waiters poll the lock and the token value; when another process stores a
  new token they return at once and the manager reads it.
* **Shared discovery.**  ``load_discovery``/``save_discovery`` keep AuthMetadataService answers for the
  fleet (see ``flyteauth_core.discovery_cache``).

Keys: ``<prefix><sha256(store key)>`` for values, ``<prefix>lock:<sha256>`` for locks.  A value's TTL is the
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
from flyteauth_core.parsers import boolean, duration
from flyteauth_core.token import Token

log = logging.getLogger("flyteauth.redis_store")

FORMAT_VERSION = 1
#: After a failed command, Redis is left alone this long (calls go to the fallback store meanwhile).
RETRY_INTERVAL = 1.0
INSTALL_HINT = "Install the extra: pip install 'flyteauth[redis]'"

#: This store's config keys, declared at registration: ``flyteauth config`` validates and masks them, and
#: ``load_config`` reads each from the ``flyteauth:``/``admin:`` section or its ``FLYTEAUTH_<KEY>`` variable.
URL = Option("redisURL", secret=True,  # may carry a password
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

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
          "return 0")


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
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        raise ConfigError(f"redisURL has an unsupported scheme {scheme!r}",
                          hint="Use redis://, rediss:// (TLS), unix:// or redis+sentinel://")
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
        cluster=bool(_read(CLUSTER, config, env)),
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
    if settings.cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.url, retry=Retry(NoBackoff(), 0), **common)
    return redis.Redis.from_url(settings.url, retry=Retry(NoBackoff(), 0), health_check_interval=0, **common)


#: Live stores, so a forked child gets fresh locks (a lock held by another thread at fork time would never be
#: released in the child).  redis-py's connection pool notices the new pid by itself.
_LIVE: weakref.WeakSet[RedisTokenStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store._guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Down:
    """Marker: Redis did not answer; use the fallback."""


DOWN = _Down()


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
        parts = urllib.parse.urlsplit(self.settings.url)
        host = parts.netloc.rpartition("@")[2]  # never the password
        return f"{parts.scheme}://{host}{parts.path}"

    # -- keys -------------------------------------------------------------------------------------
    def _digest(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def data_key(self, key: str) -> str:
        return self.settings.key_prefix + self._digest(key)

    def lock_key(self, key: str) -> str:
        return self.settings.key_prefix + "lock:" + self._digest(key)

    # -- talking to Redis, or not -------------------------------------------------------------------
    def _redis(self, op: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)``, or return :data:`DOWN` (Redis unreachable, slow or recently failed)."""
        if time.monotonic() < self._down_until:
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
        except (redis.RedisError, OSError) as exc:
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
    def load(self, key: str) -> Token | None:
        raw = self._redis("load", lambda r: r.get(self.data_key(key)))
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
        value = self._encode(key, "token", token.to_dict())
        ttl_ms = None
        if token.expires_at is not None and token.refresh_token is None:
            ttl_ms = max(int((token.expires_at - time.time()) * 1000), 1)
        if self._redis("save", lambda r: r.set(self.data_key(key), value, px=ttl_ms)) is DOWN:
            self.fallback().save(key, token)

    def delete(self, key: str) -> None:
        self._redis("delete", lambda r: r.delete(self.data_key(key)))
        if self._fallback is not None or self.settings.fallback == "file":
            self.fallback().delete(key)

    # -- discovery cache (optional store capability, see flyteauth_core.discovery_cache) -------------
    def load_discovery(self, key: str) -> Mapping[str, Any] | None:
        raw = self._redis("load", lambda r: r.get(self.data_key(key)))
        if raw is DOWN:
            load = getattr(self.fallback(), "load_discovery", None)
            return load(key) if load is not None else None
        data = None if raw is None else self._decode(key, "discovery", raw)
        return data if isinstance(data, dict) else None

    def save_discovery(self, key: str, data: Mapping[str, Any], ttl: float) -> None:
        value = self._encode(key, "discovery", dict(data))
        ms = max(int(ttl * 1000), 1)
        if self._redis("save", lambda r: r.set(self.data_key(key), value, px=ms)) is DOWN:
            save = getattr(self.fallback(), "save_discovery", None)
            if save is not None:
                save(key, data, ttl)

    # -- the fleet lock -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the fleet-wide lock for ``key`` (or return early once another process stored a new value).

        ``TokenStoreError`` after ``tokenStoreLockTimeout``; while Redis is down, the fallback's lock.
        """
        lock_key, data_key = self.lock_key(key), self.data_key(key)
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        ttl_ms = int(self.settings.lock_ttl * 1000)
        deadline = time.monotonic() + self.settings.lock_wait
        seen: Any = DOWN
        delay = 0.005
        while True:
            got = self._redis("lock", lambda r: r.set(lock_key, owner, nx=True, px=ttl_ms))
            # the value (did the holder store a new one?) and when the lock expires (a dead holder's
            # lock is taken the moment it lapses), in one round trip
            watched: Any = DOWN if got is DOWN or got else self._redis(
                "lock", lambda r: r.pipeline(transaction=False).get(data_key).pttl(lock_key).execute())
            current, expires_in = (DOWN, 0) if watched is DOWN else watched
            if got is DOWN or (not got and current is DOWN):
                with self._fallback_lock(key):
                    yield
                return
            if got:
                break
            if seen is DOWN:
                seen = current
            elif current is not None and current != seen:
                yield  # another process stored a new value: the caller reads it, no lock needed
                return
            if time.monotonic() >= deadline:
                raise TokenStoreError(
                    f"Timed out after {self.settings.lock_wait:g}s waiting for the Redis lock {lock_key}",
                    hint="Another process holds it and keeps renewing it (a slow login?); raise "
                    "tokenStoreLockTimeout, or look at the lock's value for the holder's host and pid",
                )
            pause = delay * (0.5 + random.random())
            time.sleep(min(pause, expires_in / 1000) if expires_in > 0 else pause)
            delay = min(delay * 2, 0.05)
        stop = threading.Event()
        renew = self._script("renew", _RENEW)
        interval = self.settings.lock_ttl / 3

        def renewing() -> None:
            while not stop.wait(interval):
                self._redis("renew", lambda r: renew(r, [lock_key], [owner, ttl_ms]))

        renewer = threading.Thread(target=renewing, name="flyteauth-redis-lock", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=self.settings.timeout * 2)
            release = self._script("release", _RELEASE)
            self._redis("unlock", lambda r: release(r, [lock_key], [owner]))

    @contextlib.contextmanager
    def _fallback_lock(self, key: str) -> Iterator[None]:
        lock = getattr(self.fallback(), "lock", None)
        if lock is None:
            yield
            return
        with lock(key):
            yield

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


@hookimpl
def flyteauth_register_token_stores(register: Any) -> None:
    register("redis", RedisTokenStore, options=(*OPTIONS, DISCOVERY_TTL),
             description="tokens shared by a fleet through Redis, encrypted, with a fleet-wide refresh lock")
