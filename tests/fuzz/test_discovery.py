"""Fuzz discovery: the two AuthMetadataService answers as mappings (JSON / protobuf dicts) and as raw
protobuf bytes, deserialized by our generated messages the way grpc would, then mapped."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyteauth_core._proto import OAuth2MetadataResponse, PublicClientAuthConfigResponse
from flyteauth_core.discovery import Discovery, ServerAuthInfo
from flyteauth_core.errors import DiscoveryError

from ._profiles import fuzz
from ._strategies import json_values, only_typed_errors, text

pytestmark = pytest.mark.fuzz

OAUTH_KEYS = [f.name for f in OAuth2MetadataResponse.DESCRIPTOR.fields]
CLIENT_KEYS = [f.name for f in PublicClientAuthConfigResponse.DESCRIPTOR.fields]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def documents(keys: list[str]) -> Any:
    names = st.sampled_from(keys + [_camel(k) for k in keys]) | text
    return st.dictionaries(names, json_values | st.lists(text, max_size=3), max_size=len(keys))


@fuzz
@given(documents(OAUTH_KEYS), documents(CLIENT_KEYS))
def test_from_mappings_never_raises_and_types_its_fields(oauth: Any, client: Any) -> None:
    info = only_typed_errors(ServerAuthInfo.from_mappings, oauth, client, "fuzz")
    assert isinstance(info, ServerAuthInfo)
    for field in ("token_endpoint", "issuer", "client_id", "authorization_metadata_key", "audience"):
        assert isinstance(getattr(info, field), str)
    assert all(isinstance(s, str) for s in info.scopes + info.scopes_supported)
    assert info.authorization_metadata_key  # never empty: "authorization" when the server sends none


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _BytesChannel:
    """Answers each discovery RPC with fuzzed bytes, deserialized as grpc does: a deserializer that raises
    becomes an RpcError (INTERNAL), exactly what a real channel hands the caller."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self._replies = replies

    def unary_unary(self, path: str, request_serializer: Any = None, response_deserializer: Any = None) -> Any:
        def call(request: Any, timeout: float | None = None) -> Any:
            request_serializer(request)
            reply = self._replies.get(path.rsplit("/", 1)[-1])
            if reply is None:
                raise _RpcError(grpc.StatusCode.UNIMPLEMENTED)
            try:
                return response_deserializer(reply)
            except Exception:
                raise _RpcError(grpc.StatusCode.INTERNAL) from None

        return call


class _NoHttp:
    def __call__(self) -> Any:
        raise AssertionError("the RFC 8414 fallback is not under test here")


def _discover(replies: dict[str, bytes]) -> ServerAuthInfo | DiscoveryError:
    channel = _BytesChannel(replies)
    discovery = Discovery(lambda: channel, endpoint="fuzz:443", http_base_url="https://fuzz", http_client=_NoHttp())
    result = only_typed_errors(discovery.get)
    assert isinstance(result, (ServerAuthInfo, DiscoveryError))
    return result


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; older runtimes only have ``label``
    return bool(flag) if flag is not None else field.label == 3


def valid_messages(cls: Any) -> Any:
    """Well-formed messages of ``cls`` with arbitrary string fields, serialized."""
    fields = {k: (st.lists(text, max_size=3) if _repeated(f) else text)
              for k, f in cls.DESCRIPTOR.fields_by_name.items()}
    return st.fixed_dictionaries({}, optional=fields).map(lambda kw: cls(**kw).SerializeToString())


valid_oauth = valid_messages(OAuth2MetadataResponse)
valid_client = valid_messages(PublicClientAuthConfigResponse)


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in flips:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


mutated = st.builds(_mutate, valid_oauth | valid_client, st.lists(st.tuples(st.integers(0, 500), st.integers(0, 255)),
                                                                     max_size=4))
any_bytes = st.binary(max_size=300) | valid_oauth | valid_client | mutated


@fuzz
@given(any_bytes, any_bytes)
def test_raw_protobuf_replies_give_server_info_or_a_discovery_error(oauth: bytes, client: bytes) -> None:
    result = _discover({"GetOAuth2Metadata": oauth, "GetPublicClientConfig": client})
    if isinstance(result, ServerAuthInfo):
        assert result.source.startswith("grpc")
