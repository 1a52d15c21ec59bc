"""Per release: its own headers (and so its ABI), fetched once and cached beside its binaries.

    <cache>/headers/<build>/include/     llama.h and the ggml headers it includes
    <cache>/headers/<build>/api-<target>.json   the parsed ABI (functions, structs, enums)

Headers are not in the binary archives. They come from the release's GitHub source archive
(`tarball_url`), a mirror's `<tag>/source.tar.gz`, or the `node-llama-cpp@<version>` npm package's
`llama/gitRelease.bundle` (a git bundle of that llama.cpp tag); the cell's own source first.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import filelock

from harness.abi import Api, headers, parse_headers
from harness.cache import atomic
from harness.cache.store import Cache
from harness.config.matrix import Cell
from harness.errors import HarnessError, SourceError
from harness.provision import CellResult
from harness.sources.base import Release, Source
from harness.sources.npm import MAIN, NpmSource

log = logging.getLogger(__name__)

BUNDLE = "package/llama/gitRelease.bundle"


class Downloader(Protocol):
    """What fetching a release's headers needs of a downloader (`library.LibraryDownloader`,
    which sits above this layer and so is never imported here)."""

    cache: Cache

    def source_named(self, name: str) -> Source: ...

    def get_release(self, tag: str) -> Release: ...


def _from_tarball(dl: Downloader, res: CellResult, dest: Path, tmp: Path) -> Path:
    if res.rel is None or not res.source:
        raise SourceError(f"no release known for {res.build}: no source archive")
    archive = dl.source_named(res.source).source_archive(res.rel, tmp / "source.tar.gz")
    return headers.headers_from_source_tarball(archive, dest)


def _from_npm(dl: Downloader, res: CellResult, dest: Path, tmp: Path) -> Path:
    npm = dl.source_named("npm")
    if not isinstance(npm, NpmSource) or not res.build:
        raise SourceError(f"npm cannot give the headers of {res.build}")
    version = npm.version_for(res.build)
    tgz = npm.pack(f"{MAIN}@{version}", tmp)
    bundle = tmp / "gitRelease.bundle"
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.extractfile(BUNDLE)
            if member is None:
                raise SourceError(f"{MAIN}@{version} has no {BUNDLE}")
            with bundle.open("wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
    except KeyError as err:
        raise SourceError(f"{MAIN}@{version} has no {BUNDLE}") from err
    except (tarfile.TarError, OSError) as err:
        raise SourceError(f"{MAIN}@{version}: unreadable package ({err})") from err
    return headers.headers_from_bundle(bundle, dest)


Getter = Callable[[Downloader, CellResult, Path, Path], Path]


def headers_dir(dl: Downloader, res: CellResult) -> Path:
    """The release's include folder, fetched on first use; the cell's own source first."""
    if not res.build:
        raise SourceError(f"{res.cell.release}: no build known, so no headers")
    root = dl.cache.root / "headers" / res.build
    include = root / "include"
    if (include / "llama.h").is_file():
        return include
    root.mkdir(parents=True, exist_ok=True)
    order: list[tuple[str, Getter]] = [("source archive", _from_tarball), ("npm", _from_npm)]
    if res.source == "npm":
        order.reverse()
    errors = []
    with filelock.FileLock(str(root / "headers.lock")):
        if (include / "llama.h").is_file():
            return include
        for what, get in order:
            with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
                try:
                    return get(dl, res, include, Path(tmp))
                except HarnessError as err:
                    log.info("headers of %s from %s: %s", res.build, what, err)
                    errors.append(f"{what}: {err}")
    raise SourceError(f"no headers for {res.build}: " + "; ".join(errors))


def api_for_release(dl: Downloader, tag: str) -> tuple[str, Api]:
    """(build, Api) of a release by tag, from the first source in the chain that knows it."""
    rel = dl.get_release(tag)
    if not rel.build:
        raise SourceError(f"release {tag!r} names no build")
    res = CellResult(Cell(tag, "*", "*", "*"), build=rel.build, source=rel.source, rel=rel)
    return rel.build, release_api(dl, res)


def release_api(dl: Downloader, res: CellResult, target: str | None = None) -> Api:
    """The release's ABI from its own llama.h (parsed once per target, then read from JSON)."""
    include = headers_dir(dl, res)
    cached = include.parent / f"api-{target or 'host'}.json"
    if cached.is_file():
        try:
            return Api.from_json(cached.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError):
            log.info("re-parsing %s: unreadable cached ABI", res.build)
    api = parse_headers(include, target=target)
    atomic.write_text(cached, api.to_json())
    return api
