"""``Pkce`` (alias ``standard``): authorization code + PKCE S256 (RFC 7636) with a loopback redirect (RFC 8252).

Each attempt makes a fresh code verifier and state (authlib's helpers), starts a callback server bound to
127.0.0.1 on the redirect URI's port, opens the browser and waits for exactly one answer on the redirect
path carrying this login's ``state``:

* ``code``: a small success page; the code is exchanged (with the verifier) at the token endpoint.
* ``error=``: a failure page; :class:`LoginDeniedError` / :class:`LoginError` with the IdP's description.
* a wrong ``state`` (a stale tab, or any local page trying to abort the login): a failure page for that
  request only; the login goes on waiting for the right answer until the timeout.
* an ``iss`` (RFC 9207) that is not the IdP's issuer: :class:`LoginError` (a mix-up attack; the code is
  never exchanged).
* anything else (``/favicon.ico``, another path, a request without parameters, a second tab after the
  answer): 404, ignored; the login goes on.
* nothing within ``pkceConfig.timeout`` (default 2 minutes): :class:`LoginTimeoutError`.

The browser is opened with ``webbrowser.open`` unless an opener is given (constructor ``opener=``, or
``AuthConfig(options={"browserOpener": fn})`` from code); the URL is printed to stderr when no browser
opens.  Refresh tokens and the non-interactive rule live in :mod:`._interactive`.

A redirect URI with port 0 (``http://127.0.0.1:0/callback``) binds a free port and sends that port (RFC
8252 §7.3 lets loopback redirects use any port; IdPs that register exact URIs need the fixed one).
"""

from __future__ import annotations

import hmac
import html
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token

from ._interactive import (
    INTERACTIVE_OPTIONS,
    InteractiveAuthenticator,
    LoginDeniedError,
    LoginError,
    LoginStateError,
    LoginTimeoutError,
    PublicClient,
)
from ._oauth import idp_profile

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

log = logging.getLogger("flyteauth.pkce")

Opener = Callable[[str], Any]

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:36em;color:#222}}</style></head>
<body><h1>{title}</h1><p>{body}</p></body></html>"""


def open_browser(url: str) -> bool:
    """``webbrowser.open``, except on a Linux/BSD machine with no display, where it would start a console
    browser inside the user's terminal: there the URL is printed instead."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    ):
        return False
    import webbrowser

    return bool(webbrowser.open(url))


