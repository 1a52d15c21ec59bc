"""The on-disk cache: one folder per build, one lock per asset, a ready-marker written last.

Layout under the cache root:
    CACHEDIR.TAG                          marks the folder as ours (nothing is deleted without it)
    api/                                  ETag cache of API answers (sources)
    locks/<build>/<asset>.lock            filelock, taken by every writer, clean-cache and repair
    releases/<build>/<asset>              the verified archive
    releases/<build>/<asset>.files.json   every extracted file's sha256 (written before the marker)
    releases/<build>/<asset>.ready.json   marker: digests, size, source, paths relative to the root
    releases/<build>/<asset stem>/        the extracted tree

Correctness never rests on the lock alone (flock can silently succeed on NFS): every writer uses
its own `<asset>.<uuid8>.incomplete` temp file and `os.replace`s it into place, and a cell counts as
cached only when its marker exists, which is written after everything else. Locks live outside the
build folders, and are never deleted, so that a lock file is one inode for as long as anyone
waits on it and `clean-cache` can remove a whole build folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import platformdirs

from harness.cache import atomic, hashes, root, treefiles
from harness.cache.extract import archive_type, safe_extract, swap_into_place
from harness.cache.want import Fetcher, Want
from harness.config.matrix import VERIFY_POLICIES as POLICIES
from harness.errors import ConfigError, DigestMismatch, DigestMissing, IntegrityError

log = logging.getLogger(__name__)

ENV_CACHE = "LLAMA_HARNESS_CACHE"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@=-]{0,200}")


def default_root(override: str | Path | None = None) -> Path:
    chosen = override or os.environ.get(ENV_CACHE) or platformdirs.user_cache_dir("llama-harness")
    return root.resolve(chosen)


def stem(asset_name: str) -> str:
    for ext in (".tar.gz", ".tgz", ".zip"):
        if asset_name.endswith(ext):
            return asset_name[: -len(ext)]
    return asset_name


def safe_name(part: str, what: str = "name") -> str:
    """Names come from a server or the command line: only plain file names become paths."""
    if not _SAFE_NAME.fullmatch(part) or part.startswith("."):
        raise IntegrityError(f"refusing unsafe {what} {part!r}")
    return part


@dataclass(frozen=True)
class Entry:
    """Where one asset of one build lives in the cache."""

    folder: Path
    name: str
    lock: Path

    @property
    def archive(self) -> Path:
        return self.folder / self.name

    @property
    def marker(self) -> Path:
        return self.folder / f"{self.name}.ready.json"

    @property
    def files(self) -> Path:
        return self.folder / f"{self.name}.files.json"

    @property
    def tree(self) -> Path:
        return self.folder / stem(self.name)

    def read_marker(self) -> dict[str, Any] | None:
        return _read_json(self.marker)


@dataclass(frozen=True)
class Stored:
    """One provisioned asset, as recorded in its marker (paths absolute here, relative on disk)."""

    asset: str
    build: str
    digest: str  # of the bytes we hold, `algo:hex`
    expected_digest: str | None  # what the source published (None: it published none)
    size: int
    source: str
    url: str
    verify: str  # "verified" | "no-digest" | "off"
    archive: str
    path: str  # the extracted tree
    time: str
    files_digest: str = ""  # of <asset>.files.json, the record of the extracted tree
    cached: bool = False

    def to_marker(self, cache_root: Path) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("cached")
        for key in ("archive", "path"):  # a cache restored at another path keeps working
            data[key] = Path(data[key]).relative_to(cache_root).as_posix()
        return data

    @classmethod
    def from_marker(cls, data: dict[str, Any], entry: Entry) -> Stored | None:
        """Paths come from where the entry is now, whatever the marker holds (markers of earlier
        versions hold absolute paths, possibly of another machine)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"cached", "archive", "path"}
        try:
            return cls(
                **{k: v for k, v in data.items() if k in known},
                archive=str(entry.archive),
                path=str(entry.tree),
                cached=True,
            )
        except TypeError:
            return None


