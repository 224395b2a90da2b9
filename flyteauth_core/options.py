"""Config keys that a plugin declares for itself, and where a config value came from.

A provider, store or interceptor passes its keys to ``register(..., options=(...))``::

    REDIS_URL = Option("redisURL", secret=True, help="redis://host:6379/0")
    LOCK_TTL = Option("redisLockTTL", parse=parsers.duration, default=30.0)

    register("redis", RedisStore, options=(REDIS_URL, LOCK_TTL))

    class RedisStore:
        def __init__(self, config):
            self.url = REDIS_URL.read(config)        # parsed, default applied, errors name the key

The user writes the key in the ``flyteauth:`` (or ``admin:``) section of their config file, or sets
``FLYTEAUTH_REDIS_URL`` (the env name is derived from the key unless given); ``load_config`` puts the raw
value in ``config.options`` with its :class:`Source`, ``flyteauth config`` validates it with ``parse`` and
masks it when ``secret``, and never reports a declared key as unknown.

A leaf module (it imports ``parsers`` and ``errors`` only), so the registry and the config loader can both
use it without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from .errors import ConfigError
from .parsers import Parser, string

__all__ = ["ENV_PREFIX", "Option", "Source", "env_name"]

#: Our own environment variables: ``FLYTEAUTH_<KEY>``.
ENV_PREFIX = "FLYTEAUTH_"
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class Source(str):
    """Where a config value came from, in the user's own terms.

    ``key`` is the key as the user wrote it (``admin.clientSecretLocation``, ``flyteauth.authType``,
    ``[credentials] client_secret``, ``$FLYTE_CREDENTIALS_CLIENT_SECRET``, or the keyword argument's name);
    ``origin`` is where: a config file's path, ``environment``, ``argument`` or ``default``.

    It is also a ``str`` (``<file>:admin.key``, ``$VAR``, ``argument``), the form 0.1.0 recorded, so code
    that compares or prints ``config.sources[field]`` keeps working.
    """

    key: str
    origin: str

    def __new__(cls, key: str, origin: str) -> Source:
        if origin in ("environment",):
            text = key
        elif origin in ("argument", "default"):
            text = origin
        else:
            text = f"{origin}:{key}"
        self = super().__new__(cls, text)
        self.key = key
        self.origin = origin
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        return (self.key, self.origin)

    @property
    def in_file(self) -> bool:
        return self.origin not in ("environment", "argument", "default")

    def describe(self) -> str:
        """``admin.clientId in /home/me/.flyte/config.yaml``, ``$FLYTE_ADMIN_ENDPOINT``, ``argument``."""
        if self.in_file:
            return f"{self.key} in {self.origin}"
        if self.origin == "argument":
            return f"argument {self.key}" if self.key != "argument" else "argument"
        return self.key if self.origin == "environment" else self.origin


def env_name(key: str) -> str:
    """``FLYTEAUTH_`` + the key in upper snake case: ``redisURL`` -> ``FLYTEAUTH_REDIS_URL``."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.replace(".", "_"))
    return ENV_PREFIX + snake.upper()


class _HasOptions(Protocol):
    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def sources(self) -> Mapping[str, str]: ...


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ConfigError(f"An option key must be a YAML key like 'redisURL', got {key!r}")
    return key


@attrs.frozen
class Option:
    """One config key a plugin reads.

    ``key``: as written in the ``flyteauth:``/``admin:`` section (camelCase by convention).  ``parse``:
    ``(key, raw) -> value`` from :mod:`flyteauth_core.parsers` (``string``, ``boolean``, ``duration``,
    ``integer``, ``strings``, ``argv``) or your own; it raises ``ConfigError`` naming the key.
    ``secret``: masked by ``flyteauth config`` and never logged.  ``mask``: shown in part, as the schema's
    fields are: ``"argv"`` (a command: its program, ``****`` per argument, since arguments may carry
    secrets) or ``"url"`` (a URL without its password).  ``env``: the environment variable (default
    ``FLYTEAUTH_<KEY>``; ``""`` for none).  ``default``: returned by :meth:`read` when unset.
    """

    key: str = attrs.field(converter=_check_key)
    parse: Parser = string
    secret: bool = False
    default: Any = None
    env: str | None = None
    help: str = ""
    mask: str | None = None

    @property
    def env_var(self) -> str | None:
        if self.env == "":
            return None
        return self.env or env_name(self.key)

    def read(self, config: _HasOptions) -> Any:
        """The parsed value from ``config.options`` (file, ``FLYTEAUTH_`` env, or ``options=``), else
        ``default``.  A bad value is a ``ConfigError`` naming the key as the user wrote it, and where."""
        raw = config.options.get(self.key)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            return self.default
        source = config.sources.get(f"options.{self.key}")
        label = source.describe() if isinstance(source, Source) else self.key
        return self.parse(label, raw)


def coerce_options(value: Any) -> tuple[Option, ...]:
    """``options=`` of ``register``: Options, or plain key strings (read as strings)."""
    if value is None:
        return ()
    if isinstance(value, (str, Option)) or not isinstance(value, Iterable):
        value = (value,)
    out = []
    for item in value:
        if isinstance(item, Option):
            out.append(item)
        elif isinstance(item, str):
            out.append(Option(item))
        else:
            raise ConfigError(f"options must be flyteauth_core.options.Option values or key strings, got {item!r}")
    return tuple(out)
