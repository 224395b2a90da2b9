"""Trust for per-directory config files: a file the working tree supplied runs nothing and sends nothing
until the user says so.

flyteauth (like flyte 2.x) reads ``./config.yaml``, ``./.flyte/config.yaml``, ``<git root>/.flyte/config.yaml``
and ``./flytekit.config`` when no file is named.  Whoever can write a repository can write those files, and
a config says which command runs (``command``, ``proxyCommand``, ``platformTokenCommand``) and where a
credential goes (``endpoint``, ``tokenUrl``, ``authOrigins``).  So, as ``direnv allow`` and ``mise trust`` do,
such a file is used to authenticate only after ``flyteauth trust`` recorded its content hash, and a changed
file needs trust again.  A file the user named (``--config``, ``$FLYTECTL_CONFIG``, ``$FLYTEAUTH_CONFIG``,
``$UCTL_CONFIG``, ``load_config(path)``, ``AuthConfig(...)`` in code) or a user-level file
(``~/.flyte/config.yaml``, ``~/.flyte/config``, ``~/.union/config.yaml``) is the user's own choice.

Records live in ``$XDG_CONFIG_HOME/flyteauth/trusted/`` (default ``~/.config/flyteauth/trusted/``), a 0700
directory of 0600 files, one per file trusted, named by a digest of its real path and holding that path and
the SHA-256 of the text flyteauth parsed.  Records in a directory that another user owns or can write are
ignored (they could trust anything).

Reading an untrusted file stays possible (``flyteauth config`` and ``doctor`` show it and say why it is not
used); what is refused is authenticating with it: an :class:`AuthSession` built from it gets no provider, no
token store and no extra interceptors, and its first token request raises
:class:`~flyteauth_core.errors.UntrustedConfigError` before any command runs or any secret is read.
A provider registered ``anonymous`` (``NoAuth``) with no ``proxyCommand`` sends nothing, so it still works.

The records themselves (``FileTrust``, ``assess``, ``trust_file``, ...) live in :mod:`.trust_records`, which
``config`` uses as it reads a file; this module, the policy, imports ``config`` and ``config_report`` inside
functions and is imported only by the session and the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config_report import actions, refusal
from .errors import ConfigError
from .trust_records import (  # noqa: F401  (re-exported: the records are part of this module's API)
    _VERSION,
    FileTrust,
    _ensure_directory,
    _load,
    _read_record,
    _record_path,
    _unsafe,
    assess,
    digest,
    records,
    revoke,
    trust_command,
    trust_directory,
    trust_file,
)

if TYPE_CHECKING:
    from .config import AuthConfig
    from .lifecycle import AcquireRequest
    from .token import Token

__all__ = ["FileTrust", "Refusing", "actions", "assess", "digest", "records", "refusal", "revoke", "trust_command",
           "trust_directory", "trust_file"]

class Refusing:
    """The provider of a session whose config file is not trusted: every token request fails with
    :class:`UntrustedConfigError`, before any command runs or any credential is read or sent."""

    needs_discovery = False  # it contacts nothing

    def __init__(self, config: AuthConfig) -> None:
        self._config = config

    def __repr__(self) -> str:
        return "Refusing(untrusted config)"

    def acquire(self, request: AcquireRequest) -> Token:
        found = self._config.trust
        assert found is not None
        record, _ = _read_record(found.path)
        if record is not None and record["sha256"] == found.digest:
            # `flyteauth trust` ran after this session was wired without a provider: say so, rather than
            # repeat advice the user already followed.
            raise ConfigError(f"The config file {found.path} was trusted after this session was built",
                              hint="Build a new session (restart the program; with flytekit's plugin, "
                                   "flyteauth_integrations.flytekit.reset())")
        error = refusal(self._config)
        assert error is not None
        raise error
