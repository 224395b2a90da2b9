"""flyte 2.x, route (b): flyte's own clients (``ClientSet``, ``flyte.remote``) authenticated by an AuthSession.

flyte 2.x has no auth plugin hook: ``flyte.init`` matches five fixed auth types.  But flyte builds every
service client from one frozen ``SessionConfig`` (endpoint, ConnectRPC interceptors, HTTP client), and
``ClientSet(session_config)`` takes it as its only constructor argument; ``ClientSet.session_config``
is documented as the way "external packages ... create their own ConnectRPC service clients sharing the
same transport and auth interceptors".  So the supported seam is the constructor, no monkeypatching::

    from flyteauth_core import AuthSession, load_config
    from flyteauth_integrations import flyte as flyteauth_flyte

    session = AuthSession(load_config())
    client = await flyteauth_flyte.client_set(session)            # a flyte ClientSet
    await client.identity_service.user_info(UserInfoRequest())    # token attached before the first call

    await flyteauth_flyte.init(session, project="p", domain="d")  # flyte.init + this ClientSet, so
    await flyte.remote.User.get.aio()                             # flyte.remote / flyte.run use it too

What we take from flyte, and how public it is (flyte 2.12):

* ``SessionConfig`` and ``ClientSet`` (``flyte.remote._client``): constructor arguments only.  The HTTP
  client is a pyqwest client like flyte's (``SessionConfig.new_http_client()``: pyqwest's timeouts and
  keep-alives, which flyte 2.12 also uses, the OS resolver, trusting exactly ``caCertFilePath`` or else
  the system store) that does **not follow redirects**.  flyte's own follows them, and pyqwest strips
  only a few header names (``authorization``, ``proxy-authorization``) from a hop to another origin, so
  a 302/307 from the endpoint (an ingress, an SSO proxy) would carry a ``flyte-authorization`` token
  there; a Connect RPC has no use for a redirect, which is now the call's error.  ``new_http_client()``
  of the returned config builds the same non-following client (flyte calls it to replace a dead pool).
* flyte's ``DefaultMetadataInterceptor`` (``x-request-id``) and retry interceptors (UNAVAILABLE/INTERNAL,
  ``rpc_retries``), in the order ``create_session_config`` puts them, so calls look like flyte's own.
* :func:`init` only: ``flyte._initialize.replace_client``, the one function that puts a ClientSet into
  flyte's global config (``flyte.init`` builds its own and has no argument for one).  Without it, use
  :func:`client_set` and call the services yourself.

Limits.  ``insecureSkipVerify`` is refused (flyte fetches the server's own chain for that; give
``caCertFilePath`` instead).  flyte's cluster-aware services (data proxy, secrets, images, app logs)
build a *new* session with flyte's own auth when ``SelectCluster`` names an endpoint other than this
one; it uses ``cluster_auth`` (flyte ``create_session_config`` keyword arguments, e.g.
``{"auth_type": "ExternalCommand", "command": ["flyteauth", "token"]}``: route (a) for those calls).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flyteauth_core.errors import ConfigError

if TYPE_CHECKING:
    from flyte.remote._client.auth._session import SessionConfig
    from flyte.remote._client.controlplane import ClientSet

    from flyteauth_core import AuthSession

__all__ = ["client_set", "init", "session_config"]


def _flyte_interceptors(rpc_retries: int | None) -> tuple[list[Any], list[Any]]:
    """flyte's own non-auth interceptors (before and after auth), as ``create_session_config`` orders them."""
    from flyte.remote._client.auth._interceptors.default_metadata import DefaultMetadataInterceptor

    retry: list[Any] = []
    if rpc_retries:
        from flyte.remote._client.auth._interceptors.retry import (
            RetryServerStreamInterceptor,
            RetryUnaryInterceptor,
        )

        retry = [RetryUnaryInterceptor(max_attempts=rpc_retries + 1),
                 RetryServerStreamInterceptor(max_attempts=rpc_retries + 1)]
    return [DefaultMetadataInterceptor()], retry


def _read_ca(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read caCertFilePath {path!r}: {exc.strerror}",
                          hint="Point caCertFilePath at the PEM bundle that signed the Flyte endpoint") from None


