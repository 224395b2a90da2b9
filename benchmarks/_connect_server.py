"""A minimal ConnectRPC (unary, HTTP/1.1) server on 127.0.0.1 for driving flyte 2.x in ``compare.py``.

flyte 2.x talks ConnectRPC over HTTP (pyqwest; HTTP/1.1 on plaintext ``http://``) instead of gRPC, so the
gRPC ``FlyteTestServer`` cannot serve it.  This server speaks the Connect unary protocol only:

* ``POST /<service>/<method>``, ``Content-Type: application/proto``; request bodies are read and ignored
  (all served requests are empty messages; so any ``Content-Encoding`` is accepted); replies ``200`` +
  uncompressed ``application/proto``;
* errors as ``application/json`` ``{"code": "unauthenticated", "message": ...}`` with HTTP 401 (404/415
  with ``unimplemented``/``invalid_argument`` for unknown paths or content types);
* ``/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata`` and ``.../GetPublicClientConfig`` (no auth;
  counted as ``discovery_v2``), messages from ``flyteauth_core._proto`` (wire-identical to flyteidl2's);
* ``/flyteidl2.auth.IdentityService/UserInfo``: authenticated; the ``header_key`` header (default
  ``authorization``, advertised as ``authorization_metadata_key``) must carry ``Bearer <token>`` accepted by
  ``validate`` (``DemoTokenEndpoint.validate``); counted in ``stats["calls"]`` / ``stats["rejected"]``
  like ``FlyteTestServer``.

No streaming, response compression, GET requests, timeouts or HTTP/2.  Keep-alive (HTTP/1.1) is supported.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flyteauth_core._proto import OAuth2MetadataResponse, PublicClientAuthConfigResponse, UserInfoResponse
from flyteauth_core.testing import DemoTokenEndpoint, judge_bearer, record_call

AUTH_SERVICE = "/flyteidl2.auth.AuthMetadataService/"
USER_INFO = "/flyteidl2.auth.IdentityService/UserInfo"


class ConnectTestServer:
    """Loopback Connect-protocol server: AuthMetadataService v2 + an authenticated IdentityService.UserInfo."""

    def __init__(self, validate: Callable[[str], str | None], *, token_endpoint: str,
                 header_key: str = "authorization", client_id: str = "flytectl",
                 scopes: tuple[str, ...] = ("all",)) -> None:
        self.validate = validate
        self.header_key = header_key
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        oauth = OAuth2MetadataResponse(
            issuer=token_endpoint.rsplit("/", 1)[0], token_endpoint=token_endpoint,
            response_types_supported=["code"], code_challenge_methods_supported=["S256"],
            grant_types_supported=["client_credentials"],
            token_endpoint_auth_methods_supported=["client_secret_basic"], scopes_supported=list(scopes),
        ).SerializeToString()
        client = PublicClientAuthConfigResponse(
            client_id=client_id, redirect_uri="http://localhost:53593/callback", scopes=list(scopes),
            authorization_metadata_key=header_key,
        ).SerializeToString()
        self._discovery = {AUTH_SERVICE + "GetOAuth2Metadata": oauth, AUTH_SERVICE + "GetPublicClientConfig": client}
        self._user_info = UserInfoResponse(subject="flyteauth-bench", name="bench").SerializeToString()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every reply carries content-length
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.target = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        handler.send_response(status)
        handler.send_header("content-type", ctype)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._reply(handler, status, json.dumps({"code": code, "message": message}).encode(), "application/json")

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        handler.rfile.read(length)
        path = handler.path.split("?", 1)[0]
        if (handler.headers.get("content-type") or "").split(";")[0].strip() != "application/proto":
            return self._error(handler, 415, "invalid_argument", "only application/proto is supported")
        if path in self._discovery:
            with self._lock:
                self.stats["discovery_v2"] += 1
            return self._reply(handler, 200, self._discovery[path], "application/proto")
        if path != USER_INFO:
            return self._error(handler, 404, "unimplemented", f"no such method {path}")
        reason = judge_bearer(handler.headers.get(self.header_key), self.header_key, self.validate)
        record_call(self.stats, self._lock, reason)
        if reason is not None:
            return self._error(handler, 401, "unauthenticated", f"unauthenticated: {reason}")
        return self._reply(handler, 200, self._user_info, "application/proto")

    def start(self) -> ConnectTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ConnectPeers:
    """Same shape as ``_peers.Peers`` (``endpoint``, ``server.stats``, ``target``), Connect instead of gRPC."""

    def __init__(self, client_id: str, client_secret: str, ttl: float, reject_all: bool = False) -> None:
        self.endpoint = DemoTokenEndpoint(client_id, client_secret, ttl=ttl).start()
        try:
            validate = (lambda token: "wrong audience") if reject_all else self.endpoint.validate
            self.server = ConnectTestServer(validate, token_endpoint=self.endpoint.url).start()
        except BaseException:
            self.endpoint.stop()
            raise
        self.target = self.server.target

    def close(self) -> None:
        self.server.stop()
        self.endpoint.stop()

    def __enter__(self) -> ConnectPeers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
