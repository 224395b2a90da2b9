"""AuthConfig and load_config(): what the user configured, and where each value came from.

The file format is flytectl's ``config.yaml`` (section ``admin``).  Precedence: explicit arguments >
environment > file > values discovered from the server > defaults.  YAML is imported only when a file
is actually read, to keep ``import flyteauth_core`` light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError

DEFAULT_SECRET_LOCATION = "/etc/secrets/client_secret"


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    return tuple(str(v) for v in value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return dict(value or {})


@attrs.frozen
class AuthConfig:
    """Everything a session needs to authenticate.  Secrets are never in ``repr``.

    ``options`` is the raw ``admin`` section (plus anything passed in code), for plugins that read
    keys of their own.  ``sources`` maps a field name to where its value came from.
    """

    endpoint: str
    auth_type: str | None = None
    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_cert_file_path: str | None = None
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    client_secret_location: str | None = None
    client_secret_env_var: str | None = None
    token_endpoint_auth_method: str = "client_secret_basic"
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    audience: str | None = None
    use_audience_from_admin: bool = False
    token_url: str | None = None
    authorization_header: str | None = None
    token_refresh_window: float | None = None
    store: str | None = None
    http_timeout: float = 15.0
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, repr=False)
    sources: Mapping[str, str] = attrs.field(factory=dict, converter=_mapping, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.endpoint or not isinstance(self.endpoint, str):
            raise ConfigError(
                "No Flyte endpoint configured",
                hint="Set admin.endpoint in config.yaml or pass AuthConfig(endpoint=...)",
            )
        if self.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigError(
                f"Unsupported tokenEndpointAuthMethod {self.token_endpoint_auth_method!r}",
                hint="Use client_secret_basic or client_secret_post",
            )

    @property
    def resolved_auth_type(self) -> str:
        """The auth type to resolve: explicit, else ClientSecret when a secret is configured, else Pkce.

        An explicit ``authType`` always wins (flytekit overrides it whenever a secret exists; we don't).
        """
        if self.auth_type:
            return self.auth_type
        if self.client_secret or self.client_secret_env_var or self.client_secret_location:
            return "ClientSecret"
        return "Pkce"

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
                raise ConfigError(
                    f"clientSecretEnvVar names {self.client_secret_env_var!r}, which is unset or empty",
                    hint=f"Export {self.client_secret_env_var} or fix admin.clientSecretEnvVar",
                )
            return value.strip()
        location = self.client_secret_location or DEFAULT_SECRET_LOCATION
        reason, value = None, ""
        try:
            value = Path(location).read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        except UnicodeDecodeError:  # raised outside this block: the error's bytes are the secret
            reason = "not UTF-8 text"
        if reason is not None:
            raise ConfigError(
                f"Cannot read the client secret file {location!r} ({reason})",
                hint="Set admin.clientSecretLocation, admin.clientSecretEnvVar, or pass client_secret",
            )
        if not value.strip():
            raise ConfigError(f"The client secret file {location!r} is empty")
        return value.strip()


# flytectl key -> (AuthConfig field, parser)
def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"{key} must be a boolean, got {value!r}")


def _str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key} must be a string, got {type(value).__name__}")
    return str(value) or None


def _list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return _tuple(value)
    if value is None:
        return ()
    raise ConfigError(f"{key} must be a list of strings, got {type(value).__name__}")


def parse_duration(key: str, value: Any) -> float:
    """Seconds from a Go duration string (``5m``, ``1h30m``, ``250ms``) or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    try:
        if text and text.replace(".", "", 1).isdigit():
            return float(text)
        while i < len(text):
            ch = text[i]
            if ch.isdigit() or ch == ".":
                number += ch
                i += 1
                continue
            unit = next(u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i))
            total += float(number) * units[unit]
            number, i = "", i + len(unit)
        if number or not text:
            raise ValueError
    except (StopIteration, ValueError):
        raise ConfigError(f"{key} must be a duration like 30s, 5m or 1h30m, got {value!r}") from None
    return total


_FILE_KEYS: dict[str, tuple[str, Any]] = {
    "endpoint": ("endpoint", _str),
    "authType": ("auth_type", _str),
    "insecure": ("insecure", _bool),
    "insecureSkipVerify": ("insecure_skip_verify", _bool),
    "caCertFilePath": ("ca_cert_file_path", _str),
    "clientId": ("client_id", _str),
    "clientSecretLocation": ("client_secret_location", _str),
    "clientSecretEnvVar": ("client_secret_env_var", _str),
    "tokenEndpointAuthMethod": ("token_endpoint_auth_method", _str),
    "scopes": ("scopes", _list),
    "audience": ("audience", _str),
    "useAudienceFromAdmin": ("use_audience_from_admin", _bool),
    "tokenUrl": ("token_url", _str),
    "authorizationHeader": ("authorization_header", _str),
    "tokenRefreshWindow": ("token_refresh_window", parse_duration),
    "tokenStore": ("store", _str),
}


def default_config_paths() -> list[Path]:
    """Where ``load_config()`` looks when given no path, in order."""
    paths: list[Path] = []
    for var in ("FLYTECTL_CONFIG", "UCTL_CONFIG"):
        if os.environ.get(var):
            paths.append(Path(os.environ[var]).expanduser())
    paths += [Path("config.yaml"), Path(".flyte/config.yaml"), Path("~/.flyte/config.yaml").expanduser()]
    return paths


def _read_admin_section(path: Path) -> Mapping[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"Cannot read config file {str(path)!r} ({reason})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML{where}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"Config file {str(path)!r} must be a mapping with an 'admin' section")
    admin = data.get("admin") or {}
    if not isinstance(admin, Mapping):
        raise ConfigError(f"The 'admin' section of {str(path)!r} must be a mapping")
    return admin


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> AuthConfig:
    """Resolve an AuthConfig from a flytectl YAML file and explicit overrides.

    ``path=None`` searches :func:`default_config_paths`.  ``overrides`` use AuthConfig field names and
    win over the file.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    options: dict[str, Any] = {}
    file: Path | None = None
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"Config file {str(file)!r} does not exist")
    else:
        file = next((p for p in default_config_paths() if p.is_file()), None)
    if file is not None:
        admin = _read_admin_section(file)
        options.update(admin)
        for key, raw in admin.items():
            spec = _FILE_KEYS.get(str(key))
            if spec is None or raw is None:  # unknown keys stay in options; `key:` with no value is unset
                continue
            field, parse = spec
            values[field] = parse(f"admin.{key}", raw)
            sources[field] = f"{file}:admin.{key}"
    for field, value in overrides.items():
        if field not in attrs.fields_dict(AuthConfig):
            raise ConfigError(f"Unknown config field {field!r}")
        if value is not None:
            values[field] = value
            sources[field] = "argument"
    if not values.get("endpoint"):
        searched = [str(file)] if file else [str(p) for p in default_config_paths()]
        raise ConfigError(
            "No Flyte endpoint configured",
            hint=f"Looked in {', '.join(searched)}; set admin.endpoint or pass endpoint=...",
        )
    options.update(values.pop("options", {}) or {})
    return AuthConfig(**values, options=options, sources=sources)


def describe(config: AuthConfig) -> Sequence[tuple[str, str, str]]:
    """``(field, masked value, source)`` rows, for ``flyteauth config`` and ``status``."""
    rows = []
    for field in attrs.fields(AuthConfig):
        if field.name in ("options", "sources"):
            continue
        value = getattr(config, field.name)
        shown = "****" if (field.name == "client_secret" and value) else repr(value)
        rows.append((field.name, shown, config.sources.get(field.name, "default")))
    return rows
