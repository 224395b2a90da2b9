"""The independent OAuth2/OIDC servers of the interop suite, as processes a test starts and stops.

Each server is wrapped in a :class:`Peer`: what a Flyte deployment would advertise for it (its endpoints,
the public client, the scopes), the confidential clients the suite uses, and how a user approves a login on
its own pages.  The tests are written once against ``Peer`` and run against every server.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerUnavailable(RuntimeError):
    """The server cannot be installed or run here: the matrix reports the reason (never a silent skip)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, *, form: dict[str, str] | None = None, body: Any = None,
         basic: tuple[str, str] | None = None, headers: dict[str, str] | None = None,
         timeout: float = 15.0) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request with the standard library (never a proxy): ``(status, JSON or text, headers)``."""
    data: bytes | None = None
    hdrs = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if basic is not None:
        hdrs["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    request = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw, answer_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, answer_headers = error.code, error.read(), dict(error.headers)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text), answer_headers
    except ValueError:
        return status, text, answer_headers


@dataclass
class Peer:
    """One OAuth2/OIDC server as the suite sees it (a column of the matrix)."""

    name: str
    issuer: str
    token_endpoint: str
    authorization_endpoint: str
    device_authorization_endpoint: str
    #: client_secret_basic / client_secret_post clients: ``{method: (client_id, secret)}``
    secret_clients: dict[str, tuple[str, str]]
    public_client: str
    device_client: str
    scopes: tuple[str, ...]
    redirect_uri: str
    user: tuple[str, str]
    #: Judges an access token as the Flyte server would (None: accepted).
    validate: Callable[[str], str | None]
    #: Drives a browser through the authorization URL to the redirect (PKCE).
    browser_login: Callable[[Any, str], str] | None = None
    #: Approves a device code as the user, on the server's own pages.
    device_approve: Callable[[Any, Any], str] | None = None
    #: Client assertion clients (RFC 7523): ``{"private_key_jwt": (client_id, key file), "client_secret_jwt":
    #: (client_id, secret)}``
    assertion_clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The scope a machine client asks for (the Flyte API's).
    api_scope: str = "all"
    #: Flows (matrix rows) the server does not implement: row -> why.
    lacks: dict[str, str] = field(default_factory=dict)
    #: Flows the server implements in a way flyteauth cannot complete (its limitation, not ours): row ->
    #: the reason and the workaround (docs/idps.md).  The test checks the documented behaviour and xfails.
    limits: dict[str, str] = field(default_factory=dict)
    #: A refresh grant is alive at the server (its newest refresh token is neither revoked nor replayed).
    grant_alive: Callable[[str], bool] | None = None
    #: How many refreshes the server served for the grant of this refresh token (its token family).
    refresh_count: Callable[[str], int] | None = None

    def flyte_server_kwargs(self, **extra: Any) -> dict[str, Any]:
        """What a Flyte deployment in front of this IdP advertises (flyteadmin's ``authorizedUris`` /
        ``appAuth.thirdPartyConfig``): the IdP's endpoints and the public client."""
        kwargs: dict[str, Any] = {
            "token_endpoint": self.token_endpoint, "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "device_authorization_endpoint": self.device_authorization_endpoint,
            "client_id": self.public_client, "redirect_uri": self.redirect_uri, "scopes": self.scopes,
            "grant_types": ("authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
                            "client_credentials"),
        }
        kwargs.update(extra)
        return kwargs


# ---------------------------------------------------------------------------------- django-oauth-toolkit
class DotServer:
    """``python -m tests.interop.dot.serve``: django-oauth-toolkit under waitress on 127.0.0.1."""

    def __init__(self, directory: Path, *, access_token_seconds: int = 2) -> None:
        self.directory = directory
        self.access_token_seconds = access_token_seconds
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=100)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/o"

    def start(self) -> DotServer:
        try:
            import oauth2_provider  # noqa: F401
            import waitress  # noqa: F401
        except ImportError as exc:
            raise ServerUnavailable(f"django-oauth-toolkit / waitress not installed ({exc}); "
                                    "pip install -e '.[test]'") from exc
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "DOT_ACCESS_TOKEN_SECONDS": str(self.access_token_seconds)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.interop.dot.serve", str(self.port), str(self.directory)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        _wait_ready(self._proc, self._tail, "django-oauth-toolkit")
        return self

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None

    # -- what the test reads back from the server's own database (read only) -----------------------
    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.directory / 'dot.sqlite3'}?mode=ro", uri=True,
                                                timeout=30)) as db:
            return list(db.execute(sql, args).fetchall())

    def _family(self, refresh_token: str) -> Any:
        rows = self.query("SELECT token_family FROM oauth2_provider_refreshtoken WHERE token = ?", refresh_token)
        return rows[0][0] if rows else None

    def grant_alive(self, refresh_token: str) -> bool:
        """DOT's reuse protection revokes every refresh token of the family when one is replayed: the grant
        is alive while the newest of the family is unrevoked."""
        family = self._family(refresh_token)
        if family is None:
            return False
        live = self.query("SELECT COUNT(*) FROM oauth2_provider_refreshtoken WHERE token_family = ? "
                          "AND revoked IS NULL", family)
        return bool(live[0][0] == 1)

    def refresh_count(self, refresh_token: str) -> int:
        family = self._family(refresh_token)
        rows = self.query("SELECT COUNT(*) FROM oauth2_provider_refreshtoken WHERE token_family = ?", family)
        return int(rows[0][0]) - 1

    def introspect(self, token: str) -> str | None:
        from .dot.serve import CLIENTS

        status, body, _ = http("POST", f"{self.issuer}/introspect/", form={"token": token},
                               basic=("flyte-cc", CLIENTS["flyte-cc"][2]))
        if status != 200 or not isinstance(body, dict):
            return f"introspection answered {status}"
        return None if body.get("active") else "inactive"

    def peer(self) -> Peer:
        from .dot.serve import CLIENTS, USER

        cc = ("flyte-cc", CLIENTS["flyte-cc"][2])
        return Peer(
            name="django-oauth-toolkit", issuer=self.issuer, token_endpoint=f"{self.issuer}/token/",
            authorization_endpoint=f"{self.issuer}/authorize/",
            # DOT does not advertise its device endpoint in either metadata document: the Flyte
            # deployment is configured with it (flyteadmin's thirdPartyConfig / deviceAuthorizationEndpoint).
            device_authorization_endpoint=f"{self.issuer}/device-authorization/",
            secret_clients={"client_secret_basic": cc, "client_secret_post": cc},
            public_client="flyte-pkce", device_client="flyte-device", scopes=("openid", "all"),
            redirect_uri="http://127.0.0.1:0/callback", user=USER, validate=self.introspect,
            browser_login=dot_browser_login, device_approve=dot_device_approve,
            lacks={"client credentials, private_key_jwt": "DOT authenticates clients by secret (basic, post) only",
                   "client credentials, client_secret_jwt": "DOT authenticates clients by secret (basic, post) only"},
            grant_alive=self.grant_alive, refresh_count=self.refresh_count,
        )


