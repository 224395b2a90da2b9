"""Discovery: ask the Flyte server how to authenticate, through its anonymous AuthMetadataService.

Order: v2 (``flyteidl2.auth``) first, v1 (``flyteidl.service``) when v2 answers UNIMPLEMENTED, then
RFC 8414 ``/.well-known/oauth-authorization-server`` (and flyteadmin's ``/config/v1/flyte_client``)
over HTTP(S) when neither RPC is implemented.  Results are cached for the life of the session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import DiscoveryError

log = logging.getLogger("flyteauth.discovery")

PATHS = {
    "v2": ("/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
           "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig"),
    "v1": ("/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
           "/flyteidl.service.AuthMetadataService/GetPublicClientConfig"),
}
DEFAULT_METADATA_KEY = "authorization"


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


def _message_dict(message: Any) -> dict[str, Any]:
    # Every field of these two messages is a string or a repeated string.
    return {field.name: (value if isinstance(value, str) else list(value))
            for field, value in message.ListFields()}


class Discovery:
    """Fetches and caches :class:`ServerAuthInfo` for one endpoint."""

    def __init__(
        self,
        channel: Callable[[], Any],
        *,
        endpoint: str,
        http_base_url: str,
        http_client: Callable[[], Any],
        timeout: float = 10.0,
    ) -> None:
        self._channel = channel
        self._endpoint = endpoint
        self._http_base_url = http_base_url
        self._http_client = http_client
        self._timeout = timeout
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
        import grpc

        tried = []
        for version in ("v2", "v1"):
            try:
                return self._grpc(version)
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
        try:
            return self._rfc8414()
        except DiscoveryError as error:
            raise DiscoveryError(
                f"No auth metadata from {self._endpoint} (gRPC {', '.join(tried)}; {error.message})",
                hint="The server may not have auth enabled; set admin.tokenUrl, or use authType None",
            ) from None

    def _grpc(self, version: str) -> ServerAuthInfo:
        from ._proto import (
            OAuth2MetadataRequest,
            OAuth2MetadataResponse,
            PublicClientAuthConfigRequest,
            PublicClientAuthConfigResponse,
        )

        oauth_path, client_path = PATHS[version]
        channel = self._channel()
        self.calls += 1
        oauth = channel.unary_unary(
            oauth_path,
            request_serializer=OAuth2MetadataRequest.SerializeToString,
            response_deserializer=OAuth2MetadataResponse.FromString,
        )(OAuth2MetadataRequest(), timeout=self._timeout)
        self.calls += 1
        client = channel.unary_unary(
            client_path,
            request_serializer=PublicClientAuthConfigRequest.SerializeToString,
            response_deserializer=PublicClientAuthConfigResponse.FromString,
        )(PublicClientAuthConfigRequest(), timeout=self._timeout)
        info = ServerAuthInfo.from_mappings(_message_dict(oauth), _message_dict(client), f"grpc {version}")
        log.debug("flyteauth: discovered %s via %s", self._endpoint, info.source)
        return info

    def _rfc8414(self) -> ServerAuthInfo:
        import httpx2

        documents: list[Mapping[str, Any]] = []
        with self._http_client() as http:
            for path in ("/.well-known/oauth-authorization-server", "/config/v1/flyte_client"):
                url = self._http_base_url + path
                try:
                    response = http.get(url, timeout=self._timeout)
                except httpx2.HTTPError as exc:
                    raise DiscoveryError(f"GET {url} failed ({type(exc).__name__})") from None
                if response.status_code != 200:
                    if path.startswith("/config"):
                        documents.append({})
                        continue
                    raise DiscoveryError(f"GET {url} answered HTTP {response.status_code}")
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if not isinstance(body, Mapping):
                    raise DiscoveryError(f"GET {url} did not return a JSON object")
                documents.append(body)
        return ServerAuthInfo.from_mappings(documents[0], documents[1], "rfc8414")
