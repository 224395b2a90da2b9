"""A real OAuth2 identity provider for tests (panva ``oidc-provider`` under Node).

Use as a pytest plugin (``pytest_plugins = ["tests._idp"]`` or ``-p tests._idp``)
for the fixtures ``idp`` (session scope) and ``idp_fresh`` (function scope: the
session server with counters and faults reset), or use :class:`IdpServer` directly::

    with IdpServer(token_ttl=2) as idp:
        httpx2.post(idp.token_endpoint, auth=CI_BASIC, data={"grant_type": "client_credentials"})

``idp_factory`` (function scope) starts extra servers with other settings (TLS, TTLs)
and stops them at teardown. :func:`make_test_ca` makes a throwaway CA + 127.0.0.1 server
certificate for TLS mode.

The Node side lives in ``tests/idp/`` (``server.mjs``; see ``tests/idp/README.md``).
Everything is bound to 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import hashlib
import html
import json
import os
import queue
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

IDP_DIR = Path(__file__).resolve().parent / "idp"
SERVER_JS = IDP_DIR / "server.mjs"

# (client_id, client_secret) pairs registered in tests/idp/server.mjs.
CI_BASIC = ("ci-basic", "ci-basic-secret-value")  # token_endpoint_auth_method=client_secret_basic
CI_POST = ("ci-post", "ci-post-secret-value")  # token_endpoint_auth_method=client_secret_post
CI_BASIC_ID, CI_BASIC_SECRET = CI_BASIC
CI_POST_ID, CI_POST_SECRET = CI_POST

# `aud` of tokens requested without `resource`/`audience`; scopes the resource server grants.
DEFAULT_AUDIENCE = "http://flyte.test/api"
SUPPORTED_SCOPES = ("all", "offline", "read")
# OIDC scopes the IdP also knows (only flyte-native may ask for them).
OIDC_SCOPES = ("openid", "offline_access", "profile", "email")
DEFAULT_TOKEN_TTL = 2
DEFAULT_DEVICE_INTERVAL = 1
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Public native client (token_endpoint_auth_method none, PKCE S256 required): grants
# authorization_code, refresh_token and device_code; refresh tokens always issued and rotated.
NATIVE_CLIENT_ID = "flyte-native"
# Registered redirect URIs. oidc-provider treats loopback redirect URIs of native clients
# as port-agnostic (RFC 8252 7.3): http://127.0.0.1:<ANY port>/callback and
# http://localhost:<ANY port>/callback are accepted; host and path must match exactly.
NATIVE_REDIRECT_PORT = 53593
NATIVE_REDIRECT_URI = f"http://127.0.0.1:{NATIVE_REDIRECT_PORT}/callback"
NATIVE_REDIRECT_URI_LOCALHOST = f"http://localhost:{NATIVE_REDIRECT_PORT}/callback"
NATIVE_REDIRECT_URIS = (NATIVE_REDIRECT_URI, NATIVE_REDIRECT_URI_LOCALHOST)

# Confidential client authenticating with private_key_jwt (RS256), grant client_credentials.
CI_PKJWT_ID = "ci-pkjwt"
CI_PKJWT_KEY_PATH = IDP_DIR / "ci_pkjwt_key.pem"  # PKCS8 PEM private key (test-only)
CI_PKJWT_JWKS_PATH = IDP_DIR / "ci_pkjwt_jwks.json"  # its public JWKS, registered on the client

READY_TIMEOUT_S = 30.0
NPM_CI_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 5.0

__all__ = [
    "CI_BASIC",
    "CI_BASIC_ID",
    "CI_BASIC_SECRET",
    "CI_PKJWT_ID",
    "CI_PKJWT_JWKS_PATH",
    "CI_PKJWT_KEY_PATH",
    "CI_POST",
    "CI_POST_ID",
    "CI_POST_SECRET",
    "DEFAULT_AUDIENCE",
    "DEFAULT_DEVICE_INTERVAL",
    "DEFAULT_TOKEN_TTL",
    "DEVICE_CODE_GRANT",
    "NATIVE_CLIENT_ID",
    "NATIVE_REDIRECT_PORT",
    "NATIVE_REDIRECT_URI",
    "NATIVE_REDIRECT_URIS",
    "NATIVE_REDIRECT_URI_LOCALHOST",
    "OIDC_SCOPES",
    "SUPPORTED_SCOPES",
    "IdpError",
    "IdpServer",
    "NodeNotFound",
    "ensure_node_modules",
    "http_device_login",
    "http_login",
    "idp",
    "idp_factory",
    "idp_fresh",
    "make_test_ca",
    "native_redirect_uri",
]


def native_redirect_uri(port: int, host: str = "127.0.0.1") -> str:
    """A redirect URI flyte-native accepts: ``http://<127.0.0.1|localhost>:<any port>/callback``."""
    return f"http://{host}:{int(port)}/callback"