class Cache:
    def __init__(self, root_dir: str | Path | None = None, *, lock_timeout: float | None = None):
        self.root = default_root(root_dir)
        self._ours_by_name = not (root_dir or os.environ.get(ENV_CACHE))
        self.lock_timeout = root.lock_timeout(lock_timeout)
        self._claimed = False

    def claim(self) -> None:
        """Tag the root as a harness cache where it is one (see cache/root.py)."""
        if not self._claimed:
            root.claim(self.root, ours_by_name=self._ours_by_name)
            self._claimed = True

    def check_writable(self) -> None:
        self.claim()
        for child in self.root.iterdir():
            if child.is_symlink() and not root.inside(self.root, child):
                raise ConfigError(
                    f"{child} leads outside the cache folder (to {os.path.realpath(child)}); "
                    "nothing is written through it: remove the link, or point --cache-dir at "
                    "the other disk"
                )
        try:
            probe = self.root / f".probe.{uuid.uuid4().hex[:8]}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise root.place_error(err, "write", self.root) from err
            raise ConfigError(
                f"cache folder {self.root} is not usable ({err.strerror or err}); "
                "choose another with --cache-dir or LLAMA_HARNESS_CACHE"
            ) from err

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def entry(self, build: str, name: str) -> Entry:
        safe_name(build, "build name")
        safe_name(name, "asset name")
        return Entry(self.releases / build, name, self.root / "locks" / build / f"{name}.lock")

    def lookup(self, want: Want) -> Stored | None:
        """A warm hit: marker, archive, tree and its record present. No hashing, no network."""
        entry = self.entry(want.build, want.name)
        marker = entry.read_marker()
        if not marker or not entry.archive.is_file() or not entry.tree.is_dir():
            return None
        if not marker.get("files_digest") or not entry.files.is_file():
            return None  # an earlier version's entry: re-extracted once (no download) to record it
        if not root.inside(self.root, entry.folder):
            return None  # a build folder linked out of the cache is not ours to hand out
        if (
            want.digest
            and marker.get("expected_digest")
            and not _same(marker["expected_digest"], want.digest)
        ):
            log.info("%s: the source now publishes another digest; fetching again", want.name)
            return None
        return Stored.from_marker(marker, entry)

    def ensure(
        self, want: Want, fetch: Fetcher, policy: str = "if-available", *, force: bool = False
    ) -> Stored:
        """The asset, verified and extracted: from the cache, else fetched. `force` provisions it
        again even when the cache holds it (repair), reusing an archive that still verifies."""
        if policy not in POLICIES:
            raise ConfigError(f"verify policy {policy!r} is not one of {', '.join(POLICIES)}")
        hit = None if force else self.lookup(want)
        if hit:
            return hit
        entry = self.entry(want.build, want.name)
        self.claim()
        root.require_inside(self.root, entry.lock.parent, "write")
        with root.locked(entry.lock, self.lock_timeout, want.name):
            hit = None if force else self.lookup(want)  # someone else finished it while we waited
            if hit:
                return hit
            try:
                return self._provision(entry, want, fetch, policy)
            except OSError as err:
                if root.is_place_error(err):
                    raise root.place_error(err, "write", entry.folder) from err
                raise

    def _provision(self, entry: Entry, want: Want, fetch: Fetcher, policy: str) -> Stored:
        if want.digest is None and policy == "required":
            raise DigestMissing(
                f"{want.name}: the source publishes no digest and verify is 'required'"
            )
        root.require_inside(self.root, entry.folder, "write")
        entry.folder.mkdir(parents=True, exist_ok=True)
        checking = policy != "off" and want.digest is not None
        algo = hashes.algorithm(want.digest) if checking else "sha256"
        old = entry.read_marker()
        self._remove_leftovers(entry)
        # An archive that verifies (a killed run renamed it into place, or only the tree is
        # wrong) is kept; anything else goes first, so a failure below leaves nothing behind.
        reused = self._reusable(entry, want, algo, checking, old)
        if reused:
            size, digest = reused
        else:
            for path in (entry.marker, entry.files, entry.archive):
                root.remove(self.root, path)
            size, digest = self._download(entry, want, fetch, policy, algo, checking)
        try:
            files = self._extract(entry)
            files_digest = treefiles.save(entry.files, entry.tree.name, files)
        except BaseException:
            for path in (entry.marker, entry.files, entry.archive):
                root.remove(self.root, path)
            raise
        stored = Stored(
            asset=want.name,
            build=want.build,
            digest=digest,
            expected_digest=want.digest,
            size=size,
            source=want.source,
            url=want.url,
            verify="verified" if checking else ("off" if policy == "off" else "no-digest"),
            archive=str(entry.archive),
            path=str(entry.tree),
            time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            files_digest=files_digest,
        )
        _write_json_atomic(entry.marker, stored.to_marker(self.root))
        return stored

    def _extract(self, entry: Entry) -> treefiles.Files:
        """Extract beside the tree, record it, and keep a tree already in place when it is
        identical (readers of it are not disturbed); otherwise the marker goes, then the swap."""
        fresh = entry.folder / f".{entry.tree.name}.{uuid.uuid4().hex[:8]}.new"
        try:
            safe_extract(entry.archive, fresh, kind=archive_type(entry.name))
            files = treefiles.record(fresh)
            if treefiles.problems(entry.tree, files, limit=1):
                root.remove(self.root, entry.marker)
                swap_into_place(fresh, entry.tree)
            else:
                log.info("%s: the extracted tree in place is intact; kept", entry.name)
        finally:
            root.remove(self.root, fresh)
        return files

    @staticmethod
    def _reusable(
        entry: Entry, want: Want, algo: str, checking: bool, old: dict[str, Any] | None
    ) -> tuple[int, str] | None:
        expected = want.digest if checking else (old or {}).get("digest")
        if not isinstance(expected, str) or entry.archive.is_symlink():
            return None
        if not entry.archive.is_file() or hashes.algorithm(expected) != algo:
            return None
        digest = hashes.file_digest(entry.archive, algo)
        if not _same(digest, expected):
            return None
        log.info("%s: reusing the verified archive already in the cache", want.name)
        return entry.archive.stat().st_size, digest

    @staticmethod
    def _download(
        entry: Entry, want: Want, fetch: Fetcher, policy: str, algo: str, checking: bool
    ) -> tuple[int, str]:
        """Fetch into a process-unique temp file; rename into place only when it checks out.
        A mismatch is fetched once more, then refused with nothing kept."""
        for attempt in (1, 2):
            tmp = entry.folder / f"{entry.name}.{uuid.uuid4().hex[:8]}.incomplete"
            try:
                with _create(tmp) as out:
                    size, digest = fetch(out, algo)
                    out.flush()
                    os.fsync(out.fileno())
                problem = None
                if checking and want.digest and not _same(digest, want.digest):
                    problem = f"digest mismatch: expected {want.digest}, got {digest}"
                elif policy != "off" and want.size and size != want.size:
                    problem = f"size mismatch: expected {want.size} bytes, got {size}"
                if problem is None:
                    os.replace(tmp, entry.archive)
                    return size, digest
                if attempt == 2:
                    raise DigestMismatch(
                        f"{want.name}: {problem} (downloaded twice from {want.source}; "
                        "nothing was kept)"
                    )
                log.warning("%s: %s; downloading once more", want.name, problem)
            finally:
                tmp.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _remove_leftovers(self, entry: Entry) -> None:
        """Under the lock, any temp file of this asset belongs to a dead process (kill -9)."""
        temps = (f"{entry.name}.*.incomplete", f".{entry.tree.name}.*", f"..{entry.tree.name}.*")
        for pattern in temps:
            for leftover in entry.folder.glob(pattern):
                log.info("removing leftover %s", leftover.name)
                root.remove(self.root, leftover)

    # -- maintenance ------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[Entry, dict[str, Any]]]:
        if not self.releases.is_dir():
            return
        for marker in sorted(self.releases.glob("*/*.ready.json")):
            name = marker.name[: -len(".ready.json")]
            try:
                entry = self.entry(marker.parent.name, name)
            except IntegrityError:
                continue  # not a name we would ever have written
            yield entry, entry.read_marker() or {}  # an unreadable marker is itself a fault

    def builds(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir())


