"""In-process Flyte-compatible peers for demos and tests: no Flyte deployment needed.

* :class:`FlyteTestServer`: a gRPC server on 127.0.0.1 that answers the v1 and/or v2
  AuthMetadataService paths with real protobuf messages, and an ``Echo`` service (all four call kinds)
  that rejects missing, expired, revoked or wrong-key tokens with UNAUTHENTICATED, and
  ``IdentityService/UserInfo`` (v1/v2, same versions) answering with the token's ``sub``, and flyteadmin's
  ``AdminService/ListProjects`` and ``GetVersion`` (authenticated, the first calls of flytekit's
  ``FlyteRemote`` and ``pyflyte``; ``projects`` names what ListProjects lists).  With
  ``expected_audience`` it also rejects JWTs whose ``aud`` claim lacks that audience.  With
  ``proxy_validate`` it plays an authenticating proxy in front of Flyte too (IAP, Istio): every call,
  discovery included, whose ``proxy-authorization`` is missing or refused is answered PERMISSION_DENIED.
* :class:`DemoTokenEndpoint`: a tiny OAuth2 token endpoint (client credentials, Basic auth) issuing
  opaque tokens with a short lifetime, for ``flyteauth demo``.

SDK authors can use both to test their own integration.  Imported only on demand.

Public and stable for plugin authors (``docs/plugins.md``): :class:`FlyteTestServer`,
:class:`DemoTokenEndpoint`, :func:`judge_bearer`, ``ECHO`` and :func:`acquire_request`.  Changes to
them follow the project's deprecation policy like any other public API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import grpc

from ._proto import OAuth2MetadataResponse, PublicClientAuthConfigResponse, UserInfoResponse
from .claims import audiences, unverified_claims
from .discovery import PATHS, USERINFO_PATHS

ECHO_SERVICE = "flyteauth.demo.Echo"
#: flyteadmin's v1 AdminService paths FlyteTestServer answers (bodies: ``flyteauth_core._proto.admin_pb2``).
ADMIN = {
    "list_projects": "/flyteidl.service.AdminService/ListProjects",
    "get_version": "/flyteidl.service.AdminService/GetVersion",
}
DOMAINS = ("development", "staging", "production")
ECHO = {
    "unary": f"/{ECHO_SERVICE}/Unary",
    "server_stream": f"/{ECHO_SERVICE}/ServerStream",
    "client_stream": f"/{ECHO_SERVICE}/ClientStream",
    "bidi": f"/{ECHO_SERVICE}/Bidi",
}
#: A validator returns None for an accepted token, or the reason it is rejected.
Validator = Callable[[str], "str | None"]


def _identity(data: bytes) -> bytes:
    return data


def judge_bearer(value: str | None, header_key: str, validate: Validator,
                 revoked: Container[str] = ()) -> str | None:
    """Why a test server rejects the header value it received, or None when it accepts it."""
    if value is None:
        return f"no {header_key} header"
    if not value.startswith("Bearer "):
        return "not a bearer token"
    if value[7:] in revoked:
        return "revoked"
    return validate(value[7:])


def record_call(stats: Counter[str], lock: threading.Lock, reason: str | None) -> None:
    """Count an authenticated call, and its rejection reason if any."""
    with lock:
        stats["calls"] += 1
        if reason is not None:
            stats["rejected"] += 1
            stats[f"rejected: {reason}"] += 1


class FlyteTestServer:
    """A loopback gRPC server speaking Flyte's auth discovery wire format plus an authenticated Echo."""

    def __init__(
        self,
        validate: Validator,
        *,
        token_endpoint: str = "",
        header_key: str = "flyte-authorization",
        versions: tuple[str, ...] = ("v2", "v1"),
        client_id: str = "flytectl",
        scopes: tuple[str, ...] = ("all",),
        audience: str = "",
        issuer: str = "",
        authorization_endpoint: str = "",
        device_authorization_endpoint: str = "",
        redirect_uri: str = "http://localhost:53593/callback",
        grant_types: tuple[str, ...] = ("client_credentials",),
        expected_audience: str | None = None,
        advertised_header_key: str | None = None,
        max_workers: int = 16,
        unimplemented: tuple[str, ...] = (),
        proxy_validate: Validator | None = None,
        projects: tuple[str, ...] = ("flytesnacks",),
    ) -> None:
        """``unimplemented``: discovery paths to leave out (answered UNIMPLEMENTED), e.g. a v2 server that
        implements ``GetPublicClientConfig`` but not ``GetOAuth2Metadata``.  ``proxy_validate``: judges the
        bearer token in ``proxy-authorization`` before anything else (counted as ``proxy_denied``)."""
        self.validate = validate
        self.proxy_validate = proxy_validate
        self.header_key = header_key
        #: When set, a JWT whose ``aud`` does not contain it is rejected (as a Flyte server checks).
        self.expected_audience = expected_audience
        self.stats: Counter[str] = Counter()
        self.revoked: set[str] = set()
        self.seen_metadata: list[tuple[tuple[str, str], ...]] = []
        self.record_metadata = False
        #: Make ServerStream fail with UNAUTHENTICATED after its first message (a token revoked mid-stream).
        self.reject_after_first_message = False
        self._lock = threading.Lock()
        self._oauth = OAuth2MetadataResponse(
            issuer=issuer or token_endpoint.rsplit("/", 1)[0],
            token_endpoint=token_endpoint,
            authorization_endpoint=authorization_endpoint,
            device_authorization_endpoint=device_authorization_endpoint,
            response_types_supported=["code"],
            code_challenge_methods_supported=["S256"],
            grant_types_supported=list(grant_types),
            token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            scopes_supported=list(scopes),
        )
        self._client = PublicClientAuthConfigResponse(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=list(scopes),
            # A server may advertise one key and read another (a proxy renaming it): doctor tests need that.
            authorization_metadata_key=header_key if advertised_header_key is None else advertised_header_key,
            audience=audience,
        )
        self._projects = _projects(projects)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        handlers: dict[str, Any] = {}
        for version in versions:
            oauth_path, client_path = PATHS[version]
            handlers[oauth_path] = grpc.unary_unary_rpc_method_handler(
                self._count(version, lambda req, ctx: self._oauth),
                request_deserializer=_identity, response_serializer=OAuth2MetadataResponse.SerializeToString,
            )
            handlers[client_path] = grpc.unary_unary_rpc_method_handler(
                self._count(version, lambda req, ctx: self._client),
                request_deserializer=_identity,
                response_serializer=PublicClientAuthConfigResponse.SerializeToString,
            )
        for path in unimplemented:
            handlers.pop(path, None)
        handlers[ECHO["unary"]] = grpc.unary_unary_rpc_method_handler(self._unary)
        handlers[ECHO["server_stream"]] = grpc.unary_stream_rpc_method_handler(self._server_stream)
        handlers[ECHO["client_stream"]] = grpc.stream_unary_rpc_method_handler(self._client_stream)
        handlers[ECHO["bidi"]] = grpc.stream_stream_rpc_method_handler(self._bidi)
        for version in versions:  # the identity service, authenticated like Echo
            handlers[USERINFO_PATHS[version]] = grpc.unary_unary_rpc_method_handler(
                self._userinfo, request_deserializer=_identity, response_serializer=UserInfoResponse.SerializeToString,
            )
        from ._proto.admin_pb2 import GetVersionResponse, Projects, Version

        self._version = GetVersionResponse(control_plane_version=Version(Version="flyteauth-test", Build="test"))
        handlers[ADMIN["list_projects"]] = grpc.unary_unary_rpc_method_handler(
            self._list_projects, request_deserializer=_identity, response_serializer=Projects.SerializeToString,
        )
        handlers[ADMIN["get_version"]] = grpc.unary_unary_rpc_method_handler(
            self._get_version, request_deserializer=_identity,
            response_serializer=GetVersionResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers((_Handlers(handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    @property
    def lock(self) -> threading.Lock:
        """Held while ``stats`` changes (for a peer that counts into them, like the demo's Connect side)."""
        return self._lock

    def discovery_answers(self) -> tuple[OAuth2MetadataResponse, PublicClientAuthConfigResponse]:
        """What ``GetOAuth2Metadata`` and ``GetPublicClientConfig`` answer, for a peer that serves them too."""
        return self._oauth, self._client

    def _count(self, version: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def handler(request: Any, context: Any) -> Any:
            self._check_proxy(context)
            with self._lock:
                self.stats[f"discovery_{version}"] += 1
            return fn(request, context)

        return handler

    # -- auth -------------------------------------------------------------------------------------------
    def _check_proxy(self, context: grpc.ServicerContext) -> None:
        """As an authenticating proxy would: abort with PERMISSION_DENIED unless ``proxy-authorization``
        carries a token ``proxy_validate`` accepts (the Flyte server behind it never sees the call)."""
        if self.proxy_validate is None:
            return
        value = next((str(v) for k, v in context.invocation_metadata() if k == "proxy-authorization"), None)
        reason = judge_bearer(value, "proxy-authorization", self.proxy_validate)
        if reason is not None:
            with self._lock:
                self.stats["proxy_denied"] += 1
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"proxy: {reason}")

    def _check(self, context: grpc.ServicerContext) -> str:
        """The accepted token, or abort the call with UNAUTHENTICATED and the reason (or PERMISSION_DENIED
        from the proxy in front, see ``proxy_validate``)."""
        self._check_proxy(context)
        metadata = tuple((k, str(v)) for k, v in context.invocation_metadata())
        if self.record_metadata:
            self.seen_metadata.append(metadata)
        value = next((v for k, v in metadata if k == self.header_key), None)
        reason = judge_bearer(value, self.header_key, self.validate, self.revoked)
        other = [k for k, _ in metadata if "authorization" in k] if value is None else []
        if other:
            reason = f"{reason} (got {other})"
        if reason is None and self.expected_audience is not None and value is not None:
            aud = audiences(unverified_claims(value[7:]))
            if self.expected_audience not in aud:
                reason = f"token audience {list(aud)} does not include {self.expected_audience!r}"
        record_call(self.stats, self._lock, reason)
        if reason is not None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"unauthenticated: {reason}")
        assert value is not None
        return value[7:]

    def _userinfo(self, request: bytes, context: grpc.ServicerContext) -> UserInfoResponse:
        claims = unverified_claims(self._check(context))
        subject = claims.get("sub")
        return UserInfoResponse(subject=subject if isinstance(subject, str) else "unknown")

    @property
    def projects(self) -> Any:
        """What ListProjects answers (a ``flyteauth_core._proto.admin_pb2.Projects``)."""
        return self._projects

    def _list_projects(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self._check(context)
        return self._projects

    def _get_version(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self._check(context)
        return self._version

    def revoke(self, token: str) -> None:
        """Reject this access token from now on (a server-side revocation)."""
        self.revoked.add(token)

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._check(context)
        return request

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._check(context)
        for i in range(3):
            yield request + str(i).encode()
            if self.reject_after_first_message:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated: token revoked mid-stream")

    def _client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._check(context)
        return b"".join(requests)

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._check(context)
        yield from requests

    def start(self) -> FlyteTestServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def __enter__(self) -> FlyteTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _projects(names: tuple[str, ...]) -> Any:
    """One page of ListProjects naming ``names``, each with flyteadmin's three default domains."""
    from ._proto.admin_pb2 import Domain, Project, Projects

    domains = [Domain(id=d, name=d) for d in DOMAINS]
    return Projects(projects=[Project(id=n, name=n, domains=domains) for n in names])


class _Handlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, handlers: dict[str, Any]) -> None:
        self._handlers = handlers

    def service(self, handler_call_details: Any) -> Any:
        return self._handlers.get(handler_call_details.method)


class LoopbackHTTPServer:
    """A threading HTTP server on 127.0.0.1 (a free port) in a daemon thread; every request of the given
    methods goes to ``handle(request_handler)``.  ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None], methods: tuple[str, ...] = ("GET",)) -> None:
        def serve(request_handler: BaseHTTPRequestHandler) -> None:
            handle(request_handler)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        for method in methods:
            setattr(Handler, f"do_{method}", serve)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> LoopbackHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Answer ``handler``'s request with ``body`` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class DemoTokenEndpoint:
    """A minimal client-credentials token endpoint on 127.0.0.1 issuing opaque, short-lived tokens."""

    def __init__(self, client_id: str, client_secret: str, *, ttl: float = 3.0,
                 other_clients: Mapping[str, str] | None = None, signing_key: bytes | None = None) -> None:
        """``other_clients``: more ``{client_id: secret}`` pairs accepted beside the first (the docs tests
        accept the placeholder credentials the docs show).  ``signing_key``: issue tokens that carry their
        expiry and an HMAC, so an endpoint started again with the same key accepts them (``flyteauth demo
        --serve`` restarted in the same ``--dir`` while a client still holds a cached token)."""
        self.client_id = client_id
        self._signing_key = signing_key
        self._basic = {"Basic " + base64.b64encode(f"{cid}:{sec}".encode()).decode()
                       for cid, sec in {**(other_clients or {}), client_id: client_secret}.items()}
        self.ttl = ttl
        self.requests = 0
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server = LoopbackHTTPServer(self._handle, methods=("POST",))
        self.url = f"{self._server.url}/token"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        form = parse_qs(handler.rfile.read(length).decode())
        with self._lock:
            self.requests += 1
        body: dict[str, Any]
        sent = handler.headers.get("authorization", "")
        if handler.path != "/token" or form.get("grant_type") != ["client_credentials"]:
            status, body = 400, {"error": "unsupported_grant_type"}
        elif not any(secrets.compare_digest(sent, expected) for expected in self._basic):
            status, body = 401, {"error": "invalid_client"}
        else:
            token = self._issue(time.time() + self.ttl)
            status, body = 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
        send_json(handler, status, body)

    def _issue(self, expires: float) -> str:
        token = secrets.token_urlsafe(24)
        if self._signing_key is not None:
            payload = f"{token}.{int(expires * 1000)}"  # token_urlsafe has no "."
            return f"{payload}.{self._mac(payload)}"
        with self._lock:
            self._tokens[token] = expires
        return token

    def _mac(self, payload: str) -> str:
        assert self._signing_key is not None
        return hmac.new(self._signing_key, payload.encode(), hashlib.sha256).hexdigest()

    def _expiry(self, token: str) -> float | None:
        if self._signing_key is None:
            return self._tokens.get(token)
        payload, _, mac = token.rpartition(".")
        if not payload or not secrets.compare_digest(mac, self._mac(payload)):
            return None
        return int(payload.rpartition(".")[2]) / 1000

    def validate(self, token: str) -> str | None:
        expires = self._expiry(token)
        if expires is None:
            return "unknown token"
        if time.time() >= expires:
            return "expired"
        return None

    def start(self) -> DemoTokenEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> DemoTokenEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def acquire_request(
    config: Any,
    *,
    previous: Any = None,
    reason: str = "initial",
    interactive: bool = False,
    server_info: Any = None,
    retry: Any = None,
) -> Any:
    """An ``AcquireRequest`` wired like the session wires it, for testing a provider on its own.

    ``http_client()`` builds the session's IdP client from ``config`` (timeouts, trust, proxy);
    ``server_info()`` returns ``server_info`` (a ``flyteauth_core.discovery.ServerAuthInfo``), default one
    naming ``config.token_url`` as the token endpoint.
    """
    from .discovery import ServerAuthInfo
    from .http import HttpClientFactory
    from .types import AcquireRequest

    info = server_info if server_info is not None else ServerAuthInfo(token_endpoint=config.token_url or "")
    return AcquireRequest(config=config, previous=previous, reason=reason, interactive=interactive,
                          server_info_fn=lambda: info, http_client_fn=HttpClientFactory(config).client, retry=retry)
