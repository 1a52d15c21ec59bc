"""`cache.atomic`: the one way a file others may read is written (a reader sees the old file or
the whole new one, never a part, and no temp file is left behind)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cache import atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".incomplete"))


def test_a_writer_that_needs_a_file_name_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    with atomic.replacing(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        code = f"open({str(tmp)!r}, 'wb').write(b'new')"
        subprocess.run([sys.executable, "-c", code], check=True)
    assert target.read_bytes() == b"new"
    assert leftovers(target.parent) == []


def test_a_failed_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(subprocess.CalledProcessError), atomic.replacing(target) as tmp:
        code = f"open({str(tmp)!r}, 'wb').write(b'half'); raise SystemExit(1)"
        subprocess.run([sys.executable, "-c", code], check=True)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_write_text_is_replacing_with_text(tmp_path: Path) -> None:
    target = atomic.write_text(tmp_path / "a.json", "{}", durable=True)
    assert target.read_text() == "{}" and leftovers(tmp_path) == []