def check_before_load(tree: Path, libdir: Path) -> None:
    """Raise IntegrityError unless every entry of `libdir` (the libraries the loader preloads and
    the folder ggml scans for backends) is exactly what was extracted into `tree`."""
    tree, libdir = Path(tree), Path(libdir)
    folder = tree.parent
    try:
        rel = libdir.relative_to(tree).as_posix()
    except ValueError as err:
        raise IntegrityError(f"{libdir} is not inside the extracted tree {tree}") from err
    for marker_path in folder.glob("*.ready.json"):
        name = marker_path.name[: -len(".ready.json")]
        if stem(name) != tree.name:
            continue
        data = _read_json(marker_path) or {}
        if not data.get("files_digest"):
            break
        files = treefiles.load(folder / f"{name}.files.json", str(data["files_digest"]))
        wrong = treefiles.problems(tree, files, folder=rel)
        if wrong:
            raise IntegrityError(
                f"{folder.name}/{tree.name}: {'; '.join(wrong)}; not loading it "
                "(`llama-harness verify --repair` extracts it again)"
            )
        return
    raise IntegrityError(
        f"{folder.name}/{tree.name}: no record of its extracted files; not loading it "
        "(`llama-harness verify --repair` extracts it again)"
    )


def _create(path: Path) -> BinaryIO:
    """A new file in an entry folder that clean-cache may be removing right now (it removes
    empty build folders): make the folder again and retry, the race is a few microseconds."""
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return cast(BinaryIO, path.open("xb"))
        except FileNotFoundError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _same(a: str, b: str) -> bool:
    try:
        return hashes.same(a, b)
    except IntegrityError:
        return False


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, json.dumps(data, indent=1), durable=True)
