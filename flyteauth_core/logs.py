"""Warnings a user reads once per process, however many sessions or config loads repeat them.

A CLI invocation (or an SDK building several clients) may load the same config more than once; the same
"unknown key" warning printed twice before the real error buries the error.  The set of messages already
shown is process-wide on purpose: that is what "once per process" means.  It is reset in a forked
child only by inheritance (the child has seen what the parent printed).
"""

from __future__ import annotations

import logging
import threading

_SHOWN: set[str] = set()
_LOCK = threading.Lock()


def warn_once(logger: logging.Logger, message: str) -> None:
    """Log ``message`` at WARNING the first time this process sees it; later calls are DEBUG."""
    with _LOCK:
        first = message not in _SHOWN
        _SHOWN.add(message)
    logger.log(logging.WARNING if first else logging.DEBUG, "%s", message)
