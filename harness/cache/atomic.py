"""Whole-file writes that a reader (another process included) never sees half done: the one way
this package writes a file that others may read while it is written."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A process-unique temp path beside `path`, for writers that need a file name (a compiler's
    `-o`, a library that writes by path); it replaces `path` when the block ends, and is removed
    whatever happens. An exception in the block leaves `path` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, *, durable: bool = False) -> Path:
    """Write `text` to a process-unique temp file beside `path`, then `os.replace` it in.

    `durable` also fsyncs, for the records whose loss would cost a download (cache markers)."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    return path
