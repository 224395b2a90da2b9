"""flyteauth: pluggable authentication for Python clients of Flyte's gRPC and HTTP APIs.

``import flyteauth_core`` stays light: grpc, authlib, httpx2, yaml and every provider load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import AuthConfig, load_config
from .errors import (
    CommandError,
    ConfigError,
    DiscoveryError,
    FlyteAuthError,
    InteractionRequired,
    InvalidClientError,
    InvalidGrantError,
    MissingExtraError,
    PlatformTokenAudienceError,
    PlatformTokenError,
    PlatformTokenExpiredError,
    PluginConflictError,
    PluginError,
    RefreshTokenRotatedError,
    ResponseLostError,
    TokenDeadlineError,
    TokenError,
    TokenExchangeError,
    TokenRejectedError,
    TokenRequestError,
    TokenResponseError,
    TokenStoreError,
    TokenTimeoutError,
    TransientTokenError,
    UnknownAuthTypeError,
    UntrustedConfigError,
)
from .events import TokenEvent
from .hookspecs import hookimpl
from .options import Option, Source
from .token import RefreshPolicy, Token, TokenState
from .types import AcquireReason, AcquireRequest, RetryPolicy

if TYPE_CHECKING:
    from .lifecycle import TokenManager
    from .session import AuthSession

__version__ = "0.3.0"

_LAZY = {"AuthSession": "session", "TokenManager": "lifecycle"}


def __getattr__(name: str) -> Any:
    # AuthSession pulls in the lifecycle and discovery modules; load them when first asked for.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flyteauth_core' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AcquireReason",
    "AcquireRequest",
    "AuthConfig",
    "AuthSession",
    "CommandError",
    "ConfigError",
    "DiscoveryError",
    "FlyteAuthError",
    "InteractionRequired",
    "InvalidClientError",
    "InvalidGrantError",
    "MissingExtraError",
    "Option",
    "PlatformTokenAudienceError",
    "PlatformTokenError",
    "PlatformTokenExpiredError",
    "PluginConflictError",
    "PluginError",
    "RefreshPolicy",
    "RefreshTokenRotatedError",
    "ResponseLostError",
    "RetryPolicy",
    "Source",
    "Token",
    "TokenDeadlineError",
    "TokenError",
    "TokenEvent",
    "TokenExchangeError",
    "TokenManager",
    "TokenRejectedError",
    "TokenRequestError",
    "TokenResponseError",
    "TokenState",
    "TokenStoreError",
    "TokenTimeoutError",
    "TransientTokenError",
    "UnknownAuthTypeError",
    "UntrustedConfigError",
    "hookimpl",
    "load_config",
]
