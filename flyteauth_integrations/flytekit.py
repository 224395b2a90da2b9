"""flytekit plugin: ``authType: flyteauth`` makes ``pyflyte`` and ``FlyteRemote`` authenticate through flyteauth.

Install the ``flytekit`` extra (``pip install -e '.[flytekit]'`` from a clone; flytekit >= 1.16.24, which
looks up unknown auth types in the entry-point group ``flytekit.auth``; we register ``flyteauth`` there) and
write, in the config flytekit already reads::

    admin:
      endpoint: dns:///flyte.example.com
      authType: flyteauth          # flytekit hands authentication to flyteauth
    flyteauth:                     # what flyteauth does: any provider, third-party plugins included
      authType: ClientSecret
      clientId: my-ci
      clientSecretLocation: /etc/secrets/flyte   # here, not in admin: (see below)

What the plugin guarantees, and why:

* **One AuthSession per process per (endpoint, config).**  flytekit builds an authenticator for every
  channel and interceptor; they all share the session, so a cold FlyteRemote hit by 32 threads makes one
  token request, and the session's proactive refresh means a call never carries an expired token.
* **flytekit's PlatformConfig wins for the connection** (endpoint, insecure, CA cert, skip-verify, proxy
  command, HTTP proxy), so flytekit's channel and flyteauth's discovery and IdP calls never disagree.
  Discovery runs once per session; flytekit's own ``ClientConfigStore`` is never asked (no duplicate
  metadata RPCs).
* **The first call already carries the token** (flytekit's base class sends nothing on the first call).
* **UNKNOWN costs no IdP request.**  flytekit's ``AuthUnaryInterceptor`` calls ``refresh_credentials()``
  after UNAUTHENTICATED *or* UNKNOWN; we read the status the interceptor saw and invalidate the token only
  for UNAUTHENTICATED (or when the status cannot be told, e.g. an HTTP 401 through flytekit's requests
  adapter).  An unrelated server error is retried by flytekit with the same, still valid token.
* **The rejection brake counts flytekit's retries without seeing them succeed.**  flytekit's interceptor
  returns its retry's outcome straight to the caller; nothing of ours runs after it (no callback, no
  outcome handed back), so the session never learns that a replacement token was accepted
  (``Accepting``, which flyteauth's own transports use).  A server that revokes tokens three times within
  ``RejectionBrake.window`` of each other is taken for one rejecting every token: the next rejection fails
  with ``TokenRejectedError`` for a few seconds.  Guessing success from the next call would be unsound
  (a retry rejected again is returned without a second ``refresh_credentials()``).
* **Where the ``flyteauth:`` section comes from.**  flytekit hands the factory its ``PlatformConfig`` but
  never the file it read.  :mod:`flyteauth_integrations.flytekit_hook` (a ``flytekit.plugins`` entry point,
  loaded by ``import flytekit``) marks every ``PlatformConfig`` that ``PlatformConfig.auto`` /
  ``Config.auto(config_file=...)`` returns with the file it was read from, so
  ``FlyteRemote(Config.auto(config_file="x.yaml"))`` needs nothing else.  A ``PlatformConfig`` built by hand
  falls back to :func:`use_config_file`, the newest file ``Config.auto`` read, then flytekit's own search
  (``FLYTECTL_CONFIG`` or pyflyte's ``--config``, ``./flytekit.config``, ``~/.flyte/config``,
  ``~/.flyte/config.yaml``), then ``UCTL_CONFIG``.  A ``./flytekit.config`` that the search found in the
  working tree is used to authenticate only once ``flyteauth trust`` recorded it, as our own search does
  (``flyteauth_core.trust``); a file named in code (``Config.auto(config_file=...)``, ``use_config_file``),
  by ``pyflyte --config``, ``$FLYTECTL_CONFIG`` or in ``~/.flyte/`` is the user's choice.
* **No silent browser login.**  ``admin.authType: flyteauth`` with no ``flyteauth:`` section naming a
  provider is a ``ConfigError`` at first use, naming the section (never a fall-back to Pkce).
* **flytekit forces ClientSecret** whenever ``admin.clientSecretLocation`` or ``admin.clientSecretEnvVar``
  is set (``PlatformConfig.auto``), and then never calls this plugin: keep those two keys in ``flyteauth:``.

flytekit before 1.16.24 has no plugin group: use ``authType: ExternalCommand`` with
``command: [flyteauth, token]`` (the credential helper, cached across processes) instead.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from flyteauth_core.errors import MissingExtraError

try:
    from flytekit.clients.auth.authenticator import Authenticator, ClientConfigStore
    from flytekit.clients.auth.keyring import Credentials
except ModuleNotFoundError as _missing:  # imported without flytekit: name the extra
    if (_missing.name or "").split(".")[0] != "flytekit":
        raise
    raise MissingExtraError("flyteauth_integrations.flytekit (admin.authType: flyteauth)", extra="flytekit",
                            package="flytekit") from None

if TYPE_CHECKING:
    from flytekit.configuration import PlatformConfig

    from flyteauth_core import AuthConfig, AuthSession
    from flyteauth_core.protocols import Metadata

log = logging.getLogger("flyteauth.flytekit")

#: The name users write in ``admin.authType`` (flytekit compares it lowercase).
AUTH_TYPE = "flyteauth"

_sessions: dict[tuple[Any, ...], AuthSession] = {}
_sessions_lock = threading.Lock()
_explicit_config: str | None = None


def use_config_file(path: str | os.PathLike[str] | None) -> None:
    """Read the ``flyteauth:`` section from ``path`` for ``PlatformConfig`` objects built by hand.

    Not needed for ``Config.auto(config_file=...)``: that config carries its file (see the module docstring).
    ``None`` restores the search.
    """
    global _explicit_config
    _explicit_config = None if path is None else os.fspath(path)


def config_file(cfg: PlatformConfig | None = None) -> str | None:
    """The file ``cfg`` was read from (``Config.auto(config_file=...)``); else :func:`use_config_file`'s;
    else the newest file ``Config.auto`` read; else the file flytekit reads when given no path, else
    ``$UCTL_CONFIG``; None when there is none."""
    found_for_cfg = _hooked_source(cfg)
    if found_for_cfg is not None:
        return found_for_cfg[0]
    if _explicit_config is not None:
        return _explicit_config
    from flytekit.configuration.file import get_config_file

    found = get_config_file(None)  # flytekit's own search, so the two can never pick different files
    if found is not None:
        return str(getattr(found, "location", None) or found._location)
    uctl = os.environ.get("UCTL_CONFIG")
    return uctl if uctl and os.path.isfile(os.path.expanduser(uctl)) else None


def _hooked_source(cfg: PlatformConfig | None) -> tuple[str, bool] | None:
    """``(file, named by the caller)`` the flytekit hook recorded for ``cfg`` (see flytekit_hook); for a
    ``PlatformConfig`` it never saw (built by hand, or copied by ``Config.for_endpoint``) with no explicit
    :func:`use_config_file`, the newest file ``Config.auto`` read."""
    if cfg is None:
        return None
    from . import flytekit_hook

    if getattr(cfg, flytekit_hook.ATTRIBUTE, None) is not None:
        return flytekit_hook.source_of(cfg)  # its own mark (None: flytekit read no file for it)
    if _explicit_config is not None:
        return None  # use_config_file() decides for configs the hook never saw
    return flytekit_hook.source_of(cfg) or flytekit_hook.last_source()


def named_in_code(cfg: PlatformConfig | None) -> bool:
    """Whether ``cfg``'s file was named by the caller (``Config.auto(config_file=...)``, ``for_endpoint``,
    :func:`use_config_file`): the user's choice, not a file flytekit's search found in the working tree."""
    if _explicit_config is not None:
        return True
    found = _hooked_source(cfg)
    return bool(found and found[1])


#: What ``pyflyte --config PATH`` sets for flytekit's search.
_PYFLYTE_CONFIG_ENV = "_FLYTECTL_CONFIG_PYFLYTE_OVERRIDE"


def _found_by_search(path: str, cfg: PlatformConfig | None = None) -> bool:
    """Whether flytekit's search found ``path`` (``./flytekit.config``) rather than the user naming it
    (``Config.auto(config_file=...)``, :func:`use_config_file`, ``pyflyte --config``; ``$FLYTECTL_CONFIG`` and
    ``~/.flyte/`` are exempted by ``load_config`` itself)."""
    if _explicit_config is not None or named_in_code(cfg):
        return False
    named = os.environ.get(_PYFLYTE_CONFIG_ENV)
    return not (named and os.path.realpath(os.path.expanduser(named)) == os.path.realpath(path))


def _connection(cfg: PlatformConfig) -> dict[str, Any]:
    """What flytekit decided about the connection; these override the file so the two never disagree."""
    return {
        "insecure": bool(cfg.insecure),
        "insecure_skip_verify": bool(cfg.insecure_skip_verify),
        "ca_cert_file_path": cfg.ca_cert_file_path or None,
        "proxy_command": tuple(cfg.proxy_command or ()),
        "http_proxy_url": cfg.http_proxy_url or None,
    }


def _same_endpoint(ours: str, theirs: str) -> bool:
    """flytekit strips ``dns:///``; keep the file's spelling when it names the same endpoint, so the store
    key matches what ``flyteauth login`` used."""
    return ours.removeprefix("dns:///").rstrip("/") == theirs.removeprefix("dns:///").rstrip("/")


def resolve_config(cfg: PlatformConfig, path: str | None) -> AuthConfig:
    """flyteauth's config for flytekit's ``cfg``: the file's ``flyteauth:``/``admin:`` sections, env, and
    flytekit's connection settings on top.  Without a file, flytekit's own credentials are used."""
    import attrs

    from flyteauth_core import AuthConfig, load_config

    overrides = _connection(cfg)
    if path is not None:
        # A file flytekit's search found (./flytekit.config) needs trust like ours does; one named by
        # use_config_file() is the user's choice (load_config exempts $FLYTECTL_CONFIG and ~/.flyte/ itself).
        config = load_config(path, found=_found_by_search(path, cfg), **overrides)
        if not _same_endpoint(config.endpoint, cfg.endpoint):
            config = attrs.evolve(config, endpoint=cfg.endpoint)
    elif not cfg.client_credentials_secret:
        from flyteauth_core.errors import ConfigError

        raise ConfigError(
            f"flytekit's authType is {cfg.auth_mode!r} (flyteauth), but no config file with a flyteauth: section "
            "was found, so no provider is chosen (it would fall back to a browser login, Pkce)",
            hint="Pass the file to flytekit (Config.auto(config_file=path)) or set FLYTECTL_CONFIG, and give it "
            "a flyteauth: section naming the provider (e.g. authType: ClientSecret)",
        )
    else:
        config = AuthConfig(endpoint=cfg.endpoint, client_id=cfg.client_id or None,
                            client_secret=cfg.client_credentials_secret or None, scopes=tuple(cfg.scopes or ()),
                            audience=cfg.audience or None, **overrides)
    if (config.auth_type or "").lower() == AUTH_TYPE:
        # admin.authType names this hook, and no flyteauth: section chose a provider: infer one.
        config = attrs.evolve(config, auth_type=None)
    return config


def session_for(cfg: PlatformConfig) -> AuthSession:
    """The process-wide AuthSession for flytekit's ``cfg`` (one per endpoint and config)."""
    from flyteauth_core.commands.token import cache_key

    path = config_file(cfg)
    connection = _connection(cfg)
    key = (cfg.endpoint, cache_key(path), tuple(sorted(connection.items())), cfg.client_id,
           tuple(cfg.scopes or ()), cfg.audience)
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            from flyteauth_core import AuthSession

            session = AuthSession(resolve_config(cfg, path))
            _sessions[key] = session
    return session


