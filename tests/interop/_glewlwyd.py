"""glewlwyd (Debian's ``glewlwyd`` package, C): started on 127.0.0.1 with its documented config file and a
SQLite database made from the package's own SQL, then configured through its admin API the way its
documentation and its own test suite do (an ``oidc`` plugin instance, a scope, a user, the clients).

The user's part of a login (device approval, the PKCE authorization) goes through glewlwyd's login and
grant API: the calls its login page makes (``POST /api/auth/``, ``PUT /api/auth/grant/<client>``), then the
authorization / device URL with ``g_continue``, as the page does after the user clicked through.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from ._servers import Peer, ServerUnavailable, _stop, free_port, http

SQL_PATHS = (
    Path("/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3"),
    Path("/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz"),
)
ADMIN = ("admin", "password")  # the package's initial administrator (init SQL), changed nowhere else
USER = ("flyte-user", "interop-password-2")
PLUGIN = "oidc"
#: A second instance of the plugin issuing 1-second access tokens, for the rotation proof.
ROTATE_PLUGIN = "oidc-rotate"
ROTATE_CLIENT = "flyte-rotate"
SCOPES = ("openid", "flyte")
CLIENTS = {
    # client_id: (auth methods, grant types, confidential)
    "flyte-basic": (["client_secret_basic"], ["client_credentials"], True),
    "flyte-post": (["client_secret_post"], ["client_credentials"], True),
    "flyte-secret-jwt": (["client_secret_jwt"], ["client_credentials"], True),
    "flyte-pkjwt": (["private_key_jwt"], ["client_credentials"], True),
    "flyte-public": (["none"], ["code", "refresh_token", "device_authorization"], False),
    ROTATE_CLIENT: (["none"], ["refresh_token", "device_authorization"], False),
}
CLIENT_SECRET = "glewlwyd-client-secret-0123456789abcdef"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UserAgent:
    """A cookie-keeping HTTP client that does not follow redirects (we read ``Location``)."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=15) as response:
                status, raw, hdrs = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, hdrs = error.code, error.read(), dict(error.headers)
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text), hdrs
        except ValueError:
            return status, text, hdrs

    def ok(self, method: str, url: str, body: Any = None) -> Any:
        status, answer, _ = self.request(method, url, body)
        if status != 200:
            raise ServerUnavailable(f"glewlwyd admin API: {method} {url} answered {status}: {str(answer)[:300]}")
        return answer


