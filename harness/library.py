"""The Python API, in the spirit of the Go library it grew from.

from harness import LibraryDownloader, clean_library_cache, load_library
dl = LibraryDownloader()                       # cache, API URL and token from the environment
rel = dl.get_latest_release()
result = dl.download(rel.tag)                  # this machine's asset, verified and extracted
print(result.stored.path)
lib = load_library("b10361")                   # this machine's build, loaded into THIS process
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from harness.cache import maintain, root
from harness.cache.maintain import Cleaned
from harness.cache.store import Cache, Entry, check_before_load
from harness.config.matrix import Cell
from harness.errors import AssetNotFound, ConfigError, HarnessError, SourceError
from harness.progress import Reporter
from harness.provision import CellResult, Provisioner, pick
from harness.sources import assets
from harness.sources.base import Asset, Release, Source, Want
from harness.sources.github import DEFAULT_API, GitHubSource

if TYPE_CHECKING:
    import requests

# requests (via sources.http), the mirror and npm sources are imported when first used: a warm
# `download` of pinned releases makes no request and should not pay ~50 ms to import them.

if TYPE_CHECKING:
    from harness.load.loader import Loaded, LogSink

log = logging.getLogger(__name__)
T = TypeVar("T")
BUILD = re.compile(r"b[0-9]+")

ENV_API_URL = "LLAMA_HARNESS_API_URL"
ENV_MIRROR = "LLAMA_HARNESS_MIRROR"
DEFAULT_REPO = "ggml-org/llama.cpp"


class LibraryDownloader:
    def __init__(
        self,
        cache_dir: str | Path | None = None,
        *,
        api_url: str | None = None,
        repo: str = DEFAULT_REPO,
        token: str | None = None,
        jobs: int = 8,
        verify: str = "if-available",
        progress: bool | str = False,  # or a mode of harness.progress: bars, lines, off
        sources: Sequence[str] = ("github",),
        mirror: str | None = None,
    ) -> None:
        self.cache = Cache(cache_dir)
        self.api_url = api_url or os.environ.get(ENV_API_URL) or DEFAULT_API
        self.repo = repo
        self.mirror = mirror or os.environ.get(ENV_MIRROR) or None
        self._token = token
        self._jobs = jobs
        self._sources: dict[str, Source] = {}
        self.sources = [self.source_named(name) for name in dict.fromkeys(sources)]
        self.progress = Reporter(progress)  # stages of `run` report through it too
        self.provisioner = Provisioner(
            self.cache, self.sources, jobs=jobs, policy=verify, bars=self.progress
        )

    @functools.cached_property
    def downloads(self) -> requests.Session:
        from harness.sources import http  # lazy: see the imports

        return http.download_session(pool=self._jobs)

    def source_named(self, name: str) -> Source:
        if name not in self._sources:
            if name == "github":
                self._sources[name] = GitHubSource(
                    self.cache.root,
                    self.api_url,
                    self.repo,
                    self._token,
                    lambda: self.downloads,
                    env_token=True,
                )
            elif name == "npm":
                from harness.sources.npm import NpmSource  # lazy: see the imports

                self._sources[name] = NpmSource(self.cache.root)
            elif name == "mirror":
                if not self.mirror:
                    raise ConfigError(
                        "the mirror source needs a location: `mirror:` in matrix.yaml, "
                        "--mirror or LLAMA_HARNESS_MIRROR"
                    )
                from harness.sources.mirror import MirrorSource  # lazy: see the imports

                self._sources[name] = MirrorSource(
                    self.cache.root, self.mirror, self.repo, self.downloads
                )
            else:
                raise ConfigError(f"unknown source {name!r} (allowed: github, npm, mirror)")
        return self._sources[name]

    @property
    def source(self) -> Source:
        return self.sources[0]

    def _first(self, ask: Callable[[Source], T]) -> T:
        """Ask each source in order; move on only when one cannot answer (a source error)."""
        last: SourceError | None = None
        for source in self.sources:
            try:
                return ask(source)
            except SourceError as err:
                log.info("source %s: %s", source.name, err)
                last = err
        assert last is not None
        raise last

    def list_releases(self, limit: int | None = None) -> list[Release]:
        return self._first(lambda s: s.list_releases(limit))

    def get_latest_release(self) -> Release:
        return self._first(lambda s: s.get_release("latest"))

    def get_release(self, tag: str) -> Release:
        return self._first(lambda s: s.get_release(tag))

    @staticmethod
    def platform_asset_pattern(
        os: str | None = None, arch: str | None = None, variant: str | None = None
    ) -> re.Pattern[str]:
        """The regex of this machine's (or the given cell's) binary asset, any tag, any era."""
        hos, harch = assets.host_platform()
        os, arch = os or hos, arch or harch
        return assets.platform_asset_pattern(os, arch, variant or assets.default_variant(os, arch))

    def match_asset(
        self,
        release: Release,
        os: str | None = None,
        arch: str | None = None,
        variant: str | None = None,
    ) -> Asset:
        return pick(release, self._cell(release.tag, os, arch, variant))[0]

    def download(
        self,
        tag: str = "latest",
        os: str | None = None,
        arch: str | None = None,
        variant: str | None = None,
    ) -> CellResult:
        """Provision one cell (default: this machine's asset of `tag`); raises on failure."""
        return self.download_cells([self._cell(tag, os, arch, variant)])[0]

    def download_cells(self, cells: list[Cell], *, raise_errors: bool = True) -> list[CellResult]:
        results = self.provisioner.run(cells)
        if raise_errors:
            for r in results:
                if r.error:
                    raise r.error
        return results

    def test_download(self) -> dict[str, Any]:
        """Is this machine's asset of the newest release reachable? Nothing is stored."""

        from harness.sources.mirror import MirrorSource
        from harness.sources.npm import NpmSource

        def attempt(source: Source) -> dict[str, Any]:
            rel = source.get_release("latest")
            asset = pick(rel, self._cell(rel.tag, None, None, None))[0]
            want = Provisioner.want(rel, asset)
            if isinstance(source, NpmSource):
                want = source.prepare(want)  # the registry answers for the package
            elif isinstance(source, MirrorSource) and source.folder is not None:
                if not Path(want.url).is_file():
                    raise AssetNotFound(f"{asset.name}: not in the mirror at {source.base}")
            else:
                self._reachable(want)
            return {
                "release": rel.tag,
                "build": rel.build,
                "asset": want.name,
                "size": asset.size,
                "digest": want.digest,
                "url": want.url,
                "source": source.name,
                "reachable": True,
            }

        return self._first(attempt)

    def _reachable(self, want: Want) -> None:
        import requests

        try:
            with self.downloads.get(want.url, headers={"Range": "bytes=0-0"}, stream=True) as r:
                status = r.status_code
        except requests.RequestException as err:
            raise SourceError(f"{want.name}: not reachable: {type(err).__name__}") from err
        if status not in (200, 206):
            raise SourceError(f"{want.name}: not reachable (HTTP {status})")

    def verify(self, repair: bool = False) -> list[dict[str, Any]]:
        """Re-hash every cached archive and its extracted tree against what was recorded; with
        `repair`, provision what is wrong again under its lock (re-extracting when the archive
        still verifies, downloading otherwise)."""
        out: list[dict[str, Any]] = []
        for entry, marker in list(self.cache.entries()):
            problem = maintain.check(self.cache, entry, marker)
            row: dict[str, Any] = {
                "build": entry.folder.name,
                "asset": entry.name,
                "status": "ok" if problem is None else "bad",
                "problem": problem,
            }
            if problem and repair:
                row.update(self._repair(entry, marker, problem))
            out.append(row)
        return out

    def _repair(self, entry: Entry, marker: dict[str, Any], problem: str) -> dict[str, Any]:
        if not root.inside(self.cache.root, entry.folder):
            return {"status": "failed"}  # the problem already says it was left alone
        want = Want(
            entry.folder.name,
            entry.name,
            marker.get("size"),
            marker.get("expected_digest") or marker.get("digest"),
            marker.get("url") or "",
            marker.get("source") or "github",
        )

        def fetch(out: BinaryIO, algo: str) -> tuple[int, str]:
            """Only when the archive itself is bad: a tree is re-extracted without the network."""
            if not want.url:
                raise SourceError("no download URL recorded; provision it again with `download`")
            source = self.source_named(want.source)
            return source.fetcher(source.prepare(want), lambda _n: None)(out, algo)

        try:
            self.cache.ensure(want, fetch, self.provisioner.policy, force=True)
        except HarnessError as err:
            return {"status": "failed", "problem": f"{problem}; repair: {err}"}
        return {"status": "repaired"}

    def clean(self, release: str | None = None, *, wait: bool = False) -> list[Path]:
        """Remove cached builds: all, or one release (a `v*`/`latest`: the build it names).
        Entries another process is writing are skipped (logged), or waited for with `wait`."""
        return self.clean_cache(release, wait=wait).removed

    def clean_cache(self, release: str | None = None, *, wait: bool = False) -> Cleaned:
        if release is not None:
            maintain.check_name(release)
        build = release
        if release and release not in self.cache.builds() and not BUILD.fullmatch(release):
            build = self.get_release(release).build or release
        return maintain.clean(self.cache, build, wait=wait)

    def _cell(self, tag: str, os: str | None, arch: str | None, variant: str | None) -> Cell:
        hos, harch = assets.host_platform()
        os, arch = os or hos, arch or harch
        return Cell(tag, os, arch, variant or assets.default_variant(os, arch))


def clean_library_cache(
    cache_dir: str | Path | None = None, release: str | None = None
) -> list[Path]:
    """Remove cached builds: all, or one release (`b<N>`; a `v*`/`latest` asks GitHub which)."""
    return LibraryDownloader(cache_dir).clean(release)


_LOADED: dict[str, Loaded] = {}


def load_library(
    version: str = "latest",
    *,
    cache_dir: str | Path | None = None,
    sources: tuple[str, ...] = ("github", "npm"),
    log: LogSink | None = None,
) -> Loaded:
    """Provision this machine's build of `version` and load it into THIS process.

    One release per process: every release shares the SONAME libggml-base.so, so a second,
    different release raises LoadFailed (run it in a child process instead). Loading the same
    release again returns the same object.
    """
    # lazy: headers, libclang and ctypes cost the CLI ~20 ms at start-up and only this needs them
    from harness.abi.release import release_api
    from harness.load.loader import LoadFailed, find_libdir, load

    dl = LibraryDownloader(cache_dir, sources=sources)
    result = dl.download(version)
    if result.stored is None:
        raise LoadFailed(f"{version}: nothing was provisioned for this machine")
    libdir = find_libdir(Path(result.stored.path))
    check_before_load(Path(result.stored.path), libdir)  # the tree is as it was extracted
    key = str(libdir)
    if key in _LOADED:
        return _LOADED[key]
    if _LOADED:
        other = next(iter(_LOADED))
        raise LoadFailed(
            f"{other} is already loaded in this process; llama.cpp releases share the SONAME "
            "libggml-base.so, so load another release in a child process"
        )
    api = release_api(dl, result)
    _LOADED[key] = loaded = load(libdir, api, log)
    return loaded
