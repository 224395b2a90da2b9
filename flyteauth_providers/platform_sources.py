"""The built-in platform token sources (``platformTokenSource``), registered like a third-party source.

* ``file``: ``platformTokenFile`` (a Kubernetes projected token, ``$AZURE_FEDERATED_TOKEN_FILE``, ...),
  re-read whenever the file changes (inode, size or mtime: the kubelet swaps a symlink when it rotates).
* ``github-actions``: ``GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=<platformTokenAudience>`` with
  ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN``; the token is ``{"value": ...}``.  A job gets
  these variables with ``permissions: id-token: write``.
* ``gcp-metadata``: an ID token of the VM's or GKE workload's service account for ``platformTokenAudience``,
  from the GCP metadata server (``$GCE_METADATA_HOST``, google-auth's variable, else
  ``metadata.google.internal``); what Google IAP takes in ``proxy-authorization`` (see ``proxyTokenSource``).
* ``command``: ``platformTokenCommand`` (argv, no shell) prints the token.
* ``env``: the env var named by ``platformTokenEnvVar``.
* ``auto``: GitHub Actions when its two variables are set, else the standard Kubernetes token path, else an
  error listing what was checked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flyteauth_core import hookimpl, identity
from flyteauth_core.config import AuthConfig, read_secret_file
from flyteauth_core.errors import CommandError, ConfigError, PlatformTokenError
from flyteauth_core.http import send_with_retries
from flyteauth_core.lifecycle import AcquireRequest

from .platform_token import workload_options

GITHUB_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_TOKEN_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
#: Where every pod finds its service account token (the default projected volume).
KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _present(part: str, source: Any, config: AuthConfig) -> str:
    """No token, no identity: nothing is loaded from or saved to a shared store under "absent".  The
    source's own read says what is missing (the file, the variable, what ``auto`` checked)."""
    if part == identity.ABSENT:
        source.read(AcquireRequest(config=config))
        raise PlatformTokenError(f"No platform token from {source.describe()}", origin=source.describe(),
                                 hint="Provide the platform token (see admin.platformTokenSource)")
    return part


def _issuer_client(request: AcquireRequest, url: str) -> Any:
    """An HTTP client for a platform token's issuer (GitHub's token service, the metadata server).  It is
    not the IdP, so it gets none of the headers the session adds to the IdP's requests: with
    ``proxyAuthForIdP`` that is the proxy's token, a credential for the proxy in front of Flyte."""
    client = request.http_client(url)
    client.event_hooks = {"request": [], "response": []}
    return client


def github_identity() -> str:
    """GitHub Actions' part: digests of the job's two token-request variables (``absent`` when unset)."""
    url = identity.observe("env", GITHUB_URL_ENV, mode="exact")
    bearer = identity.observe("env", GITHUB_TOKEN_ENV, mode="exact")
    return f"github-actions;url={url};request={bearer}"