def _rsa_pem() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class GlewlwydServer:
    """One glewlwyd process.  Its token times are whole seconds (``exp`` may be less than
    ``expires_in`` after issue), so access tokens live 3 s, not the 2 s of the other servers."""

    def __init__(self, directory: Path, *, access_token_seconds: int = 3) -> None:
        self.directory = directory
        self.access_token_seconds = access_token_seconds
        self.port = 0
        self.redirect_port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=100)
        self.client_key_file = directory / "client-key.pem"
        self._keys: Any = None
        self._mark = 0

    def log_tail(self, lines: int = 12) -> str:
        """glewlwyd's last log lines (WARNING and above), for a failed assertion."""
        return "\n".join(list(self._tail)[-lines:])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    @property
    def issuer(self) -> str:
        return f"{self.api}/{PLUGIN}"

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.redirect_port}/callback"

    # -- process -------------------------------------------------------------------------------------
    def start(self) -> GlewlwydServer:
        exe = shutil.which("glewlwyd")
        if exe is None:
            raise ServerUnavailable("glewlwyd is not installed (Debian package glewlwyd; scripts/test installs it)")
        sql = next((p for p in SQL_PATHS if p.exists()), None)
        if sql is None:
            raise ServerUnavailable("glewlwyd's SQLite schema is missing (" + ", ".join(map(str, SQL_PATHS)) + ")")
        script = gzip.decompress(sql.read_bytes()).decode() if sql.suffix == ".gz" else sql.read_text()
        db = self.directory / "glewlwyd.sqlite3"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.executescript(script)
        self.port, self.redirect_port = free_port(), free_port()
        config = self.directory / "glewlwyd.conf"
        config.write_text("\n".join((
            f"port={self.port}", 'bind_address="127.0.0.1"', f'external_url="{self.base}"',
            'login_url="login.html"', 'api_prefix="api"', 'allow_origin="*"', "cookie_secure=0",
            "session_expiration=3600", 'session_key="GLEWLWYD2_SESSION_ID"',
            'admin_session_authentication="cookie"', 'profile_session_authentication="cookie"',
            "allow_multiple_user_per_session=true", "login_api_enabled=true", "max_post_size=16778240",
            'admin_scope="g_admin"', 'profile_scope="g_profile"',
            'user_module_path="/usr/lib/glewlwyd/user"', 'client_module_path="/usr/lib/glewlwyd/client"',
            'user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"',
            'plugin_module_path="/usr/lib/glewlwyd/plugin"', 'hash_algorithm="SHA512"',
            f'database = {{ type = "sqlite3" path = "{db}" }};', "")))
        self._proc = subprocess.Popen([exe, f"--config-file={config}", "--log-mode=console", "--log-level=WARNING"],
                                      cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._wait_listening()
        try:
            self._provision()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float = 30) -> None:
        import threading

        def pump() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self._tail.append(line.rstrip())

        threading.Thread(target=pump, daemon=True, name="glewlwyd-output").start()
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerUnavailable("glewlwyd did not start: " + " | ".join(list(self._tail)[-6:]))
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None

    # -- configuration through the admin API ---------------------------------------------------------
    def _provision(self) -> None:
        admin = UserAgent()
        admin.ok("POST", f"{self.api}/auth/", {"username": ADMIN[0], "password": ADMIN[1]})
        admin.ok("POST", f"{self.api}/scope/", {
            "name": "flyte", "display_name": "Flyte", "description": "the Flyte API", "password_required": True,
            "password_max_age": 0, "scheme": {}})
        admin.ok("POST", f"{self.api}/user/", {
            "username": USER[0], "name": "Flyte user", "password": USER[1], "scope": list(SCOPES),
            "enabled": True})
        key, cert = _rsa_pem()
        for name, seconds in ((PLUGIN, self.access_token_seconds), (ROTATE_PLUGIN, 1)):
            admin.ok("POST", f"{self.api}/mod/plugin/", self._plugin(name, seconds, key, cert))
        client_key, client_pub = _rsa_pem()
        self.client_key_file.write_text(client_key)
        self.client_key_file.chmod(0o600)
        for client_id, (methods, grants, confidential) in CLIENTS.items():
            client: dict[str, Any] = {
                "client_id": client_id, "name": client_id, "confidential": confidential, "enabled": True,
                "redirect_uri": [self.redirect_uri], "authorization_type": grants, "scope": list(SCOPES),
                "token_endpoint_auth_method": methods}
            if confidential:
                client["client_secret"] = CLIENT_SECRET
            if "private_key_jwt" in methods:
                client["pubkey"] = client_pub
            admin.ok("POST", f"{self.api}/client/", client)

    def _plugin(self, name: str, seconds: int, key: str, cert: str) -> dict[str, Any]:
        """An ``oidc`` plugin instance (its documented parameters; names as in glewlwyd's OIDC.md)."""
        return {
            "module": "oidc", "name": name, "display_name": f"OIDC for flyteauth interop ({name})", "enabled": True,
            "parameters": {
                "iss": f"{self.api}/{name}", "jwt-type": "rsa", "jwt-key-size": "256", "key": key, "cert": cert,
                "access-token-duration": seconds, "refresh-token-duration": 3600,
                "code-duration": 600, "refresh-token-rolling": True, "refresh-token-one-use": "always",
                "allow-non-oidc": True, "auth-type-client-enabled": True, "auth-type-code-enabled": True,
                "auth-type-code-revoke-replayed": True, "auth-type-refresh-enabled": True,
                "auth-type-device-enabled": True, "auth-type-token-enabled": False,
                "auth-type-password-enabled": False,
                "device-authorization-expiration": 600, "device-authorization-interval": 1,
                "pkce-allowed": True, "pkce-method-plain-allowed": False,
                "introspection-revocation-allowed": True, "introspection-revocation-allow-target-client": True,
                "request-parameter-allow": True, "request-maximum-exp": 3600,
                "client-pubkey-parameter": "pubkey", "client-jwks-parameter": "jwks",
                "oauth-dpop-allowed": True, "oauth-dpop-iat-duration": 60,
            }}

    # -- the user, on glewlwyd's login and grant API --------------------------------------------------
    def _user_session(self, client_id: str) -> UserAgent:
        agent = UserAgent()
        agent.ok("POST", f"{self.api}/auth/", {"username": USER[0], "password": USER[1]})
        agent.ok("PUT", f"{self.api}/auth/grant/{client_id}", {"scope": " ".join(SCOPES)})
        return agent

    def approve_device(self, _driver: Any, code: Any, client_id: str = "flyte-public",
                       plugin: str = PLUGIN) -> str:
        agent = self._user_session(client_id)
        status, _, headers = agent.request(
            "GET", f"{self.api}/{plugin}/device?code={urllib.parse.quote(code.user_code)}&g_continue")
        location = headers.get("Location", "")
        if status != 302 or "prompt=deviceComplete" not in location:
            raise AssertionError(f"glewlwyd did not complete the device approval: {status} {location}")
        return "deviceComplete"

    def browser_login(self, _driver: Any, url: str) -> str:
        agent = self._user_session("flyte-public")
        status, body, headers = agent.request("GET", url + "&g_continue")
        location = headers.get("Location", "")
        if status != 302 or not location.startswith(self.redirect_uri):
            raise AssertionError(f"glewlwyd did not redirect to the client: {status} {location} {str(body)[:200]}")
        http("GET", location)  # what the browser does next: deliver the code to the loopback listener
        return location

    # -- the rotation proof's detector: glewlwyd's one-use refresh tokens ------------------------------
    # Read only while no client talks to glewlwyd: it sets no busy timeout on its sqlite database, so a write
    # that meets this reader's lock fails at once, and a refresh failing half-way (the used token disabled,
    # its successor stored, no access token: HTTP 400) ends the grant as reuse detection would.  Polled while
    # the rotation proof's fleet refreshed, it did that in 1 of 8 runs.
    def _rows(self, after: int) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.directory / 'glewlwyd.sqlite3'}?mode=ro", uri=True,
                                                timeout=30)) as db:
            return list(db.execute("SELECT gpor_id, gpor_enabled FROM gpo_refresh_token WHERE gpor_client_id = ? "
                                   "AND gpor_plugin_name = ? AND gpor_id > ? ORDER BY gpor_id",
                                   (ROTATE_CLIENT, ROTATE_PLUGIN, after)))

    def rotation_mark(self) -> None:
        """Before a login of the rotation client: the chain it starts is what follows."""
        rows = self._rows(0)
        self._mark = rows[-1][0] if rows else 0

    def _chain(self) -> list[tuple[Any, ...]]:
        """The rotation client's refresh tokens since :meth:`rotation_mark` (one login: one chain)."""
        return [(enabled,) for _, enabled in self._rows(self._mark)]

    def rotation_refresh_count(self) -> int:
        return max(len(self._chain()) - 1, 0)

    def rotation_grant_alive(self) -> bool:
        """One-use refresh tokens: each refresh disables the one it used; a token used twice breaks the
        chain and glewlwyd disables its newest token, leaving none enabled."""
        chain = self._chain()
        return bool(chain) and [row[0] for row in chain].count(1) == 1 and chain[-1][0] == 1

    def validate(self, token: str) -> str | None:
        """As glewlwyd's docs tell resource servers: check the JWT's signature (JWKS) and expiry.  (Its
        introspection answers only the client the token was issued to.)"""
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        if self._keys is None:
            self._keys = KeySet.import_key_set(http("GET", f"{self.issuer}/jwks")[1])
        try:
            claims = jwt.decode(token, self._keys).claims
        except (JoseError, ValueError) as exc:
            return f"bad signature ({type(exc).__name__})"
        exp = claims.get("exp")
        return None if isinstance(exp, (int, float)) and time.time() < exp else "expired"

    def peer(self) -> Peer:
        return Peer(
            name="glewlwyd", issuer=self.issuer, token_endpoint=f"{self.issuer}/token",
            authorization_endpoint=f"{self.issuer}/auth",
            device_authorization_endpoint=f"{self.issuer}/device_authorization",
            secret_clients={"client_secret_basic": ("flyte-basic", CLIENT_SECRET),
                            "client_secret_post": ("flyte-post", CLIENT_SECRET)},
            assertion_clients={"private_key_jwt": ("flyte-pkjwt", str(self.client_key_file)),
                               "client_secret_jwt": ("flyte-secret-jwt", CLIENT_SECRET)},
            public_client="flyte-public", device_client="flyte-public", scopes=SCOPES,
            redirect_uri=self.redirect_uri, user=USER, validate=self.validate, api_scope="flyte",
            browser_login=self.browser_login, device_approve=self.approve_device,
            limits={"revocation (flyteauth logout)": (
                "glewlwyd's /revoke authenticates confidential clients only (HTTP 401 for a public client); "
                "logout deletes the local tokens, the refresh token lives until refresh-token-duration")},
        )


def glewlwyd_env_ok() -> str | None:
    """None when glewlwyd can be started here, else why not."""
    if shutil.which("glewlwyd") is None:
        return "glewlwyd is not installed"
    if not any(p.exists() for p in SQL_PATHS):
        return "glewlwyd's SQLite schema is missing"
    return None if os.access("/usr/lib/glewlwyd/plugin/libprotocol_oidc.so", os.R_OK) else "oidc plugin missing"
