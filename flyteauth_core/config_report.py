"""What ``flyteauth config`` shows: the user's settings in the user's own terms, and every offline problem.

A user writes ``admin.clientSecretLocation`` in a YAML file or exports ``FLYTE_CREDENTIALS_CLIENT_SECRET``;
they never see our field names (``client_secret_location``), so neither rows nor problems use them.  The
key as written comes from ``AuthConfig.sources`` (``<file>:admin.clientSecretLocation``, ``$VAR``,
``argument``); a key that is unset is named by its canonical flytectl spelling.

Problems are everything that can be checked without a network: keys the loader did not know (typos),
files the config names that are missing, unreadable or empty (client secret, CA bundles, client key,
token file), a secret file that others can read, an env var named by the config that is unset, a command
that is not on ``PATH``.  Each problem names the key to fix and says whether it is *unset* or its value
is *wrong*.  ``flyteauth doctor`` runs the same checks as its first step, before any network call.

One severity per problem, the same as at runtime: an ``error`` is what makes the session raise when the
setting is used (a bad value, a missing file; ``flyteauth config`` exits 1, doctor fails step 1); a
``warning`` is what the runtime logs once and survives (a misspelt key, a secret file others can read;
``flyteauth config`` exits 0 unless ``--strict``, doctor warns and runs every network step); a ``note``
changes nothing.  :func:`check` produces the one list both commands print.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs

from . import parsers
from .config import DEFAULT_SECRET_LOCATION, SETTINGS, AuthConfig
from .errors import ConfigError, UntrustedConfigError
from .options import Option, Source
from .schema import COMPAT, Setting
from .trust_records import trust_command

#: ``error``: the runtime raises when the setting is used (``flyteauth config`` exits 1, doctor fails step 1);
#: ``warning``: the runtime logs it once and goes on (exit 0; 1 with ``--strict``); ``note``: no effect.
Severity = Literal["error", "warning", "note"]
#: ``unset``: the key has no value and needs one; ``wrong``: its value is set but does not work;
#: ``unknown``: the key itself is not one we read; ``note``: survivable (deprecated, conflicting);
#: ``untrusted``: a per-directory config file the user has not trusted (``flyteauth trust``).
State = Literal["unset", "wrong", "unknown", "note", "untrusted"]

_NOT_SHOWN = frozenset({"options", "sources", "problems", "trust"})


def _canonical(spec: Setting) -> str:
    if spec.yaml:
        return f"admin.{spec.yaml}"
    names = [v for dialect in ("flytekit", "flyte 2.x", "FLYTEAUTH") for v in spec.env_names()[dialect]]
    return f"${names[0]}" if names else spec.field


_CANONICAL: dict[str, str] = {field: _canonical(spec) for field, spec in SETTINGS.items()}
_CLIENT_SECRET_TYPES = frozenset({"clientsecret", "client_credentials", "basic"})
#: ClientSecret's client authentication methods that send no client secret (a public client; the platform
#: token as the client assertion).
_NO_SECRET_METHODS = frozenset({"none", "federated_jwt"})
#: auth types that read a platform token (issue 12); a file they name is checked offline like a secret file.
_PLATFORM_TOKEN_TYPES = frozenset({"tokenexchange", "token_exchange",
                                   "urn:ietf:params:oauth:grant-type:token-exchange"})


@attrs.frozen
class Problem:
    """One thing wrong with the config, in the user's terms."""

    severity: Severity
    key: str
    state: State
    message: str
    fix: str


@attrs.frozen
class Row:
    """One setting: the key as the user wrote it, its value (masked), and where it came from."""

    key: str
    value: str
    origin: str
    field: str


def canonical_key(field: str) -> str:
    """How a user would write ``field`` (``admin.clientSecretLocation``) when they have not."""
    return _CANONICAL.get(field, field)


