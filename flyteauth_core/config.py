"""AuthConfig and load_config(): what the user configured, and where each value came from.

Dialects read (so a user's existing setup keeps working unchanged):

* flytectl / flyte 2.x ``config.yaml``: the whole ``admin`` section (see ``_FILE_KEYS``), Go durations
  (``5m``, ``1h30m``) for the duration keys;
* flytekit's legacy INI file (``[platform] url/insecure/...``, ``[credentials] client_id/auth_mode/...``);
* environment variables of flytekit (``FLYTE_PLATFORM_*``, ``FLYTE_CREDENTIALS_*``), of flyte 2.x
  (``FLYTE_ADMIN_<KEY>``, ``FLYTE_AUTH_TYPE``, ``FLYTE_AUTH_COMMAND``, ``FLYTE_AUTH_PROXY_COMMAND``,
  ``FLYTE_API_KEY``) and our own ``FLYTEAUTH_<FIELD>`` (e.g. ``FLYTEAUTH_CLIENT_ID``).

Precedence, per field: explicit arguments > environment > file > values discovered from the server >
defaults.  Among environment variables: ``FLYTEAUTH_*`` > flyte 2.x (``FLYTE_ADMIN_*``/``FLYTE_AUTH_*``) >
flytekit (``FLYTE_PLATFORM_*``/``FLYTE_CREDENTIALS_*``) > ``FLYTE_API_KEY``; two dialects disagreeing is
reported in ``problems``.  ``sources`` maps each field to ``argument``, ``$VARNAME``, ``<file>:admin.key``
(``<file>:[section] key`` for INI) or ``default``.  Values discovered from the server (token endpoint,
scopes, audience, header key) are applied by the providers and the session only where the field is still
unset, so they rank between the file and the defaults; they are not recorded here.

Booleans are strict everywhere: ``true/1/yes/on`` and ``false/0/no/off`` (any case); anything else is a
``ConfigError`` naming the key or variable (flyte 2.x reads ``FLYTE_ADMIN_INSECURE=false`` as true; we
don't).  Unknown or deprecated keys are warnings (logged and kept in ``config.problems``), never errors.

YAML is imported only when a file is actually read, to keep ``import flyteauth_core`` light.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import parsers
from ._files import read_config_text as _read_text
from .errors import ConfigError
from .logs import warn_once
from .options import Option, Source
from .parsers import Parser, duration
from .schema import COMPAT, Setting, markdown_table, mask, setting, settings_of

if TYPE_CHECKING:
    from .plugins import PluginRegistry
    from .trust_records import FileTrust

#: The historical name, kept for plugins that import it from here.
parse_duration = duration

log = logging.getLogger("flyteauth.config")

DEFAULT_SECRET_LOCATION = "/etc/secrets/client_secret"
#: Built-in auth types (and aliases) that never use a configured client secret; a plugin's may.
_SECRETLESS_AUTH_TYPES = frozenset({"pkce", "standard", "deviceflow", "device_flow", "externalcommand",
                                    "external_process", "passthrough", "noauth", "none", "no_auth", "anonymous"})
#: Token endpoint client authentication methods the ClientSecret provider supports (``none``: a public
#: client, for TokenExchange; ``federated_jwt``: the platform token as an RFC 7523 client assertion).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none",
                "federated_jwt")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


class ReadOnlyMapping(Mapping[str, Any]):
    """A mapping nobody can change after the config is built (``config.options``, ``config.sources``).

    Nested sections (``pkceConfig``) are read-only too; other values are kept as written.  Picklable, unlike
    ``types.MappingProxyType``, so a config can go to a worker process.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = {str(k): _frozen(v) for k, v in (data or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return dict(self._data) == (dict(other) if isinstance(other, Mapping) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadOnlyMapping({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyMapping, (self._data,))


def _frozen(value: Any) -> Any:
    if isinstance(value, ReadOnlyMapping):
        return value
    if isinstance(value, Mapping):
        return ReadOnlyMapping(value)
    return value


def _auth_method(key: str, value: Any) -> str:
    text = parsers.string(key, value)
    if text not in AUTH_METHODS:
        raise ConfigError(f"Unsupported tokenEndpointAuthMethod {text!r} ({key})",
                          hint=f"Use one of {', '.join(AUTH_METHODS)}")
    return text


def _scopes(key: str, value: Any) -> tuple[str, ...]:
    return parsers.strings(key, value)


def _endpoint(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError("No Flyte endpoint configured",
                          hint=f"{key} must be a string like dns:///flyte.example.com:443, got {type(value).__name__}")
    return value or None


@attrs.frozen
class AuthConfig:
    """Everything a session needs to authenticate.  Secrets are never in ``repr``.

    Each field is declared once with its keys in every dialect (see :mod:`flyteauth_core.schema`), and
    every value is validated and converted here, whichever way it arrives: ``AuthConfig(insecure="false")``
    means TLS, ``AuthConfig(insecure="maybe")`` is a ``ConfigError`` naming the field.  The config is
    hashable (``options``, ``sources`` and ``problems`` are not part of the hash).

    ``options`` is the raw ``admin`` and ``flyteauth`` sections merged (plus anything passed in code), for
    plugins that read keys of their own; it is read-only.  ``sources`` maps a field (or ``options.<key>``)
    to a :class:`~flyteauth_core.options.Source`; ``problems`` lists what :func:`load_config` found wrong
    but survivable (unknown/deprecated keys, conflicts, files skipped).
    """

    endpoint: str = setting(yaml="endpoint", ini=("platform", "url"), parse=_endpoint,
                            doc="the Flyte endpoint: `dns:///host:443`, `host:port` or `https://host`")
    auth_type: str | None = setting(None, yaml="authType", ini=("credentials", "auth_mode"), env=("FLYTE_AUTH_TYPE",),
                                    doc="the provider (see Auth types); default: inferred")
    insecure: bool = setting(False, yaml="insecure", ini=("platform", "insecure"), parse=parsers.boolean,
                             doc="plaintext gRPC (no TLS)")
    insecure_skip_verify: bool = setting(False, yaml="insecureSkipVerify", ini=("platform", "insecure_skip_verify"),
                                         parse=parsers.boolean,
                                         doc="TLS without verifying the server (pins its certificate)")
    ca_cert_file_path: str | None = setting(None, yaml="caCertFilePath", ini=("platform", "ca_cert_file_path"),
                                            doc="CA bundle for the Flyte endpoint")
    client_id: str | None = setting(None, yaml="clientId", ini=("credentials", "client_id"), doc="OAuth2 client id")
    client_secret: str | None = setting(None, ini=("credentials", "client_secret"), secret=True,
                                        doc="the client secret itself (prefer a file or an env var)")
    client_secret_location: str | None = setting(
        None, yaml="clientSecretLocation", ini=("credentials", "client_secret_location"),
        doc=f"file holding the client secret (default `{DEFAULT_SECRET_LOCATION}`)")
    client_secret_env_var: str | None = setting(None, yaml="clientSecretEnvVar",
                                                ini=("credentials", "client_secret_env_var"),
                                                doc="name of the env var holding the client secret")
    token_endpoint_auth_method: str = setting("client_secret_basic", yaml="tokenEndpointAuthMethod",
                                              parse=_auth_method, doc=" / ".join(AUTH_METHODS))
    scopes: tuple[str, ...] = setting((), yaml="scopes", ini=("credentials", "scopes"), parse=_scopes,
                                      doc="scopes to request (default: discovered)")
    audience: str | None = setting(None, yaml="audience", ini=("credentials", "audience"),
                                   doc="audience to request (default: discovered)")
    use_audience_from_admin: bool = setting(False, yaml="useAudienceFromAdmin", parse=parsers.boolean,
                                            doc="request the audience the server advertises")
    token_url: str | None = setting(None, yaml="tokenUrl", doc="token endpoint (default: discovered)")
    authorization_header: str | None = setting(None, yaml="authorizationHeader",
                                               doc="metadata key for the token (default: discovered)")
    token_refresh_window: float | None = setting(None, yaml="tokenRefreshWindow", parse=parsers.duration,
                                                 doc="refresh this long before expiry (default 5m)")
    store: str | None = setting(None, yaml="tokenStore", doc="memory, file, keyring or a plugin's store")
    http_timeout: float = setting(15.0, yaml="httpTimeout", parse=parsers.duration, doc="timeout of IdP calls")
    client_key_file_path: str | None = setting(None, yaml="clientKeyFilePath",
                                               doc="`private_key_jwt`: PEM private key of the client")
    command: tuple[str, ...] = setting((), yaml="command", ini=("credentials", "command"), env=("FLYTE_AUTH_COMMAND",),
                                       parse=parsers.argv, mask="argv",
                                       doc="ExternalCommand: argv (no shell) printing the token")
    command_timeout: float = setting(30.0, yaml="commandTimeout", parse=parsers.duration,
                                     doc="ExternalCommand: deadline of the command")
    proxy_command: tuple[str, ...] = setting((), yaml="proxyCommand", ini=("credentials", "proxy_command"),
                                             env=("FLYTE_AUTH_PROXY_COMMAND",), parse=parsers.argv, mask="argv",
                                             doc="argv printing a `proxy-authorization` token")
    proxy_auth_for_idp: bool = setting(False, yaml="proxyAuthForIdP", parse=parsers.boolean,
                                       doc="send `proxy-authorization` to the IdP too")
    auth_origins: tuple[str, ...] = setting((), yaml="authOrigins", parse=parsers.strings,
                                            doc="origins besides the endpoint's that `httpx_auth()` sends the token to")
    http_proxy_url: str | None = setting(None, yaml="httpProxyURL", ini=("platform", "http_proxy_url"), mask="url",
                                         doc="HTTP(S) proxy for IdP calls")
    idp_ca_cert_file_path: str | None = setting(None, yaml="idpCaCertFilePath", doc="extra CA bundle for the IdP")
    idp_insecure_skip_verify: bool = setting(False, yaml="idpInsecureSkipVerify", parse=parsers.boolean,
                                             doc="do not verify the IdP's certificate")
    token: str | None = setting(None, secret=True, doc="Passthrough: the token itself")
    token_file_path: str | None = setting(None, yaml="tokenFilePath", doc="Passthrough: file holding the token")
    token_env_var: str | None = setting(None, yaml="tokenEnvVar", doc="Passthrough: env var holding the token")
    org: str | None = setting(None, yaml="org", compat="flyte 2.x's organisation; not used for authentication",
                              doc="organisation")
    pkce_timeout: float = setting(120.0, yaml="pkceConfig.timeout", parse=parsers.duration,
                                  doc="Pkce: how long to wait for the browser")
    pkce_refresh_time: float = setting(300.0, yaml="pkceConfig.refreshTime", parse=parsers.duration,
                                       compat="refresh timing comes from tokenRefreshWindow", doc="flytectl's")
    device_flow_timeout: float = setting(600.0, yaml="deviceFlowConfig.timeout", parse=parsers.duration,
                                         doc="DeviceFlow: how long to wait for the user")
    device_flow_poll_interval: float = setting(5.0, yaml="deviceFlowConfig.pollInterval", parse=parsers.duration,
                                               doc="DeviceFlow: poll interval (the IdP may raise it)")
    device_flow_refresh_time: float = setting(300.0, yaml="deviceFlowConfig.refreshTime", parse=parsers.duration,
                                              compat="refresh timing comes from tokenRefreshWindow",
                                              doc="flytectl's")
    max_retries: int = setting(4, yaml="maxRetries", parse=parsers.integer,
                               compat="flytectl's gRPC retries; IdP retries follow AuthSession(retry=...)",
                               doc="flytectl's")
    per_retry_timeout: float = setting(15.0, yaml="perRetryTimeout", parse=parsers.duration,
                                       compat="flytectl's gRPC retries; IdP calls use httpTimeout", doc="flytectl's")
    max_backoff_delay: float = setting(8.0, yaml="maxBackoffDelay", parse=parsers.duration,
                                       compat="flytectl's gRPC retries; IdP retries follow AuthSession(retry=...)",
                                       doc="flytectl's")
    disable_keyring: bool = setting(False, yaml="disableKeyring", parse=parsers.boolean,
                                    doc="use the file store where the keyring would be used")
    options: Mapping[str, Any] = attrs.field(factory=ReadOnlyMapping, converter=ReadOnlyMapping, repr=False,
                                             hash=False)
    sources: Mapping[str, str] = attrs.field(factory=ReadOnlyMapping, converter=ReadOnlyMapping, repr=False,
                                             eq=False)
    problems: tuple[str, ...] = attrs.field(default=(), converter=_strings, repr=False, eq=False)
    #: Set when the values came from a per-directory file the search found (``./.flyte/config.yaml``, ...):
    #: whether the user trusted it (:mod:`flyteauth_core.trust`).  None: no such file (named, user-level,
    #: or no file at all).
    trust: FileTrust | None = attrs.field(default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        for name, spec in SETTINGS.items():  # one parser per field, whichever way the value came in
            value = getattr(self, name)
            if value is None:
                continue
            parsed = spec.parse(name if spec.yaml in (None, name) else f"{name} (admin.{spec.yaml})", value)
            if parsed is not value:
                object.__setattr__(self, name, parsed)
        if not self.endpoint or not isinstance(self.endpoint, str):
            raise ConfigError(
                "No Flyte endpoint configured",
                hint="Set admin.endpoint in config.yaml or pass AuthConfig(endpoint=...)",
            )
        if self.token_endpoint_auth_method == "private_key_jwt" and not self.client_key_file_path:
            raise ConfigError(
                "tokenEndpointAuthMethod private_key_jwt needs the client's private key",
                hint="Set admin.clientKeyFilePath to a PEM file (or pass client_key_file_path=...)",
            )

    def source(self, name: str) -> Source:
        """Where a field (or ``options.<key>``) came from, in the user's terms: ``Source(key, origin)``,
        e.g. ``Source("admin.clientSecretLocation", "/home/me/.flyte/config.yaml")``,
        ``Source("$FLYTE_CREDENTIALS_CLIENT_SECRET", "environment")``, ``Source("client_id", "argument")``
        or ``Source(name, "default")`` for a value nobody set.  ``flyteauth config`` prints these."""
        found = self.sources.get(name)
        if isinstance(found, Source):
            return found
        if found is not None:  # a plain string (an AuthConfig built by hand with sources=...)
            text = str(found)
            if text in ("argument", "default"):
                return Source(name, text)
            if text.startswith("$"):
                return Source(text, "environment")
            origin, _, key = text.rpartition(":")
            return Source(key, origin) if origin else Source(text, "argument")
        fields = attrs.fields_dict(AuthConfig)
        if name in fields and getattr(self, name) != fields[name].default:
            return Source(name, "argument")
        return Source(name, "default")

    @property
    def resolved_auth_type(self) -> str:
        """The auth type to resolve: explicit; else Passthrough when a token is handed in; else
        ClientSecret when a secret (or a private key) is configured; else Pkce.

        An explicit ``authType`` always wins (flytekit overrides it whenever a secret exists; we don't).
        """
        return self._auth_type_and_reason()[0]

    @property
    def auth_type_reason(self) -> str:
        """Why :attr:`resolved_auth_type` was chosen, naming the source (for ``flyteauth config``)."""
        return self._auth_type_and_reason()[1]

    def _auth_type_and_reason(self) -> tuple[str, str]:
        def src(field: str) -> str:
            return self.sources.get(field, "argument")

        if self.auth_type:
            why = f"explicit authType ({src('auth_type')})"
            secret = self._secret_field()
            if secret and self.auth_type.lower() in _SECRETLESS_AUTH_TYPES:
                why += f"; the client secret from {src(secret)} is not used by this auth type"
            return self.auth_type, why
        if self.token or self.token_file_path or self.token_env_var:
            field = next(f for f in ("token", "token_file_path", "token_env_var") if getattr(self, f))
            return "Passthrough", f"inferred: a token is handed in ({src(field)})"
        secret = self._secret_field()
        if secret:
            return "ClientSecret", f"inferred: a client secret is configured ({src(secret)})"
        if self.token_endpoint_auth_method == "private_key_jwt":
            return "ClientSecret", "inferred: a client private key is configured"
        return "Pkce", "default (no authType, secret or token configured; flytekit and flyte 2.x default to Pkce)"

    def _secret_field(self) -> str | None:
        for field in ("client_secret", "client_secret_env_var", "client_secret_location"):
            if getattr(self, field):
                return field
        return None

    @property
    def grpc_target(self) -> str:
        """The endpoint as a gRPC target (``dns:///host:port`` or ``host:port``)."""
        endpoint = self.endpoint
        for scheme, port in (("https://", 443), ("http://", 80)):
            if endpoint.startswith(scheme):
                host = endpoint[len(scheme):].rstrip("/")
                return host if ":" in host.rsplit("]", 1)[-1] else f"{host}:{port}"
        return endpoint

    @property
    def use_plaintext(self) -> bool:
        return self.insecure or self.endpoint.startswith("http://")

    @property
    def http_base_url(self) -> str:
        """The Flyte endpoint as an HTTP(S) base URL, for the RFC 8414 discovery fallback."""
        if self.endpoint.startswith(("http://", "https://")):
            return self.endpoint.rstrip("/")
        target = self.grpc_target
        if target.startswith("dns:"):
            target = target.split("/")[-1]
        host, _, port = target.rpartition(":")
        scheme = "http" if self.use_plaintext else "https"
        if (scheme == "https" and port == "443") or (scheme == "http" and port == "80") or not host:
            return f"{scheme}://{host or target}"
        return f"{scheme}://{host}:{port}"

    def resolve_client_secret(self) -> str:
        """The client secret from the inline value, the named env var, or the file (in that order).

        Whitespace is trimmed the same way for all three.  Errors name the variable or file, never the
        content.
        """
        if self.client_secret:
            if not self.client_secret.strip():
                raise ConfigError("client_secret is blank", hint="Pass the secret itself, or leave it unset")
            return self.client_secret.strip()
        if self.client_secret_env_var:
            value = os.environ.get(self.client_secret_env_var)
            if value is None or not value.strip():
                source = self.sources.get("client_secret_env_var")
                key = source.key if isinstance(source, Source) and source.key else "admin.clientSecretEnvVar"
                raise ConfigError(
                    f"{key} names {self.client_secret_env_var!r}, which is unset or empty",
                    hint=f"Export {self.client_secret_env_var} or fix {key}",
                )
            return value.strip()
        if self.client_secret_location:  # set, so its value is what is wrong: never "Set ..." it again
            source = self.sources.get("client_secret_location")
            key, origin = (source.key, source.origin) if isinstance(source, Source) else (
                "client_secret_location", "argument")
            secret = read_secret_file(self.client_secret_location, "the client secret file",
                                      f"{key} is set (in {origin}) but the file it names cannot be read: fix the "
                                      f"path or create the file (or use {_sibling(key, 'clientSecretEnvVar')} "
                                      "instead)")
            _warn_if_shared(self.client_secret_location, key)
            return secret
        secret = read_secret_file(DEFAULT_SECRET_LOCATION, "the client secret file",
                                  "admin.clientSecretLocation is unset, so the default was tried: set "
                                  "admin.clientSecretLocation, admin.clientSecretEnvVar, or pass client_secret")
        _warn_if_shared(DEFAULT_SECRET_LOCATION, "admin.clientSecretLocation")
        return secret


def _warn_if_shared(location: str, key: str) -> None:
    """A secret file others can read is a warning (logged once), as ``flyteauth config`` and doctor say."""
    import stat

    try:
        mode = Path(location).expanduser().stat().st_mode
    except OSError:
        return
    if os.name == "posix" and mode & 0o077:
        warn_once(log, f"flyteauth config: {location} ({key}) holds a secret but is readable by others "
                       f"(mode {stat.S_IMODE(mode):04o}); chmod 600 {location}")


def _sibling(key: str, name: str) -> str:
    """``name`` in the section ``key`` was written in (``flyteauth.clientSecretEnvVar`` beside
    ``flyteauth.clientSecretLocation``); ``admin.`` otherwise (admin:, an INI file, an env var, code)."""
    return f"{'flyteauth' if key.startswith('flyteauth.') else 'admin'}.{name}"


def read_secret_file(location: str, what: str, hint: str | None = None) -> str:
    """Read and trim a file holding a secret; errors name the file and never carry its content."""
    reason, value = None, ""
    try:
        value = Path(location).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:  # raised outside this block: the error's bytes are the secret
        reason = "not UTF-8 text"
    if reason is not None:
        raise ConfigError(f"Cannot read {what} {location!r} ({reason})", hint=hint)
    if not value.strip():
        raise ConfigError(f"The {what.removeprefix('the ')} {location!r} is empty")
    return value.strip()



#: Field name -> its declaration (YAML/INI keys, env names, parser, secret), in declaration order.
SETTINGS: dict[str, Setting] = settings_of(AuthConfig)

#: ``admin``/``flyteauth`` key -> (AuthConfig field, parser).  Nested keys are written ``pkceConfig.timeout``.
ALL_KEYS: dict[str, tuple[str, Parser]] = {s.yaml: (n, s.parse) for n, s in SETTINGS.items() if s.yaml}
#: Keys accepted without a warning that are not fields: flytectl's that do nothing here, and keys providers
#: read from ``options``; then deprecated ones (a warning).
_IGNORED_KEYS = frozenset({"pkceConfig", "deviceFlowConfig", "pkceConfig.redirectUri", "revocationEndpoint",
                           "clientKeyId"})
#: flytectl keys that are not fields and have no effect here: reported as such, never as unknown.
_COMPAT_KEYS = {
    "maxMessageSizeBytes": "flytectl's gRPC message size limit; set it on the channel you build",
    "defaultServiceConfig": "flytectl's gRPC service config; set it on the channel you build",
}
_DEPRECATED_KEYS = {
    "useAuth": "deprecated in flytectl and ignored: authentication follows authType and the server",
    "authorizationServerUrl": "deprecated in flytectl and ignored: the token endpoint is discovered "
    "(or set admin.tokenUrl)",
}
#: Fields whose values are secrets: masked by describe().
SECRET_FIELDS = frozenset(n for n, s in SETTINGS.items() if s.secret)
#: Fields accepted for compatibility that have no effect, and why.
COMPAT_FIELDS: dict[str, str] = {n: s.compat for n, s in SETTINGS.items() if s.compat}
_FIELD_PARSERS: dict[str, Parser] = {n: s.parse for n, s in SETTINGS.items()}

# -- flytekit's legacy INI: (section, option) -> field ------------------------------------------------
_INI_KEYS: dict[tuple[str, str], str] = {s.ini: n for n, s in SETTINGS.items() if s.ini}
_INI_IGNORED = frozenset({("platform", "console_endpoint")})

# -- environment variables, highest precedence first -------------------------------------------------
#: flytekit: FLYTE_<SECTION>_<OPTION> of the INI keys.
FLYTEKIT_ENV: dict[str, str] = {v: n for n, s in SETTINGS.items() for v in s.env_names()["flytekit"]}
#: flyte 2.x: FLYTE_ADMIN_<KEY> (upper-cased flat admin keys) and FLYTE_AUTH_*.
FLYTE2_ENV: dict[str, str] = {v: n for n, s in SETTINGS.items() for v in s.env_names()["flyte 2.x"]}
API_KEY_ENV = "FLYTE_API_KEY"
#: Ours: FLYTEAUTH_<FIELD>, e.g. FLYTEAUTH_CLIENT_ID.
OUR_PREFIX = "FLYTEAUTH_"
CONFIG_ENV = "FLYTEAUTH_CONFIG"
OUR_ENV: dict[str, str] = {v: n for n, s in SETTINGS.items() for v in s.env_names()["FLYTEAUTH"]}


def _our_env() -> dict[str, str]:
    return OUR_ENV


def key_table() -> str:
    """The README's table of config keys, derived from the schema."""
    defaults = {f.name: f.default for f in attrs.fields(AuthConfig)}
    return markdown_table(SETTINGS, defaults)


def decode_api_key(raw: str, name: str = API_KEY_ENV) -> dict[str, str]:
    """``endpoint``, ``client_id``, ``client_secret``, ``org`` from a flyte 2.x API key.

    The key is base64 of ``endpoint:client_id:client_secret:org``; the endpoint may itself contain
    colons (``dns:///host:443``), so the last three fields are split off from the right.
    """
    import base64
    import binascii

    text = raw.strip()
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=False).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    parts = decoded.rsplit(":", 3)
    if len(parts) != 4 or not parts[0] or not parts[1] or not parts[2]:
        raise ConfigError(
            f"{name} is not a valid API key",
            hint="Expected base64 of endpoint:client_id:client_secret:org (as printed by `flyte create api-key`)",
        )
    endpoint, client_id, client_secret, org = parts
    return {"endpoint": endpoint, "client_id": client_id, "client_secret": client_secret, "org": org}


# -- where files are looked for ---------------------------------------------------------------------
def _git_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def default_config_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where ``load_config()`` looks when given no path, in order; the first file that exists wins.

    1. ``$FLYTEAUTH_CONFIG``, ``$FLYTECTL_CONFIG``, ``$UCTL_CONFIG``
    2. ``./config.yaml``, ``./.flyte/config.yaml``, ``<git root>/.flyte/config.yaml`` (flyte 2.x)
    3. ``./flytekit.config`` (flytekit, INI)
    4. ``~/.union/config.yaml``, ``~/.flyte/config.yaml``, ``~/.flyte/config`` (flytekit, INI)
    """
    env = os.environ if env is None else env
    paths: list[Path] = _named_config_paths(env)
    paths += [Path("config.yaml"), Path(".flyte/config.yaml")]
    root = _git_root(Path.cwd())
    if root is not None and root.resolve() != Path.cwd().resolve():
        paths.append(root / ".flyte" / "config.yaml")
    paths.append(Path("flytekit.config"))
    return paths + user_config_paths()


def _named_config_paths(env: Mapping[str, str]) -> list[Path]:
    return [Path(env[var]).expanduser() for var in (CONFIG_ENV, "FLYTECTL_CONFIG", "UCTL_CONFIG") if env.get(var)]


def user_config_paths() -> list[Path]:
    """The user-level config files: the user's own, so they need no trust."""
    home = Path("~").expanduser()
    return [home / ".union" / "config.yaml", home / ".flyte" / "config.yaml", home / ".flyte" / "config"]


def needs_trust(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether a config file found by a search is a per-directory one (it needs ``flyteauth trust``): not
    one the environment names (``$FLYTEAUTH_CONFIG``, ``$FLYTECTL_CONFIG``, ``$UCTL_CONFIG``) and not a
    user-level file (:func:`user_config_paths`), compared as files (device and inode: symlinks and the
    working directory being ``$HOME`` included).  Being under ``$HOME`` is no exemption: a repository
    cloned there is still a repository."""
    try:
        found = os.stat(path)
    except OSError:
        return True
    for mine in (*_named_config_paths(os.environ if env is None else env), *user_config_paths()):
        try:
            other = os.stat(mine)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (found.st_dev, found.st_ino):
            return False
    return True




_INI_HEADER = re.compile(r"^\s*\[[A-Za-z0-9_.\- ]+\]\s*$")


def _is_ini(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        return bool(_INI_HEADER.match(line))
    return False


#: The sections of a YAML config file we read, highest precedence first: flyteauth's own settings, then
#: the SDK's.  ``admin.authType: flyteauth`` names flytekit's plugin hook, not a provider.
SECTIONS = ("flyteauth", "admin")
#: ``admin.authType`` values that name an SDK hook into flyteauth rather than a provider.
_SDK_HOOK_AUTH_TYPES = frozenset({"flyteauth"})


def _read_sections(path: Path, text: str | None = None) -> dict[str, Mapping[str, Any]]:
    """The ``flyteauth`` and ``admin`` sections present in a YAML file (either may be absent)."""
    from . import _simple_yaml

    text = _read_text(path) if text is None else text
    data = _simple_yaml.load(text)  # plain configs without importing PyYAML (~10 ms of a cold start)
    if data is _simple_yaml.NOT_SIMPLE:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"Config file {str(path)!r} is not valid YAML{where}") from None
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"Config file {str(path)!r} must be a mapping with an 'admin' or 'flyteauth' section")
    sections: dict[str, Mapping[str, Any]] = {}
    for name in SECTIONS:
        if name not in data:
            continue
        section = data.get(name) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"The {name!r} section of {str(path)!r} must be a mapping")
        sections[name] = section
    return sections


def _read_admin_section(path: Path, text: str | None = None) -> Mapping[str, Any]:
    """The ``admin`` section of a YAML file ({} when absent)."""
    return _read_sections(path, text).get("admin", {})


def _flatten(admin: Mapping[str, Any]) -> dict[str, Any]:
    """``{"pkceConfig": {"timeout": "2m"}}`` -> ``{"pkceConfig.timeout": "2m"}`` (one level)."""
    flat: dict[str, Any] = {}
    for raw_key, value in admin.items():
        key = str(raw_key)
        if key in ("pkceConfig", "deviceFlowConfig") and isinstance(value, Mapping):
            for sub, subvalue in value.items():
                flat[f"{key}.{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, merging nested sections (``pkceConfig``) one level deep."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _unknown(key: str, known: Sequence[str], where: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}: unknown key {key!r} is ignored (kept in options for plugins){guess}"


#: Precedence layers, highest first.  Within a file, the ``flyteauth:`` section beats ``admin:``.
_LAYERS = ("argument", "env", "file:flyteauth", "file")
#: The fields that together say where the client secret comes from: one layer supplies all of them.
_SECRET_GROUP = ("client_secret", "client_secret_env_var", "client_secret_location")


class _Resolver:
    """Collects values by precedence layer, with their sources and problems."""

    #: The per-directory file read, and whether it is trusted (None: no such file).
    trust: FileTrust | None = None

    def __init__(self, errors: list[ConfigError] | None = None) -> None:
        self.layers: dict[str, list[tuple[str, Any, Source]]] = {}  # field -> [(layer, value, source)]
        self.problems: list[str] = []
        self.errors = errors  # None: raise the first bad value; a list: collect them all
        self.sdk_hook: tuple[str, bool] | None = None  # (file, has a flyteauth: section) for admin.authType: flyteauth
        self.options: dict[str, Any] = {}
        self.option_sources: dict[str, Source] = {}

    def put(self, layer: str, field: str, value: Any, source: Source) -> None:
        if value is None:
            return
        self.layers.setdefault(field, []).append((layer, value, source))

    def parse(self, parse: Parser, key: str, raw: Any) -> Any:
        """``parse(key, raw)``; when collecting, a bad value is recorded and left unset (None) instead of
        raised, so ``flyteauth config`` and doctor report every problem at once."""
        if self.errors is None:
            return parse(key, raw)
        try:
            return parse(key, raw)
        except ConfigError as error:
            self.errors.append(error)
            return None

    def problem(self, text: str) -> None:
        if text not in self.problems:
            warn_once(log, f"flyteauth config: {text}")
            self.problems.append(text)

    def note(self, text: str) -> None:
        """Something ``flyteauth config`` should say that is not wrong (not logged as a warning)."""
        if text not in self.problems:
            log.debug("flyteauth config: %s", text)
            self.problems.append(text)

    def resolve(self) -> tuple[dict[str, Any], dict[str, Source]]:
        """The winning value of every field.  The client secret is chosen by layer, not by field: the
        highest layer that says anything about it supplies all of it (an argument naming a secret file
        is not overridden by a secret in the environment)."""
        group = [e for f in _SECRET_GROUP for e in self.layers.get(f, [])]
        if group:
            top = min(_LAYERS.index(layer) for layer, _, _ in group)
            for field in _SECRET_GROUP:
                entries = self.layers.get(field, [])
                kept = [e for e in entries if _LAYERS.index(e[0]) == top]
                for _, _, source in (e for e in entries if _LAYERS.index(e[0]) != top):
                    winner = next(s for layer, _, s in group if _LAYERS.index(layer) == top)
                    self.problem(f"the client secret from {source.describe()} is not used: "
                                 f"{winner.describe()} wins (a higher precedence layer)")
                if kept:
                    self.layers[field] = kept
                else:
                    self.layers.pop(field, None)
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        for field, entries in self.layers.items():
            best = min(entries, key=lambda e: _LAYERS.index(e[0]))
            values[field], sources[field] = best[1], best[2]
        return values, sources


def _read_yaml_into(resolver: _Resolver, file: Path, sections: Mapping[str, Mapping[str, Any]],
                    declared: Mapping[str, Any]) -> None:
    origin = str(file)
    raw_options: dict[str, Any] = {}
    for name in reversed(SECTIONS):  # admin first, so flyteauth's keys win in options
        section = sections.get(name)
        if section is None:
            continue
        raw_options = _merge(raw_options, section)
        for key, raw in _flatten(section).items():
            where = Source(f"{name}.{key}", origin)
            resolver.option_sources[key] = where
            if key.split(".")[0] in ("pkceConfig", "deviceFlowConfig"):
                resolver.option_sources.setdefault(key.split(".")[0], Source(f"{name}.{key.split('.')[0]}", origin))
            spec = ALL_KEYS.get(key)
            if spec is None:
                if key in _COMPAT_KEYS:
                    resolver.note(f"{where.describe()}: {COMPAT} ({_COMPAT_KEYS[key]})")
                elif key in _DEPRECATED_KEYS:
                    resolver.problem(f"{where} is {_DEPRECATED_KEYS[key]}")
                elif key not in _IGNORED_KEYS and key not in declared:
                    resolver.problem(_unknown(key, [*ALL_KEYS, *declared], str(where)))
                continue
            if raw is None:  # `key:` with no value is unset
                continue
            field, parse = spec
            if name == "admin" and field == "auth_type" and str(raw).lower() in _SDK_HOOK_AUTH_TYPES:
                continue  # the SDK's hook into us; the provider comes from flyteauth: (or is inferred)
            layer = "file:flyteauth" if name == "flyteauth" else "file"
            resolver.put(layer, field, resolver.parse(parse, where.key, raw), where)
    admin = sections.get("admin", {})
    if str(admin.get("authType") or "").lower() in _SDK_HOOK_AUTH_TYPES:
        resolver.sdk_hook = (origin, "flyteauth" in sections)
        moved = [k for k in ("clientSecretLocation", "clientSecretEnvVar") if admin.get(k) is not None]
        if moved:
            resolver.problem(
                f"{origin}: admin.{' and admin.'.join(moved)} beside admin.authType: flyteauth makes flytekit "
                f"switch to its own ClientSecret flow (PlatformConfig.auto), bypassing flyteauth; move "
                f"{' and '.join(moved)} into the flyteauth: section"
            )
    resolver.options.update(raw_options)


def _hook_without_provider(origin: str, has_section: bool) -> ConfigError:
    """``admin.authType: flyteauth`` hands authentication to flyteauth; with no provider named (and nothing
    to infer one from) the default would be a browser login: never silently."""
    what = ("its flyteauth: section names no authType (and no client secret or token to infer one from)"
            if has_section else "the file has no flyteauth: section")
    return ConfigError(
        f"{origin}: admin.authType: flyteauth hands authentication to flyteauth, but {what}, so no provider "
        "is chosen (it would fall back to a browser login, Pkce)",
        hint="Add a flyteauth: section naming the provider, e.g. flyteauth: {authType: ClientSecret, clientId: "
        "my-ci, clientSecretLocation: /etc/secrets/flyte} (or authType: Pkce for a browser login)",
    )


def _read_ini_into(resolver: _Resolver, file: Path, parser: Any) -> None:
    for section in parser.sections():
        for option, raw in parser.items(section):
            where = Source(f"[{section}] {option}", str(file))
            field = _INI_KEYS.get((section, option))
            if field is None:
                if section in ("platform", "credentials") and (section, option) not in _INI_IGNORED:
                    known = [o for s, o in _INI_KEYS if s == section]
                    resolver.problem(_unknown(option, known, str(where)))
                continue
            if raw == "":
                continue
            parse = _FIELD_PARSERS[field]
            resolver.put("file", field, resolver.parse(parse, f"[{section}] {option}", raw), where)


def _parse_ini(file: Path, text: str) -> Any:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(file))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise ConfigError(f"Config file {str(file)!r} is not a valid flytekit INI file{where}") from None
    return parser


def _read_env_into(resolver: _Resolver, env: Mapping[str, str], declared: _Declared) -> None:
    dialects: list[tuple[str, Mapping[str, str]]] = [
        ("FLYTEAUTH", _our_env()), ("flyte 2.x", FLYTE2_ENV), ("flytekit", FLYTEKIT_ENV),
    ]
    seen: dict[str, tuple[str, Any]] = {}  # field -> (variable, value) of the winning variable
    for _, table in dialects:
        for var, field in table.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            value = resolver.parse(_FIELD_PARSERS[field], var, raw)
            if value is None:
                continue
            if field in seen:
                if seen[field][1] != value:
                    resolver.problem(f"${var} disagrees with ${seen[field][0]}; ${seen[field][0]} wins")
                continue
            seen[field] = (var, value)
            resolver.put("env", field, value, Source(f"${var}", "environment"))
    api_key = env.get(API_KEY_ENV)
    if api_key and api_key.strip():
        decoded = decode_api_key(api_key)
        values: dict[str, Any] = {**decoded, "auth_type": "ClientSecret"}
        for field, value in values.items():
            if not value:
                continue
            if field in seen:
                if seen[field][1] != value and field != "client_secret":
                    resolver.problem(f"${API_KEY_ENV} carries a {field} that ${seen[field][0]} overrides")
                continue
            resolver.put("env", field, value, Source(f"${API_KEY_ENV}", "environment"))
    if not _wants_plugins(env):
        return
    # plugins' own keys: FLYTEAUTH_<KEY>; only the plugins that may read these variables are loaded
    wanted = [k[len(OUR_PREFIX):].replace("_", "").lower() for k in env if k.startswith(OUR_PREFIX)]
    for key, entries in declared.covering(wanted).items():
        for option, _ in entries:
            name = option.env_var
            if name and env.get(name, "").strip():
                resolver.options[key] = env[name]
                resolver.option_sources[key] = Source(f"${name}", "environment")
                break


def _has_sections(file: Path, text: str) -> tuple[bool, Any]:
    """Whether a config file says anything to us, and what was parsed (INI parser or YAML sections)."""
    if _is_ini(text):
        parser = _parse_ini(file, text)
        return any(parser.has_section(s) for s in ("platform", "credentials")), parser
    sections = _read_sections(file, text)
    return bool(sections), sections


class _Declared(Mapping[str, list[tuple[Option, Any]]]):
    """Config keys that installed plugins declare, loaded on first use.

    The plugin registry is consulted only when the config holds a key the schema does not know or a
    ``FLYTEAUTH_`` variable that is not ours, so a plain config costs nothing extra; looking up one key
    loads only the plugins that may declare it (``PluginRegistry.declared_options(keys)``).  Listing them
    all (an unknown key's suggestions, plugins' env variables) loads every plugin.
    """

    def __init__(self, registry: PluginRegistry | None) -> None:
        self._registry = registry
        self._data: dict[str, list[tuple[Option, Any]]] | None = None
        self._some: dict[str, list[tuple[Option, Any]]] | None = None  # what keyed lookups loaded

    @property
    def loaded(self) -> bool:
        return self._data is not None or self._some is not None

    def _plugins(self) -> PluginRegistry:
        from .plugins import default_registry

        return self._registry or default_registry()

    def _load(self) -> dict[str, list[tuple[Option, Any]]]:
        if self._data is None:
            self._data = self._plugins().declared_options()
        return self._data

    def covering(self, keys: Iterable[str]) -> Mapping[str, list[tuple[Option, Any]]]:
        """At least the declarations of ``keys`` (and of every plugin loaded to find them)."""
        if self._data is not None:
            return self._data
        self._some = self._plugins().declared_options(keys)
        return self._some

    def __getitem__(self, key: str) -> list[tuple[Option, Any]]:
        entries = self.covering([key]).get(key)
        if entries is None:
            entries = self._load()[key]  # not where the built-in table says: every plugin, then KeyError
        return entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


#: FLYTEAUTH_ variables that are not config fields (read elsewhere); they do not make us look for plugins.
_OUR_OTHER_ENV = frozenset({CONFIG_ENV, "FLYTEAUTH_DISABLE_PLUGINS", "FLYTEAUTH_INTERACTIVE", "FLYTEAUTH_TOKEN_DIR"})


def _wants_plugins(env: Mapping[str, str]) -> bool:
    return any(k.startswith(OUR_PREFIX) and k not in OUR_ENV and k not in _OUR_OTHER_ENV for k in env)


def _find_file(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], resolver: _Resolver, found: bool = False
) -> tuple[Path | None, Any, list[Path]]:
    """The config file to read, what was parsed from it, and the paths searched.

    A candidate without an ``admin:``/``flyteauth:`` section (or flytekit's INI sections) does not
    capture the search: it is skipped, and said so in ``problems``.  A per-directory file that is read
    (:func:`needs_trust`) has its trust assessed on the very text parsed (``resolver.trust``); so has
    ``path`` when ``found`` says an SDK's own search found it.
    """
    file: Path | None = None
    parsed: Any = None
    searched: list[Path] = []
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"Config file {str(file)!r} does not exist")
        text = _read_text(file)
        useful, parsed = _has_sections(file, text)
        if found and useful and needs_trust(file, env):
            resolver.trust = _assess(file, text)
        if not useful:
            resolver.problem(f"{file} has no admin: or flyteauth: section (nor flytekit's [platform] or "
                             "[credentials]); nothing was read from it")
    else:
        searched = default_config_paths(env)
        for var in (CONFIG_ENV, "FLYTECTL_CONFIG", "UCTL_CONFIG"):
            named = env.get(var)
            if named and not Path(named).expanduser().is_file():
                resolver.problem(f"${var} names {named!r}, which does not exist; looking further")
        # the working tree's candidates sit between the named ones and the user-level ones
        tree = range(len(_named_config_paths(env)), len(searched) - len(user_config_paths()))
        for index, candidate in enumerate(searched):
            if not candidate.is_file():
                continue
            text = _read_text(candidate)
            useful, parsed = _has_sections(candidate, text)
            if useful:
                file = candidate.absolute()
                if index in tree and needs_trust(file, env):
                    resolver.trust = _assess(file, text)
                break
            resolver.problem(f"{candidate.absolute()} has no admin: or flyteauth: section (nor flytekit's "
                             "[platform] or [credentials]); skipped it and looked further")
    return file, parsed, searched

def _assess(file: Path, text: str) -> FileTrust:
    from .trust_records import assess  # only when a per-directory file is read: import flyteauth_core stays light

    return assess(file, text)


def searched_config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """The file ``load_config()`` reads when given no path (None: none found), for ``flyteauth trust``."""
    file, _, _ = _find_file(None, os.environ if env is None else env, _Resolver())
    return file


def _check_declared(resolver: _Resolver, declared: Mapping[str, list[tuple[Option, Any]]]) -> None:
    """Plugins' own keys are validated at load (a bad value is a problem naming the key and the plugin
    that reads it; the plugin raises when it actually reads it) and never reported as unknown."""
    for key, entries in declared.items():
        for option, registration in entries:
            if key in ALL_KEYS or option.env_var in OUR_ENV:
                clash = f"the flyteauth key {key!r}" if key in ALL_KEYS else f"${option.env_var}"
                resolver.problem(f"{registration.kind} {registration.name} ({registration.distribution}) declares "
                                 f"an option that clashes with {clash}; rename it in the plugin")
        raw = resolver.options.get(key)
        if raw is None:
            continue
        label = resolver.option_sources[key].describe() if key in resolver.option_sources else key
        for option, registration in entries:
            try:
                option.parse(label, raw)
            except ConfigError as exc:
                resolver.problem(f"{exc.message} (read by {registration.kind} {registration.name})")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    registry: PluginRegistry | None = None,
    found: bool = False,
    errors: list[ConfigError] | None = None,
    **overrides: Any,
) -> AuthConfig:
    """Resolve an AuthConfig from a config file, environment variables and explicit overrides.

    ``path=None`` searches :func:`default_config_paths` (a YAML file with an ``admin`` or ``flyteauth``
    section, or flytekit's INI); a file that has neither is skipped, and said so in ``problems``.
    ``env`` defaults to ``os.environ``.  ``registry`` (default: the installed plugins) says which extra keys
    plugins declare.  ``overrides`` use AuthConfig field names and win over everything; ``None`` means
    "not given".  See the module docstring for the precedence.

    A per-directory file found by the search (``./config.yaml``, ``./.flyte/config.yaml``, the git root's
    ``.flyte/config.yaml``, ``./flytekit.config``) is read, but ``config.trust`` says whether the user
    trusted it; a session refuses to authenticate with an untrusted one (:mod:`flyteauth_core.trust`).
    ``path`` is the user's choice and needs no trust, unless ``found=True`` says that an SDK's own search
    found it (flytekit's ``./flytekit.config``).

    ``errors``: when given a list, a value in the file or the environment that fails its parser
    (``insecure: "maybe"``) is appended to it as a ``ConfigError`` and left unset, instead of raised, so a
    report can show every problem at once (``flyteauth config``, doctor); what cannot be built at all (no
    endpoint) still raises.  Without it, the first bad value raises.
    """
    env = os.environ if env is None else env
    declared = _Declared(registry)
    resolver = _Resolver(errors)
    file, parsed, searched = _find_file(path, env, resolver, found)
    if file is not None:
        if isinstance(parsed, dict):
            _read_yaml_into(resolver, file, parsed, declared)
        else:
            _read_ini_into(resolver, file, parsed)
    _read_env_into(resolver, env, declared)
    fields = attrs.fields_dict(AuthConfig)
    for field, value in overrides.items():
        if field not in fields or field in ("sources", "problems", "trust"):
            raise ConfigError(f"Unknown config field {field!r}")
        if value is not None and field != "options":
            resolver.put("argument", field, value, Source(field, "argument"))
    values, sources = resolver.resolve()
    if not values.get("endpoint"):
        where = [str(file)] if file else [str(p) for p in searched]
        raise ConfigError(
            "No Flyte endpoint configured",
            hint=f"Looked in {', '.join(where)} and the environment (FLYTE_PLATFORM_URL, FLYTE_ADMIN_ENDPOINT, "
            f"FLYTEAUTH_ENDPOINT, FLYTE_API_KEY); set admin.endpoint or pass endpoint=...",
        )
    options = resolver.options
    for key, value in (overrides.get("options") or {}).items():
        options[key] = value
        resolver.option_sources[key] = Source(f"options[{key!r}]", "argument")
    known = {*ALL_KEYS, *_IGNORED_KEYS, *_COMPAT_KEYS, *_DEPRECATED_KEYS}
    unknown = [k for k in resolver.options if k not in known]
    if declared.loaded or unknown:
        _check_declared(resolver, declared.covering(unknown))
    sources.update({f"options.{k}": s for k, s in resolver.option_sources.items() if k in options})
    config = AuthConfig(**values, options=options, sources=sources, problems=tuple(resolver.problems),
                        trust=resolver.trust)
    if resolver.sdk_hook is not None and config.resolved_auth_type == "Pkce" and not config.auth_type:
        error = _hook_without_provider(*resolver.sdk_hook)
        if errors is None:
            raise error
        errors.append(error)
    secret = config._secret_field()
    if config.auth_type and secret and config.auth_type.lower() in _SECRETLESS_AUTH_TYPES:
        resolver.problem(
            f"a client secret is configured ({sources.get(secret)}) but authType {config.auth_type!r} "
            f"({sources.get('auth_type')}) is explicit, so the secret is not used (flytekit would switch to "
            "ClientSecret)"
        )
        config = attrs.evolve(config, problems=tuple(resolver.problems))
    return config


def _mask(field: str, value: Any) -> str:
    return mask(SETTINGS.get(field), value)


def describe(config: AuthConfig) -> Sequence[tuple[str, str, str]]:
    """``(field, masked value, source)`` rows, for ``flyteauth config`` and ``status``.

    A key accepted only for compatibility says so: ``... (accepted for compatibility, no effect: why)``.
    """
    rows = []
    for field, spec in SETTINGS.items():
        source = str(config.sources.get(field, "default"))
        if spec.compat and field in config.sources:
            source += f" ({COMPAT}: {spec.compat})"
        rows.append((field, _mask(field, getattr(config, field)), source))
    return rows


def describe_options(config: AuthConfig, registry: PluginRegistry | None = None) -> Sequence[tuple[str, str, str]]:
    """``(key, masked value, source)`` rows for the plugins' own keys that are set, for ``flyteauth config``.

    A key a plugin declares ``secret`` is masked; a key nobody declares is shown as-is (it is reported as
    unknown in ``problems``).  Nested sections (``pkceConfig``) are not repeated here: they are fields.
    """
    declared = _Declared(registry)
    rows = []
    for key, value in config.options.items():
        if key in ALL_KEYS or key in _IGNORED_KEYS or key in _COMPAT_KEYS or key in _DEPRECATED_KEYS:
            continue
        options = [option for option, _ in declared.get(key, [])]
        secret = any(option.secret for option in options)
        masked = next((option.mask for option in options if option.mask), None)
        shown = "****" if secret and value not in (None, "") else (
            mask(Setting(field=key, mask=masked), value) if masked else repr(value))
        rows.append((key, shown, str(config.sources.get(f"options.{key}", "argument"))))
    return rows
