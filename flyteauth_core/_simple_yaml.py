"""The plain YAML of a flytectl config, read without importing PyYAML; anything else is left to PyYAML.

Importing ``yaml`` costs a cold start about 10 ms (it compiles its scanner's regular expressions and loads
its C extension), more than reading a config file.  Most config files use a small part of YAML: nested
block mappings, block sequences of scalars, one-line flow sequences of simple scalars (``[all]``), comments,
plain and simply quoted scalars.  :func:`load` reads
exactly that part and answers what ``yaml.safe_load`` answers; at the first thing outside it (flow
collections, anchors, tags, block or multi-line scalars, escapes, floats, octal or sexagesimal numbers,
timestamps, non-ASCII text, tabs, documents markers...) it returns :data:`NOT_SIMPLE` and the caller
uses PyYAML, so no file is ever read differently.  ``tests/test_config.py`` compares the two.
"""

from __future__ import annotations

import re
from typing import Any, Final

#: What :func:`load` returns for a document outside the subset.
NOT_SIMPLE: Final[Any] = object()

_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*):(?: +(.*))?$")
_INT = re.compile(r"(?:0|[1-9][0-9]*)$")
#: What PyYAML's implicit resolvers (YAML 1.1) make of a plain scalar that starts with a digit, other than
#: a plain decimal int: a float, an octal/binary/hex/sexagesimal int, a timestamp.  Such a value is left to
#: PyYAML; any other digit-led scalar (``127.0.0.1:8089``, ``2m``, ``1m30s``) is a string.
_NUMBER_OR_TIME = re.compile(r"""^(?:
    [0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?
    |[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |0b[0-1_]+ |0[0-7_]+ |[0-9][0-9_]* |0x[0-9a-fA-F_]+ |[1-9][0-9_]*(?::[0-5]?[0-9])+
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?.*
    )$""", re.X)
