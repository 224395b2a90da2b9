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


class PlatformTokenError(TokenError):
    """The platform's workload identity token (Kubernetes, GitHub Actions, ...) could not be used.

    ``origin`` says where it was looked for or came from (a file path, an env var, a URL), never the token.
    """

    def __init__(self, message: str, *, origin: str, hint: str | None = None, transient: bool = False) -> None:
        self.origin = origin
        self.transient = transient
        super().__init__(message, hint=hint)


class PlatformTokenExpiredError(PlatformTokenError):
    """The platform token has expired (``exp`` in epoch seconds); whatever writes it has stopped rotating it."""

    def __init__(self, message: str, *, origin: str, exp: float, hint: str | None = None) -> None:
        self.exp = exp
        super().__init__(message, origin=origin, hint=hint)


class PlatformTokenAudienceError(PlatformTokenError):
    """The platform token was minted for another audience than ``platformTokenAudience``."""

    def __init__(self, message: str, *, origin: str, expected: str, found: tuple[str, ...],
                 hint: str | None = None) -> None:
        self.expected = expected
        self.found = found
        super().__init__(message, origin=origin, hint=hint)


class TokenExchangeError(TokenRequestError):
    """The IdP refused an RFC 8693 token exchange (``error`` is ``invalid_target``, ``invalid_request``, ...);
    the hint says which setting to change."""
