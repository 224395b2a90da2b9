"""The entry points of one group, read without importing ``importlib.metadata`` where that is safe.

A process whose first call is authenticated reads the ``flyteauth`` group once.  ``importlib.metadata``
is a poor fit for that: importing it pulls in ``email``, ``zipfile``, ``csv`` and ``pathlib`` (about 10 ms
of a cold start), and it parses each distribution's METADATA with an email parser.  This module reads the
same files the same way ``importlib.metadata.entry_points(group=...)`` does on an ordinary installation:
``<name>-<version>.dist-info`` / ``.egg-info`` directories in the ``sys.path`` directories, in path order,
the first distribution of a (normalised) name winning, and ``entry_points.txt`` parsed as INI sections.

Anything else is left to ``importlib.metadata`` itself, so the answer never differs: a zip or egg (file or
directory) on ``sys.path``, or a meta path finder other than the standard ``PathFinder`` that provides distributions
(``find_distributions``), as zipapps and some bundlers install.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import import_module
from typing import Any

#: importlib.metadata's own pattern for an entry point's value: ``module[:attr] [extras]``.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_SUFFIXES = (".dist-info", ".egg-info")


class Distribution:
    """An installed distribution's directory: its name and version, read from METADATA when asked."""

    __slots__ = ("_metadata", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._metadata: dict[str, str] | None = None

    @property
    def metadata(self) -> dict[str, str]:
        """The headers of ``METADATA`` (``PKG-INFO`` for an egg-info), up to the first blank line."""
        if self._metadata is None:
            headers: dict[str, str] = {}
            for name in ("METADATA", "PKG-INFO"):
                try:
                    with open(os.path.join(self.path, name), encoding="utf-8") as fh:
                        for line in fh:
                            if not line.strip():
                                break
                            key, sep, value = line.partition(":")
                            if sep and not key.startswith((" ", "\t")):
                                headers.setdefault(key.strip(), value.strip())
                    break
                except OSError:
                    continue
            self._metadata = headers
        return self._metadata

    @property
    def version(self) -> str | None:
        return self.metadata.get("Version")

    def __repr__(self) -> str:
        return f"Distribution({self.path!r})"


class EntryPoint:
    """What the plugin registry uses of ``importlib.metadata.EntryPoint``: name, value, group, dist, load()."""

    __slots__ = ("dist", "group", "name", "value")

    def __init__(self, name: str, value: str, group: str, dist: Distribution) -> None:
        self.name, self.value, self.group, self.dist = name, value, group, dist

    def load(self) -> Any:
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"entry point {self.name!r}: {self.value!r} is not module[:attribute]")
        obj: Any = import_module(match.group("module"))
        for attr in filter(None, (match.group("attr") or "").split(".")):
            obj = getattr(obj, attr)
        return obj

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


def _normalized(stem: str) -> str:
    name = os.path.splitext(stem)[0].partition("-")[0]
    return re.sub(r"[-_.]+", "_", name).lower()


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of the ``[group]`` section of an entry_points.txt."""
    out: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, sep, value = line.partition("=")
            if sep:
                out.append((name.strip(), value.strip()))
    return out


def _standard_layout() -> bool:
    """Only directories on sys.path and no finder of distributions besides the standard one."""
    from importlib.machinery import PathFinder

    if any(f is not PathFinder and hasattr(f, "find_distributions") for f in sys.meta_path):
        return False
    # a zip or egg file, or an unpacked egg directory (its metadata is EGG-INFO): importlib.metadata's cases
    return not any(entry and (entry.lower().rstrip("/\\").endswith(".egg") or os.path.isfile(entry))
                   for entry in sys.path)


def _scan(group: str) -> list[EntryPoint]:
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        directory = entry or "."
        try:
            names = os.listdir(directory)
        except OSError:  # missing or unreadable: importlib.metadata skips it too
            continue
        for child in names:
            if not child.lower().endswith(_SUFFIXES):
                continue
            key = _normalized(child)
            if key in seen:
                continue
            seen.add(key)  # the first of a name wins, as in importlib.metadata (even an egg-info file)
            path = os.path.join(directory, child)
            if not os.path.isdir(path):
                continue  # an egg-info file (distutils): no entry points
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            dist = Distribution(path)
            found.extend(EntryPoint(name, value, group, dist) for name, value in _section(text, group))
    return found


def entry_points(group: str) -> list[Any]:
    """The entry points of ``group``, as ``importlib.metadata.entry_points(group=group)`` lists them."""
    if not _standard_layout():
        from importlib import metadata

        return list(metadata.entry_points(group=group))
    return _scan(group)
