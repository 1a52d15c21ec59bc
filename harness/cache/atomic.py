"""Whole-file writes that a reader (another process included) never sees half done."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_text(path: Path, text: str, *, durable: bool = False) -> Path:
    """Write `text` to a process-unique temp file beside `path`, then `os.replace` it in.

    `durable` also fsyncs, for the records whose loss would cost a download (cache markers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
