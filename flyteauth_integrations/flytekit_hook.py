"""Tells the flytekit plugin which config file the user gave flytekit: ``Config.auto(config_file=path)``.

flytekit hands an auth plugin its ``PlatformConfig`` but never the file that was read, so the ``flyteauth:``
section of ``Config.auto(config_file="x.yaml")`` could not be found without ``FLYTECTL_CONFIG`` or an extra
call.  This module is registered in flytekit's ``flytekit.plugins`` entry-point group, which
``import flytekit`` loads (``load_implicit_plugins``) before user code can call ``Config.auto``.  It wraps
``PlatformConfig.auto`` (which ``Config.auto`` and ``Config.for_endpoint`` call) so that every
``PlatformConfig`` it returns carries the path of the file it was read from, and remembers the most recent
paths for configs copied with ``dataclasses.replace`` (``Config.for_endpoint`` does that).

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

#: The attribute set on a ``PlatformConfig`` returned by ``PlatformConfig.auto``: the file's path, or "".
ATTRIBUTE = "_flyteauth_config_file"
_recent: list[tuple[str, str]] = []  # (endpoint, path), newest last; a few entries
_lock = threading.Lock()
_KEEP = 8


def _path_of(config_file: Any) -> str | None:
    """The path of what flytekit's ``get_config_file`` returned (a ``ConfigFile``, or None)."""
    if config_file is None:
        return None
    location = config_file if isinstance(config_file, str) else (
        getattr(config_file, "location", None) or getattr(config_file, "_location", None))
    # absolute now: the session may be built after the process changed directory
    return os.path.abspath(os.path.expanduser(str(location))) if location else None


def config_file_of(cfg: Any) -> str | None:
    """The config file ``cfg`` was read from: its own stamp, else the newest ``PlatformConfig.auto`` call for
    the same endpoint; None when flytekit read no file for it (or it was built by hand)."""
    stamped = getattr(cfg, ATTRIBUTE, None)
    if stamped is not None:
        return stamped or None
    endpoint = getattr(cfg, "endpoint", None)
    with _lock:
        for seen_endpoint, path in reversed(_recent):
            if seen_endpoint == endpoint:
                return path
    return None


def last_config_file() -> str | None:
    """The file of the newest ``PlatformConfig.auto`` call that read one (``Config.for_endpoint`` replaces
    the endpoint, so the endpoint match above misses it)."""
    with _lock:
        return _recent[-1][1] if _recent else None


def install() -> bool:
    """Wrap ``PlatformConfig.auto`` once; False when flytekit's shape is not the one expected."""
    try:
        from flytekit.configuration import PlatformConfig
        from flytekit.configuration.file import get_config_file
    except Exception:  # flytekit too old or broken: the plugin falls back to searching
        log.debug("flyteauth: cannot hook flytekit's PlatformConfig.auto", exc_info=True)
        return False
    original = PlatformConfig.__dict__.get("auto")
    if original is None or getattr(original, "__func__", None) is None:
        return False
    if getattr(original.__func__, "_flyteauth_hook", False):
        return True
    wrapped_function = original.__func__

    @functools.wraps(wrapped_function)
    def auto(cls: Any, config_file: Any = None) -> Any:
        loaded = get_config_file(config_file)  # what flytekit itself resolves (cached, or a cheap wrapper)
        cfg = wrapped_function(cls, loaded)
        path = _path_of(loaded)
        try:
            object.__setattr__(cfg, ATTRIBUTE, path or "")  # a frozen dataclass: bypass its __setattr__
        except Exception:  # pragma: no cover - a PlatformConfig with __slots__
            log.debug("flyteauth: cannot mark the PlatformConfig with its file", exc_info=True)
        if path:
            with _lock:
                _recent.append((str(getattr(cfg, "endpoint", "")), path))
                del _recent[:-_KEEP]
        return cfg

    auto._flyteauth_hook = True  # type: ignore[attr-defined]
    PlatformConfig.auto = classmethod(auto)
    return True


install()