async def session_config(session: AuthSession, *, rpc_retries: int | None = 3,
                         cluster_auth: Mapping[str, Any] | None = None) -> SessionConfig:
    """A flyte ``SessionConfig`` for ``session.config.endpoint`` whose calls authenticate through ``session``.

    ``rpc_retries``: flyte's transient-error retries (``flyte.init`` default 3; ``None``/0: none).
    ``cluster_auth``: flyte auth keyword arguments for per-cluster sessions flyte builds itself (module doc).
    """
    config = session.config
    if config.insecure_skip_verify and not config.use_plaintext:
        raise ConfigError("insecureSkipVerify is not supported for flyte clients built by flyteauth",
                          hint="Set caCertFilePath to the CA bundle of the Flyte endpoint instead")
    ca = None if config.use_plaintext else await asyncio.to_thread(_read_ca, config.ca_cert_file_path)
    before, after = _flyte_interceptors(rpc_retries)
    try:
        bare = _session_config_class()(endpoint=config.http_base_url, insecure=config.use_plaintext,
                                       insecure_skip_verify=False, interceptors=(), http_client=None,
                                       auth_kwargs=dict(cluster_auth or {}), tls_ca_cert=ca)
    except TypeError as exc:  # pragma: no cover - a flyte release whose SessionConfig changed its fields
        raise ConfigError(f"This flyte release's SessionConfig does not take the fields flyteauth sets: {exc}",
                          hint="Use a flyte release supported by flyteauth (2.12), or route (a): "
                               "authType: ExternalCommand with command: [flyteauth, token]") from None
    return dataclasses.replace(bare, http_client=bare.new_http_client(),
                               interceptors=(*before, *session.connect_interceptors(), *after))


def _no_redirect_http_client(tls_ca_cert: bytes | None) -> Any:
    """A pyqwest ``Client`` for Connect calls that never follows a redirect, so the headers the session adds
    (the token under any key, ``proxy-authorization``) reach only the origin the client was pointed at.

    TLS as flyte builds it: a CA bundle means "trust exactly this", none means the system store.  The OS
    resolver, as flyte uses by default (VPNs, split DNS).  A pyqwest without ``follow_redirects`` (or
    ``tls_include_system_certs``) is a ``ConfigError``, not a client that silently follows.
    """
    import pyqwest

    try:
        transport = pyqwest.HTTPTransport(tls_ca_cert=tls_ca_cert, tls_include_system_certs=tls_ca_cert is None,
                                          use_system_dns=True, follow_redirects=False)
    except TypeError as exc:  # an old pyqwest: it would follow redirects, so refuse
        raise ConfigError(f"This pyqwest release cannot turn off redirects for flyte's clients: {exc}",
                          hint="pip install -U pyqwest (connectrpc allows releases older than this option)") from None
    return pyqwest.Client(transport=transport)


@functools.cache
def _session_config_class() -> type[SessionConfig]:
    from flyte.remote._client.auth._session import SessionConfig

    class NoRedirectSessionConfig(SessionConfig):
        """flyte's ``SessionConfig`` whose ``new_http_client()`` builds :func:`_no_redirect_http_client`.

        flyte calls ``new_http_client()`` to replace a pool it believes dead; overriding it here (rather
        than only passing ``http_client``) keeps that replacement from following redirects either.
        """

        def new_http_client(self) -> Any:
            return _no_redirect_http_client(self.tls_ca_cert)

    return NoRedirectSessionConfig


async def client_set(session: AuthSession, *, rpc_retries: int | None = 3,
                     cluster_auth: Mapping[str, Any] | None = None) -> ClientSet:
    """A flyte ``ClientSet`` (every control-plane service) authenticated by ``session``."""
    from flyte.remote._client.controlplane import ClientSet

    return ClientSet(await session_config(session, rpc_retries=rpc_retries, cluster_auth=cluster_auth))


async def init(session: AuthSession, *, rpc_retries: int | None = 3, cluster_auth: Mapping[str, Any] | None = None,
               **init_kwargs: Any) -> ClientSet:
    """``flyte.init.aio(**init_kwargs)``, then make :func:`client_set`'s ClientSet flyte's client, so
    ``flyte.remote.*`` and ``flyte.run`` authenticate through ``session``.  Returns that ClientSet.

    ``init_kwargs`` are ``flyte.init``'s non-connection arguments (project, domain, org, root_dir, storage,
    images, ...); the connection and its auth come from ``session.config``.
    """
    import flyte
    from flyte import _initialize

    owned = sorted(set(init_kwargs) & {"endpoint", "api_key", "auth_type", "command", "insecure",
                                       "insecure_skip_verify", "ca_cert_file_path", "client_id",
                                       "client_credentials_secret", "proxy_command", "scopes"})
    if owned:
        raise ConfigError(f"flyteauth_integrations.flyte.init() got connection arguments {owned}",
                          hint="The endpoint and its auth come from the AuthSession's config; pass them there")
    replace_client = getattr(_initialize, "replace_client", None)
    if replace_client is None:  # pragma: no cover - a flyte release without it
        raise ConfigError("This flyte release has no flyte._initialize.replace_client",
                          hint="Use flyteauth_integrations.flyte.client_set(session) and call its services")
    client = await client_set(session, rpc_retries=rpc_retries, cluster_auth=cluster_auth)
    await flyte.init.aio(**init_kwargs)
    replace_client(client)
    return client
