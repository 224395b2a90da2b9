"""The platform token: a workload's signed identity from the platform it runs on, with no secret on disk.

Kubernetes projected service-account tokens, GitHub Actions OIDC tokens and the workload identity files of
GCP, AWS and Azure are short-lived JWTs that an IdP accepts in two ways: as the ``subject_token`` of an
RFC 8693 token exchange (``TokenExchange``) or as an RFC 7523 client assertion (``ClientSecret`` with
``tokenEndpointAuthMethod: federated_jwt``).  Both read it through :class:`PlatformTokenReader`, which

* resolves ``platformTokenSource`` through the plugin registry (hook
  ``flyteauth_register_platform_token_sources``; the built-ins in ``platform_sources`` register the same
  way a third-party source would),
* reads the source again for every token request (the kubelet rotates files; CI tokens are minted on
  demand),
* checks ``exp`` (an expired token is a :class:`PlatformTokenExpiredError` naming where it came from and
  when it expired) and, when ``platformTokenAudience`` is set, ``aud`` (:class:`PlatformTokenAudienceError`
  naming both audiences), before anything is sent,
* keeps the claims of the last token (``iss``, ``sub``, ``aud``, ``exp``; never the token) for
  ``describe()`` and ``flyteauth config``.

Every key is declared once (``PLATFORM_OPTIONS``, ``EXCHANGE_OPTIONS``) and read by :func:`workload_options`.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from flyteauth_core import parsers
from flyteauth_core.claims import audiences, unverified_claims
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import (
    ConfigError,
    PlatformTokenAudienceError,
    PlatformTokenError,
    PlatformTokenExpiredError,
    UnknownAuthTypeError,
)
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.options import Option
from flyteauth_core.token import Token

JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
#: The claims kept for display; everything else in the token stays out of reports.
SHOWN_CLAIMS = ("iss", "sub", "aud", "exp", "iat")


@attrs.frozen
class WorkloadOptions:
    """The workload-identity keys of the ``admin:`` (or ``flyteauth:``) section, parsed."""

    source: str | None = None
    file: str | None = None
    audience: str | None = None
    command: tuple[str, ...] = ()
    env_var: str | None = None
    subject_token_type: str = JWT_TOKEN_TYPE
    actor_token_file: str | None = None
    actor_token_type: str = JWT_TOKEN_TYPE
    resource: str | None = None
    requested_token_type: str | None = None


#: The keys the platform token reader takes (declared by the providers that use it, so ``flyteauth config``
#: validates them); the env override is ``FLYTEAUTH_<KEY>`` (``FLYTEAUTH_PLATFORM_TOKEN_FILE``).
PLATFORM_OPTIONS = (
    Option("platformTokenSource", help="where the platform token comes from: file, github-actions, command, "
           "env or auto (default: the kind of key set, else auto)"),
    Option("platformTokenFile", help="file holding the platform token (a projected service account token)"),
    Option("platformTokenAudience", help="the aud the platform token must carry (and GitHub Actions mints)"),
    Option("platformTokenCommand", parse=parsers.argv, default=(), mask="argv",
           help="argv printing the platform token"),
    Option("platformTokenEnvVar", help="env var holding the platform token"),
)
#: RFC 8693 settings of TokenExchange.
EXCHANGE_OPTIONS = (
    Option("subjectTokenType", default=JWT_TOKEN_TYPE, help="subject_token_type of the platform token"),
    Option("actorTokenFile", help="file holding an actor token (RFC 8693 delegation)"),
    Option("actorTokenType", default=JWT_TOKEN_TYPE, help="actor_token_type"),
    Option("resource", help="RFC 8693/8707 resource of the token to issue"),
    Option("requestedTokenType", help="requested_token_type (default: whatever the IdP issues)"),
)
_ATTRIBUTES = dict(zip([o.key for o in (*PLATFORM_OPTIONS, *EXCHANGE_OPTIONS)], attrs.fields_dict(WorkloadOptions),
                       strict=True))


def workload_options(config: AuthConfig) -> WorkloadOptions:
    """Every workload-identity key, parsed (from the ``flyteauth:``/``admin:`` section, ``FLYTEAUTH_<KEY>``
    or ``AuthConfig(options=...)``)."""
    values: dict[str, Any] = {_ATTRIBUTES[o.key]: o.read(config) for o in (*PLATFORM_OPTIONS, *EXCHANGE_OPTIONS)}
    present: dict[str, Any] = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items() if v is not None}
    return WorkloadOptions(**present)


class PlatformTokenSource(Protocol):
    """What a registered source factory returns."""

    def read(self, request: AcquireRequest) -> str:
        """The current platform token (read again at every call: sources rotate)."""

    def describe(self) -> str:
        """Where the token comes from (``file /var/run/...``, ``$VAR``, a URL), never the token."""

    # Optional: ``identity() -> str``, the token's identity (its iss/sub/aud) read locally through
    # ``flyteauth_core.identity.observe`` (see ``PlatformTokenReader.identity``).


def utc(epoch: float) -> str:
    """``2026-11-30T04:00:00Z``; a claim no calendar holds (a forged or garbled ``exp``) says so."""
    try:
        return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "a time out of range"


@attrs.frozen
class PlatformToken:
    """One platform token, where it came from, and its (unverified) claims."""

    value: str = attrs.field(repr=False)
    origin: str
    claims: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @classmethod
    def parse(cls, value: str, origin: str) -> PlatformToken:
        claims = unverified_claims(value)
        return cls(value, origin, {k: claims[k] for k in SHOWN_CLAIMS if k in claims})

    @property
    def exp(self) -> float | None:
        exp = self.claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            return None
        try:
            value = float(exp)
        except OverflowError:  # an integer beyond float range
            return None
        return value if math.isfinite(value) else None

    @property
    def audiences(self) -> tuple[str, ...]:
        return audiences(dict(self.claims))

    def summary(self) -> dict[str, Any]:
        """What ``flyteauth config`` shows: origin and claims, never the token."""
        out: dict[str, Any] = {"origin": self.origin}
        for claim in ("iss", "sub"):
            if claim in self.claims:
                out[claim] = str(self.claims[claim])
        if self.audiences:
            out["aud"] = list(self.audiences)
        if self.exp is not None:
            out["exp"] = f"{self.exp:.0f} ({utc(self.exp)})"
        return out


class PlatformTokenReader:
    """Reads, checks and remembers the platform token for one authenticator."""

    def __init__(self, config: AuthConfig, registry: Any = None) -> None:
        from flyteauth_core.plugins import default_registry

        self.options = workload_options(config)
        self.source_name = self.options.source or _implied_source(self.options)
        try:
            registration = (registry or default_registry()).platform_token_source(self.source_name)
        except UnknownAuthTypeError as exc:
            raise ConfigError(
                f"Unknown platformTokenSource {self.source_name!r} (available: {', '.join(exc.available)})",
                hint="Use file, github-actions, command, env or auto, or install the plugin that provides it",
            ) from None
        self.source: PlatformTokenSource = registration.factory(config)
        self._config = config
        self.last: PlatformToken | None = None
        self._clock = time.time

    def __repr__(self) -> str:
        return f"PlatformTokenReader(source={self.source_name!r})"

    def read(self, request: AcquireRequest) -> PlatformToken:
        """The current platform token, checked for expiry and audience; raises a typed error otherwise."""
        token = PlatformToken.parse(self.source.read(request).strip(), self.source.describe())
        if not token.value:
            raise PlatformTokenError(f"The platform token from {token.origin} is empty", origin=token.origin)
        self.last = token
        now = self._clock()
        if token.exp is not None and token.exp <= now:
            raise PlatformTokenExpiredError(
                f"The platform token from {token.origin} expired at {utc(token.exp)} (exp {token.exp:.0f}, "
                f"{now - token.exp:.0f}s ago)", origin=token.origin, exp=token.exp,
                hint="Whatever writes it has stopped rotating it: check the projected token volume "
                "(kubelet) or the CI job's id-token permission, then retry",
            )
        expected = self.options.audience
        if expected and expected not in token.audiences:
            found = ", ".join(repr(a) for a in token.audiences) or "no aud claim"
            raise PlatformTokenAudienceError(
                f"The platform token from {token.origin} is for audience {found}, but platformTokenAudience "
                f"expects {expected!r}", origin=token.origin, expected=expected, found=token.audiences,
                hint=f"Mint the token for {expected!r} (serviceAccountToken.audience in the pod spec), or set "
                "admin.platformTokenAudience to the audience the IdP expects",
            )
        return token

    def identity(self, request: AcquireRequest) -> str:
        """The platform token's part of the credential's identity: ``iss``/``sub``/``aud`` (or, for GitHub
        Actions, the job), read locally through ``flyteauth_core.identity.observe``; never the token.  A
        third-party source without ``identity()`` is read (and its claims used), and the credential helper
        then does not cache."""
        from flyteauth_core import identity

        own = getattr(self.source, "identity", None)
        if callable(own):
            return f"{self.source_name}:{own()}"
        identity.unobservable()
        return f"{self.source_name}:{identity.token_part(self.source.read(request))}"

    def describe(self) -> str:
        """One line for humans: where the platform token comes from and its claims (never the token)."""
        info = self.details()
        claims = ", ".join(f"{k} {info[k]}" for k in ("iss", "sub", "aud", "exp") if k in info)
        extra = f" ({claims})" if claims else (f" ({info['problem']})" if "problem" in info else "")
        return f"{info['origin']}{extra}"

    def details(self) -> dict[str, Any]:
        """The source, where the token came from, and the claims of the last token read (never the token).

        Before the first token request, a local source (a file, an env var) is read now, so that
        ``flyteauth config`` can show the claims offline; network and command sources are not run.
        """
        out: dict[str, Any] = {"source": self.source_name}
        token = self.last
        if token is None and getattr(self.source, "local", False):
            try:
                token = PlatformToken.parse(self.source.read(AcquireRequest(config=self._config)).strip(),
                                            self.source.describe())
            except Exception as exc:  # describing must not fail: report the problem instead
                out["origin"] = self.source.describe()
                out["problem"] = str(exc)
                return out
        if token is None:
            out["origin"] = self.source.describe()
            return out
        out.update(token.summary())
        return out


def _implied_source(options: WorkloadOptions) -> str:
    """No ``platformTokenSource``: the kind of the key that is set, else ``auto``."""
    if options.file:
        return "file"
    if options.command:
        return "command"
    if options.env_var:
        return "env"
    return "auto"


def cap_expiry(token: Token, platform: PlatformToken) -> Token:
    """A token obtained with a platform token expires no later than it (Google STS and Entra don't cap)."""
    exp = platform.exp
    if exp is None or (token.expires_at is not None and token.expires_at <= exp):
        return token
    return attrs.evolve(token, expires_at=exp)