class CallbackServer:
    """One login's loopback listener: answers the redirect once, ignores strays, never hangs."""

    def __init__(self, redirect_uri: str, state: str, issuer: str = "") -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1"):
            raise ConfigError(
                f"Redirect URI {redirect_uri!r} is not a loopback http URI",
                hint="PKCE logins need a redirect like http://localhost:53593/callback (admin.pkceConfig"
                ".redirectUri or the server's public client config)",
            )
        self._parts = parts
        self._path = parts.path or "/"
        self._state = state
        self._issuer = issuer
        self._done = threading.Event()
        self._result: tuple[str | None, LoginError | None] = (None, None)
        self._lock = threading.Lock()
        self.stray_requests = 0
        port = parts.port if parts.port is not None else 80  # 0: any free port (RFC 8252 §7.3)
        try:
            from http.server import ThreadingHTTPServer  # loaded on login, not at every process start

            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        except OSError as exc:
            raise LoginError(
                f"Cannot listen on 127.0.0.1:{port} for the login callback ({exc.strerror})",
                hint="Another login may be running; finish or close it, then run `flyteauth login` again",
            ) from None
        self._httpd.daemon_threads = True
        netloc = f"{parts.hostname}:{self._httpd.server_address[1]}"
        self.redirect_uri = urlunsplit((parts.scheme, netloc, self._path, "", ""))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="flyteauth-pkce-callback", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        from http.server import BaseHTTPRequestHandler

        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # an idle browser preconnection must not hold a thread forever

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the query carries the code: never log request lines

            def do_GET(self) -> None:
                server._handle(self)

        return Handler

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, title: str, body: str) -> None:
        data = _PAGE.format(title=html.escape(title), body=body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        answer = "state" in query or "code" in query or "error" in query
        ours = hmac.compare_digest(query.get("state", "").encode(), self._state.encode())
        with self._lock:
            finished = self._done.is_set()
            if url.path != self._path or not answer or finished or not ours:
                self.stray_requests += 1
                stray = True
            else:
                stray = False
                self._result = self._judge(query)
                self._done.set()
        if stray:
            if answer and not ours and not finished and url.path == self._path:
                # A stale tab or another local page: it must not be able to abort the login in progress.
                self._reply(handler, 400, "Not this login", "This answer does not belong to the login in "
                            "progress (its state does not match); it was ignored.")
                return
            self._reply(handler, 404, "Not found", "Nothing here." if not finished else
                        "This login has already finished; you can close this tab.")
            return
        error = self._result[1]
        if error is None:
            self._reply(handler, 200, "Logged in",
                        "You are logged in to Flyte. You can close this tab and return to the terminal.")
        else:
            self._reply(handler, 400, "Login failed",
                        html.escape(error.message) + ". You can close this tab and return to the terminal.")

    def _judge(self, query: dict[str, str]) -> tuple[str | None, LoginError | None]:
        iss = query.get("iss")
        if iss is not None and self._issuer and iss.rstrip("/") != self._issuer.rstrip("/"):
            # RFC 9207: the answer names another issuer (a mix-up attack); never exchange its code.
            return None, LoginStateError(
                f"The login answer came from issuer {iss[:200]!r}, not {self._issuer!r}",
                hint="Another identity provider answered this login; run `flyteauth login` again")
        if "error" in query:
            error = query["error"][:100]
            description = query.get("error_description", "")[:300]
            text = f"The identity provider refused the login: {error}" + (f" ({description})" if description
                                                                       else "")
            cls = LoginDeniedError if error == "access_denied" else LoginError
            return None, cls(text, error=error)
        code = query.get("code")
        if not code:
            return None, LoginError("The login callback carried neither a code nor an error")
        return code, None

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def wait(self, timeout: float, cancelled: threading.Event | None = None) -> str:
        """The authorization code, or the typed error of the answer; LoginTimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._done.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
            if cancelled is not None and cancelled.is_set():
                raise LoginError("The login was cancelled (the session closed)")
            if time.monotonic() >= deadline:
                raise LoginTimeoutError(
                    f"No answer from the browser within {timeout:g}s",
                    hint="Finish the login in the browser sooner, raise admin.pkceConfig.timeout, or use "
                    "authType DeviceFlow on a machine without a browser",
                )
        code, error = self._result
        if error is not None:
            raise error
        assert code is not None
        return code


class PkceAuthenticator(InteractiveAuthenticator):
    """Logs a human in through their browser; later tokens come from the refresh token."""

    flow_name = "browser (PKCE)"

    def __init__(self, config: AuthConfig, *, opener: Opener | None = None) -> None:
        super().__init__(config)
        configured = config.options.get("browserOpener")
        self._opener = opener or (configured if callable(configured) else None)
        self.timeout = config.pkce_timeout  # admin.pkceConfig.timeout, parsed by load_config

    def login(self, request: AcquireRequest, client: PublicClient) -> Token:
        from authlib.common.security import generate_token
        from authlib.common.urls import add_params_to_uri
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        if not client.authorization_endpoint:
            raise ConfigError(f"{self._config.endpoint} advertises no authorization endpoint for PKCE",
                              hint="Use authType DeviceFlow or ClientSecret, or fix the server's auth config")
        verifier = generate_token(64)
        state = generate_token(32)
        with CallbackServer(client.redirect_uri, state, client.issuer) as callback:
            params = [
                ("response_type", "code"),
                ("client_id", client.client_id),
                ("redirect_uri", callback.redirect_uri),
                ("scope", " ".join(client.scopes)),
                ("state", state),
                ("code_challenge", create_s256_code_challenge(verifier)),
                ("code_challenge_method", "S256"),
            ]
            if client.audience and idp_profile(self._config, client.authorization_endpoint).takes_audience:
                params.append(("audience", client.audience))
            if "openid" in client.scopes:
                # OIDC makes the nonce optional for the code flow, some IdPs require it (glewlwyd: "nonce
                # required"); we never use the ID token, so it is sent, not checked.
                params.append(("nonce", generate_token(32)))
            url = add_params_to_uri(client.authorization_endpoint, [(k, v) for k, v in params if v])
            if not self._open(url, request.browser_opener):
                print(f"To log in to {self._config.endpoint}, open this URL in a browser on this machine:\n"
                      f"  {url}", file=sys.stderr, flush=True)
            code = callback.wait(self.timeout, self._cancelled)
            redirect_uri = callback.redirect_uri
        return self.exchange(request, client, {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        })

    def _open(self, url: str, embedder: Opener | None = None) -> bool:
        opener = embedder or self._opener or open_browser  # AuthSession(browser_opener=...) first
        try:
            return opener(url) is not False
        except Exception as exc:
            log.warning("flyteauth: could not open a browser (%s)", type(exc).__name__)
            return False


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("Pkce", PkceAuthenticator, aliases=("standard",), default_store="keyring", options=INTERACTIVE_OPTIONS)
