"""Token values, token responses from IdPs (including malformed ones), and refresh deadlines."""

from __future__ import annotations

import base64
import json
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyteauth_core.errors import TokenResponseError
from flyteauth_core.token import RefreshPolicy, Token, jwt_expiry, token_from_response

NOW = 1_700_000_000.0
URL = "https://idp.example.com/oauth2/token"


def parse(body: Any, **kwargs: Any) -> Token:
    kwargs.setdefault("status", 200)
    return token_from_response(body, now=NOW, endpoint=URL, **kwargs)


def jwt(claims: Any) -> str:
    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# -- token_from_response ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [(3600, 3600.0), (0, 0.0), (1.5, 1.5), ("3600", 3600.0), (" 60 ", 60.0), ("2.5", 2.5)],
)
def test_expires_in_int_float_and_numeric_string(expires_in: Any, expected: float) -> None:
    token = parse({"access_token": "at", "expires_in": expires_in})
    assert token.expires_at == NOW + expected


@pytest.mark.parametrize(
    "expires_in",
    [-1, -0.5, "-10", math.nan, math.inf, "NaN", "inf", True, False, "soon", "", "1h", [3600], {"s": 1}],
)
def test_bad_expires_in_is_a_token_response_error(expires_in: Any) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse({"access_token": "at", "expires_in": expires_in})
    assert "expires_in" in str(info.value)
    assert info.value.endpoint == URL and info.value.status == 200


@pytest.mark.parametrize("expires_at", [-5, "tomorrow", math.nan, True])
def test_bad_expires_at_is_a_token_response_error(expires_at: Any) -> None:
    with pytest.raises(TokenResponseError, match="expires_at"):
        parse({"access_token": "at", "expires_at": expires_at})


@pytest.mark.parametrize(
    "body",
    [{}, {"access_token": None}, {"access_token": ""}, {"access_token": "   "}, {"access_token": 42},
     {"access_token": ["at"]}, {"access_token": {"value": "at"}}, {"token": "at", "expires_in": 60}],
)
def test_missing_or_unusable_access_token_names_endpoint_and_status(body: Any) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse(body, status=200)
    message = str(info.value)
    assert "access_token" in message
    assert URL in message and "HTTP 200" in message
    assert (info.value.endpoint, info.value.status) == (URL, 200)


@pytest.mark.parametrize("body", [[], ["access_token"], "access_token=at", None, 42, b'{"access_token": "at"}'])
def test_body_not_an_object_is_a_token_response_error(body: Any) -> None:
    with pytest.raises(TokenResponseError, match="not a JSON object") as info:
        parse(body, status=203)
    assert "HTTP 203" in str(info.value)


def test_token_type_must_be_a_string() -> None:
    with pytest.raises(TokenResponseError, match="token_type"):
        parse({"access_token": "at", "token_type": 7})
    assert parse({"access_token": "at"}).token_type == "Bearer"
    assert parse({"access_token": "at", "token_type": "bearer"}).authorization == "Bearer at"
    assert parse({"access_token": "at", "token_type": "DPoP"}).authorization == "DPoP at"


def test_jwt_exp_is_used_without_a_response_expiry_and_never_extends_one() -> None:
    access = jwt({"sub": "svc", "exp": NOW + 900})
    assert parse({"access_token": access}).expires_at == NOW + 900
    assert parse({"access_token": access, "expires_in": 60}).expires_at == NOW + 60
    assert parse({"access_token": access, "expires_at": NOW + 30}).expires_at == NOW + 30


@pytest.mark.parametrize(
    "access",
    ["opaque-token-value", "a.b.c", jwt({"sub": "svc"}), jwt({"exp": "later"}), jwt({"exp": True}),
     jwt(["not", "claims"]), "x." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".y",
     "x." + base64.urlsafe_b64encode(b'{"exp": NaN}').decode() + ".y"],
)
def test_token_without_a_usable_expiry_has_unknown_expiry(access: str) -> None:
    token = parse({"access_token": access})
    assert token.expires_at is None
    assert RefreshPolicy().deadlines(token, NOW, random.Random(0)) == (math.inf, math.inf)


