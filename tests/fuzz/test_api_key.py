"""Fuzz API key decoding (``FLYTE_API_KEY``: base64 of ``endpoint:client_id:client_secret:org``)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flyteauth_core.config as config_module
from flyteauth_core.errors import ConfigError

from ._profiles import fuzz
from ._strategies import only_typed_errors, text

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(not hasattr(config_module, "decode_api_key"),
                       reason="flyteauth_core.config has no decode_api_key yet (issue 4)"),
]

parts = st.tuples(text | st.sampled_from(["dns:///flyte.example.com:443", "https://h:8089", "h"]), text, text, text)
encoded_keys = parts.map(lambda p: base64.b64encode(":".join(p).encode()).decode())
raw_keys = st.text(max_size=200) | encoded_keys | encoded_keys.map(lambda k: k.rstrip("=")) | encoded_keys.map(
    lambda k: f"  {k}\n")


@given(raw_keys)
@fuzz
def test_any_api_key_decodes_or_raises_config_error(raw: str) -> None:
    result = only_typed_errors(config_module.decode_api_key, raw)
    if isinstance(result, ConfigError):
        template = str(only_typed_errors(config_module.decode_api_key, "!"))  # the message for any bad key
        if len(raw.strip()) >= 8 and raw.strip() not in template:  # short ones occur in any text by chance
            assert raw.strip() not in str(result)  # the key itself is a secret
        return
    assert set(result) >= {"endpoint", "client_id", "client_secret", "org"}
    assert all(isinstance(v, str) for v in result.values())


@given(parts.filter(lambda p: all(p[:3]) and ":" not in "".join(p[1:])))
@fuzz
def test_well_formed_keys_round_trip(p: tuple[str, str, str, str]) -> None:
    key = base64.b64encode(":".join(p).encode()).decode()
    decoded = config_module.decode_api_key(key)
    assert (decoded["endpoint"], decoded["client_id"], decoded["client_secret"], decoded["org"]) == p
