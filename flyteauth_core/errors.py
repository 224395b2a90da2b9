"""One error hierarchy for everything a user can cause or meet.

Every error carries a ``hint`` that says what to do next, and never carries a secret: messages are
built from names (endpoints, config keys, file paths, env var names), not values.  ``transient`` tells
the token lifecycle whether stored credentials must be kept (always, for transient failures).
"""

from __future__ import annotations

from typing import Any


class FlyteAuthError(Exception):
    """Base class of every error raised by flyteauth."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}. {hint}")


class ConfigError(FlyteAuthError):
    """The configuration is missing a value, has a malformed one, or names something absent."""


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is not installed; says which ``flyteauth[extra]`` installs it.

    Also an ``ImportError`` (code that guarded the import keeps working) and a ``ConfigError`` (what the
    config names cannot run here).  ``extra``: the extra's name (``connect``); ``package``: the module that
    is missing (``connectrpc``).
    """

    def __init__(self, what: str, *, extra: str, package: str) -> None:
        self.extra = extra
        self.package = package
        super().__init__(
            f"{what} needs the {package!r} package, which is not installed",
            hint=f"Install the extra: pip install 'flyteauth[{extra}]' (from a clone of the repository: "
            f"pip install -e '.[{extra}]')",
        )
        self.name = package  # ImportError's attribute: the missing module


def import_extra(module: str, *, extra: str, package: str, what: str) -> Any:
    """``importlib.import_module(module)``, turning "``package`` is not installed" into a
    :class:`MissingExtraError` naming ``flyteauth[extra]`` (any other import failure propagates)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or (exc.name != package and not exc.name.startswith(f"{package}.")):
            raise
        raise MissingExtraError(what, extra=extra, package=package) from None


class UntrustedConfigError(ConfigError):
    """A config file found in the working tree (``./config.yaml``, ``./.flyte/config.yaml``, the git root's
    ``.flyte/config.yaml``, ``./flytekit.config``) would run a command or send a credential, and the user has
    not trusted it (or it changed since): anyone who can write a repository can write that file.

    ``path`` is the file; ``actions`` what it would do (commands masked: program only); ``command`` the
    exact command that trusts it; ``changed`` whether it was trusted before with other content.
    """

    def __init__(self, path: str, *, actions: tuple[str, ...], command: str, changed: bool = False) -> None:
        self.path = path
        self.actions = actions
        self.command = command
        self.changed = changed
        state = "has changed since you trusted it" if changed else "is not trusted"
        would = "; ".join(actions) or "authenticate"
        super().__init__(
            f"The config file {path} was found in the working tree and {state}, so flyteauth will not use "
            f"it to {would}",
            hint=f"Read it; if you trust it, run `{command}` (or name it yourself with --config, "
            "$FLYTECTL_CONFIG or $FLYTEAUTH_CONFIG)",
        )


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
        idp_message: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.error = error
        self.transient = transient
        #: What the IdP's body said, cut short, long opaque strings masked (doctor shows it).
        self.idp_message = idp_message
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


class TokenDeadlineError(TokenTimeoutError):
    """The caller's deadline (a call's ``timeout``) passed while the call waited for its token.

    The refresh it waited for goes on in the background, so a later call can use its token.  On a
    transport it is also that transport's deadline error: grpc ``DEADLINE_EXCEEDED``, Connect
    ``deadline_exceeded``, an ``httpx2.TimeoutException``."""


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


# -- the same errors in a transport's own type ---------------------------------------------------------
# Code that catches only ``grpc.RpcError`` (or connectrpc's ``ConnectError``) must see auth failures on
# those transports too.  The dual classes are built on first use, so ``import flyteauth_core`` loads
# neither grpc nor connectrpc; each keeps the original class (``except InvalidClientError`` still works).
_DUALS: dict[tuple[object, str], type] = {}


def _status_message(exc: FlyteAuthError) -> str:
    return str(exc)


def _copy_as(exc: FlyteAuthError, cls: type) -> FlyteAuthError:
    dual: FlyteAuthError = cls.__new__(cls)  # type: ignore[call-overload]
    dual.__dict__.update(exc.__dict__)
    dual.args = exc.args
    dual.__traceback__ = exc.__traceback__
    return dual


def _dual(cls: type, kind: str) -> type:
    key = (cls, kind)
    if key not in _DUALS:
        base = _grpc_base() if kind == "grpc" else _connect_base()
        _DUALS[key] = type(f"{kind.capitalize()}{cls.__name__}", (cls, base), {"__module__": __name__})
    return _DUALS[key]


def _grpc_base() -> type:
    if ("base", "grpc") not in _DUALS:
        import grpc

        class GrpcAuthError(FlyteAuthError, grpc.RpcError, grpc.Call):
            """A FlyteAuthError that is also a ``grpc.RpcError`` (and a ``grpc.Call``): UNAUTHENTICATED,
            UNAVAILABLE when the failure is transient (IdP down, timeout), DEADLINE_EXCEEDED when the
            call's own deadline passed while it waited for its token."""

            def code(self) -> grpc.StatusCode:
                if isinstance(self, TokenDeadlineError):
                    return grpc.StatusCode.DEADLINE_EXCEEDED
                return grpc.StatusCode.UNAVAILABLE if self.transient else grpc.StatusCode.UNAUTHENTICATED

            def details(self) -> str:
                return _status_message(self)

            def initial_metadata(self) -> tuple[()]:
                return ()

            def trailing_metadata(self) -> tuple[()]:
                return ()

            def debug_error_string(self) -> str:
                return f"flyteauth: {type(self).__name__}"

            def is_active(self) -> bool:
                return False

            def time_remaining(self) -> float:
                return 0.0

            def cancel(self) -> bool:
                return False

            def add_callback(self, callback: object) -> bool:
                return False

        GrpcAuthError.__module__, GrpcAuthError.__qualname__ = __name__, "GrpcAuthError"
        _DUALS[("base", "grpc")] = GrpcAuthError
    return _DUALS[("base", "grpc")]