def _split_source(source: str) -> tuple[str, str]:
    """``(key as written, origin)`` from a ``sources`` entry (a :class:`Source`, or its string form)."""
    if isinstance(source, Source):
        return source.key, source.origin
    if source.startswith("$"):
        return source, "environment"
    if source in ("argument", "default"):
        return "", source
    origin, _, key = source.rpartition(":")
    return (key, origin) if origin else (source, "file")


def user_key(config: AuthConfig, field: str) -> str:
    """The key the user wrote for ``field`` (``admin.clientSecretLocation``, ``$FLYTE_...``), or its
    canonical spelling when it came from code or is unset."""
    source = config.sources.get(field)
    key = _split_source(source)[0] if source else ""
    return key or canonical_key(field)


def config_file(config: AuthConfig) -> str | None:
    """The config file the values came from, if any."""
    for source in config.sources.values():
        key, origin = _split_source(source)
        if key and origin not in ("environment", "argument", "default", "file"):
            return origin
    return None


def format_value(field: str, value: Any, spec: Setting | None = None) -> str:
    """A value for display, masked as the schema says: secrets as ``****``, a command as its program and
    ``****`` per argument (arguments may carry secrets), a URL's password hidden."""
    spec = spec if spec is not None else SETTINGS.get(field)
    if value is None or value in ((), ""):
        return "(unset)"
    if spec is not None and spec.secret:
        return "****"
    if spec is not None and spec.mask == "argv":
        try:  # a raw option value may still be a string ("sh -c ..."): split it first, never show it whole
            words = parsers.argv(field, value)
        except ConfigError:
            return "(not a valid command)"
        return " ".join([words[0], *("****" for _ in words[1:])]) if words else "(unset)"
    if spec is not None and spec.mask == "url":
        return parsers.url_without_password(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _declared() -> dict[str, Option]:
    """Keys that installed plugins declare for themselves (first declaration wins for display)."""
    from .plugins import default_registry

    return {key: entries[0][0] for key, entries in default_registry().declared_options().items()}


def rows(config: AuthConfig, *, include_defaults: bool = False,
         declared: dict[str, Option] | None = None) -> list[Row]:
    """What the user set (and, with ``include_defaults``, every other setting at its default), including the
    keys plugins declare (``Option``), masked when the plugin says they are secret."""
    out: list[Row] = []
    for attribute in attrs.fields(AuthConfig):
        name = attribute.name
        if name in _NOT_SHOWN:
            continue
        source = config.sources.get(name)
        if source is None and not include_defaults:
            continue
        key, origin = _split_source(source) if source else ("", "default")
        out.append(Row(key or canonical_key(name), format_value(name, getattr(config, name)), origin, name))
    for key, option in sorted((_declared() if declared is None else declared).items()):
        source = config.sources.get(f"options.{key}")
        if source is None and not include_defaults:
            continue
        value = config.options.get(key) if source is not None else option.default
        shown = format_value(key, value, Setting(field=key, secret=option.secret, mask=option.mask))
        written, origin = _split_source(source) if source is not None else (f"flyteauth.{key}", "default")
        out.append(Row(written, shown, origin, f"options.{key}"))
    return out


# -- problems -------------------------------------------------------------------------------------------
#: Survivable loader messages: (pattern, fix).  ``{key}`` is the key as written (the pattern's first group).
_NOTES: tuple[tuple[str, str], ...] = (  # warnings, except the last: a skipped file changes nothing
    (r"^(\S+) is deprecated", "Remove {key}: it has no effect"),
    (r"^(\$\w+) disagrees with", "Unset one of the two variables, or make them agree"),
    (r"^(\$\w+) names .* which does not exist", "Point {key} at a config file, or unset it"),
    (r"^(\$\w+) carries", "Unset one of the two"),
    (r"^a client secret is configured \((.*?)\)", "Remove the client secret ({key}), or set authType: ClientSecret"),
    (r"^the client secret from (\S+)", "Remove {key}: a higher-precedence layer supplies the secret"),
    (r"^.*?: (admin\.\w+)(?: and admin\.\w+)? beside admin\.authType", "Move {key} into the flyteauth: section"),
    (r"^(\S+) has no admin: or flyteauth: section", "Add an admin: section to {key}, or remove the file"),
)


def _loader_problem(text: str) -> Problem:
    """A problem string from ``load_config`` as a Problem: warnings (the loader logs them and goes on),
    except a value a plugin's parser rejects (the plugin raises when it reads it)."""
    match = re.match(r"(?P<where>.*): unknown key '(?P<key>[^']*)'", text)
    compat = re.match(rf"^(\S+)(?: in .*?)?: {COMPAT}", text)
    if compat is not None:
        key = compat.group(1)
        return Problem("note", key, "note", text, f"Remove {key} unless another client reads it")
    plugin = re.search(r"\(read by (.+)\)$", text)
    if match is None and plugin is not None:  # a value a plugin declared, failing the plugin's parser
        key = text.split(" ", 1)[0]
        return Problem("error", key, "wrong", text, f"Fix {key} ({plugin.group(1)} reads it)")
    if match is None:
        for pattern, fix in _NOTES:
            note = re.match(pattern, text)
            if note is not None:
                key = _split_source(note.group(1))[0] or note.group(1)
                severity: Severity = "note" if pattern == _NOTES[-1][0] else "warning"
                return Problem(severity, key, "note", text.replace(note.group(1), key, 1), fix.format(key=key))
        return Problem("warning", "config", "note", text, "See the message")
    written = _split_source(match.group("where"))[0] or match.group("key")
    guess = re.search(r"did you mean '([^']+)'", text)
    if guess is not None:
        fixed = written[: len(written) - len(match.group("key"))] + guess.group(1)
        fix = f"Rename {written} to {fixed}"
        message = f"{written} is not a key flyteauth reads (a typo of {fixed}?), so its value is ignored"
    else:
        fix = f"Remove {written}, or install the plugin that reads it"
        message = f"{written} is not a key flyteauth or an installed plugin reads, so its value is ignored"
    return Problem("warning", written, "unknown", message, fix)


def key_of_error(message: str) -> tuple[str | None, State | None]:
    """The key a loader error names first (``admin.insecure``, ``$FLYTE_ADMIN_INSECURE``) and its state."""
    if message.startswith("No Flyte endpoint"):
        return "admin.endpoint", "unset"
    match = re.match(r"(?:\S+: )?((?:admin|flyteauth)\.[\w.]+|\$?FLYTE[A-Z0-9_]*|\[\w+\] \w+)", message)
    if match is None:
        return None, None
    key = match.group(1)
    return (key if key.startswith(("admin", "flyteauth", "$", "[")) else f"${key}"), "wrong"


def error_problem(error: ConfigError) -> Problem:
    """A ``ConfigError`` from the loader (a value its parser rejects, no endpoint, ...) as an error Problem."""
    key, state = key_of_error(error.message)
    return Problem("error", key or "config", state or "wrong", error.message,
                   error.hint or (f"Fix {key}" if key else "Fix the config named above"))


def _ordered(found: Sequence[Problem]) -> list[Problem]:
    return sorted(found, key=lambda p: ("error", "warning", "note").index(p.severity))


def check(config_path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
          ) -> tuple[AuthConfig | None, list[Problem]]:
    """Load the config and list every problem found offline, errors first: what ``flyteauth config`` prints
    and doctor's step 1 judges.  A bad value does not hide the others (``insecure: "maybe"`` is one error
    among the rest); the config is None only when it cannot be built at all (no endpoint, invalid YAML)."""
    from .config import load_config

    collected: list[ConfigError] = []
    try:
        config = load_config(config_path, env=env, errors=collected)
    except ConfigError as error:
        return None, _ordered([error_problem(e) for e in (*collected, error)])
    return config, _ordered([*(error_problem(e) for e in collected), *problems(config, env)])


def _check_file(config: AuthConfig, field: str, path: str, what: str, *, secret: bool) -> list[Problem]:
    key = user_key(config, field)
    file = Path(path).expanduser()
    try:
        info = file.stat()
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
        return [Problem("error", key, "wrong", f"{key} names {path}, which {reason}",
                        f"Fix {key} to point at {what}, or create {path}")]
    if not stat.S_ISREG(info.st_mode):
        return [Problem("error", key, "wrong", f"{key} names {path}, which is not a file",
                        f"Point {key} at {what}")]
    if not os.access(file, os.R_OK):
        return [Problem("error", key, "wrong", f"{key} names {path}, which this user cannot read",
                        f"Make {path} readable by uid {os.getuid()} (its owner is uid {info.st_uid})")]
    found: list[Problem] = []
    if info.st_size == 0:
        found.append(Problem("error", key, "wrong", f"{key} names {path}, which is empty", f"Put {what} in {path}"))
    if secret and info.st_mode & 0o077:
        found.append(Problem(
            "warning", key, "wrong",
            f"{path} ({key}) holds a secret but is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
            f"chmod 600 {path}",
        ))
    return found


def _check_env_var(config: AuthConfig, field: str, var: str, what: str, env: Mapping[str, str]) -> list[Problem]:
    if (env.get(var) or "").strip():
        return []
    key = user_key(config, field)
    return [Problem("error", key, "wrong", f"{key} names the environment variable {var}, which is unset or empty",
                    f"Export {var} with {what}, or fix {key}")]


def _check_client_secret(config: AuthConfig, env: Mapping[str, str]) -> list[Problem]:
    if config.client_secret is not None:
        if config.client_secret.strip():
            return []
        key = user_key(config, "client_secret")
        return [Problem("error", key, "wrong", f"{key} is blank", f"Set {key} to the client secret, or unset it")]
    if config.client_secret_env_var:
        return _check_env_var(config, "client_secret_env_var", config.client_secret_env_var, "the client secret",
                              env)
    if config.client_secret_location:
        return _check_file(config, "client_secret_location", config.client_secret_location,
                           "the file holding the client secret", secret=True)
    if Path(DEFAULT_SECRET_LOCATION).is_file():
        return _check_file(config, "client_secret_location", DEFAULT_SECRET_LOCATION,
                           "the file holding the client secret", secret=True)
    return [Problem(
        "error", "admin.clientSecretLocation", "unset",
        f"authType {config.resolved_auth_type} needs a client secret: admin.clientSecretLocation is unset and "
        f"the default {DEFAULT_SECRET_LOCATION} does not exist",
        "Set admin.clientSecretLocation to the file holding the secret (or admin.clientSecretEnvVar, or "
        "$FLYTE_CREDENTIALS_CLIENT_SECRET)",
    )]


def _check_command(config: AuthConfig, field: str) -> list[Problem]:
    argv: Sequence[str] = getattr(config, field)
    if not argv or shutil.which(argv[0]) is not None:
        return []
    key = user_key(config, field)
    return [Problem("error", key, "wrong", f"{key} runs {argv[0]!r}, which is not an executable on PATH",
                    f"Install {argv[0]}, or fix {key} (an argv list, no shell)")]


def _anonymous(config: AuthConfig) -> bool:
    """Whether the config's provider is registered ``anonymous`` (sends nothing)."""
    from .plugins import default_registry

    try:
        return bool(default_registry().authenticator(config.resolved_auth_type).anonymous)
    except Exception:
        return False  # an unknown auth type is a problem of its own


_COMMAND_TYPES = frozenset({"externalcommand", "external_process"})
_LOGIN_TYPES = frozenset({"pkce", "standard", "deviceflow", "device_flow"})


def _host(url: str) -> str:
    """The host (and port) of ``url``, never its user-info: that ends at the *last* ``@``, since a password
    may hold an unencoded ``/``, ``?`` or ``#`` (a URL parser would then show part of it as the host)."""
    return re.split(r"[/?#]", parsers.url_parts(url)[2], maxsplit=1)[0]


def actions(config: AuthConfig) -> tuple[str, ...]:
    """What an untrusted per-directory ``config`` would run and where it would send credentials, commands
    masked as ``flyteauth config`` masks them (the program; ``****`` per argument)."""
    host = _host(config.http_base_url)
    kind = config.resolved_auth_type.lower()
    token_host = _host(config.token_url) if config.token_url else f"the token endpoint that {host} advertises"
    out: list[str] = []
    if kind in _COMMAND_TYPES:
        out.append(f"run `{format_value('command', config.command)}` (authType {config.resolved_auth_type}) and "
                   f"send the token it prints to {host}")
    elif kind == "passthrough":
        out.append(f"send the token you hand in to {host}")
    elif kind in _LOGIN_TYPES:
        out.append(f"send your login (authType {config.resolved_auth_type}, at {token_host}) to {host}")
    elif kind not in ("noauth", "none", "no_auth", "anonymous"):
        out.append(f"send credentials (authType {config.resolved_auth_type}) to {token_host} and the token to "
                   f"{host}")
    raw = config.options.get("platformTokenCommand")
    if raw:  # masked like admin.command (a string form is split first)
        out.append(f"run `{format_value('command', raw)}` (platformTokenCommand)")
    if config.proxy_command:
        out.append(f"run `{format_value('proxy_command', config.proxy_command)}` (proxyCommand) and send its token "
                   f"to {host}")
    if config.auth_origins:
        out.append(f"send the token to {', '.join(_host(o) for o in config.auth_origins)} too (authOrigins)")
    return tuple(out)


def refusal(config: AuthConfig, *, anonymous: bool = False) -> UntrustedConfigError | None:
    """The error a session built from ``config`` raises instead of authenticating; None when the config
    may be used (no per-directory file, a trusted one, or an ``anonymous`` provider with no proxyCommand:
    nothing is run or sent)."""
    found = config.trust
    if found is None or found.trusted or (anonymous and not config.proxy_command):
        return None
    return UntrustedConfigError(found.path, actions=actions(config), command=trust_command(found.path),
                                changed=found.changed)


def _check_trust(config: AuthConfig) -> list[Problem]:
    """An untrusted per-directory file: an error worded as the session's refusal (one source of the text);
    a note when the provider sends nothing anyway (NoAuth without proxyCommand)."""
    found = config.trust
    if found is None or found.trusted:
        return []
    error = refusal(config, anonymous=_anonymous(config))
    if error is None:
        return [Problem("note", found.path, "untrusted",
                        f"{found.path} was found in the working tree and is not trusted ({found.reason}); its "
                        "provider sends nothing, so it is used", f"Run `{trust_command(found.path)}` if you trust it")]
    return [Problem("error", error.path, "untrusted", error.message, error.hint or "")]


#: Token stores whose package comes with an extra: name -> (module, extra).  The store itself raises
#: MissingExtraError when first used; listing it here lets `flyteauth config` and doctor's step 1 say so
#: offline, with the same words (a name only: nothing here imports the provider).
_STORE_EXTRAS = {"redis": ("redis", "redis")}


def _check_store_extra(config: AuthConfig) -> list[Problem]:
    import importlib.util

    from .errors import MissingExtraError

    name = (config.store or "").lower()
    if name not in _STORE_EXTRAS or importlib.util.find_spec(_STORE_EXTRAS[name][0]) is not None:
        return []
    module, extra = _STORE_EXTRAS[name]
    key = user_key(config, "store")
    error = MissingExtraError(f"{key}: {config.store}", extra=extra, package=module)
    return [Problem("error", key, "wrong", error.message, error.hint or f"pip install -e '.[{extra}]'")]


def problems(config: AuthConfig, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem that can be found without a network call, errors first."""
    env = os.environ if env is None else env
    found = [_loader_problem(text) for text in config.problems]
    found += _check_trust(config)
    auth_type = config.resolved_auth_type.lower()
    if auth_type in _CLIENT_SECRET_TYPES:
        if not config.client_id:
            found.append(Problem("error", "admin.clientId", "unset", "authType ClientSecret needs a client id",
                                 "Set admin.clientId"))
        if config.token_endpoint_auth_method == "private_key_jwt":
            if not config.client_key_file_path:
                found.append(Problem(
                    "error", "admin.clientKeyFilePath", "unset",
                    f"{user_key(config, 'token_endpoint_auth_method')} is private_key_jwt but "
                    "admin.clientKeyFilePath is unset", "Set admin.clientKeyFilePath to the client's PEM private key"))
            else:
                found += _check_file(config, "client_key_file_path", config.client_key_file_path,
                                     "the client's PEM private key", secret=True)
        elif config.token_endpoint_auth_method not in _NO_SECRET_METHODS:
            found += _check_client_secret(config, env)
    platform_file = config.options.get("platformTokenFile")
    if platform_file and (auth_type in _PLATFORM_TOKEN_TYPES or (
            auth_type in _CLIENT_SECRET_TYPES and config.token_endpoint_auth_method == "federated_jwt")):
        # a projected token is world-readable by default (defaultMode 0644): not a warning here
        found += _check_file(config, "options.platformTokenFile", str(platform_file),
                             "the platform token (a projected service account token)", secret=False)
    for field, what in (("ca_cert_file_path", "a PEM file of CA certificates for the Flyte endpoint"),
                        ("idp_ca_cert_file_path", "a PEM file of CA certificates for the IdP")):
        path = getattr(config, field)
        if path:
            found += _check_file(config, field, path, what, secret=False)
    if auth_type == "passthrough":
        if config.token_file_path:
            found += _check_file(config, "token_file_path", config.token_file_path, "the file holding the token",
                                 secret=True)
        if config.token_env_var:
            found += _check_env_var(config, "token_env_var", config.token_env_var, "the token", env)
    if auth_type in ("externalcommand", "external_process"):
        if not config.command:
            found.append(Problem("error", "admin.command", "unset", "authType ExternalCommand needs a command",
                                 "Set admin.command to the argv that prints a token"))
        found += _check_command(config, "command")
    found += _check_command(config, "proxy_command")
    found += _check_store_extra(config)
    for field, spec in SETTINGS.items():
        if spec.compat and field in config.sources:
            key = user_key(config, field)
            found.append(Problem("note", key, "note", f"{key} is {COMPAT} ({spec.compat})",
                                 f"Remove {key} unless another client reads it"))
    return _ordered(found)


def provider_details(config: AuthConfig) -> tuple[str | None, dict[str, Any] | None]:
    """What the selected provider says about itself offline (``describe()`` and ``details()``), for
    providers that define ``details``: where a platform token comes from and its claims, for example.

    Providers without it are not built here (building one may probe a keyring); a provider that fails to
    describe itself gives its error text, which never holds a secret (our errors don't)."""
    from .plugins import default_registry

    if config.trust is not None and not config.trust.trusted:
        return "not built: the config file is not trusted (see problems)", None
    try:
        registration = default_registry().authenticator(config.resolved_auth_type)
    except Exception:
        return None, None  # an unknown auth type is already a problem of its own
    if not callable(getattr(registration.factory, "details", None)):
        return None, None
    try:
        provider = registration.factory(config)
        details = dict(provider.details())
        describe = getattr(provider, "describe", None)
        return (str(describe()) if callable(describe) else None), details
    except Exception as exc:
        return f"cannot describe the provider offline: {exc}", None


def _canonical_auth_type(auth_type: str, reason: str) -> tuple[str, str]:
    """The registered name a plugin and the events see (``Initech`` for ``authType: initech-corp``), with the
    user's spelling kept in the reason; unchanged when no plugin registers it (that is a problem of its own)."""
    from .plugins import default_registry

    try:
        name = default_registry().authenticator(auth_type).name
    except Exception:
        return auth_type, reason
    return (name, reason) if name == auth_type else (name, f"authType {auth_type}; {reason}")


@attrs.frozen
class ConfigReport:
    """Everything ``flyteauth config`` prints, as data."""

    file: str | None
    auth_type: str
    auth_type_reason: str
    rows: tuple[Row, ...]
    problems: tuple[Problem, ...]
    provider: str | None = None
    provider_details: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """No error: the config works (warnings are printed, and survived at runtime too)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def clean(self) -> bool:
        """Neither an error nor a warning (``--strict``)."""
        return all(p.severity == "note" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "auth_type": self.auth_type, "auth_type_reason": self.auth_type_reason,
                "settings": [attrs.asdict(r) for r in self.rows],
                "problems": [attrs.asdict(p) for p in self.problems],
                "provider": self.provider, "provider_details": self.provider_details,
                "ok": self.ok}

    def render(self) -> str:
        lines = [f"config file: {self.file or '(none: environment and arguments only)'}",
                 f"auth type:   {self.auth_type} ({self.auth_type_reason})"]
        if self.provider:
            lines.append(f"provider:    {self.provider}")
        lines.append("")
        if self.rows:
            kw = max(len(r.key) for r in self.rows)
            vw = min(48, max(len(r.value) for r in self.rows))
            lines += [f"{r.key:<{kw}}  {r.value:<{vw}}  {r.origin}" for r in self.rows]
        else:
            lines.append("(nothing set)")
        lines.append("")
        if self.clean:
            lines.append("problems: none")
        for p in self.problems:
            lines.append(f"{p.severity}: {p.message}")
            lines.append(f"  fix: {p.fix}")
        return "\n".join(lines)


def report(config: AuthConfig, *, include_defaults: bool = False, env: Mapping[str, str] | None = None,
           found: Sequence[Problem] | None = None) -> ConfigReport:
    """``found``: the problems :func:`check` listed (default: :func:`problems` of ``config``)."""
    provider, details = provider_details(config)
    found = tuple(problems(config, env) if found is None else found)
    if details is None and provider and any(p.severity == "error" for p in found):
        provider = None  # its build failed on what the problems below already say (a missing file): say it once
    auth_type, reason = config.resolved_auth_type, config.auth_type_reason
    if any(p.severity == "error" and p.key.endswith(".authType") for p in found):
        auth_type, reason = "(none chosen)", "see the error below"  # not the default it would fall back to
    else:
        auth_type, reason = _canonical_auth_type(auth_type, reason)
    return ConfigReport(config_file(config), auth_type, reason,
                        tuple(rows(config, include_defaults=include_defaults)), found, provider, details)


def main(config_path: str | None, *, include_defaults: bool = False, as_json: bool = False,
         out: TextIO | None = None, strict: bool = False) -> int:
    """``flyteauth config``: exit 1 on an error (the config will not work), so scripts and CI can gate on
    it; warnings are printed and exit 0, as they are survived at runtime (``strict``: exit 1 on them too)."""
    import json
    import logging
    import sys

    out = out or sys.stdout
    logger = logging.getLogger("flyteauth.config")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the report lists the loader's problems itself, each once
    try:
        config, found = check(config_path)
        # building the provider (report's provider line) reads the secret file, which warns about its mode
        result = report(config, include_defaults=include_defaults, found=found) if config is not None else None
    finally:
        logger.setLevel(level)
    if config is None:  # nothing to show but what is wrong
        if as_json:
            json.dump({"file": None, "problems": [attrs.asdict(p) for p in found], "ok": False}, out, indent=2)
            print(file=out)
        else:
            print("\n".join(f"{p.severity}: {p.message}\n  fix: {p.fix}" for p in found), file=out)
        return 1
    assert result is not None
    if as_json:
        json.dump(result.to_dict(), out, indent=2)
        print(file=out)
    else:
        print(result.render(), file=out)
    return 0 if (result.clean if strict else result.ok) else 1
