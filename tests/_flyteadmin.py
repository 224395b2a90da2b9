"""An in-process Flyte admin built from flyteidl's own stubs: AuthMetadataService (v1) and
``AdminService.ListProjects``, the peer flytekit's ``FlyteRemote`` talks to.

The bearer token is read from ``header_key`` (flyteadmin's default ``flyte-authorization``, advertised through
``GetPublicClientConfig``) and checked by ``validate`` (a JWT check against the real test IdP);
a failed check answers UNAUTHENTICATED.  ``stats`` counts ``calls``, ``unauthenticated``, ``discovery``
and ``unknown`` (replies forced to UNKNOWN with :attr:`fail_next_unknown`).  Bound to 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from flyteidl.admin import project_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc


class FlyteAdminServer:
    def __init__(self, validate: Callable[[str], str | None], *, token_endpoint: str, issuer: str = "",
                 header_key: str = "flyte-authorization", client_id: str = "flytectl",
                 authorization_endpoint: str = "", redirect_uri: str = "http://localhost:53593/callback",
                 scopes: tuple[str, ...] = ("all",), certificate: tuple[bytes, bytes] | None = None) -> None:
        self.validate = validate
        self.header_key = header_key
        self.stats: Counter[str] = Counter()
        self.fail_next_unknown = 0
        self._lock = threading.Lock()
        self._oauth = auth_pb2.OAuth2MetadataResponse(
            issuer=issuer or token_endpoint.rsplit("/", 1)[0], token_endpoint=token_endpoint,
            authorization_endpoint=authorization_endpoint, response_types_supported=["code"],
            code_challenge_methods_supported=["S256"],
            grant_types_supported=["client_credentials", "authorization_code", "refresh_token"],
            token_endpoint_auth_methods_supported=["client_secret_basic"])
        self._client = auth_pb2.PublicClientAuthConfigResponse(
            client_id=client_id, redirect_uri=redirect_uri, scopes=list(scopes),
            authorization_metadata_key=header_key)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=40))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(_Admin(self), self._server)
        auth_pb2_grpc.add_AuthMetadataServiceServicer_to_server(_AuthMetadata(self), self._server)
        if certificate is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            key, chain = certificate
            self.port = self._server.add_secure_port(
                "127.0.0.1:0", grpc.ssl_server_credentials([(key, chain)]))
        self.target = f"127.0.0.1:{self.port}"

    def count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def check(self, context: grpc.ServicerContext) -> None:
        if self.fail_next_unknown > 0:
            with self._lock:
                self.fail_next_unknown -= 1
            self.count("unknown")
            context.abort(grpc.StatusCode.UNKNOWN, "an unrelated server error")
        value = dict(context.invocation_metadata()).get(self.header_key, "")
        reason = self.validate(value[7:]) if value.startswith("Bearer ") else "no bearer token"
        if reason is not None:
            self.count("unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        self.count("calls")

    def start(self) -> FlyteAdminServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def __enter__(self) -> FlyteAdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Admin(admin_pb2_grpc.AdminServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FlyteAdminServer) -> None:
        self.server = server

    def ListProjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.server.check(context)
        return project_pb2.Projects(projects=[project_pb2.Project(id="flytesnacks", name="flytesnacks")])


class _AuthMetadata(auth_pb2_grpc.AuthMetadataServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FlyteAdminServer) -> None:
        self.server = server

    def GetOAuth2Metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.server.count("discovery")
        return self.server._oauth

    def GetPublicClientConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.server.count("discovery")
        return self.server._client
