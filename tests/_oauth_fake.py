"""An in-process OAuth2 server for fast unit tests of the interactive providers (no Node, no browser).

Public client ``native`` only: authorization code + PKCE S256 (``/authorize`` answers with a 302 to the
redirect URI, approving or denying per ``mode``), refresh tokens with rotation and reuse detection (reusing a
rotated refresh token revokes the whole grant, like oidc-provider), the device flow (``slow_down`` when polled
faster than the interval), RFC 7009 revocation and an OIDC discovery document.  Access tokens are unsigned
JWT-shaped strings carrying ``sub`` and ``exp``.  ``stats`` counts token requests by grant.

The real-peer tests (oidc-provider + headless Chromium) are in the same test files, marked ``idp``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "native"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOAuthServer:
    def __init__(self, *, ttl: float = 60.0, rotate: bool = True, device_interval: float = 0.2) -> None:
        self.ttl = ttl
        self.rotate = rotate
        self.device_interval = device_interval
        self.mode = "approve"  # or "deny"
        self.subject = "alice@example.com"
        self.stats: Counter[str] = Counter()
        self.revoked_grants: set[str] = set()
        self.reuse_detected = 0
        self.slow_down_next = 0  # answer the next n device polls with slow_down
        self.fail_next: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}  # token -> {grant, used}
        self._access: dict[str, float] = {}
        self._devices: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._get(self)

            def do_POST(self) -> None:
                fake._post(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.authorization_endpoint = f"{self.issuer}/authorize"
        self.token_endpoint = f"{self.issuer}/token"
        self.device_authorization_endpoint = f"{self.issuer}/device/code"
        self.revocation_endpoint = f"{self.issuer}/revoke"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> FakeOAuthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests -----------------------------------------------------------------------------
    def validate(self, token: str) -> str | None:
        exp = self._access.get(token)
        if exp is None:
            return "unknown token"
        return "expired" if time.time() >= exp else None

    def approve_device(self, user_code: str, approve: bool = True) -> None:
        with self._lock:
            for device in self._devices.values():
                if device["user_code"] == user_code:
                    device["state"] = "approved" if approve else "denied"
                    return
        raise KeyError(user_code)

    def token_requests(self) -> int:
        return sum(v for k, v in self.stats.items() if k.startswith("grant:"))

    def _issue(self, grant: str, scope: str) -> dict[str, Any]:
        now = time.time()
        claims = {"sub": self.subject, "email": self.subject, "exp": int(now + self.ttl) + 1,
                  "jti": secrets.token_hex(8), "scope": scope}
        access = ".".join((_b64(b'{"alg":"none"}'), _b64(json.dumps(claims).encode()), "sig"))
        self._access[access] = now + self.ttl
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.ttl,
                                "scope": scope}
        refresh = "rt-" + secrets.token_urlsafe(16)
        self._refresh[refresh] = {"grant": grant, "used": False, "scope": scope}
        body["refresh_token"] = refresh
        return body

    # -- HTTP -----------------------------------------------------------------------------------------
    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
              ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            self._send(handler, 200, {"issuer": self.issuer, "token_endpoint": self.token_endpoint,
                                      "revocation_endpoint": self.revocation_endpoint})
            return
        if url.path != "/authorize":
            self._send(handler, 404, {"error": "not_found"})
            return
        self.stats["authorize"] += 1
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256" \
                or not query.get("code_challenge") or not query.get("state"):
            self._send(handler, 400, {"error": "invalid_request"})
            return
        redirect = query["redirect_uri"]
        if self.mode == "deny":
            params = {"error": "access_denied", "error_description": "The user said no", "state": query["state"]}
        else:
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = {"challenge": query["code_challenge"], "redirect_uri": redirect,
                                     "scope": query.get("scope", "")}
            params = {"code": code, "state": query["state"]}
        handler.send_response(302)
        handler.send_header("Location", f"{redirect}?{urlencode(params)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        path = urlsplit(handler.path).path
        if path == "/revoke":
            self.stats["revoke"] += 1
            entry = self._refresh.get(form.get("token", ""))
            if entry is not None:
                self.revoked_grants.add(entry["grant"])
            self._send(handler, 200, None)
            return
        if path == "/device/code":
            self.stats["device_authorization"] += 1
            device_code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
            with self._lock:
                self._devices[device_code] = {"user_code": user_code, "state": "pending", "last": 0.0,
                                              "scope": form.get("scope", "")}
            self._send(handler, 200, {
                "device_code": device_code, "user_code": user_code,
                "verification_uri": f"{self.issuer}/device",
                "verification_uri_complete": f"{self.issuer}/device?user_code={user_code}",
                "expires_in": 30, "interval": self.device_interval})
            return
        if path != "/token":
            self._send(handler, 404, {"error": "not_found"})
            return
        grant_type = form.get("grant_type", "")
        with self._lock:
            self.stats[f"grant:{grant_type}"] += 1
            if self.fail_next:
                status, body = self.fail_next.pop(0)
                self._send(handler, status, body)
                return
            status, body = self._token(grant_type, form)
        self._send(handler, status, body)

    def _token(self, grant_type: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client"}
        if grant_type == "authorization_code":
            entry = self._codes.pop(form.get("code", ""), None)
            if entry is None or entry["redirect_uri"] != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "bad code or redirect_uri"}
            challenge = _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            if challenge != entry["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            return 200, self._issue(secrets.token_hex(8), entry["scope"])
        if grant_type == "refresh_token":
            entry = self._refresh.get(form.get("refresh_token", ""))
            if entry is None or entry["grant"] in self.revoked_grants:
                return 400, {"error": "invalid_grant", "error_description": "refresh token invalid"}
            if entry["used"]:
                self.reuse_detected += 1
                self.revoked_grants.add(entry["grant"])
                return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}
            if not self.rotate:
                body = self._issue(entry["grant"], entry["scope"])
                del self._refresh[body.pop("refresh_token")]
                return 200, body
            entry["used"] = True
            return 200, self._issue(entry["grant"], entry["scope"])
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            device = self._devices.get(form.get("device_code", ""))
            if device is None:
                return 400, {"error": "invalid_grant"}
            now = time.monotonic()
            too_fast = now - device["last"] < self.device_interval * 0.9
            device["last"] = now
            if device["state"] == "denied":
                return 400, {"error": "access_denied"}
            if device["state"] == "expired":
                return 400, {"error": "expired_token"}
            if too_fast or self.slow_down_next > 0:
                self.slow_down_next = max(0, self.slow_down_next - 1)
                self.stats["slow_down"] += 1
                return 400, {"error": "slow_down"}
            if device["state"] == "pending":
                return 400, {"error": "authorization_pending"}
            del self._devices[form["device_code"]]
            return 200, self._issue(secrets.token_hex(8), device["scope"])
        return 400, {"error": "unsupported_grant_type"}

    def expire_device(self, user_code: str) -> None:
        with self._lock:
            for device in self._devices.values():
                if device["user_code"] == user_code:
                    device["state"] = "expired"
