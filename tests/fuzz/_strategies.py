"""Strategies shared by the fuzz targets, and the one property they check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from flyteauth_core.errors import FlyteAuthError

T = TypeVar("T")

#: Text without NUL (which neither env vars nor files on POSIX paths can carry meaningfully).
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)
numbers = st.one_of(st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, text,
                    st.sampled_from(["", " ", "true", "false", "0", "1", "-1", "1e400", "nan", "inf", "5m", "1h30m",
                                     "http://x", "dns:///h:443", "[]", "{}", "null", "~", "\n"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner,
                                                                                                 max_size=4),
                           max_leaves=12)
#: Smaller structures, for targets whose input is rendered and parsed (YAML) before the code under test.
small_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner,
                                                                                                  max_size=3),
                            max_leaves=5)


def only_typed_errors(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | FlyteAuthError:
    """Call ``fn``; return its result or the FlyteAuthError it raised.  Anything else propagates (a bug)."""
    try:
        return fn(*args, **kwargs)
    except FlyteAuthError as exc:
        assert str(exc), "a typed error without a message"
        return exc
