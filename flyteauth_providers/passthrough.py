"""``Passthrough``: the caller supplies the token; ``NoAuth``: send nothing (sandboxes).

Passthrough takes the token from, in this order:

* ``AuthConfig(token=...)`` / ``load_config(token=...)`` / ``$FLYTEAUTH_TOKEN`` (a token handed in),
* ``admin.tokenFilePath`` (``$FLYTEAUTH_TOKEN_FILE_PATH``): re-read whenever a new token is needed, so a
  sidecar that rotates the file is picked up when the server rejects the old token,
* ``admin.tokenEnvVar``: the name of an env var, read at the same moments.

Its expiry is the JWT ``exp`` when the token is a JWT, else unknown (used until rejected).  A token that
was rejected and has not been replaced ends in a ``TokenError`` saying so, instead of being resent.

``NoAuth`` (aliases ``None``, ``no_auth``, ``anonymous``): an explicit no-auth mode; the session sends no
token, runs no discovery for it and touches no token store (extra interceptors such as
proxy authorization still apply).
"""

from __future__ import annotations

import os
from typing import Any

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig, read_secret_file
from flyteauth_core.errors import ConfigError, TokenError
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token, jwt_expiry


class PassthroughAuthenticator:
    """A token from the caller, a file or an env var."""

    #: The token is given: it never waits for the Flyte server's discovery.
    needs_discovery = False

    def __init__(self, config: AuthConfig) -> None:
        if not (config.token or config.token_file_path or config.token_env_var):
            raise ConfigError(
                "authType Passthrough needs a token",
                hint="Pass token=... (or FLYTEAUTH_TOKEN), or set admin.tokenFilePath or admin.tokenEnvVar",
            )
        self._config = config

    def __repr__(self) -> str:
        return "PassthroughAuthenticator()"

    def _read(self) -> tuple[str, str]:
        config = self._config
        if config.token:
            return config.token.strip(), "the token handed in"
        if config.token_file_path:
            where = f"tokenFilePath {config.token_file_path!r}"
            return read_secret_file(config.token_file_path, "the token file"), where
        name = config.token_env_var or ""
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"tokenEnvVar names {name!r}, which is unset or empty", hint=f"Export {name}")
        return value, f"${name}"

    def identity_parts(self, request: AcquireRequest) -> dict[str, str]:
        """``IdentitySource``: the token handed in is the credential, so its digest is the identity (a new
        token is a new identity: a shared store never serves the one it replaced)."""
        from flyteauth_core.identity import observe, token_part

        config = self._config
        if config.token:
            return {"token": token_part(config.token, "exact")}
        if config.token_file_path:
            return {"token": observe("file", config.token_file_path, mode="exact")}
        return {"token": observe("env", config.token_env_var or "", mode="exact")}

    def acquire(self, request: AcquireRequest) -> Token:
        value, where = self._read()
        if not value:
            raise ConfigError("The token handed in is blank")
        previous = request.previous
        if previous is not None and previous.access_token == value and request.reason in ("expired", "expiring"):
            raise TokenError(
                f"The token from {where} was rejected (or has expired) and has not been replaced",
                hint="Hand in a new token" + (" (rewrite the file)" if self._config.token_file_path else ""),
            )
        return Token(access_token=value, expires_at=jwt_expiry(value))


class NoAuthAuthenticator:
    """Sends nothing.  ``anonymous = True`` tells the session to skip the token manager and the store."""

    anonymous = True

    #: The token is given: it never waits for the Flyte server's discovery.
    needs_discovery = False

    def __init__(self, config: AuthConfig) -> None:
        self._endpoint = config.endpoint

    def acquire(self, request: AcquireRequest) -> Token:
        raise ConfigError(
            f"authType NoAuth sends no token to {self._endpoint}",
            hint="Configure a real authType (ClientSecret, Pkce, ...) to obtain tokens",
        )


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("Passthrough", PassthroughAuthenticator, aliases=("passthrough",))
    register("NoAuth", NoAuthAuthenticator, aliases=("None", "no_auth", "anonymous"), anonymous=True)
