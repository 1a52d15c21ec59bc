"""What a server said, read as untrusted: every field typed and bounded, every header quoted
short and printable. A wrong type is a ValueError that the source reports as a source error
(exit 3), never a TypeError deep in the pipeline (docs/security.md)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

DIGEST = re.compile(r"[a-z0-9]{2,16}:[0-9a-fA-F]{32,128}")


INVALID = object()


def json_or_invalid(raw: bytes) -> Any:
    """Parsed JSON, or INVALID (malformed, not UTF-8, or nested too deep for Python)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return INVALID


def text(item: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = item.get(key)
    if isinstance(value, str) and value:
        return value
    if optional and value is None:
        return None
    raise ValueError(f"{key} is {type(value).__name__} {_clip(repr(value))}, not text")


def size(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"size is {type(value).__name__} {_clip(repr(value))}")
    return value


def digest(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise ValueError(f"digest is {type(value).__name__} {_clip(repr(value))}")
    return value


def list_of_dicts(value: Any, key: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{key} is not a list of objects")
    return value


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(value: str) -> str:
    """A header value as we quote it: short and printable (it comes from the server)."""
    return _clip("".join(c if c.isprintable() else "?" for c in value[:200]), 40)


def reset_time(reset: str) -> str:
    if not (reset.isascii() and reset.isdigit() and len(reset) <= 12):
        return "at an unknown time"
    try:
        at = dt.datetime.fromtimestamp(int(reset), dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "at an unknown time"
    minutes = max(0, int((at - dt.datetime.now(dt.timezone.utc)).total_seconds() // 60))
    return f"at {at:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)"
