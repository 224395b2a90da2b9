"""Discovery over ConnectRPC, for Flyte endpoints that speak only Connect (flyte 2.x servers may).

The gRPC AuthMetadataService calls cannot reach such a server (HTTP/1.1, no gRPC framing), so when they fail
the session asks the same two v2 RPCs the Connect way: ``POST <endpoint>/flyteidl2.auth.AuthMetadataService/
<Method>`` with a JSON body ``{}`` (Connect's unary protocol, JSON codec: no protobuf needed).  The answer is
the proto3 JSON of the same messages (camelCase keys), which :class:`ServerAuthInfo` reads as is.  A flyte
2.x user then needs no ``tokenUrl`` in the config.

TLS: the Flyte endpoint's trust (``caCertFilePath``, ``insecureSkipVerify``), not the IdP's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .discovery import ServerAuthInfo
from .errors import DiscoveryError

if TYPE_CHECKING:
    from .config import AuthConfig

SERVICE = "/flyteidl2.auth.AuthMetadataService/"
METHODS = ("GetOAuth2Metadata", "GetPublicClientConfig")
HEADERS = {"content-type": "application/json", "connect-protocol-version": "1", "accept": "application/json"}


def flyte_verify(config: AuthConfig) -> Any:
    """What ``httpx2``'s ``verify=`` should be for the Flyte endpoint itself."""
    if config.insecure_skip_verify:
        return False
    import ssl

    context = ssl.create_default_context()
    if config.ca_cert_file_path:
        from pathlib import Path

        try:
            context.load_verify_locations(cafile=str(Path(config.ca_cert_file_path).expanduser()))
        except (OSError, ssl.SSLError) as exc:
            raise DiscoveryError(f"Cannot load caCertFilePath {config.ca_cert_file_path!r} ({type(exc).__name__})",
                                 hint="Point admin.caCertFilePath at a PEM file of CA certificates") from None
    return context


def discover(config: AuthConfig, http_client: Callable[[str, Any], Any], timeout: float = 10.0) -> ServerAuthInfo:
    """Both v2 RPCs over Connect; ``http_client(base_url, verify)`` returns a new ``httpx2.Client``."""
    import httpx2

    base = config.http_base_url.rstrip("/")
    answers: list[Mapping[str, Any]] = []
    with http_client(base, flyte_verify(config)) as http:
        for method in METHODS:
            url = base + SERVICE + method
            try:
                response = http.post(url, content=b"{}", headers=HEADERS, timeout=timeout)
            except httpx2.HTTPError as exc:
                raise DiscoveryError(f"Connect {method} at {base} failed ({type(exc).__name__})") from None
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code != 200 or not isinstance(body, Mapping):
                raise DiscoveryError(f"Connect {method} at {base} answered HTTP {response.status_code}")
            answers.append(body)
    return ServerAuthInfo.from_mappings(answers[0], answers[1], "connect v2")
