"""Unpack a release archive (zip or tar.gz) without trusting it.

Everything is checked before the first byte is written: each member's path, type and declared
size, every symlink resolved the way the kernel would (chains included) inside a virtual tree,
and the archive's totals (size, zip-bomb ratio, member count). Only then is anything unpacked,
into a fresh temp folder beside the target that is renamed into place when complete, so a
failure leaves nothing behind and the target as it was. Symlinks that stay inside the tree are
kept: the tar.gz era ships `libllama.so -> libllama.so.0 -> libllama.so.0.0.<N>`.
"""

from __future__ import annotations

import copy
import gzip
import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.cache.root import is_place_error, place_error
from harness.errors import UnsafeArchive

__all__ = ["DEFAULT_LIMITS", "Limits", "archive_type", "safe_extract", "swap_into_place"]

# tarfile's extraction filters arrived in 3.10.12 / 3.11.4; without them our own checks stand alone.
_HAS_TAR_FILTER = hasattr(tarfile, "data_filter")
_CHUNK = 1024 * 1024
_MAX_LINK_TARGET = 4096
_MAX_HOPS = 40  # the kernel's own symlink-chain limit
_DRIVE = re.compile(r"^[A-Za-z]:")
_CORRUPT = (gzip.BadGzipFile, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may declare; real releases stay far below them."""

    max_total_bytes: int = 8 * 1024**3  # declared uncompressed total
    max_ratio: float = 200.0  # declared uncompressed / compressed archive size
    max_members: int = 100_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class _Entry:
    """One member as we will write it: normalised path parts and what it is."""

    parts: tuple[str, ...]
    kind: str  # file | dir | symlink | hardlink
    link: str = ""  # symlink target ('/'-separated) or hard-link member path


def archive_type(path_or_name: str | Path) -> str:
    """Decide the format from the asset name, as the release lists it."""
    name = Path(path_or_name).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    raise UnsafeArchive(f"{Path(path_or_name).name}: unsupported archive type")


@dataclass
class _Job:
    """State shared by the checks: names for messages, running totals against the limits."""

    name: str
    root: Path
    limits: Limits
    compressed: int = 1  # archive bytes, set once it is opened
    member: str | None = None
    count: int = 0
    total: int = 0

    def refuse(self, why: str, member: str | None = None) -> UnsafeArchive:
        where = member if member is not None else self.member
        return UnsafeArchive(f"{self.name}: {where}: {why}" if where else f"{self.name}: {why}")

    def account(self, size: int) -> None:
        """Checked per header, so a bomb is refused before its data is inflated."""
        lim = self.limits
        self.count += 1
        self.total += max(size, 0)
        if self.count > lim.max_members:
            raise self.refuse(f"more than {lim.max_members} members")
        if self.total > lim.max_total_bytes:
            raise self.refuse(f"declared size over {lim.max_total_bytes} bytes in total")
        if self.total > lim.max_ratio * self.compressed:
            raise self.refuse(
                f"declares {self.total} bytes from a {self.compressed}-byte archive "
                f"(ratio over {lim.max_ratio:g}: a zip bomb?)"
            )

    def parts(self, raw: str, what: str = "path") -> tuple[str, ...]:
        """Split on '/' and '\\' alike: Windows zips use backslashes, and a check that missed
        one would let `..\\..\\x` through on a Windows host."""
        name = raw.replace("\\", "/")
        if name.startswith("/") or _DRIVE.match(name):
            raise self.refuse(f"absolute {what} {raw!r}")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self.refuse(f"{what} {raw!r} leaves the archive ('..')")
        return parts

    def link(self, target: str) -> str:
        if not target or target.replace("\\", "/").startswith("/") or _DRIVE.match(target):
            raise self.refuse(f"symlink to absolute path {target!r}" if target else "empty symlink")
        return target.replace("\\", "/")


def _fold(parts: tuple[str, ...]) -> tuple[str, ...]:
    # macOS and Windows file systems ignore case: `A` and `a/x` may be the same folder there.
    return tuple(p.casefold() for p in parts)


def _resolve(job: _Job, entry: _Entry, links: dict[tuple[str, ...], str]) -> None:
    """Follow a symlink as the kernel would, substituting every link of the archive met on the
    way, and refuse it if any step climbs above the root or jumps to an absolute path."""
    resolved = list(_fold(entry.parts[:-1]))
    todo = list(reversed(entry.link.split("/")))
    hops = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not resolved:
                raise job.refuse(f"symlink to {entry.link!r} leaves the archive")
            resolved.pop()
            continue
        resolved.append(comp.casefold())
        target = links.get(tuple(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_HOPS:
                raise job.refuse("symlink loop")
            resolved.pop()
            todo.extend(reversed(target.split("/")))


def _check_plan(job: _Job, entries: list[_Entry]) -> None:
    """Checks that need the whole member list: duplicates, links, writes through links."""
    seen: dict[tuple[str, ...], _Entry] = {}
    links: dict[tuple[str, ...], str] = {}
    for e in entries:
        job.member = "/".join(e.parts)
        key = _fold(e.parts)
        prev = seen.get(key)
        if prev is not None and prev.parts != e.parts:
            raise job.refuse(
                f"differs only in case from {'/'.join(prev.parts)!r} "
                "(the two collide on macOS and Windows file systems)"
            )
        if prev is not None and not (prev.kind == e.kind and e.kind in ("file", "dir")):
            raise job.refuse(f"appears twice, as {prev.kind} and {e.kind}")
        if e.kind == "hardlink":
            linked = seen.get(_fold(job.parts(e.link, "hard link target")))
            if linked is None or linked.kind != "file":
                raise job.refuse(f"hard link to {e.link!r}, not an earlier regular file")
        seen[key] = e
        if e.kind == "symlink":
            links[key] = e.link
    for e in entries:
        job.member = "/".join(e.parts)
        key = _fold(e.parts)
        for i in range(1, len(key)):
            parent = seen.get(key[:i])
            if parent is not None and parent.kind != "dir":
                raise job.refuse(f"written through {parent.kind} {'/'.join(parent.parts)!r}")
        if e.kind == "symlink":
            _resolve(job, e, links)
    job.member = None


def _safe_mode(mode: int, is_dir: bool = False) -> int:
    """Keep the exec bits, drop setuid/setgid/sticky and group/other write, as tarfile's
    `data` filter does; the owner can always read and write."""
    return (mode & 0o755) | (0o700 if is_dir else 0o600)


def _inside(root_real: str, path: str | Path) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def _zip_entry(job: _Job, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Entry:
    job.account(info.file_size)
    if info.flag_bits & 0x1:
        raise job.refuse("encrypted member")
    parts = job.parts(info.filename)
    fmt = stat.S_IFMT(info.external_attr >> 16)  # Unix mode, when the zip was made on Unix
    if fmt == stat.S_IFLNK:
        if info.file_size > _MAX_LINK_TARGET:
            raise job.refuse("symlink target too long")
        raw = zf.read(info).decode("utf-8", "surrogateescape")
        return _Entry(parts, "symlink", job.link(raw))
    if fmt == stat.S_IFDIR or info.filename.endswith(("/", "\\")):
        return _Entry(parts, "dir")
    if fmt in (0, stat.S_IFREG):
        return _Entry(parts, "file")
    raise job.refuse(f"special file (mode {fmt:#o}) not allowed")


def _copy_member(job: _Job, src: IO[bytes], dst: Path, declared: int) -> None:
    """Stream one member, counting what actually comes out: the header may lie."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > declared:
                raise job.refuse(f"holds more than the {declared} bytes it declares")
            out.write(chunk)
    if written != declared:
        raise job.refuse(f"holds {written} bytes but declares {declared}")


def _extract_zip(job: _Job, archive: Path) -> None:
    root_real = os.path.realpath(job.root)
    with zipfile.ZipFile(archive) as zf:
        plan: list[tuple[zipfile.ZipInfo, _Entry]] = []
        for info in zf.infolist():
            job.member = info.filename
            entry = _zip_entry(job, zf, info)
            if entry.parts:
                plan.append((info, entry))
        _check_plan(job, [e for _, e in plan])
        # Links last: while files are written no folder in the tree is a link.
        for info, e in sorted(plan, key=lambda p: p[1].kind == "symlink"):
            job.member = info.filename
            dest = job.root.joinpath(*e.parts)
            parent = dest if e.kind == "dir" else dest.parent
            parent.mkdir(parents=True, exist_ok=True)
            if not _inside(root_real, parent):
                raise job.refuse("would be written outside the target")
            if e.kind == "symlink":
                os.symlink(e.link, dest)
            elif e.kind == "file":
                with zf.open(info) as src:
                    _copy_member(job, src, dest, info.file_size)
                os.chmod(dest, _safe_mode(info.external_attr >> 16 or 0o644))


def _tar_entry(job: _Job, ti: tarfile.TarInfo) -> _Entry:
    job.account(ti.size if ti.isreg() else 0)
    parts = job.parts(ti.name)
    if ti.isreg():
        return _Entry(parts, "file")
    if ti.isdir():
        return _Entry(parts, "dir")
    if ti.issym():
        return _Entry(parts, "symlink", job.link(ti.linkname))
    if ti.islnk():
        return _Entry(parts, "hardlink", "/".join(job.parts(ti.linkname, "hard link target")))
    what = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device"}
    raise job.refuse(f"special file ({what.get(ti.type, 'fifo' if ti.isfifo() else 'other')})")


def _check_tar_end(job: _Job, tar: tarfile.TarFile) -> None:
    """tarfile ends its member list quietly at a bad header past the first one: only zero
    padding may follow, or the list we checked is not the whole archive."""
    assert tar.fileobj is not None
    tar.fileobj.seek(tar.offset)
    rest = tar.fileobj.read(_CHUNK + 1)
    if len(rest) > _CHUNK or rest.strip(b"\0"):
        raise job.refuse("corrupt tar header, or data after the end of the archive", "")


def _extract_tar(job: _Job, archive: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        plan: list[tarfile.TarInfo] = []
        entries: list[_Entry] = []
        for ti in tar:  # headers are read lazily: limits trip before later data is inflated
            job.member = ti.name
            entry = _tar_entry(job, ti)
            if not entry.parts:
                continue
            # Extract exactly what was checked: normalised names, safe modes, our ownership.
            safe = copy.copy(ti)
            safe.name = "/".join(entry.parts)
            safe.linkname = entry.link
            safe.mode = _safe_mode(ti.mode, ti.isdir())
            safe.uid, safe.gid, safe.uname, safe.gname = 0, 0, "", ""  # chown only runs as root
            plan.append(safe)
            entries.append(entry)
        _check_tar_end(job, tar)
        _check_plan(job, entries)
        if _HAS_TAR_FILTER:  # tarfile's own checks too, where it has them
            tar.extractall(job.root, members=plan, numeric_owner=True, filter="data")
        else:
            tar.extractall(job.root, members=plan, numeric_owner=True)


def _check_tree(job: _Job) -> None:
    """After the fact, on the real file system: every link still resolves inside the tree."""
    root_real = os.path.realpath(job.root)
    for folder, dirs, files in os.walk(job.root):
        for path in (os.path.join(folder, name) for name in dirs + files):
            if os.path.islink(path) and not _inside(root_real, path):
                raise job.refuse("symlink resolves outside the target", path)


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished tree into place; an old target goes only once the new one is there."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


_EXTRACTORS: dict[str, Callable[[_Job, Path], None]] = {"zip": _extract_zip, "tar.gz": _extract_tar}


def safe_extract(
    archive: Path,
    target: Path,
    *,
    kind: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Path:
    """Extract `archive` to `target` (replaced if present) all or nothing; return `target`.

    Raises UnsafeArchive for anything refused or corrupt, CacheError when the folder cannot take it
    (a full disk, no permission), with temp files removed and `target` as it was.
    """
    archive, target = Path(archive), Path(target)
    kind = kind or archive_type(archive)
    extractor = _EXTRACTORS.get(kind)
    if extractor is None:
        raise UnsafeArchive(f"{archive.name}: unsupported archive type {kind!r}")
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    job = _Job(archive.name, tmp, limits)
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            job.compressed = max(archive.stat().st_size, 1)
            extractor(job, archive)
            _check_tree(job)
            swap_into_place(tmp, target)
        except _CORRUPT as err:
            raise job.refuse(f"corrupt or truncated archive: {err}") from err
        except OSError as err:
            if is_place_error(err):  # the disk or the folder, not the archive: exit 5, not 4
                raise place_error(err, f"extract {archive.name} into", target.parent) from err
            raise job.refuse(f"cannot extract: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
