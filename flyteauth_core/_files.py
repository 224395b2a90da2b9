"""Reading a config file's text: one place, shared by the config loader and the trust records."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def read_config_text(path: Path) -> str:
    """The file's UTF-8 text; a ``ConfigError`` naming the file otherwise."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"Cannot read config file {str(path)!r} ({reason})") from None
