"""Proxy authorization: a token in ``proxy-authorization`` from ``admin.proxyCommand``, or an ID token from a
platform token source (``proxyTokenSource``, ``proxyTokenAudience``: Google IAP with the GCP metadata server's
ID token for the IAP client id, or a GitHub Actions OIDC token, with no command to write).

For Flyte deployments behind an authenticating proxy (IAP, Istio, a corporate gateway).  The token is
managed by the core's own ``TokenManager`` (the command is its acquire function, the header key is
``proxy-authorization``), so it is cached, refreshed once however many callers ask, and invalidated and
re-fetched when the server rejects a call.  It is never stored and never sent to the identity provider,
unless ``admin.proxyAuthForIdP: true`` says the IdP sits behind the same proxy (then the session's HTTP
client factory adds it to IdP requests too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError
from flyteauth_core.lifecycle import TokenManager
from flyteauth_core.options import Option
from flyteauth_core.token import Token

HEADER = "proxy-authorization"


#: ``proxyTokenSource``/``proxyTokenAudience``: the ``proxy-authorization`` token from a platform token source.
PROXY_SOURCE = Option("proxyTokenSource", help="a platform token source (gcp-metadata, github-actions, file, "
                      "command, env) whose ID token goes in proxy-authorization (Google IAP); instead of proxyCommand")
PROXY_AUDIENCE = Option("proxyTokenAudience", help="the audience of that ID token (Google IAP: the OAuth client id "
                        "of the IAP-protected resource)")


def _from_platform(config: AuthConfig, source: str) -> Callable[[Token | None, str], Token]:
    """An acquire function reading the proxy's ID token from a platform token source, for its audience."""
    from flyteauth_core.http import HttpClientFactory
    from flyteauth_core.types import AcquireRequest

    from .platform_token import PlatformTokenReader

    options = {**config.options, "platformTokenSource": source,
               "platformTokenAudience": PROXY_AUDIENCE.read(config) or ""}
    reader = PlatformTokenReader(attrs.evolve(config, options=options))
    factory = HttpClientFactory(config)

    def acquire(previous: Token | None, reason: str) -> Token:
        token = reader.read(AcquireRequest(config=config, http_client_fn=factory.client))
        return Token(token.value, expires_at=token.exp)

    return acquire


class ProxyAuthorization(TokenManager):
    """A TokenManager whose token comes from ``proxyCommand`` (or ``proxyTokenSource``) and goes under
    ``proxy-authorization``."""

    def __init__(self, config: AuthConfig) -> None:
        argv = tuple(config.proxy_command)
        timeout = config.command_timeout
        source = PROXY_SOURCE.read(config)
        if source and argv:
            raise ConfigError("Both proxyCommand and proxyTokenSource say where the proxy-authorization token comes "
                              "from", hint="Keep one of them")

        def run_command(previous: Token | None, reason: str) -> Token:
            from .external_command import run_token_command  # loaded only where a proxyCommand is configured

            return run_token_command(argv, timeout=timeout, key="admin.proxyCommand")

        acquire = _from_platform(config, source) if source else run_command
        super().__init__(acquire, header_key=lambda: HEADER, auth_type="proxyCommand", endpoint=config.endpoint)
        #: Read by the session: add this header to IdP requests as well.
        self.send_to_idp = config.proxy_auth_for_idp


def proxy_authorization(config: AuthConfig) -> ProxyAuthorization | None:
    """The interceptor factory: None (skip) when no proxyCommand is configured."""
    return ProxyAuthorization(config) if config.proxy_command or PROXY_SOURCE.read(config) else None


@hookimpl
def flyteauth_register_interceptors(register: Any) -> None:
    register("proxy-authorization", proxy_authorization, options=(PROXY_SOURCE, PROXY_AUDIENCE))