#: PyYAML's (YAML 1.1) implicit booleans and nulls among words.
_TRUE = frozenset({"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE = frozenset({"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_NULL = frozenset({"~", "null", "Null", "NULL"})
#: A plain scalar starting with one of these may be an indicator, a number, a float or a timestamp.
_UNSAFE_START = frozenset("-?:,[]{}#&*!|>'\"%@`+.0123456789~=<")


class _NotSimple(Exception):
    pass


def _without_comment(text: str) -> str:
    """A plain scalar's text up to a comment (`` #``), trailing spaces removed."""
    cut = text.find(" #")
    return (text if cut < 0 else text[:cut]).rstrip()


def _quoted(text: str) -> str:
    quote = text[0]
    end = 1
    value = []
    while True:
        at = text.find(quote, end)
        if at < 0:
            raise _NotSimple
        value.append(text[end:at])
        if quote == "'" and text.startswith("''", at):  # '' is a quote inside single quotes
            value.append("'")
            end = at + 2
            continue
        break
    rest = text[at + 1:].strip()
    if rest and not rest.startswith("#"):
        raise _NotSimple
    out = "".join(value)
    if quote == '"' and "\\" in out:
        raise _NotSimple  # escapes: PyYAML's job
    return out


_FLOW_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./\-]*$")


def _flow_sequence(text: str) -> list[Any]:
    """``[a, 'b', "c"]``: a one-line flow sequence of simple scalars (``scopes: [all]``)."""
    end = text.find("]")
    rest = text[end + 1:].strip() if end >= 0 else "x"
    inner = text[1:end]
    if (rest and not rest.startswith("#")) or any(c in inner for c in "[]{}#"):
        raise _NotSimple
    if not inner.strip():
        return []
    items: list[Any] = []
    for raw in inner.split(","):
        item = raw.strip()
        if not item:
            raise _NotSimple
        if item[0] in "'\"":
            if item[-1] != item[0] or len(item) < 2:
                raise _NotSimple  # a comma inside quotes, or text after them
            items.append(_quoted(item))
        elif _FLOW_PLAIN.match(item) or _INT.match(item):
            items.append(_scalar(item))
        else:
            raise _NotSimple
    return items


def _scalar(text: str) -> Any:
    if text[0] in "'\"":
        return _quoted(text)
    if text[0] == "[":
        return _flow_sequence(text)
    value = _without_comment(text)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value in _NULL:
        return None
    if _INT.match(value):
        return int(value)
    if value[0].isdigit() and not _NUMBER_OR_TIME.match(value) and ": " not in value and not value.endswith(":"):
        return value
    if not value or value[0] in _UNSAFE_START or ": " in value or value.endswith(":"):
        raise _NotSimple
    return value


def _lines(text: str) -> list[tuple[int, str | None, str]]:
    """(indent, key or None for a sequence item, the rest) of each line that says something."""
    out: list[tuple[int, str | None, str]] = []
    for raw in text.split("\n"):
        line = raw.rstrip(" ")
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if stripped == "-" or stripped.startswith("- "):
            out.append((indent, None, stripped[1:].strip()))
            continue
        match = _KEY.match(stripped)
        if match is None:
            raise _NotSimple  # a document marker, a continuation line, a flow collection...
        key, rest = match.group(1), (match.group(2) or "").strip()
        if key in _TRUE or key in _FALSE or key in _NULL:
            raise _NotSimple  # `on:` is the key True in YAML 1.1
        out.append((indent, key, "" if rest.startswith("#") else rest))
    return out


class _Parser:
    def __init__(self, lines: list[tuple[int, str | None, str]]) -> None:
        self.lines = lines
        self.i = 0

    def node(self, indent: int) -> Any:
        return self.sequence(indent) if self.lines[self.i][1] is None else self.mapping(indent)

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lines = self.lines
        while self.i < len(lines) and lines[self.i][0] == indent and lines[self.i][1] is not None:
            _, key, rest = lines[self.i]
            assert key is not None
            self.i += 1
            if rest:
                out[key] = _scalar(rest)
            elif self.i < len(lines) and lines[self.i][0] > indent:
                out[key] = self.node(lines[self.i][0])
            elif self.i < len(lines) and lines[self.i][0] == indent and lines[self.i][1] is None:
                out[key] = self.sequence(indent, compact=True)  # `key:` then `- item` at the key's own indent
            else:
                out[key] = None
        self.dedent(indent)
        return out

    def sequence(self, indent: int, compact: bool = False) -> list[Any]:
        out: list[Any] = []
        lines = self.lines
        while self.i < len(lines) and lines[self.i][0] == indent and lines[self.i][1] is None:
            rest = lines[self.i][2]
            if not rest or _KEY.match(rest) or rest.startswith("- ") or rest == "-":
                raise _NotSimple  # a nested collection in an item
            out.append(_scalar(rest))
            self.i += 1
        if compact and self.i < len(lines) and lines[self.i][0] == indent:
            return out  # the mapping that holds it goes on at this indent
        self.dedent(indent)
        return out

    def dedent(self, indent: int) -> None:
        """What follows a collection must be less indented (a deeper or mixed line is PyYAML's to judge)."""
        if self.i < len(self.lines) and self.lines[self.i][0] >= indent:
            raise _NotSimple


def load(text: str) -> Any:
    """What ``yaml.safe_load(text)`` returns, or :data:`NOT_SIMPLE` when ``text`` is outside the subset."""
    if not text.isascii() or "\t" in text or "\r" in text or any(c < " " and c != "\n" for c in text):
        return NOT_SIMPLE
    try:
        lines = _lines(text)
        if not lines:
            return None
        if lines[0][0] != 0:
            return NOT_SIMPLE
        parser = _Parser(lines)
        data = parser.node(0)
        return data if parser.i == len(lines) else NOT_SIMPLE
    except _NotSimple:
        return NOT_SIMPLE