def _connect_base() -> type:
    if ("base", "connect") not in _DUALS:
        from connectrpc.errors import ConnectError

        class ConnectAuthError(FlyteAuthError, ConnectError):
            """A FlyteAuthError that is also connectrpc's ``ConnectError`` (code UNAUTHENTICATED, or
            UNAVAILABLE when transient)."""

        ConnectAuthError.__module__, ConnectAuthError.__qualname__ = __name__, "ConnectAuthError"
        _DUALS[("base", "connect")] = ConnectAuthError
    return _DUALS[("base", "connect")]


def as_grpc_error(exc: FlyteAuthError) -> FlyteAuthError:
    """``exc`` as an instance of a subclass of its own class and of ``grpc.RpcError``."""
    return exc if isinstance(exc, _grpc_base()) else _copy_as(exc, _dual(type(exc), "grpc"))


def as_connect_error(exc: FlyteAuthError) -> FlyteAuthError:
    """``exc`` as an instance of a subclass of its own class and of connectrpc's ``ConnectError``."""
    if isinstance(exc, _connect_base()):
        return exc
    from connectrpc.code import Code

    dual = _copy_as(exc, _dual(type(exc), "connect"))
    code = Code.DEADLINE_EXCEEDED if isinstance(exc, TokenDeadlineError) else (
        Code.UNAVAILABLE if exc.transient else Code.UNAUTHENTICATED)
    dual.__dict__.update(_code=code, _message=_status_message(exc), _details=[])
    return dual


def as_httpx_timeout(exc: TokenDeadlineError, request: object) -> TokenDeadlineError:
    """``exc`` as an instance of its own class and of ``httpx2.TimeoutException`` (for ``request``), so
    code that handles httpx timeouts handles a call whose token was not ready in time too."""
    import httpx2

    key = (type(exc), "httpx")
    if key not in _DUALS:
        _DUALS[key] = type(f"Httpx{type(exc).__name__}", (type(exc), httpx2.TimeoutException),
                           {"__module__": __name__})
    dual = _copy_as(exc, _DUALS[key])
    dual.__dict__["_request"] = request
    return dual  # type: ignore[return-value]


def __getattr__(name: str) -> type:
    """``GrpcAuthError`` / ``ConnectAuthError``, built on first access (they import grpc / connectrpc)."""
    if name == "GrpcAuthError":
        return _grpc_base()
    if name == "ConnectAuthError":
        return _connect_base()
    raise AttributeError(name)