def test_jwt_exp_too_large_for_a_float_is_ignored_not_a_crash() -> None:
    assert jwt_expiry(jwt({"exp": 10**400})) is None
    assert parse({"access_token": jwt({"exp": 10**400})}).expires_at is None


def test_deeply_nested_jwt_payload_is_ignored_not_a_crash() -> None:
    payload = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    assert jwt_expiry(f"x.{payload}.y") is None


def test_expires_in_too_large_for_a_float_is_a_token_response_error() -> None:
    with pytest.raises(TokenResponseError, match="expires_in"):
        parse(json.loads('{"access_token": "at", "expires_in": 1' + "0" * 400 + "}"))


def test_refresh_token_kept_from_previous_when_absent_replaced_when_rotated() -> None:
    previous = Token("old-at", refresh_token="rt-1", id_token="idt-1")
    assert parse({"access_token": "at"}, previous=previous).refresh_token == "rt-1"
    assert parse({"access_token": "at", "refresh_token": ""}, previous=previous).refresh_token == "rt-1"
    assert parse({"access_token": "at", "refresh_token": None}, previous=previous).refresh_token == "rt-1"
    assert parse({"access_token": "at", "refresh_token": "rt-2"}, previous=previous).refresh_token == "rt-2"
    assert parse({"access_token": "at"}).refresh_token is None
    # the id token belongs to one response: it is not carried over
    assert parse({"access_token": "at"}, previous=previous).id_token is None
    assert parse({"access_token": "at", "id_token": "idt-2"}).id_token == "idt-2"
    assert parse({"access_token": "at", "id_token": 5}).id_token is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("all offline", ("all", "offline")), ("  all   offline ", ("all", "offline")), ("", ()),
     (["all", "offline"], ("all", "offline")), (None, ()), (5, ())],
)
def test_scope_becomes_a_tuple(scope: Any, expected: tuple[str, ...]) -> None:
    assert parse({"access_token": "at", "scope": scope}).scopes == expected


# -- RefreshPolicy.deadlines ---------------------------------------------------------------------------
def test_one_hour_token_goes_stale_five_minutes_before_expiry() -> None:
    token = Token("at", expires_at=NOW + 3600)
    stale_at, expired_at = RefreshPolicy(jitter=0).deadlines(token, NOW, random.Random(1))
    assert stale_at == NOW + 3600 - 300
    assert expired_at == NOW + 3600 - 10  # clock skew


def test_two_second_token_window_is_capped_at_half_its_lifetime() -> None:
    token = Token("at", expires_at=NOW + 2)
    stale_at, expired_at = RefreshPolicy(jitter=0).deadlines(token, NOW, random.Random(1))
    assert stale_at == pytest.approx(NOW + 1.0)  # not stale from birth
    assert expired_at == pytest.approx(NOW + 1.8)  # skew capped at a tenth of the lifetime
    assert NOW < stale_at < expired_at < NOW + 2


def test_configured_window_is_honoured() -> None:
    token = Token("at", expires_at=NOW + 3600)
    stale_at, _ = RefreshPolicy(window=60, jitter=0).deadlines(token, NOW, random.Random(1))
    assert stale_at == NOW + 3600 - 60


def test_jitter_spreads_refreshes_within_bounds_and_is_reproducible() -> None:
    policy = RefreshPolicy()  # window 300, jitter 0.1
    token = Token("at", expires_at=NOW + 3600)
    rng = random.Random(20240601)
    stale = [policy.deadlines(token, NOW, rng)[0] for _ in range(500)]
    earliest, latest = NOW + 3600 - 330, NOW + 3600 - 300
    assert all(earliest <= s <= latest for s in stale)
    assert max(stale) - min(stale) > 25  # actually spread over most of the jitter range
    again = random.Random(20240601)
    assert [policy.deadlines(token, NOW, again)[0] for _ in range(500)] == stale


