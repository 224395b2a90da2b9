"""Fuzz ``token_from_response``: any JSON body gives a Token or a TokenResponseError."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flyteauth_core.errors import TokenResponseError
from flyteauth_core.token import Token, token_from_response

from ._profiles import fuzz
from ._strategies import json_values, numbers, only_typed_errors, text

pytestmark = pytest.mark.fuzz

FIELDS = ("access_token", "token_type", "expires_in", "expires_at", "refresh_token", "id_token", "scope")
jwtish = st.builds(lambda h, p, s: f"{h}.{p}.{s}", text, st.one_of(text, st.just("eyJleHAiOjF9"),
                                                                   st.just("eyJleHAiOjFlNDAwfQ")), text)
field_values = st.one_of(json_values, numbers, jwtish, st.lists(text, max_size=3))
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=len(FIELDS)),
    st.fixed_dictionaries({"access_token": st.one_of(text, jwtish)},
                          optional={k: field_values for k in FIELDS[1:]}),
)
previous = st.one_of(st.none(), st.builds(Token, st.just("prev-access"), refresh_token=st.one_of(st.none(),
                                                                                               st.just("prev-rt"))))


def check(body: Any, prev: Token | None) -> None:
    result = only_typed_errors(token_from_response, body, now=1_700_000_000.0, endpoint="https://idp/token",
                               status=200, previous=prev)
    if isinstance(result, Token):
        assert result.access_token.strip()
        assert result.expires_at is None or math.isfinite(result.expires_at)
        repr(result)
    else:
        assert isinstance(result, TokenResponseError)
        assert "https://idp/token" in str(result) and "HTTP 200" in str(result)


@fuzz
@given(bodies, previous)
def test_any_body_gives_a_token_or_a_typed_error(body: Any, prev: Token | None) -> None:
    check(body, prev)


@fuzz
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_parsed_as_json_give_a_token_or_a_typed_error(raw: bytes) -> None:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: the provider reports that before parsing (covered by the fault suite)
    check(body, None)
