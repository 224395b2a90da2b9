"""The two AuthMetadataService answers, decoded without importing protobuf.

Discovery is the only protobuf a client needs (``protos/flyteauth/wire/v1/auth.proto``), and importing
protobuf and the generated module costs a cold start more than the two RPCs themselves (about 200M
instructions, measured with callgrind).  Every field of ``OAuth2MetadataResponse`` and
``PublicClientAuthConfigResponse`` is a string or a repeated string, and both requests are empty, so the
wire format needed is small: varint keys, length-delimited values, and skipping unknown fields of any
wire type.  :func:`decode` returns what ``{f.name: v for f, v in Message.FromString(data).ListFields()}`` gives
(repeated fields as lists): the fields that are set (proto3: a singular string is set when not empty).
``tests/test_discovery.py`` checks it against the generated classes, field table included.
"""

from __future__ import annotations

from typing import Any

#: field number -> (name, repeated), per response (0: OAuth2MetadataResponse, 1: PublicClientAuthConfigResponse)
FIELDS: tuple[dict[int, tuple[str, bool]], dict[int, tuple[str, bool]]] = (
    {1: ("issuer", False), 2: ("authorization_endpoint", False), 3: ("token_endpoint", False),
     4: ("response_types_supported", True), 5: ("scopes_supported", True),
     6: ("token_endpoint_auth_methods_supported", True), 7: ("jwks_uri", False),
     8: ("code_challenge_methods_supported", True), 9: ("grant_types_supported", True),
     10: ("device_authorization_endpoint", False)},
    {1: ("client_id", False), 2: ("redirect_uri", False), 3: ("scopes", True),
     4: ("authorization_metadata_key", False), 5: ("service_http_endpoint", False), 6: ("audience", False),
     7: ("dataplane_domain", False)},
)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint in an AuthMetadataService answer")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def decode(data: bytes, index: int) -> dict[str, Any]:
    """The set fields of response ``index`` (see :data:`FIELDS`) in ``data``."""
    fields = FIELDS[index]
    out: dict[str, Any] = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0 in an AuthMetadataService answer")
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at:at + length], at + length
            if at > len(data):
                raise ValueError("truncated field in an AuthMetadataService answer")
            field = fields.get(number)
            if field is not None:
                name, repeated = field
                text = value.decode("utf-8")  # protobuf refuses a string that is not UTF-8 too
                if repeated:
                    out.setdefault(name, []).append(text)
                elif text:
                    out[name] = text
                else:
                    out.pop(name, None)  # the last occurrence wins; "" is proto3's unset
        else:
            raise ValueError(f"wire type {wire} in an AuthMetadataService answer")
        if at > len(data):
            raise ValueError("truncated field in an AuthMetadataService answer")
    return out


def empty_request(_: object) -> bytes:
    """Both requests are empty messages."""
    return b""