class FileSource:
    """A token file, re-read when it changes."""

    local = True

    def __init__(self, config: AuthConfig, path: str | None = None) -> None:
        path = path or workload_options(config).file
        if not path:
            raise ConfigError("platformTokenSource file needs platformTokenFile",
                              hint="Set admin.platformTokenFile to the projected token's path, e.g. "
                              "/var/run/secrets/tokens/flyte-token")
        self.path = str(Path(path).expanduser())
        self._config = config
        self._stamp: tuple[int, ...] | None = None
        self._value = ""

    def __repr__(self) -> str:
        return f"FileSource({self.path!r})"

    def describe(self) -> str:
        return f"file {self.path}"

    def identity(self) -> str:
        """The file's token's ``iss``/``sub``/``aud`` (stable when the kubelet rotates it)."""
        return _present(identity.observe("file", self.path), self, self._config)

    def read(self, request: AcquireRequest) -> str:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise PlatformTokenError(
                f"Cannot read the platform token file {self.path} ({exc.strerror or type(exc).__name__})",
                origin=self.describe(), hint="Mount the projected service account token at this path "
                "(a serviceAccountToken volume), or fix admin.platformTokenFile",
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            try:
                self._value = read_secret_file(self.path, "the platform token file")
            except ConfigError as exc:
                raise PlatformTokenError(exc.message, origin=self.describe(), hint=exc.hint) from None
            self._stamp = stamp
        return self._value


class GitHubActionsSource:
    """A GitHub Actions OIDC token, requested from the runner for ``platformTokenAudience``."""

    local = False

    def __init__(self, config: AuthConfig) -> None:
        self.audience = workload_options(config).audience

    def __repr__(self) -> str:
        return "GitHubActionsSource()"

    @staticmethod
    def available() -> bool:
        return bool(os.environ.get(GITHUB_URL_ENV) and os.environ.get(GITHUB_TOKEN_ENV))

    def identity(self) -> str:
        """The job's token request (digests of both variables): its ``iss``/``sub`` would need a request to
        GitHub, and the variables are the job's own, so processes of one job share and jobs never do."""
        part = github_identity()
        if identity.ABSENT in part:
            raise PlatformTokenError(f"${GITHUB_URL_ENV} and ${GITHUB_TOKEN_ENV} must both be set",
                                     origin=self.describe(), hint="Give the job `permissions: id-token: write`")
        return part

    def describe(self) -> str:
        url = os.environ.get(GITHUB_URL_ENV, "")
        return f"GitHub Actions (${GITHUB_URL_ENV} {url.split('?', 1)[0] or 'unset'})"

    def read(self, request: AcquireRequest) -> str:
        from urllib.parse import urlencode

        url, bearer = os.environ.get(GITHUB_URL_ENV, ""), os.environ.get(GITHUB_TOKEN_ENV, "")
        if not (url and bearer):
            raise PlatformTokenError(
                f"${GITHUB_URL_ENV} and ${GITHUB_TOKEN_ENV} must both be set for platformTokenSource "
                "github-actions", origin=self.describe(),
                hint="Give the job `permissions: id-token: write` (the runner then sets both)",
            )
        if self.audience:
            url += ("&" if "?" in url else "?") + urlencode({"audience": self.audience})
        where = url.split("?", 1)[0]
        client = _issuer_client(request, url)
        try:
            response = send_with_retries(
                lambda: client.get(url, headers={"Authorization": f"bearer {bearer}", "Accept": "application/json"}),
                endpoint=where, policy=request.retry,
            )
        finally:
            client.close()
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("value") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(value, str) or not value:
            raise PlatformTokenError(
                f"The GitHub Actions token endpoint {where} answered HTTP {response.status_code} without a "
                "token", origin=self.describe(),
                hint=f"Check the job's id-token permission; ${GITHUB_TOKEN_ENV} is only valid inside its job",
                transient=response.status_code >= 500,
            )
        return value


GCE_METADATA_HOST_ENV = "GCE_METADATA_HOST"
GCP_IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"


class GcpMetadataSource:
    """An ID token for ``platformTokenAudience`` from the GCP metadata server (GCE, GKE workload identity,
    Cloud Run): no key on disk.  The request carries no secret; the metadata server is link-local."""

    local = False

    def __init__(self, config: AuthConfig) -> None:
        self.audience = workload_options(config).audience
        if not self.audience:
            raise ConfigError("platformTokenSource gcp-metadata needs the audience of the ID token",
                              hint="Set admin.platformTokenAudience (proxyTokenAudience for IAP: the OAuth client id "
                              "of the IAP resource)")

    def describe(self) -> str:
        return f"the GCP metadata server ({os.environ.get(GCE_METADATA_HOST_ENV) or 'metadata.google.internal'})"

    def read(self, request: AcquireRequest) -> str:
        from urllib.parse import urlencode

        host = os.environ.get(GCE_METADATA_HOST_ENV) or "metadata.google.internal"
        where = f"http://{host}{GCP_IDENTITY}"
        url = f"{where}?{urlencode({'audience': self.audience, 'format': 'full'})}"
        client = _issuer_client(request, url)
        try:
            response = send_with_retries(lambda: client.get(url, headers={"Metadata-Flavor": "Google"}),
                                         endpoint=where, policy=request.retry)
        finally:
            client.close()
        value = str(response.text).strip()
        if response.status_code != 200 or value.count(".") != 2:
            raise PlatformTokenError(
                f"The GCP metadata server {where} answered HTTP {response.status_code} without an ID token",
                origin=self.describe(), transient=response.status_code >= 500,
                hint="Run on GCE/GKE with a service account (GKE: workload identity for the pod's KSA), or set "
                f"${GCE_METADATA_HOST_ENV} to a metadata server that serves one",
            )
        return value


class CommandSource:
    """A command that prints the platform token (for example a cloud CLI)."""

    local = False

    def __init__(self, config: AuthConfig) -> None:
        self.argv = workload_options(config).command
        if not self.argv:
            raise ConfigError("platformTokenSource command needs platformTokenCommand",
                              hint="Set admin.platformTokenCommand to an argv list that prints the token")
        self.timeout = config.command_timeout
        self._identity: tuple[str, float] | None = None

    def describe(self) -> str:
        return f"command {os.path.basename(self.argv[0])}"

    def identity(self) -> str:
        """The claims of the command's output, run again at most every 30 s (the session asks at each store
        access; ``flyteauth token`` once per process)."""
        item = identity.Input("command", self.argv, timeout=self.timeout)
        identity.note(item)
        if self._identity is not None and time.monotonic() - self._identity[1] < 30:
            return self._identity[0]
        try:
            part = item.part()
        except (OSError, ValueError) as exc:  # (subprocess.TimeoutExpired is not one: it propagates as is)
            raise PlatformTokenError(f"admin.platformTokenCommand ({os.path.basename(self.argv[0])}) failed: {exc}",
                                     origin=self.describe(), hint="Run the command yourself to see what it needs",
                                     ) from None
        self._identity = (part, time.monotonic())
        return part

    def read(self, request: AcquireRequest) -> str:
        from .external_command import run_token_command

        try:
            return run_token_command(self.argv, timeout=self.timeout, key="admin.platformTokenCommand").access_token
        except CommandError as exc:
            if exc.exit_code is not None or exc.transient:
                raise
            # It could not be started (not found, not executable): the config names a command this machine
            # lacks; running the helper again will not help (exit 2, not "the IdP rejected it").
            raise PlatformTokenError(exc.message, origin=self.describe(), hint=exc.hint) from None


class EnvSource:
    """An env var holding the platform token."""

    local = True

    def __init__(self, config: AuthConfig) -> None:
        self.name = workload_options(config).env_var or ""
        self._config = config
        if not self.name:
            raise ConfigError("platformTokenSource env needs platformTokenEnvVar",
                              hint="Set admin.platformTokenEnvVar to the name of the variable holding the token")

    def describe(self) -> str:
        return f"${self.name}"

    def identity(self) -> str:
        """The variable's token's ``iss``/``sub``/``aud``."""
        return _present(identity.observe("env", self.name), self, self._config)

    def read(self, request: AcquireRequest) -> str:
        value = os.environ.get(self.name, "").strip()
        if not value:
            raise PlatformTokenError(f"${self.name} (platformTokenEnvVar) is unset or empty", origin=self.describe(),
                                     hint=f"Export {self.name} with the platform token")
        return value


class AutoSource:
    """GitHub Actions if its variables are set, else the Kubernetes service account token, else an error."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self._github: GitHubActionsSource | None = None
        self._file: FileSource | None = None

    @property
    def local(self) -> bool:
        return not GitHubActionsSource.available()

    def _choose(self) -> GitHubActionsSource | FileSource:
        if GitHubActionsSource.available():
            self._github = self._github or GitHubActionsSource(self._config)
            return self._github
        if os.path.exists(KUBERNETES_TOKEN_PATH):
            if self._file is None or self._file.path != KUBERNETES_TOKEN_PATH:
                self._file = FileSource(self._config, KUBERNETES_TOKEN_PATH)
            return self._file
        raise PlatformTokenError(
            "platformTokenSource auto found no platform token; checked: GitHub Actions "
            f"(${GITHUB_URL_ENV} and ${GITHUB_TOKEN_ENV}: not both set), Kubernetes ({KUBERNETES_TOKEN_PATH}: "
            "not found)", origin="auto",
            hint="Set admin.platformTokenSource (file, github-actions, command, env) and its key explicitly",
        )

    def identity(self) -> str:
        """The identity of the source ``auto`` would use now, reading the same things ``_choose`` does."""
        github = github_identity()
        if GitHubActionsSource.available():
            return github
        return _present(identity.observe("file", KUBERNETES_TOKEN_PATH), self, self._config)

    def describe(self) -> str:
        try:
            return f"auto: {self._choose().describe()}"
        except PlatformTokenError:
            return "auto: nothing found"

    def read(self, request: AcquireRequest) -> str:
        return self._choose().read(request)


@hookimpl
def flyteauth_register_platform_token_sources(register: Any) -> None:
    register("file", FileSource)
    register("github-actions", GitHubActionsSource, aliases=("github_actions", "github"))
    register("gcp-metadata", GcpMetadataSource, aliases=("gcp", "gce", "gke"))
    register("command", CommandSource)
    register("env", EnvSource)
    register("auto", AutoSource)