def test_unknown_expiry_is_never_stale() -> None:
    assert RefreshPolicy().deadlines(Token("at"), NOW, random.Random(0)) == (math.inf, math.inf)


def test_token_already_expired_when_obtained_is_expired_at_once() -> None:
    token = Token("at", expires_at=NOW - 5)
    stale_at, expired_at = RefreshPolicy().deadlines(token, NOW, random.Random(0))
    assert stale_at <= NOW and expired_at <= NOW


# -- Token value ---------------------------------------------------------------------------------------
def test_repr_and_str_hide_the_three_secrets() -> None:
    token = Token("AT-canary-1", expires_at=NOW, refresh_token="RT-canary-2", id_token="IDT-canary-3",
                  scopes=("all",))
    for text in (repr(token), str(token), f"{token}", repr([token]), repr({"t": token})):
        assert "canary" not in text
        assert "scopes=('all',)" in text


@pytest.mark.parametrize(
    "token",
    [Token("at"), Token("at", "DPoP", NOW + 60, "rt", "idt", ("a", "b")), Token("at", expires_at=NOW + 0.25)],
)
def test_to_dict_from_dict_round_trip_through_json(token: Token) -> None:
    record = json.loads(json.dumps(token.to_dict()))
    assert Token.from_dict(record) == token


@pytest.mark.parametrize(
    "record",
    [{}, {"token_type": "Bearer"}, {"access_token": ""}, {"access_token": None}, {"access_token": 5},
     {"access_token": "at", "expires_at": "tomorrow"}, {"access_token": "at", "expires_at": [1]},
     {"access_token": "at", "expires_at": 10**400}, {"access_token": "at", "expires_at": math.nan},
     {"access_token": "at", "scopes": 5}, {"access_token": "at", "refresh_token": 5},
     [], "access_token", None, 5],
)
def test_from_dict_on_malformed_records_raises_only_value_type_or_key_error(record: Any) -> None:
    with pytest.raises((ValueError, TypeError, KeyError)):
        Token.from_dict(record)


# -- property: any JSON body gives a Token or a TokenResponseError ---------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
                | st.sampled_from([10**400, -(10**400), "1e400", "-0", "0x10"]))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
token_keys = st.sampled_from(
    ["access_token", "token_type", "expires_in", "expires_at", "refresh_token", "id_token", "scope"]
)
access_tokens = st.text(max_size=30) | st.builds(jwt, st.dictionaries(st.just("exp"), json_values))
bodies = json_values | st.dictionaries(token_keys, json_values, max_size=7) | st.fixed_dictionaries(
    {"access_token": access_tokens},
    optional={"expires_in": json_values, "expires_at": json_values, "token_type": json_values,
              "refresh_token": json_values, "scope": json_values, "id_token": json_values},
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_any_json_body_gives_a_token_or_a_token_response_error(body: Any) -> None:
    try:
        token = parse(body)
    except TokenResponseError as exc:
        assert exc.endpoint == URL
        return
    assert isinstance(token.access_token, str) and token.access_token.strip() == token.access_token != ""
    assert token.expires_at is None or math.isfinite(token.expires_at)
    assert all(isinstance(s, str) for s in token.scopes)
    assert token.refresh_token is None or isinstance(token.refresh_token, str)
    RefreshPolicy().deadlines(token, NOW, random.Random(0))  # usable by the lifecycle
    assert Token.from_dict(json.loads(json.dumps(token.to_dict()))) == token


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(record=json_values | st.dictionaries(token_keys, json_values, max_size=6))
def test_from_dict_on_any_json_record_raises_only_value_type_or_key_error(record: Any) -> None:
    try:
        token = Token.from_dict(record)
    except (ValueError, TypeError, KeyError):
        return
    assert isinstance(token.access_token, str) and token.access_token
    assert token.expires_at is None or math.isfinite(token.expires_at)