def _fill_and_submit(driver: Any, fields: dict[str, str], submit_css: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for element_id, value in fields.items():
        element = driver.find_element(By.ID, element_id)
        element.clear()
        element.send_keys(value)
    button = driver.find_element(By.CSS_SELECTOR, submit_css)
    button.click()
    WebDriverWait(driver, 20).until(lambda d: _stale(button))


def _stale(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        return "does not belong to the document" in str(exc) or "No node with given id" in str(exc)
    return False


def _dot_login_if_asked(driver: Any, user: tuple[str, str]) -> None:
    if "/accounts/login/" in driver.current_url:
        _fill_and_submit(driver, {"id_username": user[0], "id_password": user[1]}, "#login-submit")


def dot_browser_login(driver: Any, url: str) -> str:
    """DOT's pages: Django's login form, then DOT's consent form (``Authorize``); returns the redirect."""
    from .dot.serve import USER

    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    target = urllib.parse.urlsplit(redirect).netloc
    driver.get(url)
    _dot_login_if_asked(driver, USER)
    if urllib.parse.urlsplit(driver.current_url).netloc != target:
        _fill_and_submit(driver, {}, "input[name=allow]")
    deadline = time.monotonic() + 20
    while urllib.parse.urlsplit(driver.current_url).netloc != target:
        if time.monotonic() > deadline:
            raise AssertionError(f"DOT did not redirect to {redirect}: at {driver.current_url}: "
                                 f"{driver.find_element('tag name', 'body').text[:500]}")
        time.sleep(0.05)
    return str(driver.current_url)


def dot_device_approve(driver: Any, code: Any) -> str:
    """DOT's device pages: ``verification_uri_complete`` (login, the user code prefilled), ``Verify``,
    then ``Accept``; returns the status page's text ("Device Authorized")."""
    from .dot.serve import USER

    driver.get(code.verification_uri_complete or code.verification_uri)
    _dot_login_if_asked(driver, USER)
    if not code.verification_uri_complete:
        _fill_and_submit(driver, {"id_user_code": code.user_code}, "button[type=submit]")
    else:
        _fill_and_submit(driver, {}, "button[type=submit]")
    _fill_and_submit(driver, {}, "button[value=accept]")
    return str(driver.find_element("tag name", "body").text)


# ---------------------------------------------------------------------------------- process plumbing
def _wait_ready(proc: subprocess.Popen[str], tail: collections.deque[str], what: str,
                timeout: float = READY_TIMEOUT_S) -> None:
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if line.startswith("READY"):
                ready.set()

    threading.Thread(target=pump, daemon=True, name=f"{what}-output").start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise ServerUnavailable(f"{what} did not start: " + " | ".join(list(tail)[-8:]))


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@contextlib.contextmanager
def browser_threads(timeout: float = 30.0) -> Iterator[Callable[..., None]]:
    """``start(fn, *args)`` runs a browser-driving step (a login, a device approval) in a thread; leaving the
    block waits for every one.  The Chromium is shared by the whole session: a thread still waiting on its
    last page when its test ends would drive the next test's pages (seen: an oidc-provider approval thread
    typing on django-oauth-toolkit's device page)."""
    threads: list[threading.Thread] = []

    def start(fn: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, daemon=True, name=getattr(fn, "__name__", "browser"))
        thread.start()
        threads.append(thread)

    try:
        yield start
    finally:
        for thread in threads:
            thread.join(timeout)