class FlyteauthAuthenticator(Authenticator):  # type: ignore[misc]
    """A flytekit ``Authenticator`` whose token comes from a shared :class:`AuthSession`."""

    def __init__(self, session: AuthSession) -> None:
        super().__init__(endpoint=session.config.endpoint, header_key="authorization")
        self.session = session
        self._sent = threading.local()  # what this thread last sent: a rejection invalidates exactly that

    def fetch_grpc_call_auth_metadata(self) -> tuple[str, str] | None:
        metadata: Metadata = self.session.manager.metadata()  # blocks only when there is no usable token
        self._sent.value = metadata
        if not metadata:
            return None
        key, value = metadata[0]
        self._header_key = key
        return key, value

    def get_credentials(self) -> Credentials:
        """flytekit's requests adapter asks this before each HTTP call; never None, so it skips its refresh."""
        token = self.session.get_token()
        return Credentials(access_token=token.access_token, for_endpoint=self._endpoint)

    def refresh_credentials(self) -> None:
        """Called by flytekit after a failed call.  Only an UNAUTHENTICATED rejection invalidates the token
        (the next fetch then gets a new one, single-flight); UNKNOWN is an ordinary server error."""
        code = _failed_status()
        if code == "UNKNOWN":
            log.debug("flyteauth: flytekit saw UNKNOWN; not an auth failure, keeping the token")
            return
        sent = getattr(self._sent, "value", ())
        if sent:
            self.session.manager.rejected(sent)

    def __repr__(self) -> str:
        return f"FlyteauthAuthenticator({self.session!r})"


def _failed_status() -> str | None:
    """The gRPC status name flytekit's ``AuthUnaryInterceptor`` is reacting to, read from its frame."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            break
        if frame.f_code.co_name in ("intercept_unary_unary", "intercept_unary_stream") and (
                "flytekit" in frame.f_code.co_filename):
            failed = frame.f_locals.get("e") or frame.f_locals.get("c")
            code = getattr(failed, "code", None)
            try:
                status = code() if callable(code) else None
            except Exception:  # a call object that cannot report its status
                return None
            return getattr(status, "name", None)
        frame = frame.f_back
    return None


def authenticator_factory(cfg: PlatformConfig, cfg_store: ClientConfigStore | None = None) -> FlyteauthAuthenticator:
    """The ``flytekit.auth`` entry point: ``(PlatformConfig, ClientConfigStore) -> Authenticator``.

    ``cfg_store`` (flytekit's discovery) is deliberately unused: the shared session discovers once.
    """
    del cfg_store
    return FlyteauthAuthenticator(session_for(cfg))


def reset() -> None:
    """Close and forget every shared session (tests; or after changing credentials in a long process)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
