"""A credential's identity: one value that says whose token it is and what it is for.

Every cache that hands a token (or a server's answer) to another process keys on it: the token stores
(``AuthSession`` -> ``TokenManager`` -> ``store.load/save/lock``), the shared discovery cache and the
``flyteauth token`` helper's cache.  Two callers share a cached credential only when their identities are
equal, so a service account's token never reaches another service account, and a person's login never
reaches another person, through a shared store.

The core fills what the config says (:meth:`CredentialIdentity.build`): endpoint, token endpoint, auth
type, client id and auth method, scopes, audience.  A provider adds what only it knows through the
optional ``IdentitySource`` capability (``flyteauth_core.protocols``): the platform token's
``iss``/``sub``/``aud`` (TokenExchange, ``federated_jwt``), ``resource``, ``requested_token_type``, the
actor token's claims, the OS user of an interactive login.  Parts are never tokens or secrets: claims,
names, or digests.

Parts read from outside the config (a token file, an env var, a command's output) are read through
:func:`observe`.  It returns the stable part (a JWT's ``iss``/``sub``/``aud``, which survive the kubelet
re-projecting the file, so a fleet keeps sharing one token per refresh interval) and records the
:class:`Input`, so the credential helper can re-check the identity on its warm path without parsing the
config, loading plugins or touching the network.

Kept free of heavy imports: ``flyteauth token`` imports this module on its warm path.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from .claims import audiences, unverified_claims

#: The claims that name a platform (or actor) token's identity; they stay the same when it rotates.
IDENTITY_CLAIMS = ("iss", "sub", "aud")
#: How an :class:`Input` is turned into an identity part.  ``claims``: a JWT's iss/sub/aud (a digest of the
#: value when it is not a JWT); ``exact``: a digest of the value (the value itself is the identity).
MODES = ("claims", "exact")
KINDS = ("env", "file", "command")
ABSENT = "absent"


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _parts(value: Any) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _scopes(value: Any) -> tuple[str, ...]:
    return tuple(sorted({str(s) for s in value}))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def os_user() -> str:
    """The OS account running this process, as ``name@host`` on Linux: part of a person's login's identity.

    The name comes from the uid, not ``$USER`` (which anyone can set).  The host is there because a name
    is not a person across hosts: every container runs as ``root``, every JupyterHub pod as ``jovyan``, so
    without it one person's login in a shared Redis would reach everyone with that name and config.  Not
    on macOS and Windows: a laptop's host name follows the network it joins (DHCP), which would make its
    user log in again after each move, and laptops are not where user names are shared."""
    import socket
    import sys

    if sys.platform == "darwin" or sys.platform == "win32":
        return _user_name()
    return f"{_user_name()}@{socket.gethostname()}"


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # Windows, or a uid with no passwd entry (containers)
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no name at all: the uid still separates users
            return f"uid:{getattr(os, 'getuid', lambda: -1)()}"


def token_part(value: str, mode: str = "claims") -> str:
    """The identity part of a token: ``iss=..;sub=..;aud=..`` of a JWT in ``claims`` mode, else a digest."""
    value = value.strip()
    if not value:
        return ABSENT
    if mode == "claims":
        claims = unverified_claims(value)
        if claims.get("iss") or claims.get("sub"):
            aud = ",".join(sorted(audiences(claims)))
            return f"iss={claims.get('iss', '')};sub={claims.get('sub', '')};aud={aud}"
    return _digest(value)


@attrs.frozen
class Input:
    """Something outside the config that an identity part was read from: an env var, a file or a command."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    target: tuple[str, ...] = attrs.field(converter=_strings)
    mode: str = attrs.field(default="claims", validator=attrs.validators.in_(MODES))
    timeout: float = 10.0

    def read(self) -> str | None:
        """The raw value now (None when absent); a command that fails raises ``OSError``."""
        if self.kind == "env":
            return os.environ.get(self.target[0])
        if self.kind == "file":
            try:
                with open(os.path.expanduser(self.target[0]), "rb") as fh:
                    return fh.read().decode("utf-8", "replace")
            except OSError:
                return None
        try:
            proc = subprocess.run(list(self.target), stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise OSError(f"{os.path.basename(self.target[0])} did not finish within {self.timeout:g}s") from None
        if proc.returncode != 0:
            raise OSError(f"{os.path.basename(self.target[0])} exited with status {proc.returncode}")
        return proc.stdout.decode("utf-8", "replace")

    def part(self) -> str:
        """The identity part this input gives now (never the raw value)."""
        value = self.read()
        return ABSENT if value is None else token_part(value, self.mode)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": list(self.target), "mode": self.mode, "timeout": self.timeout}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Input:
        return cls(str(data["kind"]), tuple(str(t) for t in data["target"]), str(data.get("mode", "claims")),
                   float(data.get("timeout", 10.0)))


@attrs.define
class Recording:
    """What :func:`observe` read while :func:`recording` was active.  ``complete`` turns False when a part
    came from somewhere no :class:`Input` describes (:func:`unobservable`): the helper then does not cache."""

    inputs: list[Input] = attrs.Factory(list)
    complete: bool = True


_RECORDING: contextvars.ContextVar[Recording | None] = contextvars.ContextVar("flyteauth_identity_inputs",
                                                                             default=None)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Collect the :class:`Input`\\ s that :func:`observe` reads while the block runs (the helper's cold path)."""
    current = Recording()
    reset = _RECORDING.set(current)
    try:
        yield current
    finally:
        _RECORDING.reset(reset)


def note(item: Input) -> None:
    """Record ``item`` as read (for a provider that answers from its own memo instead of reading again)."""
    current = _RECORDING.get()
    if current is not None and item not in current.inputs:
        current.inputs.append(item)


def unobservable() -> None:
    """Say that an identity part was read from somewhere :func:`observe` cannot describe (a third-party
    platform token source without ``identity()``): ``flyteauth token`` will not cache this credential."""
    current = _RECORDING.get()
    if current is not None:
        current.complete = False


def observe(kind: str, *target: str, mode: str = "claims", timeout: float = 10.0) -> str:
    """Read an identity part from outside the config, and record where it came from.

    ``observe("file", path)``: a token file's ``iss``/``sub``/``aud``; ``observe("env", NAME, mode="exact")``: a
    digest of the variable; ``observe("command", *argv)``: the claims of the command's output.  ``absent``
    when the variable or file does not exist.  Providers read every identity part that is not in the
    config through this function, so that ``flyteauth token`` can check the identity again without them.
    """
    item = Input(kind, target, mode, timeout)
    note(item)
    return item.part()


def fingerprint(inputs: list[Input] | tuple[Input, ...]) -> str:
    """One digest of what each input gives now (the helper's warm path); raises ``OSError`` when a command
    input fails."""
    return _digest(json.dumps([[i.to_json(), i.part()] for i in inputs], sort_keys=True))


@attrs.frozen
class CredentialIdentity:
    """Whose token it is and what it may do.  Equal identities may share a cached token; nothing else may.

    ``token_endpoint`` is ``tokenUrl`` when configured; empty means "whatever the endpoint's discovery
    names", which the endpoint decides.  ``parts`` are the provider's contributions (see
    ``IdentitySource``), for example ``platform`` (``iss=..;sub=..;aud=..``), ``actor``, ``resource``,
    ``requested_token_type``, ``os_user``.  No field holds a token or a secret.
    """

    endpoint: str
    auth_type: str
    token_endpoint: str = ""
    client_id: str = ""
    auth_method: str = ""
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_scopes)
    audience: str = ""
    parts: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_parts)

    @classmethod
    def build(cls, config: Any, auth_type: str, parts: Mapping[str, str] | None = None) -> CredentialIdentity:
        """The identity from the config (``AuthConfig``), the canonical auth type and the provider's parts."""
        return cls(
            endpoint=config.endpoint or "",
            auth_type=auth_type,
            token_endpoint=config.token_url or "",
            client_id=config.client_id or "",
            auth_method=config.token_endpoint_auth_method or "",
            scopes=tuple(config.scopes or ()),
            audience=config.audience or "",
            parts=dict(parts or {}),
        )

    @property
    def digest(self) -> str:
        """A digest of every field (sha256 hex): equal identities, equal digests."""
        data = json.dumps(attrs.asdict(self), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()

    @property
    def store_key(self) -> str:
        """The key a token store receives (endpoint and auth type readable, the rest a digest)."""
        return f"flyteauth:{self.endpoint}:{self.auth_type.lower()}:{self.digest[:32]}"

    @property
    def discovery_key(self) -> str:
        """The key of this identity's cached discovery answer."""
        return f"flyteauth-discovery:{self.endpoint}:{self.digest[:32]}"

    def describe(self) -> dict[str, Any]:
        """For ``flyteauth status``: every field (none is secret)."""
        out = attrs.asdict(self)
        out["parts"] = dict(self.parts)
        return out
