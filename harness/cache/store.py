"""The on-disk cache: one folder per build, one lock per asset, a ready-marker written last.

Layout under the cache root:
    api/                                  ETag cache of API answers (sources)
    releases/<build>/<asset>              the verified archive
    releases/<build>/<asset>.ready.json   marker: digest, size, source, time (written last)
    releases/<build>/<asset>.lock         filelock; only avoids duplicate work
    releases/<build>/<asset stem>/        the extracted tree

Correctness never rests on the lock (flock can silently succeed on NFS): every writer uses its own
`<asset>.<uuid8>.incomplete` temp file and `os.replace`s it into place, and a cell counts as cached
only when its marker exists, which is written after everything else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import filelock
import platformdirs

from harness.cache import atomic, hashes
from harness.cache.extract import archive_type, safe_extract
from harness.cache.want import Fetcher, Want
from harness.config.matrix import VERIFY_POLICIES as POLICIES
from harness.errors import ConfigError, DigestMismatch, DigestMissing, IntegrityError

log = logging.getLogger(__name__)

ENV_CACHE = "LLAMA_HARNESS_CACHE"
LOCK_WAIT_S = 3600.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@=-]{0,200}")


def default_root(override: str | Path | None = None) -> Path:
    chosen = override or os.environ.get(ENV_CACHE) or platformdirs.user_cache_dir("llama-harness")
    return Path(chosen).expanduser().resolve()


def stem(asset_name: str) -> str:
    for ext in (".tar.gz", ".tgz", ".zip"):
        if asset_name.endswith(ext):
            return asset_name[: -len(ext)]
    return asset_name


@dataclass(frozen=True)
class Entry:
    """Where one asset of one build lives in the cache."""

    folder: Path
    name: str

    @property
    def archive(self) -> Path:
        return self.folder / self.name

    @property
    def marker(self) -> Path:
        return self.folder / f"{self.name}.ready.json"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    @property
    def tree(self) -> Path:
        return self.folder / stem(self.name)

    def read_marker(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Stored:
    """One provisioned asset, as recorded in its marker."""

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
    cached: bool = False

    def to_marker(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data


class Cache:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = default_root(root)

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe.{uuid.uuid4().hex[:8]}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise ConfigError(
                f"cache folder {self.root} is not usable ({err.strerror or err}); "
                "choose another with --cache-dir or LLAMA_HARNESS_CACHE"
            ) from err

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def entry(self, build: str, name: str) -> Entry:
        """Names come from a server: only plain file names may become paths in the cache."""
        for part in (build, name):
            if not _SAFE_NAME.fullmatch(part) or part.startswith("."):
                raise IntegrityError(f"refusing unsafe asset name {build!r}/{name!r}")
        return Entry(self.releases / build, name)

    def lookup(self, want: Want) -> Stored | None:
        """A warm hit: marker present and consistent. No hashing, no network."""
        entry = self.entry(want.build, want.name)
        marker = entry.read_marker()
        if not marker or not entry.archive.is_file() or not entry.tree.is_dir():
            return None
        if (
            want.digest
            and marker.get("expected_digest")
            and not _same(marker["expected_digest"], want.digest)
        ):
            log.info("%s: the source now publishes another digest; fetching again", want.name)
            return None
        try:
            return Stored(**marker, cached=True)
        except TypeError:
            return None

    def ensure(self, want: Want, fetch: Fetcher, policy: str = "if-available") -> Stored:
        if policy not in POLICIES:
            raise ConfigError(f"verify policy {policy!r} is not one of {', '.join(POLICIES)}")
        hit = self.lookup(want)
        if hit:
            return hit
        entry = self.entry(want.build, want.name)
        entry.folder.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(entry.lock), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.warning("waiting for lock on %s", entry.lock)
            lock.acquire(timeout=LOCK_WAIT_S)
        try:
            hit = self.lookup(want)  # someone else finished it while we waited
            if hit:
                return hit
            _remove_leftovers(entry)
            return self._provision(entry, want, fetch, policy)
        finally:
            lock.release()

    def _provision(self, entry: Entry, want: Want, fetch: Fetcher, policy: str) -> Stored:
        if want.digest is None and policy == "required":
            raise DigestMissing(
                f"{want.name}: the source publishes no digest and verify is 'required'"
            )
        checking = policy != "off" and want.digest is not None
        algo = hashes.algorithm(want.digest) if checking else "sha256"
        # Drop whatever an earlier provision left, so a failure below leaves nothing behind;
        # an archive that a killed run already verified and renamed into place is kept.
        entry.marker.unlink(missing_ok=True)
        shutil.rmtree(entry.tree, ignore_errors=True)
        reused = self._reusable(entry, want, algo) if checking else None
        if reused:
            size, digest = reused
        else:
            entry.archive.unlink(missing_ok=True)
            size, digest = self._download(entry, want, fetch, policy, algo, checking)
        try:
            safe_extract(entry.archive, entry.tree, kind=archive_type(entry.name))
        except BaseException:
            entry.archive.unlink(missing_ok=True)
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
        )
        _write_json_atomic(entry.marker, stored.to_marker())
        return stored

    @staticmethod
    def _reusable(entry: Entry, want: Want, algo: str) -> tuple[int, str] | None:
        if not (want.digest and entry.archive.is_file()):
            return None
        digest = hashes.file_digest(entry.archive, algo)
        if not _same(digest, want.digest):
            return None
        log.info("%s: reusing the verified archive a previous run left", want.name)
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
                with tmp.open("wb") as out:
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

    # -- maintenance ------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[Entry, dict[str, Any]]]:
        if not self.releases.is_dir():
            return
        for marker in sorted(self.releases.glob("*/*.ready.json")):
            entry = Entry(marker.parent, marker.name[: -len(".ready.json")])
            yield entry, entry.read_marker() or {}  # an unreadable marker is itself a fault

    def check(self, entry: Entry, marker: dict[str, Any]) -> str | None:
        """Re-hash one archive against its marker: None when good, else what is wrong."""
        if not marker.get("digest"):
            return "ready-marker unreadable"
        if not entry.archive.is_file():
            return "archive missing"
        if not entry.tree.is_dir():
            return "extracted tree missing"
        recorded = str(marker.get("digest", ""))
        try:
            algo = hashes.algorithm(recorded)
        except IntegrityError:
            return f"marker holds a malformed digest {recorded!r}"
        actual = hashes.file_digest(entry.archive, algo)
        return None if _same(actual, recorded) else f"digest {actual} != recorded {recorded}"

    def invalidate(self, entry: Entry) -> None:
        """Forget one asset (marker first, so no reader ever sees a half-removed entry)."""
        entry.marker.unlink(missing_ok=True)
        entry.archive.unlink(missing_ok=True)
        shutil.rmtree(entry.tree, ignore_errors=True)

    def clean(self, build: str | None = None) -> list[Path]:
        targets = [self.releases / build] if build else [self.releases]
        removed = []
        for target in targets:
            if target.exists():
                shutil.rmtree(target)
                removed.append(target)
        return removed

    def builds(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir())


def _same(a: str, b: str) -> bool:
    try:
        return hashes.same(a, b)
    except IntegrityError:
        return False


def _remove_leftovers(entry: Entry) -> None:
    """Under the lock, any temp file of this asset belongs to a dead process (kill -9)."""
    for leftover in entry.folder.glob(f"{entry.name}.*.incomplete"):
        log.info("removing leftover %s", leftover.name)
        leftover.unlink(missing_ok=True)
    for leftover in entry.folder.glob(f".{entry.tree.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, json.dumps(data, indent=1), durable=True)
