"""Value parsers shared by the config schema and by plugins' declared options.

Each parser takes ``(key, raw)`` (the key or variable name as the user wrote it, for the error message)
and returns the typed value or raises a ``ConfigError`` naming the key.  Booleans are strict
(``true/1/yes/on``, ``false/0/no/off``); durations accept Go syntax (``5m``, ``1h30m``) or seconds.

A leaf module: it imports nothing of ours but ``errors``, so ``options`` and ``config`` can share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

Parser = Callable[[str, Any], Any]


def words(value: Any) -> tuple[str, ...]:
    """Split on commas and whitespace (``"a, b c"`` -> ``("a", "b", "c")``); a list is kept as strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    return tuple(str(v) for v in value)

#: The fix a list-valued key's error names (scopes, authOrigins, command, ...).
_LIST_HINT = "Set {} to a YAML list of strings (such as [all]) or one comma-separated string"

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in (*_FALSE, ""):
        return False
    raise ConfigError(f"{key} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}",
                      hint=f"Set {key} to true or false")


def string(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a string, got {type(value).__name__}",
                          hint=f"Set {key} to one value, quoted if YAML would read it otherwise")
    return str(value) or None


def _json_list(key: str, text: str) -> tuple[str, ...] | None:
    if not text.startswith("["):
        return None
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{key} looks like a JSON array but is not valid JSON") from None
    if not isinstance(data, list) or not all(isinstance(v, (str, int, float)) for v in data):
        raise ConfigError(f"{key} must be a list of strings", hint=_LIST_HINT.format(key))
    return tuple(str(v) for v in data)


def strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key} must be a list of strings", hint=_LIST_HINT.format(key))
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        parsed = _json_list(key, value.strip())
        return parsed if parsed is not None else words(value)
    if value is None:
        return ()
    raise ConfigError(f"{key} must be a list of strings, got {type(value).__name__}", hint=_LIST_HINT.format(key))


def split_argv(key: str, text: str) -> tuple[str, ...]:
    """An argv from a string: a JSON array, else comma separated (flytekit), else shell words."""
    text = text.strip()
    parsed = _json_list(key, text)
    if parsed is not None:
        return parsed
    if "," in text:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    import shlex

    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"{key} cannot be split into arguments ({exc})") from None


def argv(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_argv(key, value)
    return strings(key, value)


def integer(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a whole number, got {value!r}", hint=f"Set {key} to a number such as 3")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {value!r}",
                          hint=f"Set {key} to a number such as 3") from None
    if number < 0:
        raise ConfigError(f"{key} must not be negative, got {value!r}")
    return number


def duration(key: str, value: Any) -> float:
    """Seconds from a Go duration string (``5m``, ``1h30m``, ``250ms``) or a number of seconds.

    Only finite, non-negative values: a duration of NaN, infinity or -5s is a typo, not a setting.
    """
    seconds = _duration_seconds(key, value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{key} must be a finite, non-negative duration, got {value!r}")
    return seconds


def _duration_seconds(key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key} is too large for a duration") from None
    text = str(value).strip()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    try:
        if text and text.replace(".", "", 1).isdigit():
            return float(text)
        while i < len(text):
            ch = text[i]
            if ch.isdigit() or ch == ".":
                number += ch
                i += 1
                continue
            unit = next(u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i))
            total += float(number) * units[unit]
            number, i = "", i + len(unit)
        if number or not text:
            raise ValueError
    except (StopIteration, ValueError):
        raise ConfigError(f"{key} must be a duration like 30s, 5m or 1h30m, got {value!r}") from None
    return total


#: The historical name (``flyteauth_core.config.parse_duration``).
parse_duration = duration


def url_parts(url: Any) -> tuple[str, str, str]:
    """``(scheme, user-info, rest)`` of ``url``: the user-info is everything between ``://`` and the *last*
    ``@``, because a password may hold ``/``, ``?``, ``#`` or ``@`` that nobody percent-encoded (a URL parser
    would then end the host part at the ``/`` and take the rest of the password for the path).  The one
    place that decides what of a URL may be shown."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "", "", text
    userinfo, _, rest = rest.rpartition("@")
    return scheme, userinfo, rest


def url_without_password(url: Any) -> str:
    """``url`` for display, its password (or a user-info without ``:``, which may be a token) as ``****``."""
    scheme, userinfo, rest = url_parts(url)
    if not userinfo:
        return str(url)
    user, colon, _ = userinfo.partition(":")
    if colon and user and not any(c in user for c in "/?#"):
        return f"{scheme}://{user}:****@{rest}"
    return f"{scheme}://****@{rest}"
