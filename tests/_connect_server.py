"""A real Connect server for tests and benchmarks: connectrpc's own ASGI applications behind uvicorn.

Serves, on 127.0.0.1 (HTTP/1.1; plaintext, or TLS with ``tls=(cert, key)``):

* flyteidl2's ``AuthMetadataService`` (v2 discovery; no auth; counted as ``discovery_v2``);
* flyteidl2's ``IdentityService.UserInfo``: authenticated;
* ``flyteauth.test.Echo``: a test service built from connectrpc's own ``Endpoint`` API over flyteidl2's
  ``UserInfoRequest``/``UserInfoResponse`` messages (the payload rides in ``subject``), with a unary, a
  server-stream and a client-stream method, so the scenario tests reach every call shape Connect offers
  over HTTP/1.1 (bidi needs HTTP/2).

Authenticated methods read ``header_key`` (default ``authorization``) and check ``Bearer <token>`` with
``validate`` (``jwt_validator(idp)`` for the real test IdP, or ``DemoTokenEndpoint.validate``), counting
calls and rejections in ``stats`` like ``FlyteTestServer``.  ``reject_after_first_message`` makes the
server stream fail with UNAUTHENTICATED after its first message (a token revoked mid-stream).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.server import ConnectASGIApplication, Endpoint
from flyteidl2.auth import auth_service_pb2 as auth_pb2
from flyteidl2.auth import identity_pb2
from flyteidl2.auth.auth_service_connect import AuthMetadataServiceASGIApplication
from flyteidl2.auth.identity_connect import IdentityServiceASGIApplication

from flyteauth_core.testing import judge_bearer, record_call

ECHO_SERVICE = "flyteauth.test.Echo"


def _headers(ctx: Any) -> Any:
    headers = ctx.request_headers
    return headers() if callable(headers) else headers


class _Auth:
    """What every authenticated method does first: read the header, judge it, count it."""

    def __init__(self, server: ConnectTestServer) -> None:
        self._server = server

    def check(self, ctx: Any) -> None:
        server = self._server
        reason = judge_bearer(_headers(ctx).get(server.header_key), server.header_key, server.validate)
        record_call(server.stats, server.lock, reason)
        if reason is not None:
            raise ConnectError(Code.UNAUTHENTICATED, f"unauthenticated: {reason}")


class _Discovery:
    def __init__(self, server: ConnectTestServer) -> None:
        self._server = server

    def _count(self) -> None:
        with self._server.lock:
            self._server.stats["discovery_v2"] += 1

    async def get_o_auth2_metadata(self, request: Any, ctx: Any) -> Any:
        self._count()
        return self._server.oauth

    async def get_public_client_config(self, request: Any, ctx: Any) -> Any:
        self._count()
        return self._server.client


class _Identity(_Auth):
    async def user_info(self, request: Any, ctx: Any) -> Any:
        self.check(ctx)
        return identity_pb2.UserInfoResponse(subject="flyteauth-test", name="test")


class _Echo(_Auth):
    async def unary(self, request: Any, ctx: Any) -> Any:
        self.check(ctx)
        return identity_pb2.UserInfoResponse(subject=request.SerializeToString().hex())

    async def server_stream(self, request: Any, ctx: Any) -> AsyncIterator[Any]:
        self.check(ctx)
        for i in range(3):
            yield identity_pb2.UserInfoResponse(subject=str(i))
            if self._server.reject_after_first_message:
                raise ConnectError(Code.UNAUTHENTICATED, "unauthenticated: token revoked mid-stream")

    async def client_stream(self, requests: AsyncIterator[Any], ctx: Any) -> Any:
        self.check(ctx)
        count = 0
        async for _ in requests:
            count += 1
        return identity_pb2.UserInfoResponse(subject=str(count))


def _method(name: str) -> MethodInfo[Any, Any]:
    return MethodInfo(name=name, service_name=ECHO_SERVICE, input=identity_pb2.UserInfoRequest,
                      output=identity_pb2.UserInfoResponse, idempotency_level=IdempotencyLevel.UNKNOWN)


#: The Echo methods for clients: ``client.execute_unary(request=..., method=ECHO_METHODS["unary"])``.
ECHO_METHODS = {name: _method(name) for name in ("Unary", "ServerStream", "ClientStream")}


class _EchoApp(ConnectASGIApplication):  # type: ignore[type-arg]
    def __init__(self, service: _Echo) -> None:
        prefix = f"/{ECHO_SERVICE}/"
        super().__init__(service=service, endpoints=lambda svc: {
            prefix + "Unary": Endpoint.unary(method=ECHO_METHODS["Unary"], function=svc.unary),
            prefix + "ServerStream": Endpoint.server_stream(method=ECHO_METHODS["ServerStream"],
                                                            function=svc.server_stream),
            prefix + "ClientStream": Endpoint.client_stream(method=ECHO_METHODS["ClientStream"],
                                                            function=svc.client_stream),
        })

    @property
    def path(self) -> str:
        return f"/{ECHO_SERVICE}"


class _Router:
    """Dispatch by path prefix to the three ASGI applications."""

    def __init__(self, apps: list[Any]) -> None:
        self._apps = {app.path: app for app in apps}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            app = self._apps.get("/" + scope["path"].strip("/").split("/")[0])
            if app is not None:
                await app(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})


class ConnectTestServer:
    """Loopback Connect server (uvicorn + connectrpc ASGI apps) validating tokens with ``validate``."""

    def __init__(self, validate: Callable[[str], str | None], *, token_endpoint: str, issuer: str = "",
                 header_key: str = "authorization", client_id: str = "flytectl",
                 scopes: tuple[str, ...] = ("all",), tls: tuple[str, str] | None = None) -> None:
        """``tls=(cert_pem, key_pem)`` serves HTTPS (``make_test_ca`` in ``tests/_idp.py`` makes a pair)."""
        self.validate = validate
        self.header_key = header_key
        self.stats: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.reject_after_first_message = False
        self.oauth = auth_pb2.GetOAuth2MetadataResponse(
            issuer=issuer or token_endpoint.rsplit("/", 1)[0], token_endpoint=token_endpoint,
            response_types_supported=["code"], code_challenge_methods_supported=["S256"],
            grant_types_supported=["client_credentials"],
            token_endpoint_auth_methods_supported=["client_secret_basic"], scopes_supported=list(scopes),
        )
        self.client = auth_pb2.GetPublicClientConfigResponse(
            client_id=client_id, redirect_uri="http://localhost:53593/callback", scopes=list(scopes),
            authorization_metadata_key=header_key,
        )
        app = _Router([AuthMetadataServiceASGIApplication(_Discovery(self)),
                       IdentityServiceASGIApplication(_Identity(self)), _EchoApp(_Echo(self))])
        self._socket = socket.socket()
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.target = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        ssl = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off",
                                                     timeout_keep_alive=30, **ssl))
        self._thread = threading.Thread(target=self._serve, name="connect-test-server", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> ConnectTestServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Connect test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> ConnectTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
