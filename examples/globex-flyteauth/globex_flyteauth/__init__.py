"""globex-flyteauth: an example third-party flyteauth plugin (see README.md).

Everything it uses is flyteauth's public plugin contract: ``hookimpl``, ``Option``, ``Token``,
``AcquireRequest``, ``flyteauth_core.parsers`` and ``flyteauth_providers.oauth``.
"""

from __future__ import annotations

import logging
from typing import Any

from flyteauth_core import AcquireRequest, AuthConfig, Option, Token, TokenEvent, hookimpl
from flyteauth_core.parsers import boolean
from flyteauth_providers.oauth import client_auth, request_token

log = logging.getLogger("globex_flyteauth")

#: Our own config keys: written in the flyteauth: (or admin:) section, or as $FLYTEAUTH_GLOBEX_TENANT.
TENANT = Option("globexTenant", help="the Globex tenant whose tokens we request")
SEND_TENANT_HEADER = Option("globexSendTenantHeader", parse=boolean, default=True,
                            help="add x-globex-tenant to every call")

#: Events seen by this process (a real plugin would export metrics instead).
EVENTS: list[str] = []


class GlobexAuthenticator:
    """Client credentials against Globex's IdP, with the tenant as an extra form field."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.tenant = TENANT.read(config)
        if not self.tenant:
            from flyteauth_core.errors import ConfigError

            raise ConfigError("authType Globex needs globexTenant", hint="Set globexTenant in the flyteauth: section")

    def acquire(self, request: AcquireRequest) -> Token:
        secret = self.config.resolve_client_secret()  # inline, env var or file, as configured
        return request_token(
            request,
            {"grant_type": "client_credentials", "tenant": self.tenant, "scope": " ".join(self.config.scopes)},
            auth=client_auth(self.config.client_id, secret),
        )


class TenantHeader:
    """An extra interceptor: adds ``x-globex-tenant`` beside the token.  Never asks for a retry."""

    def __init__(self, tenant: str) -> None:
        self._metadata = (("x-globex-tenant", tenant),)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def metadata_async(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def rejected(self, sent: Any) -> bool:
        return False


def tenant_header(config: AuthConfig) -> TenantHeader | None:
    """Only for Globex sessions that want it; ``None`` means "not configured, skip me".

    ``config.auth_type`` is the registered name (``Globex``) whether the user wrote ``globex``,
    ``GLOBEX`` or the alias ``globex-corp``."""
    if config.auth_type != "Globex" or not SEND_TENANT_HEADER.read(config):
        return None
    tenant = TENANT.read(config)
    return TenantHeader(tenant) if tenant else None


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("Globex", GlobexAuthenticator, aliases=("globex-corp",), options=(TENANT, SEND_TENANT_HEADER),
             description="Globex client credentials with a tenant")


@hookimpl
def flyteauth_register_interceptors(register: Any) -> None:
    register("globex-tenant-header", tenant_header)


@hookimpl
def flyteauth_token_event(event: TokenEvent) -> None:
    EVENTS.append(event.kind)  # the event never carries a secret
    log.debug("globex: token %s for %s", event.kind, event.endpoint)
