"""The Connect side of ``flyteauth demo --serve``: what flyte 2.x asks a Flyte server first, over HTTP/1.1.

flyteidl2's ``AuthMetadataService`` (``GetOAuth2Metadata``, ``GetPublicClientConfig``: anonymous, the same
answers as the gRPC side's discovery) and ``IdentityService.UserInfo`` (authenticated like the gRPC side:
the advertised header key or ``authorization``, same validator, same revocations).  Built from
connectrpc's own ``ConnectWSGIApplication`` and ``EndpointSync`` with our wire-compatible messages
(``flyteauth_core._proto``), so it needs only the ``connect`` extra (connectrpc), not flyteidl2; served by
the standard library's WSGI server in threads.  Also ``GET /api/v1/projects`` (flyteadmin's REST
gateway, JSON, authenticated) for HTTP clients such as ``session.httpx_auth()``.

Imported only by the demo server, and only when connectrpc is installed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.server import ConnectWSGIApplication, EndpointSync

from ._proto import (
    OAuth2MetadataRequest,
    OAuth2MetadataResponse,
    PublicClientAuthConfigRequest,
    PublicClientAuthConfigResponse,
    UserInfoRequest,
    UserInfoResponse,
)
from .claims import unverified_claims
from .testing import FlyteTestServer, judge_bearer, record_call

AUTH_SERVICE = "flyteidl2.auth.AuthMetadataService"
IDENTITY_SERVICE = "flyteidl2.auth.IdentityService"
#: flyteadmin's REST path for the project list (its grpc-gateway), answered as JSON
REST_PROJECTS = "/api/v1/projects"


def _method(service: str, name: str, input: type[Any], output: type[Any]) -> MethodInfo[Any, Any]:
    kwargs: dict[str, Any] = {"name": name, "service_name": service, "input": input, "output": output,
                              "idempotency_level": IdempotencyLevel.NO_SIDE_EFFECTS}
    if "stream_type" in {f.name for f in dataclasses.fields(MethodInfo)}:  # connectrpc >= 0.11
        from connectrpc.method import StreamType  # type: ignore[attr-defined]

        kwargs["stream_type"] = StreamType.UNARY
    return MethodInfo(**kwargs)


class _App(ConnectWSGIApplication):
    def __init__(self, service: str, endpoints: dict[str, Any]) -> None:
        self._path = f"/{service}"
        super().__init__(endpoints=endpoints)

    @property
    def path(self) -> str:
        return self._path


def connect_app(grpc_server: FlyteTestServer) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """A WSGI application answering flyteidl2's discovery and UserInfo the way ``grpc_server`` does."""
    oauth, client = grpc_server.discovery_answers()

    def judge(header: Callable[[str], str | None]) -> tuple[str | None, str]:
        """(why the call is refused or None, the token).  The advertised key, else ``authorization``
        (flyte 2.x's ExternalCommand sends that one, and flyteadmin reads both)."""
        key = grpc_server.header_key if header(grpc_server.header_key) is not None else "authorization"
        value = header(key)
        reason = judge_bearer(value, key, grpc_server.validate, grpc_server.revoked)
        record_call(grpc_server.stats, grpc_server.lock, reason)
        return reason, str(value)[7:]

    def check(ctx: Any) -> str:
        headers = ctx.request_headers
        headers = headers() if callable(headers) else headers  # a method in connectrpc 0.10, later a property
        reason, token = judge(headers.get)
        if reason is not None:
            raise ConnectError(Code.UNAUTHENTICATED, f"unauthenticated: {reason}")
        return token

    def rest_projects(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """``GET /api/v1/projects``: flyteadmin's REST gateway, for HTTP clients (``session.httpx_auth()``)."""
        reason, _ = judge(lambda key: environ.get("HTTP_" + key.upper().replace("-", "_")))
        status, body = ("401 Unauthorized", {"error": f"unauthenticated: {reason}"}) if reason else (
            "200 OK", {"projects": [{"id": p.id, "name": p.name, "domains": [{"id": d.id, "name": d.name}
                                                                             for d in p.domains]}
                                    for p in grpc_server.projects.projects]})
        data = json.dumps(body).encode()
        start_response(status, [("content-type", "application/json"), ("content-length", str(len(data)))])
        return [data]

    def count(answer: Any) -> Callable[[Any, Any], Any]:
        def handler(request: Any, ctx: Any) -> Any:
            with grpc_server.lock:
                grpc_server.stats["discovery_connect"] += 1
            return answer

        return handler

    def user_info(request: Any, ctx: Any) -> Any:
        subject = unverified_claims(check(ctx)).get("sub")
        return UserInfoResponse(subject=subject if isinstance(subject, str) else "flyteauth-demo")

    def endpoint(service: str, name: str, input: type[Any], output: type[Any],
                 function: Callable[[Any, Any], Any]) -> tuple[str, Any]:
        return f"/{service}/{name}", EndpointSync.unary(method=_method(service, name, input, output),
                                                        function=function)

    apps = [
        _App(AUTH_SERVICE, dict([
            endpoint(AUTH_SERVICE, "GetOAuth2Metadata", OAuth2MetadataRequest, OAuth2MetadataResponse, count(oauth)),
            endpoint(AUTH_SERVICE, "GetPublicClientConfig", PublicClientAuthConfigRequest,
                     PublicClientAuthConfigResponse, count(client)),
        ])),
        _App(IDENTITY_SERVICE, dict([
            endpoint(IDENTITY_SERVICE, "UserInfo", UserInfoRequest, UserInfoResponse, user_info),
        ])),
    ]
    by_path = {app.path: app for app in apps}

    def route(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == REST_PROJECTS and environ.get("REQUEST_METHOD") == "GET":
            return rest_projects(environ, start_response)
        app = by_path.get("/" + environ.get("PATH_INFO", "").strip("/").split("/")[0])
        if app is None:
            start_response("404 Not Found", [("content-length", "0")])
            return [b""]
        # wsgiref hands the raw socket as wsgi.input; connectrpc reads to end of stream, so bound it
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length) if length > 0 else b"")
        return app(environ, start_response)

    return route


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ConnectDemoServer:
    """``connect_app(grpc_server)`` served on 127.0.0.1 (a free port), plaintext HTTP/1.1, in threads."""

    def __init__(self, grpc_server: FlyteTestServer) -> None:
        self._httpd = make_server("127.0.0.1", 0, connect_app(grpc_server),
                                  server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="flyteauth-demo-connect")

    def start(self) -> ConnectDemoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
