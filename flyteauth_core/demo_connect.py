"""The Connect side of ``flyteauth demo --serve``: what flyte 2.x asks a Flyte server first, over HTTP/1.1.

flyteidl2's ``AuthMetadataService`` (``GetOAuth2Metadata``, ``GetPublicClientConfig``: anonymous, the same
answers as the gRPC side's discovery) and ``IdentityService.UserInfo`` (authenticated like the gRPC side:
the advertised header key or ``authorization``, same validator, same revocations).  Built from
connectrpc's own ``ConnectWSGIApplication`` and ``EndpointSync`` with our wire-compatible messages
(``flyteauth_core._proto``), so it needs only the ``connect`` extra (connectrpc), not flyteidl2; served by
the standard library's WSGI server in threads.

Imported only by the demo server, and only when connectrpc is installed.
"""

from __future__ import annotations

import dataclasses
import io
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

    def check(ctx: Any) -> str:
        headers = ctx.request_headers
        headers = headers() if callable(headers) else headers  # a method in connectrpc 0.10, later a property
        # the advertised key, else ``authorization`` (flyte 2.x's ExternalCommand sends that one, and
        # flyteadmin reads both)
        key = grpc_server.header_key if headers.get(grpc_server.header_key) is not None else "authorization"
        value = headers.get(key)
        reason = judge_bearer(value, key, grpc_server.validate, grpc_server.revoked)
        record_call(grpc_server.stats, grpc_server.lock, reason)
        if reason is not None:
            raise ConnectError(Code.UNAUTHENTICATED, f"unauthenticated: {reason}")
        return str(value)[7:]

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
