"""Discovery: ask the Flyte server how to authenticate, through its anonymous AuthMetadataService.

Each RPC on its own: v2 (``flyteidl2.auth``) first, v1 (``flyteidl.service``) when v2 answers
UNIMPLEMENTED, then RFC 8414 ``/.well-known/oauth-authorization-server`` (for the public client,
flyteadmin's ``/config/v1/flyte_client``) over HTTP(S) when neither version implements it.  A success
is cached for the life of the session; a failure is tried again on the next ``get()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import DiscoveryError, FlyteAuthError

Metadata = tuple[tuple[str, str], ...]

log = logging.getLogger("flyteauth.discovery")

PATHS = {
    "v2": ("/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
           "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig"),
    "v1": ("/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
           "/flyteidl.service.AuthMetadataService/GetPublicClientConfig"),
}
HTTP_PATHS = ("/.well-known/oauth-authorization-server", "/config/v1/flyte_client")
DEFAULT_METADATA_KEY = "authorization"
#: IdentityService.UserInfo (an authenticated call any Flyte server answers; ``flyteauth doctor`` uses it).
USERINFO_PATHS = {"v2": "/flyteidl2.auth.IdentityService/UserInfo", "v1": "/flyteidl.service.IdentityService/UserInfo"}


@attrs.frozen
class ServerAuthInfo:
    """What the Flyte server says about its identity provider and public client."""

    token_endpoint: str = ""
    authorization_endpoint: str = ""
    device_authorization_endpoint: str = ""
    issuer: str = ""
    jwks_uri: str = ""
    scopes_supported: tuple[str, ...] = ()
    grant_types_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    client_id: str = ""
    redirect_uri: str = ""
    scopes: tuple[str, ...] = ()
    authorization_metadata_key: str = DEFAULT_METADATA_KEY
    audience: str = ""
    service_http_endpoint: str = ""
    source: str = ""

    @classmethod
    def from_mappings(cls, oauth: Mapping[str, Any], client: Mapping[str, Any], source: str) -> ServerAuthInfo:
        """Build from the two responses as dicts (protobuf or JSON, snake_case or camelCase keys)."""

        def get(data: Mapping[str, Any], key: str) -> Any:
            if key in data:
                return data[key]
            camel = key.split("_", maxsplit=1)[0] + "".join(p.title() for p in key.split("_")[1:])
            return data.get(camel)

        def text(data: Mapping[str, Any], key: str) -> str:
            value = get(data, key)
            return value if isinstance(value, str) else ""

        def strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
            value = get(data, key)
            if not isinstance(value, (list, tuple)):
                return ()
            return tuple(v for v in value if isinstance(v, str))

        return cls(
            token_endpoint=text(oauth, "token_endpoint"),
            authorization_endpoint=text(oauth, "authorization_endpoint"),
            device_authorization_endpoint=text(oauth, "device_authorization_endpoint"),
            issuer=text(oauth, "issuer"),
            jwks_uri=text(oauth, "jwks_uri"),
            scopes_supported=strings(oauth, "scopes_supported"),
            grant_types_supported=strings(oauth, "grant_types_supported"),
            token_endpoint_auth_methods_supported=strings(oauth, "token_endpoint_auth_methods_supported"),
            client_id=text(client, "client_id"),
            redirect_uri=text(client, "redirect_uri"),
            scopes=strings(client, "scopes"),
            authorization_metadata_key=text(client, "authorization_metadata_key") or DEFAULT_METADATA_KEY,
            audience=text(client, "audience"),
            service_http_endpoint=text(client, "service_http_endpoint"),
            source=source,
        )


class Discovery:
    """Fetches and caches :class:`ServerAuthInfo` for one endpoint.

    Each of the two RPCs is resolved on its own (a v2 server may implement ``GetPublicClientConfig`` but
    not ``GetOAuth2Metadata``): v2, then v1, then HTTP (RFC 8414 for the OAuth2 metadata, flyteadmin's
    ``/config/v1/flyte_client`` for the public client).  ``metadata()`` is sent with every discovery
    request: the session passes an authenticating proxy's ``proxy-authorization`` (never the bearer
    token).  When the proxy refuses it (gRPC UNAUTHENTICATED/PERMISSION_DENIED, HTTP 401/403/407),
    ``rejected(sent)`` is told once and the request is sent once more with fresh metadata.  A failure is
    not cached: the next ``get()`` tries again.
    """

    def __init__(
        self,
        channel: Callable[[], Any],
        *,
        endpoint: str,
        http_base_url: str,
        http_client: Callable[[], Any],
        timeout: float = 10.0,
        metadata: Callable[[], Metadata] | None = None,
        rejected: Callable[[Metadata], bool] | None = None,
    ) -> None:
        self._channel = channel
        self._endpoint = endpoint
        self._http_base_url = http_base_url
        self._http_client = http_client
        self._timeout = timeout
        self._metadata = metadata or (lambda: ())
        self._rejected = rejected
        self._lock = threading.Lock()
        self._cached: ServerAuthInfo | None = None
        self.calls = 0
        #: Set by the session when its store shares discovery results (``discovery_cache.shared_fill``).
        self.fill: Callable[[Callable[[], ServerAuthInfo]], ServerAuthInfo] | None = None

    def get(self) -> ServerAuthInfo:
        cached = self._cached
        if cached is not None:
            return cached
        with self._lock:
            if self._cached is None:
                self._cached = self._discover() if self.fill is None else self.fill(self._discover)
            return self._cached

    def _discover(self) -> ServerAuthInfo:
        oauth, oauth_source = self._resolve(0)
        client, client_source = self._resolve(1)
        source = oauth_source if oauth_source == client_source else f"{oauth_source} + {client_source}"
        info = ServerAuthInfo.from_mappings(oauth, client, source)
        log.debug("flyteauth: discovered %s via %s", self._endpoint, info.source)
        return info

    def _resolve(self, index: int) -> tuple[Mapping[str, Any], str]:
        """One RPC (0: GetOAuth2Metadata, 1: GetPublicClientConfig): v2, v1, then HTTP."""
        import grpc

        tried = []
        for version in ("v2", "v1"):
            try:
                return self._grpc(version, index), f"grpc {version}"
            except grpc.RpcError as error:
                code = error.code() if callable(getattr(error, "code", None)) else None
                tried.append(f"{version}: {getattr(code, 'name', code)}")
                if code is not grpc.StatusCode.UNIMPLEMENTED:
                    raise DiscoveryError(
                        f"AuthMetadataService {version} at {self._endpoint} failed with "
                        f"{getattr(code, 'name', code)}",
                        hint="Check the endpoint and TLS settings (admin.endpoint, admin.insecure), or set "
                        "admin.tokenUrl to skip discovery",
                    ) from None
        path = HTTP_PATHS[index]
        try:
            return self._http(path, required=index == 0), "rfc8414"
        except DiscoveryError as error:
            raise DiscoveryError(
                f"No auth metadata from {self._endpoint} (gRPC {', '.join(tried)}; {error.message})",
                hint="The server may not have auth enabled; set admin.tokenUrl, or use authType None",
            ) from None

    def _grpc(self, version: str, index: int) -> dict[str, Any]:
        import grpc

        from . import _discovery_wire  # the two answers without importing protobuf (a cold start's largest import)

        call = self._channel().unary_unary(
            PATHS[version][index],
            request_serializer=_discovery_wire.empty_request,
            response_deserializer=lambda data: _discovery_wire.decode(data, index),
        )
        for attempt in range(2):
            sent = self._metadata()
            self.calls += 1
            try:
                extra = {"metadata": sent} if sent else {}
                return call(None, timeout=self._timeout, **extra)  # type: ignore[no-any-return]
            except grpc.RpcError as error:
                code = error.code() if callable(getattr(error, "code", None)) else None
                proxy_refused = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                if attempt or not proxy_refused or not self._refresh_proxy(sent):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _refresh_proxy(self, sent: Metadata) -> bool:
        """The proxy refused ``sent``: have its token replaced once.  True when a retry may work."""
        if not sent or self._rejected is None:
            return False
        try:
            return bool(self._rejected(sent))
        except FlyteAuthError:
            return False

    def _http(self, path: str, *, required: bool) -> Mapping[str, Any]:
        import httpx2

        url = self._http_base_url + path
        with self._http_client() as http:
            for attempt in range(2):
                sent = self._metadata()
                try:
                    response = http.get(url, timeout=self._timeout, headers=dict(sent))
                except httpx2.HTTPError as exc:
                    raise DiscoveryError(f"GET {url} failed ({type(exc).__name__})") from None
                if response.status_code in (401, 403, 407) and not attempt and self._refresh_proxy(sent):
                    continue
                break
        if response.status_code != 200:
            if not required:
                return {}
            raise DiscoveryError(f"GET {url} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            if not required:
                return {}
            raise DiscoveryError(f"GET {url} did not return a JSON object")
        return body
