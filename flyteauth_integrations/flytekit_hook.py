"""Tells the flytekit plugin which config file the user gave flytekit: ``Config.auto(config_file=path)``.

flytekit hands an auth plugin its ``PlatformConfig`` but never the file that was read, so the ``flyteauth:``
section of ``Config.auto(config_file="x.yaml")`` could not be found without ``FLYTECTL_CONFIG`` or an extra
call.  This module is registered in flytekit's ``flytekit.plugins`` entry-point group, which
``import flytekit`` loads (``load_implicit_plugins``) before user code can call ``Config.auto``.  It wraps
``PlatformConfig.auto`` (which ``Config.auto`` and ``Config.for_endpoint`` call) so that every
``PlatformConfig`` it returns carries the path of the file it was read from, and whether the caller named
that file or flytekit's search found it (``Config.auto`` is wrapped too, to tell the two apart: it resolves
the file before calling ``PlatformConfig.auto``); the most recent paths are remembered for configs copied
with ``dataclasses.replace`` (``Config.for_endpoint`` does that).

It imports nothing of flyteauth and does no I/O: every ``import flytekit`` pays for it, with or without
``authType: flyteauth``.  Any failure leaves flytekit untouched (the plugin then searches like flytekit).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

log = logging.getLogger("flyteauth.flytekit")

#: The attribute set on a ``PlatformConfig`` returned by ``PlatformConfig.auto``: ``(path, named)``; path ""
#: when flytekit read no file; ``named``: the caller passed the file (``Config.auto(config_file=...)``),
#: rather than flytekit's search finding it (a per-directory file found by a search needs trust).
ATTRIBUTE = "_flyteauth_config_file"
_recent: list[tuple[str, str, bool]] = []  # (endpoint, path, named), newest last; a few entries
_lock = threading.Lock()
_KEEP = 8
_calling = threading.local()  # inside Config.auto: whether its caller named the file


def _path_of(config_file: Any) -> str | None:
    """The path of what flytekit's ``get_config_file`` returned (a ``ConfigFile``, or None)."""
    if config_file is None:
        return None
    location = config_file if isinstance(config_file, str) else (
        getattr(config_file, "location", None) or getattr(config_file, "_location", None))
    # absolute now: the session may be built after the process changed directory
    return os.path.abspath(os.path.expanduser(str(location))) if location else None


def source_of(cfg: Any) -> tuple[str, bool] | None:
    """``(file, named by the caller)`` that ``cfg`` was read from: its own mark, else the newest
    ``PlatformConfig.auto`` call for the same endpoint; None when flytekit read no file for it (or it was
    built by hand)."""
    stamped = getattr(cfg, ATTRIBUTE, None)
    if stamped is not None:
        path, named = stamped
        return (path, named) if path else None
    endpoint = getattr(cfg, "endpoint", None)
    with _lock:
        for seen_endpoint, path, named in reversed(_recent):
            if seen_endpoint == endpoint:
                return path, named
    return None


def config_file_of(cfg: Any) -> str | None:
    """The file of :func:`source_of`, or None."""
    found = source_of(cfg)
    return found[0] if found else None


def last_source() -> tuple[str, bool] | None:
    """``(file, named)`` of the newest ``PlatformConfig.auto`` call that read one (``Config.for_endpoint``
    replaces the endpoint, so the endpoint match of :func:`source_of` misses it)."""
    with _lock:
        return (_recent[-1][1], _recent[-1][2]) if _recent else None


def install() -> bool:
    """Wrap ``Config.auto`` and ``PlatformConfig.auto`` once; False when flytekit's shape is not the one
    expected (then nothing is changed)."""
    try:
        from flytekit.configuration import Config, PlatformConfig
        from flytekit.configuration.file import get_config_file
    except Exception:  # flytekit too old or broken: the plugin falls back to searching
        log.debug("flyteauth: cannot hook flytekit's PlatformConfig.auto", exc_info=True)
        return False
    platform_auto, config_auto = PlatformConfig.__dict__.get("auto"), Config.__dict__.get("auto")
    if getattr(platform_auto, "__func__", None) is None or getattr(config_auto, "__func__", None) is None:
        return False
    if getattr(platform_auto.__func__, "_flyteauth_hook", False):
        return True
    platform_function, config_function = platform_auto.__func__, config_auto.__func__

    @functools.wraps(platform_function)
    def auto(cls: Any, config_file: Any = None) -> Any:
        # Config.auto resolves the file before calling us, so only it knows whether its caller named one.
        named = getattr(_calling, "named", None)
        named = config_file is not None if named is None else named
        loaded = get_config_file(config_file)  # what flytekit itself resolves (cached, or a cheap wrapper)
        cfg = platform_function(cls, loaded)
        path = _path_of(loaded)
        try:
            object.__setattr__(cfg, ATTRIBUTE, (path or "", named))  # a frozen dataclass: bypass __setattr__
        except Exception:  # pragma: no cover - a PlatformConfig with __slots__
            log.debug("flyteauth: cannot mark the PlatformConfig with its file", exc_info=True)
        if path:
            with _lock:
                _recent.append((str(getattr(cfg, "endpoint", "")), path, named))
                del _recent[:-_KEEP]
        return cfg

    @functools.wraps(config_function)
    def config_auto_wrapper(cls: Any, config_file: Any = None) -> Any:
        outer = getattr(_calling, "named", None)
        _calling.named = config_file is not None
        try:
            return config_function(cls, config_file)
        finally:
            _calling.named = outer

    auto._flyteauth_hook = True  # type: ignore[attr-defined]
    PlatformConfig.auto = classmethod(auto)
    Config.auto = classmethod(config_auto_wrapper)
    return True


install()
