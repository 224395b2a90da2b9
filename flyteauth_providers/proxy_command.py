"""Proxy authorization: ``admin.proxyCommand`` prints a token that goes into ``proxy-authorization``.

For Flyte deployments behind an authenticating proxy (IAP, Istio, a corporate gateway).  The token is
managed by the core's own ``TokenManager`` (the command is its acquire function, the header key is
``proxy-authorization``), so it is cached, refreshed once however many callers ask, and invalidated and
re-fetched when the server rejects a call.  It is never stored and never sent to the identity provider,
unless ``admin.proxyAuthForIdP: true`` says the IdP sits behind the same proxy (then the session's HTTP
client factory adds it to IdP requests too).
"""

from __future__ import annotations

from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.lifecycle import TokenManager
from flyteauth_core.token import Token

HEADER = "proxy-authorization"


class ProxyAuthorization(TokenManager):
    """A TokenManager whose token comes from ``proxyCommand`` and goes under ``proxy-authorization``."""

    def __init__(self, config: AuthConfig) -> None:
        argv = tuple(config.proxy_command)
        timeout = config.command_timeout

        def acquire(previous: Token | None, reason: str) -> Token:
            from .external_command import run_token_command  # loaded only where a proxyCommand is configured

            return run_token_command(argv, timeout=timeout, key="admin.proxyCommand")

        super().__init__(acquire, header_key=lambda: HEADER, auth_type="proxyCommand", endpoint=config.endpoint)
        #: Read by the session: add this header to IdP requests as well.
        self.send_to_idp = config.proxy_auth_for_idp


def proxy_authorization(config: AuthConfig) -> ProxyAuthorization | None:
    """The interceptor factory: None (skip) when no proxyCommand is configured."""
    return ProxyAuthorization(config) if config.proxy_command else None


@hookimpl
def flyteauth_register_interceptors(register: Any) -> None:
    register("proxy-authorization", proxy_authorization)
