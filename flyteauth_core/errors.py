"""One error hierarchy for everything a user can cause or meet.

Every error carries a ``hint`` that says what to do next, and never carries a secret: messages are
built from names (endpoints, config keys, file paths, env var names), not values.  ``transient`` tells
the token lifecycle whether stored credentials must be kept (always, for transient failures).
"""

from __future__ import annotations


class FlyteAuthError(Exception):
    """Base class of every error raised by flyteauth."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}. {hint}")


class ConfigError(FlyteAuthError):
    """The configuration is missing a value, has a malformed one, or names something absent."""


class PluginError(FlyteAuthError):
    """A plugin could not be loaded or resolved."""


class UnknownAuthTypeError(PluginError):
    """No installed plugin registered the requested auth type (or token store)."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        listing = ", ".join(available) if available else "none"
        super().__init__(
            f"No {kind} named {name!r} is installed (available: {listing})",
            hint="Check the authType in your config, or install the plugin that provides it "
            "(`flyteauth plugins` lists what is installed and what failed to load)",
        )


class PluginConflictError(PluginError):
    """Two plugins claim the same name; refusing to guess which one the user meant."""


class DiscoveryError(FlyteAuthError):
    """The Flyte server's auth metadata could not be obtained."""

    transient = True


class TokenError(FlyteAuthError):
    """Obtaining a token failed."""


class TokenRequestError(TokenError):
    """The identity provider's token endpoint refused or could not serve a token request.

    ``endpoint`` and ``status`` name where and how it failed; ``error`` is the OAuth2 error code when
    the body carried one.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        error: str | None = None,
        hint: str | None = None,
        transient: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.error = error
        self.transient = transient
        where = f"{endpoint} (HTTP {status})" if status is not None else endpoint
        super().__init__(f"{message} at {where}", hint=hint)


class InvalidClientError(TokenRequestError):
    """The IdP rejected the client's credentials."""


class InvalidGrantError(TokenRequestError):
    """The grant (refresh token, code, device code) is no longer valid; a new login is needed."""


class TokenResponseError(TokenRequestError):
    """The token endpoint answered, but not with a usable token response."""


class ResponseLostError(TokenRequestError):
    """The IdP may have processed the request, but its answer never arrived (read timeout, dropped
    connection), and the grant is single use (authorization code, device code, rotating refresh token),
    so it was not sent again.  ``grant`` is the OAuth2 ``grant_type`` that was lost."""

    def __init__(self, message: str, *, endpoint: str, grant: str, hint: str | None = None) -> None:
        self.grant = grant
        super().__init__(message, endpoint=endpoint, hint=hint, transient=True)


class RefreshTokenRotatedError(InvalidGrantError):
    """A rotating refresh token was consumed by a request whose answer was lost; the one replay was
    refused, so the grant is gone and a new login is needed."""


class TokenRejectedError(TokenError):
    """The server keeps rejecting tokens the IdP just issued; flyteauth stopped fetching new ones for a
    while (asking again would only flood the IdP).  The message names the likely causes."""

    def __init__(self, message: str, *, retry_in: float, hint: str | None = None) -> None:
        self.retry_in = retry_in
        super().__init__(message, hint=hint)


class TransientTokenError(TokenRequestError):
    """The IdP was unreachable, overloaded or slow, and retries ran out. Stored credentials are kept."""


class CommandError(TokenError):
    """A token command (``admin.command``, ``admin.proxyCommand``) failed or printed no usable token.

    ``command`` is the program name, ``exit_code`` its status (None when it could not start or timed
    out), ``stderr`` the trimmed tail of what it wrote to stderr (never its stdout, which may be a token).
    """

    def __init__(self, message: str, *, command: str, exit_code: int | None = None, stderr: str = "",
                 hint: str | None = None, transient: bool = False) -> None:
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        self.transient = transient
        super().__init__(message + (f"; stderr:\n{stderr}" if stderr else ""), hint=hint)


class TokenTimeoutError(TokenError):
    """Waiting for a token took longer than the configured deadline."""

    transient = True


class InteractionRequired(TokenError):
    """A human must log in, but this session may not start an interactive flow."""

    def __init__(self, message: str = "Interactive login required", *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or "Run `flyteauth login` in a terminal, or configure a non-interactive authType",
        )


class TokenStoreError(FlyteAuthError):
    """A token store failed; the session falls back to memory and keeps working."""

    transient = True
