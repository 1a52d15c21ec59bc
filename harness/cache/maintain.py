"""`verify` and `clean-cache`: checking what the cache holds, and removing it without taking
anything from a process that is using it.

clean-cache takes each entry's lock (the one every writer holds) and skips, or with `wait`
waits for, the entries another process is writing, naming each. It never removes a build folder
wholesale: only the files of entries it holds the lock of, and files no entry owns; the folder
itself goes only once empty. A writer creates its lock file before anything in the build folder,
so listing the folder before the lock files sees the owner of every file it lists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import hashes, root, treefiles
from harness.cache.store import Cache, Entry, safe_name, stem
from harness.errors import CacheBusy, ConfigError, IntegrityError

log = logging.getLogger(__name__)


def check(cache: Cache, entry: Entry, marker: dict[str, Any]) -> str | None:
    """Re-hash one archive against its marker and its tree against the record of its files:
    None when good, else what is wrong."""
    if not root.inside(cache.root, entry.folder):
        return (
            f"{entry.folder.name} leads outside the cache root (to "
            f"{os.path.realpath(entry.folder)}); left alone: remove that link yourself"
        )
    if not marker.get("digest"):
        return "ready-marker unreadable"
    if not entry.archive.is_file() or entry.archive.is_symlink():
        return "archive missing"
    if not entry.tree.is_dir():
        return "extracted tree missing"
    recorded = str(marker.get("digest", ""))
    try:
        algo = hashes.algorithm(recorded)
        actual = hashes.file_digest(entry.archive, algo)
        if not hashes.same(actual, recorded):
            return f"digest {actual} != recorded {recorded}"
    except IntegrityError:
        return f"marker holds a malformed digest {recorded!r}"
    if not marker.get("files_digest") or not entry.files.exists():
        return "no record of the extracted files (cached by an earlier version)"
    try:
        files = treefiles.load(entry.files, str(marker["files_digest"]))
    except IntegrityError as err:
        return str(err)
    wrong = treefiles.problems(entry.tree, files)
    return f"extracted tree: {'; '.join(wrong)}" if wrong else None


@dataclass
class Cleaned:
    """What clean-cache removed, and the entries it left because another process was using them."""

    removed: list[Path] = field(default_factory=list)
    in_use: list[Path] = field(default_factory=list)


def clean(cache: Cache, build: str | None = None, *, wait: bool = False) -> Cleaned:
    """Remove one build's folder, or every build; entries in use are skipped (or waited for)."""
    if build is not None:
        check_name(build)
    cache.claim()
    root.require_tag(cache.root)
    out = Cleaned()
    releases = cache.releases
    if not os.path.lexists(releases):
        return out
    if releases.is_symlink():  # a link is removed as a link; what it points to is not ours
        root.remove(cache.root, releases)
        out.removed.append(releases)
        return out
    folders = [releases / build] if build else sorted(releases.iterdir())
    for folder in folders:
        if not os.path.lexists(folder):
            continue
        if folder.is_symlink() or not folder.is_dir() or not _safe(folder.name):
            root.remove(cache.root, folder)  # no writer ever uses a name we would refuse
            out.removed.append(folder)
            continue
        _clean_build(cache, folder, wait, out)
    if build is None and _rmdir(releases):
        out.removed = [releases]
    return out


def check_name(release: str) -> None:
    """A release named on the command line becomes a folder to delete: plain names only."""
    if not release.strip():
        raise ConfigError("clean-cache: empty release name (omit it to remove every release)")
    try:
        safe_name(release, "release name")
    except IntegrityError as err:
        raise ConfigError(f"clean-cache: {err}") from err


def _clean_build(cache: Cache, folder: Path, wait: bool, out: Cleaned) -> None:
    children = sorted(os.listdir(folder))
    locks = cache.root / "locks" / folder.name
    names = {p.name[: -len(".lock")] for p in locks.glob("*.lock")} if locks.is_dir() else set()
    names |= {c[: -len(".ready.json")] for c in children if c.endswith(".ready.json")}
    names |= {c for c in children if c.endswith((".zip", ".tar.gz", ".tgz"))}
    names = {n for n in names if _safe(n)}
    busy: set[str] = set()
    removed: list[Path] = []
    for name in sorted(names):
        entry = cache.entry(folder.name, name)
        lock = root.try_lock(entry.lock, 0)
        if lock is None and wait:
            log.warning("waiting for lock on %s (up to %g s)", entry.lock, cache.lock_timeout)
            lock = root.try_lock(entry.lock, cache.lock_timeout)
        if lock is None:
            busy.add(name)
            out.in_use.append(entry.archive)
            log.warning(
                "%s/%s is in use by another process: %s",
                folder.name,
                name,
                "still locked after the wait" if wait else "skipped (clean-cache --wait waits)",
            )
            continue
        try:
            for child in sorted(os.listdir(folder)):
                if _owns(name, child) and root.remove(cache.root, folder / child):
                    removed.append(folder / child)
        finally:
            lock.release()
    for child in children:  # files no entry owns: earlier versions' lock files, stray junk
        if not any(_owns(n, child) for n in names) and root.remove(cache.root, folder / child):
            removed.append(folder / child)
    if not busy and _rmdir(folder):
        out.removed.append(folder)
    else:
        out.removed += [p for p in removed if p.name in names]


def _owns(name: str, child: str) -> bool:
    """Is `child` (a file or folder in the build folder) part of the entry `name`: its archive,
    marker, record, tree, or a temp file of any of them."""
    bare = child.lstrip(".")
    return any(bare == s or bare.startswith(f"{s}.") for s in (name, stem(name)))


def _safe(name: str) -> bool:
    try:
        safe_name(name)
    except IntegrityError:
        return False
    return True


def _rmdir(folder: Path) -> bool:
    """Remove a folder only when empty: a writer may have just started in it."""
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def wait_error(in_use: list[Path], timeout: float) -> CacheBusy:
    first = in_use[0]
    return CacheBusy(
        f"{first.parent.name}/{first.name}: still in use by another process after {timeout:g} s"
        + (f" (and {len(in_use) - 1} more)" if len(in_use) > 1 else "")
        + "; nothing of it was removed"
    )