class IdpError(RuntimeError):
    """The test IdP could not be installed or started."""


class NodeNotFound(IdpError):
    """No ``node`` executable on PATH."""


def _node_exe() -> str:
    node = shutil.which("node")
    if not node:
        raise NodeNotFound("`node` was not found on PATH; the test IdP needs Node.js >= 20.18")
    return node


def _pinned_version() -> str | None:
    pkg = json.loads((IDP_DIR / "package.json").read_text())
    version = pkg.get("dependencies", {}).get("oidc-provider")
    return str(version) if version is not None else None


def _installed_version() -> str | None:
    try:
        pkg = json.loads((IDP_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = pkg.get("version")
    return str(version) if version is not None else None


def _modules_ok() -> bool:
    installed = _installed_version()
    return installed is not None and installed == _pinned_version()


def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/idp unless the pinned oidc-provider is installed.

    Serialised with an flock (in the temp dir, keyed by the idp path) so that parallel
    starts (xdist workers, concurrent sessions) don't run npm over each other.
    """
    if _modules_ok():
        return
    npm = shutil.which("npm")
    if not npm:
        raise IdpError(f"{IDP_DIR / 'node_modules'} is missing and `npm` is not on PATH")
    key = hashlib.sha256(str(IDP_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"flyteauth-idp-npm-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _modules_ok():  # another process finished it while we waited
                return
            try:
                proc = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    check=False,
                    cwd=IDP_DIR,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=NPM_CI_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise IdpError(f"`npm ci` in {IDP_DIR} timed out after {NPM_CI_TIMEOUT_S:.0f}s") from exc
            if proc.returncode != 0 or not _modules_ok():
                tail = (proc.stdout + proc.stderr)[-4000:]
                raise IdpError(f"`npm ci` in {IDP_DIR} failed (exit {proc.returncode}):\n{tail}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Servers started and not yet stopped; stopped at interpreter exit as a last resort.
_LIVE: weakref.WeakSet[IdpServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


# Control-endpoint calls never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class IdpServer:
    """One ``node tests/idp/server.mjs`` process on 127.0.0.1 (a free port)."""

    def __init__(
        self,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        *,
        device_interval: int = DEFAULT_DEVICE_INTERVAL,
        refresh_ttl: int | None = None,
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        port: int = 0,
        env: dict[str, str] | None = None,
    ):
        """``tls=(cert_pem, key_pem)`` serves HTTPS (issuer ``https://127.0.0.1:<port>``).

        ``ca_path``: the CA that issued the TLS certificate (see :func:`make_test_ca`); used by
        :meth:`ssl_context` / :attr:`verify`. Without it the server certificate itself is
        trusted (``VERIFY_X509_PARTIAL_CHAIN``). ``device_interval``: RFC 8628 ``interval``
        (seconds; 0 = no slow_down pacing). ``refresh_ttl``: refresh-token lifetime (s).
        """
        self.token_ttl = int(token_ttl)
        self.device_interval = int(device_interval)
        self.refresh_ttl = None if refresh_ttl is None else int(refresh_ttl)
        self.tls = None if tls is None else (Path(tls[0]), Path(tls[1]))
        self.ca_path = None if ca_path is None else Path(ca_path)
        self._requested_port = int(port)
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self._ssl_context: ssl.SSLContext | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ urls
    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def issuer(self) -> str:
        if self.port is None:
            raise IdpError("IdpServer is not started")
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def device_authorization_endpoint(self) -> str:
        return f"{self.issuer}/device/auth"

    @property
    def device_verification_uri(self) -> str:
        """Where the user enters the user_code (``verification_uri``)."""
        return f"{self.issuer}/device"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client SSL context trusting this server (None for plain HTTP)."""
        if self.tls is None:
            return None
        if self._ssl_context is None:
            if self.ca_path is not None:
                ctx = ssl.create_default_context(cafile=str(self.ca_path))
            else:
                ctx = ssl.create_default_context(cafile=str(self.tls[0]))
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            self._ssl_context = ctx
        return self._ssl_context

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """For ``httpx2.Client(verify=idp.verify)``."""
        return self.ssl_context() or True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr_tail(self, lines: int = 40) -> str:
        return "".join(list(self._stderr_tail)[-lines:])

    # ------------------------------------------------------------- lifecycle
    def start(self) -> IdpServer:
        if self.running:
            return self
        node = _node_exe()
        ensure_node_modules()

        env = dict(os.environ)
        env.update(
            IDP_PORT=str(self._requested_port),
            IDP_TOKEN_TTL=str(self.token_ttl),
            IDP_DEVICE_INTERVAL=str(self.device_interval),
            IDP_EXIT_ON_STDIN_EOF="1",  # node exits if we die without stopping it
        )
        for name in ("IDP_REFRESH_TTL", "IDP_TLS_CERT", "IDP_TLS_KEY"):
            env.pop(name, None)
        if self.refresh_ttl is not None:
            env["IDP_REFRESH_TTL"] = str(self.refresh_ttl)
        if self.tls is not None:
            env["IDP_TLS_CERT"] = str(self.tls[0])
            env["IDP_TLS_KEY"] = str(self.tls[1])
        env.update(self._extra_env)
        self._stderr_tail.clear()
        proc = subprocess.Popen(
            [node, str(SERVER_JS)],
            cwd=IDP_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._proc = proc
        _LIVE.add(self)

        lines: queue.Queue[str | None] = queue.Queue()

        def pump_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self._stderr_tail.append(line)

        self._threads = [
            threading.Thread(target=pump_stdout, name="idp-stdout", daemon=True),
            threading.Thread(target=pump_stderr, name="idp-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()

        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise IdpError(self._failure(f"no READY line within {READY_TIMEOUT_S:.0f}s"))
                try:
                    line = lines.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    if proc.poll() is not None:
                        raise IdpError(self._failure(f"node exited with code {proc.returncode}")) from None
                    continue
                if line is None:
                    proc.wait(timeout=5)
                    raise IdpError(self._failure(f"node exited with code {proc.returncode}"))
                parts = line.split()
                if len(parts) == 2 and parts[0] == "READY" and parts[1].isdigit():
                    self.port = int(parts[1])
                    return self
                self._stderr_tail.append(f"[stdout] {line}")
        except BaseException:
            self.stop()
            raise

    def _failure(self, what: str) -> str:
        # Give the stderr pump a moment to collect the last words.
        if self._proc is not None and self._proc.poll() is not None:
            for t in self._threads:
                t.join(timeout=1.0)
        tail = self.stderr_tail() or "(no stderr output)\n"
        return f"test IdP ({SERVER_JS}) failed to start: {what}\n--- node stderr (tail) ---\n{tail}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.close()
            for t in self._threads:
                t.join(timeout=1.0)
            self._threads = []
            self.port = None

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.scheme} port={self.port}" if self.running else "stopped"
        return f"<IdpServer {state} ttl={self.token_ttl} device_interval={self.device_interval}>"

    # --------------------------------------------------------- test control
    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            f"{self.issuer}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        opener = _OPENER
        if self.tls is not None:
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.ssl_context())
            )
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, Any]:
        """Counters: ``token_requests`` {client_id: n}, ``by_grant`` {grant_type: n}, ``total``.

        Every POST to the token endpoint counts (rejected and faulted ones too); requests
        whose client cannot be determined count under ``"_unknown"``. Also:
        ``refresh_reuse_detected`` (rotated refresh token reused -> grant revoked),
        ``grants_revoked``, ``slow_down_sent``, ``authorize_requests`` (hits on /auth),
        ``device_authorizations``, ``logins`` / ``consents`` (form submissions), ``denied``
        (interactions ended with an error), ``login_mode``, ``pending_faults``.
        """
        stats: dict[str, Any] = self._call("GET", "/_test/stats")
        return stats

    def reset(self) -> None:
        """Zero the counters and drop queued faults."""
        self._call("POST", "/_test/reset", {})

    def inject_faults(self, faults: list[dict[str, Any]]) -> None:
        """Queue faults (FIFO); each following token request consumes one.

        A fault is ``{"status": 503, "body": "..." | {...}, "headers": {...}, "delay_ms": 0}``:
        after ``delay_ms`` the response is sent instead of reaching the provider. Without
        ``status`` it only delays, then the request is handled normally. ``{"reset": true}``
        drops the connection without a response.
        """
        self._call("POST", "/_test/faults", {"faults": list(faults)})

    def refresh_reuse_detected(self) -> int:
        """How often a consumed (rotated) refresh token was presented again (grant revoked)."""
        return int(self.stats()["refresh_reuse_detected"])

    def slow_downs(self) -> int:
        """How many ``slow_down`` answers device_code polls got."""
        return int(self.stats()["slow_down_sent"])

    def set_login_mode(
        self,
        mode: str,
        *,
        times: int | None = 1,
        error: str = "access_denied",
        error_description: str | None = None,
    ) -> None:
        """``"deny"``: the next ``times`` interactions (None = until reset) end with ``error``.

        An authorization-code flow then redirects to the client's redirect_uri with
        ``error=...&error_description=...`` (no login page is shown); a device flow shows its
        "denied" page and the device_code poll answers ``access_denied``. ``"normal"`` (also
        restored by :meth:`reset`) turns it off.
        """
        payload: dict[str, Any] = {"mode": mode}
        if mode != "normal":
            payload.update(times=times, error=error)
            if error_description is not None:
                payload["error_description"] = error_description
        self._call("POST", "/_test/login_mode", payload)

    def token_request_count(self, client_id: str | None = None) -> int:
        s = self.stats()
        if client_id is None:
            return int(s["total"])
        return int(s["token_requests"].get(client_id, 0))


# ------------------------------------------------------------ user flows without a browser
_FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_ATTR_RE = re.compile(r'([\w.-]+)\s*=\s*"([^"]*)"')
_INPUT_RE = re.compile(r"<input\b([^>]*)>", re.I)
_PAGE_RE = re.compile(r'<body[^>]*\bdata-page="([^"]+)"')


def _forms(page_html: str) -> dict[str, tuple[str, dict[str, str]]]:
    """id (or "" for an id-less form) -> (action, hidden inputs) of the page's POST forms."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for attrs_raw, inner in _FORM_RE.findall(page_html):
        attrs = {k.lower(): html.unescape(v) for k, v in _ATTR_RE.findall(attrs_raw)}
        hidden: dict[str, str] = {}
        for input_raw in _INPUT_RE.findall(inner):
            a = {k.lower(): html.unescape(v) for k, v in _ATTR_RE.findall(input_raw)}
            if a.get("type") == "hidden" and "name" in a:
                hidden[a["name"]] = a.get("value", "")
        out.setdefault(attrs.get("id", ""), (attrs.get("action", ""), hidden))
    return out


def _url_base(url: str) -> tuple[str, str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower(), parts.path


def _drive_pages(
    idp: IdpServer,
    method: str,
    url: str,
    data: dict[str, str] | None,
    *,
    stop_at: Callable[[str, str | None], bool],
    username: str,
    password: str,
    consent: bool,
    confirm: bool = True,
) -> tuple[str, str | None]:
    """Follow redirects and submit the IdP's forms like a user would; returns (url, page)."""
    import httpx2

    with httpx2.Client(trust_env=False, verify=idp.verify, timeout=10, follow_redirects=False) as client:
        for _ in range(30):
            if stop_at(url, None):
                return url, None
            resp = client.request(method, url, data=data)
            if resp.is_redirect:
                url = urllib.parse.urljoin(url, resp.headers["location"])
                method, data = "GET", None
                continue
            text = resp.text
            m = _PAGE_RE.search(text)
            page = m.group(1) if m else None
            if stop_at(url, page):
                return url, page
            forms = _forms(text)
            if page == "login":
                form_id, data = "login-form", {"login": username, "password": password}
            elif page == "consent":
                form_id, data = ("consent-form" if consent else "abort-form"), {}
            elif page == "device-confirm":
                form_id = "op.deviceConfirmForm"
                data = dict(forms[form_id][1]) if form_id in forms else {}
                if not confirm:
                    data.pop("confirm", None)
                    data["abort"] = "yes"
            elif page is None and "" in forms:  # oidc-provider's self-submitting form_post page
                form_id, data = "", dict(forms[""][1])
            else:
                raise IdpError(f"unexpected IdP page {page!r} at {url} (HTTP {resp.status_code}): {text[:1000]}")
            if form_id not in forms:
                raise IdpError(f"form {form_id!r} missing on page {page!r} at {url}: {text[:1000]}")
            if page in ("login", "consent"):
                data.update(forms[form_id][1])
            url, method = urllib.parse.urljoin(url, forms[form_id][0]), "POST"
        raise IdpError(f"too many steps; last at {url}")


def http_login(
    idp: IdpServer,
    authorization_url: str,
    username: str = "alice",
    password: str = "pw",
    consent: bool = True,
) -> str:
    """Browser-free :func:`tests._browser.complete_login`: follow the authorization request
    through login/consent with plain HTTP and return the final redirect_uri URL (code or
    error). The redirect URI itself is NOT requested (no callback server needed)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorization_url).query)
    redirect_uri = (query.get("redirect_uri") or [""])[0]
    if not redirect_uri:
        raise IdpError(f"authorization URL has no redirect_uri: {authorization_url}")
    target = _url_base(redirect_uri)
    url, _ = _drive_pages(
        idp,
        "GET",
        authorization_url,
        None,
        stop_at=lambda u, page: _url_base(u) == target or page == "error",
        username=username,
        password=password,
        consent=consent,
    )
    if _url_base(url) != target:
        raise IdpError(f"authorization ended on an IdP error page at {url}")
    return url


def http_device_login(
    idp: IdpServer,
    verification: str | tuple[str, str],
    username: str = "alice",
    password: str = "pw",
    consent: bool = True,
    *,
    confirm: bool = True,
) -> str:
    """Browser-free :func:`tests._browser.complete_device_login`; returns the final page
    name (``"device-success"`` / ``"device-denied"``), raises :class:`IdpError` otherwise."""
    if isinstance(verification, str):
        method, url, data = "GET", verification, None
    else:
        method, url, data = "GET", f"{verification[0]}?{urllib.parse.urlencode({'user_code': verification[1]})}", None
    _, page = _drive_pages(
        idp,
        method,
        url,
        data,
        stop_at=lambda u, p: p in ("device-success", "device-denied", "device-error", "device-input", "error"),
        username=username,
        password=password,
        consent=consent,
        confirm=confirm,
    )
    if page not in ("device-success", "device-denied"):
        raise IdpError(f"device flow ended on page {page!r}")
    return page


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _node_or_skip() -> None:
    try:
        _node_exe()
    except NodeNotFound as exc:
        if _truthy_env("CI"):
            pytest.fail(f"{exc} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def idp() -> Iterator[IdpServer]:
    """A running test IdP (token TTL 2 s) shared by the whole session."""
    _node_or_skip()
    server = IdpServer(token_ttl=DEFAULT_TOKEN_TTL)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def idp_fresh(idp: IdpServer) -> IdpServer:
    """The session IdP with its counters, fault queue and login mode reset."""
    idp.reset()
    return idp


@pytest.fixture
def idp_factory() -> Iterator[Callable[..., IdpServer]]:
    """Factory: ``idp_factory(token_ttl=..., device_interval=..., tls=(cert, key), ca_path=...)``
    starts an extra IdP (same arguments as :class:`IdpServer`); all are stopped at teardown."""
    _node_or_skip()
    servers: list[IdpServer] = []

    def make(*args: Any, **kwargs: Any) -> IdpServer:
        server = IdpServer(*args, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


def make_test_ca(tmp_path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """Throwaway CA and a server certificate for 127.0.0.1 / localhost / ::1, as PEM files.

    Returns ``(ca_pem_path, cert_path, key_path)`` (the key is unencrypted PKCS8; EC P-256).
    Use with ``IdpServer(tls=(cert_path, key_path), ca_path=ca_pem_path)``.  (The demo server makes its
    certificates the same way: ``flyteauth_core.democerts``.)
    """
    from flyteauth_core.democerts import make_loopback_certificates

    return make_loopback_certificates(Path(tmp_path), days=2)


if __name__ == "__main__":  # manual use: python -m tests._idp [ttl]
    ttl = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TOKEN_TTL
    with IdpServer(token_ttl=ttl) as s:
        print(f"issuer {s.issuer}  token {s.token_endpoint}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while s.running:
                time.sleep(0.5)
