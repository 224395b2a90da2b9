"""Discovery against real in-process gRPC servers speaking Flyte's wire format, and an HTTP fallback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession, DiscoveryError
from flyteauth_core.discovery import Discovery
from flyteauth_core.http import HttpClientFactory
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

SECRET = "discovery-test-secret"


@pytest.fixture
def endpoint() -> Iterator[DemoTokenEndpoint]:
    with DemoTokenEndpoint("client", SECRET, ttl=60) as ep:
        yield ep


def _discovery(target: str, base_url: str = "http://127.0.0.1:9") -> tuple[Discovery, grpc.Channel]:
    channel = grpc.insecure_channel(target)
    config = AuthConfig(endpoint=target, insecure=True)
    return Discovery(lambda: channel, endpoint=target, http_base_url=base_url,
                     http_client=HttpClientFactory(config).client, timeout=2), channel


@pytest.mark.parametrize("versions", [("v2", "v1"), ("v2",), ("v1",)])
def test_grpc_discovery_prefers_v2_and_falls_back_to_v1(versions: tuple[str, ...],
                                                        endpoint: DemoTokenEndpoint) -> None:
    with FlyteTestServer(endpoint.validate, token_endpoint=endpoint.url, versions=versions,
                         audience="https://flyte.example", scopes=("all", "offline")) as server:
        discovery, channel = _discovery(server.target)
        info = discovery.get()
        channel.close()
    assert info.source == f"grpc {versions[0]}"
    assert info.token_endpoint == endpoint.url
    assert info.authorization_metadata_key == "flyte-authorization"
    assert info.scopes == ("all", "offline") and info.audience == "https://flyte.example"
    assert server.stats[f"discovery_{versions[0]}"] == 2
    assert server.stats["discovery_v1" if versions[0] == "v2" else "discovery_v2"] == 0


def test_discovery_is_cached_per_session(endpoint: DemoTokenEndpoint) -> None:
    with FlyteTestServer(endpoint.validate, token_endpoint=endpoint.url) as server:
        discovery, channel = _discovery(server.target)
        first = [discovery.get() for _ in range(5)]
        threads = [threading.Thread(target=discovery.get) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        channel.close()
    assert all(info is first[0] for info in first)
    assert server.stats["discovery_v2"] == 2


class _WellKnown(BaseHTTPRequestHandler):
    documents: dict[str, Any] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.documents.get(self.path)
        data = json.dumps(body).encode() if body is not None else b"not found"
        self.send_response(200 if body is not None else 404)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def well_known() -> Iterator[tuple[str, dict[str, Any]]]:
    documents: dict[str, Any] = {}
    handler = type("H", (_WellKnown,), {"documents": documents})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", documents
    httpd.shutdown()
    httpd.server_close()


def test_rfc8414_fallback_when_neither_rpc_is_implemented(endpoint: DemoTokenEndpoint,
                                                          well_known: tuple[str, dict[str, Any]]) -> None:
    base, documents = well_known
    documents["/.well-known/oauth-authorization-server"] = {
        "issuer": "https://idp.example", "token_endpoint": "https://idp.example/token"}
    documents["/config/v1/flyte_client"] = {"clientId": "flytectl", "authorizationMetadataKey": "flyte-authorization",
                                            "scopes": ["all"]}
    with FlyteTestServer(endpoint.validate, versions=()) as server:
        discovery, channel = _discovery(server.target, base)
        info = discovery.get()
        channel.close()
    assert info.source == "rfc8414"
    assert info.token_endpoint == "https://idp.example/token"
    assert info.authorization_metadata_key == "flyte-authorization" and info.client_id == "flytectl"


def test_rfc8414_without_flyte_client_config_defaults_the_header(endpoint: DemoTokenEndpoint,
                                                                 well_known: tuple[str, dict[str, Any]]) -> None:
    base, documents = well_known
    documents["/.well-known/oauth-authorization-server"] = {"token_endpoint": "https://idp.example/token"}
    with FlyteTestServer(endpoint.validate, versions=()) as server:
        discovery, channel = _discovery(server.target, base)
        info = discovery.get()
        channel.close()
    assert info.authorization_metadata_key == "authorization"


def test_no_metadata_anywhere_is_a_typed_error_naming_what_was_tried(endpoint: DemoTokenEndpoint,
                                                                     well_known: tuple[str, dict[str, Any]]) -> None:
    base, documents = well_known
    documents["/.well-known/oauth-authorization-server"] = ["not", "an", "object"]
    with FlyteTestServer(endpoint.validate, versions=()) as server:
        discovery, channel = _discovery(server.target, base)
        with pytest.raises(DiscoveryError) as info:
            discovery.get()
        channel.close()
    message = str(info.value)
    assert "v2: UNIMPLEMENTED" in message and "v1: UNIMPLEMENTED" in message
    assert "did not return a JSON object" in message and "admin.tokenUrl" in message


def test_unreachable_server_fails_fast_with_discovery_error() -> None:
    discovery, channel = _discovery("127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="UNAVAILABLE"):
        discovery.get()
    channel.close()
    assert time.monotonic() - started < 5


def test_explicit_header_and_token_url_skip_discovery(endpoint: DemoTokenEndpoint) -> None:
    # versions=() would make discovery fail; explicit config means it is never needed.
    with FlyteTestServer(endpoint.validate, versions=(), header_key="x-custom-auth") as server:
        config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                            client_secret=SECRET, token_url=endpoint.url, scopes=("all",),
                            authorization_header="x-custom-auth")
        with AuthSession(config) as session:
            assert session.channel().unary_unary(ECHO["unary"])(b"x") == b"x"
    assert server.stats["rejected"] == 0
    assert server.stats["discovery_v2"] == server.stats["discovery_v1"] == 0


def test_discovered_header_key_is_used_on_the_first_call(endpoint: DemoTokenEndpoint) -> None:
    with FlyteTestServer(endpoint.validate, token_endpoint=endpoint.url, header_key="flyte-authorization") as server:
        config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="client",
                            client_secret=SECRET)
        with AuthSession(config) as session:
            session.channel().unary_unary(ECHO["unary"])(b"x")
    assert server.stats["calls"] == 1 and server.stats["rejected"] == 0


# -- the answers decoded without protobuf (issue 19: protobuf is a cold start's largest import) ---------------
def _listed(message: Any) -> dict[str, Any]:
    return {f.name: (v if isinstance(v, str) else list(v)) for f, v in message.ListFields()}


def test_discovery_wire_table_is_the_proto() -> None:
    from flyteauth_core._discovery_wire import FIELDS
    from flyteauth_core._proto import OAuth2MetadataResponse, PublicClientAuthConfigResponse

    for table, message in zip(FIELDS, (OAuth2MetadataResponse, PublicClientAuthConfigResponse), strict=True):
        fields = message.DESCRIPTOR.fields
        assert all(f.type == f.TYPE_STRING for f in fields)
        assert table == {f.number: (f.name, bool(f.is_repeated) if hasattr(f, "is_repeated")
                                    else f.label == f.LABEL_REPEATED) for f in fields}


def test_discovery_answers_decode_as_protobuf_decodes_them() -> None:
    """Random answers (empty strings, repeats, UTF-8, fields a newer server adds of every wire type)."""
    import random

    from flyteauth_core._discovery_wire import FIELDS, decode
    from flyteauth_core._proto import OAuth2MetadataResponse, PublicClientAuthConfigResponse

    rng = random.Random(16)
    words = ["", "a", "https://idp.example/token", "flyte-authorization", "ünïcode", "x" * 300]
    for index, message in enumerate((OAuth2MetadataResponse, PublicClientAuthConfigResponse)):
        for _ in range(300):
            msg = message()
            for name, repeated in FIELDS[index].values():
                if rng.random() < 0.5:
                    if repeated:
                        getattr(msg, name).extend(rng.choice(words) for _ in range(rng.randint(0, 3)))
                    else:
                        setattr(msg, name, rng.choice(words))
            data = msg.SerializeToString()
            if rng.random() < 0.5:  # unknown fields: varint, fixed64, bytes, fixed32
                data += bytes([0x98, 0x06, 0x96, 0x01]) + bytes([0xA1, 0x06]) + bytes(8) \
                    + bytes([0xAA, 0x06, 0x02]) + b"hi" + bytes([0xB5, 0x06]) + bytes(4)
            if rng.random() < 0.3:  # a field sent twice: the last one wins
                data += message(**{FIELDS[index][1][0]: rng.choice(words)}).SerializeToString()
            assert decode(data, index) == _listed(message.FromString(data))


def test_discovery_answer_that_is_not_protobuf_is_an_error() -> None:
    from flyteauth_core._discovery_wire import decode

    for data in (b"\x0a\x05ab", b"\x0a", b"\x0f", b"\x0a\x02\xff\xfe", b"\x00\x01"):
        with pytest.raises(ValueError):
            decode(data, 0)
