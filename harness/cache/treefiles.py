"""A record of every entry of an extracted tree: each file's sha256 and size, each link's target.

Written (before the ready-marker) when an archive is extracted, so that a tree changed after
extraction (a patched `libllama.so`, a file added where ggml looks for backends, a file that became
a link) is seen by `verify` and before a library is loaded, not trusted because its archive is fine.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from harness.cache import atomic, hashes
from harness.errors import IntegrityError

FORMAT = 1
# posix path relative to the tree → {digest, size} | {link} | {dir}
Files = dict[str, dict[str, Any]]


def record(tree: Path, *, hashing: bool = True) -> Files:
    """Walk without following links; sha256 every regular file (names only without `hashing`)."""
    files: Files = {}
    for folder, dirs, names in os.walk(tree):
        dirs.sort()
        for name in sorted(dirs + names):
            path = Path(folder, name)
            files[path.relative_to(tree).as_posix()] = _describe(path) if hashing else {}
    return files


def _describe(path: Path) -> dict[str, Any]:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return {"link": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return {"dir": True}
    if stat.S_ISREG(st.st_mode):
        return {"digest": hashes.file_digest(path), "size": st.st_size}
    return {"special": stat.S_IFMT(st.st_mode)}


def problems(tree: Path, files: Files, folder: str | None = None, limit: int = 3) -> list[str]:
    """What differs between the tree on disk and its record (the first `limit` differences).

    `folder` (relative to the tree) restricts the comparison to the entries directly in it: the
    libraries about to be loaded, and anything added where ggml looks for backends."""
    if tree.is_symlink() or not tree.is_dir():
        return [f"{tree.name}: the extracted tree is missing or is not a folder"]
    if folder is None:
        wanted, on_disk = files, set(record(tree, hashing=False))
    else:
        folder = Path(folder).as_posix()
        wanted = {p: d for p, d in files.items() if _parent(p) == folder}
        base = tree / folder
        if base.is_symlink() or not base.is_dir():
            return [f"{folder}: missing or not a folder"]
        on_disk = {_join(folder, child) for child in os.listdir(base)}
    found: list[str] = []
    for rel in sorted(on_disk | set(wanted)):
        if len(found) >= limit:
            break
        expected = wanted.get(rel)
        if expected is None:
            found.append(f"{rel}: not part of the archive (added after extraction)")
            continue
        try:
            actual = _describe(tree / rel)
        except FileNotFoundError:
            found.append(f"{rel}: missing")
            continue
        if actual != expected:
            found.append(f"{rel}: {_difference(expected, actual)}")
    return found


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0] or "."


def _join(folder: str, name: str) -> str:
    return name if folder == "." else f"{folder}/{name}"


def _difference(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    if "digest" in expected and "digest" in actual:
        return f"changed since extraction ({actual['digest']}, recorded {expected['digest']})"
    if "link" in expected and "link" in actual:
        return f"link now to {actual['link']!r}, recorded {expected['link']!r}"
    kinds = {"digest": "a file", "link": "a link", "dir": "a folder", "special": "a special file"}
    was = next((v for k, v in kinds.items() if k in expected), "?")
    now = next((v for k, v in kinds.items() if k in actual), "?")
    return f"is now {now}, was {was}"


def save(path: Path, tree_name: str, files: Files) -> str:
    """The record as canonical JSON bytes; returns its digest (kept in the ready-marker)."""
    text = json.dumps({"format": FORMAT, "tree": tree_name, "files": files}, indent=0)
    atomic.write_text(path, text, durable=True)
    return hashes.file_digest(path)


def load(path: Path, digest: str | None) -> Files:
    """The recorded files; IntegrityError when the record is missing, unreadable or not the one
    the marker names."""
    try:
        if digest and not hashes.same(hashes.file_digest(path), digest):
            raise IntegrityError(f"{path.name}: the record of extracted files was changed")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise IntegrityError(f"{path.name}: the record of extracted files is unreadable") from err
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or data.get("format") != FORMAT:
        raise IntegrityError(f"{path.name}: the record of extracted files is unreadable")
    return files
