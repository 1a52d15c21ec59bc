"""The Python API, in the spirit of the Go library it grew from.

from harness import LibraryDownloader, clean_library_cache
dl = LibraryDownloader()                       # cache, API URL and token from the environment
rel = dl.get_latest_release()
result = dl.download(rel.tag)                  # this machine's asset, verified and extracted
print(result.stored.path)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from harness import assets, http
from harness.cache import Cache, Want
from harness.errors import HarnessError
from harness.matrix import Cell
from harness.progress import Bars
from harness.provision import CellResult, Provisioner, pick
from harness.sources.base import Asset, Release
from harness.sources.github import DEFAULT_API, GitHubSource

ENV_API_URL = "LLAMA_HARNESS_API_URL"
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
        progress: bool = False,
    ) -> None:
        self.cache = Cache(cache_dir)
        self.api_url = api_url or os.environ.get(ENV_API_URL) or DEFAULT_API
        self.repo = repo
        self.downloads = http.download_session(pool=jobs)
        self.source = GitHubSource(
            self.cache.root, self.api_url, repo, token or http.token_from_env(), self.downloads
        )
        self.provisioner = Provisioner(
            self.cache, self.downloads, jobs=jobs, policy=verify, bars=Bars(progress)
        )

    def list_releases(self, limit: int | None = None) -> list[Release]:
        return self.source.list_releases(limit)

    def get_latest_release(self) -> Release:
        return self.source.get_release("latest")

    def get_release(self, tag: str) -> Release:
        return self.source.get_release(tag)

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
        from harness.provision import resolve

        results = self.provisioner.run(cells, resolve(self.source, [c.release for c in cells]))
        if raise_errors:
            for r in results:
                if r.error:
                    raise r.error
        return results

    def verify(self, repair: bool = False) -> list[dict[str, Any]]:
        """Re-hash every cached archive against its marker; with `repair`, re-download bad ones."""
        out: list[dict[str, Any]] = []
        for entry, marker in list(self.cache.entries()):
            problem = self.cache.check(entry, marker)
            row: dict[str, Any] = {
                "build": entry.folder.name,
                "asset": entry.name,
                "status": "ok" if problem is None else "bad",
                "problem": problem,
            }
            if problem and repair:
                self.cache.invalidate(entry)
                want = Want(
                    entry.folder.name,
                    entry.name,
                    marker.get("size"),
                    marker.get("expected_digest") or marker.get("digest"),
                    marker["url"],
                    marker.get("source", "github"),
                )
                try:
                    self.provisioner.fetch_one(want)
                    row["status"] = "repaired"
                except HarnessError as err:
                    row["status"], row["problem"] = "failed", f"{problem}; repair: {err}"
            out.append(row)
        return out

    def clean(self, release: str | None = None) -> list[Path]:
        return clean_library_cache(self.cache.root, release, self.source)

    def _cell(self, tag: str, os: str | None, arch: str | None, variant: str | None) -> Cell:
        hos, harch = assets.host_platform()
        os, arch = os or hos, arch or harch
        return Cell(tag, os, arch, variant or assets.default_variant(os, arch))


def clean_library_cache(
    cache_dir: str | Path | None = None,
    release: str | None = None,
    source: GitHubSource | None = None,
) -> list[Path]:
    """Remove cached builds: all, or one release (`b<N>`, or the build a `v*`/`latest` names)."""
    cache = Cache(cache_dir)
    if release is None:
        return cache.clean()
    build = release
    if release not in cache.builds() and not re.fullmatch(r"b[0-9]+", release):
        source = source or GitHubSource(cache.root, os.environ.get(ENV_API_URL) or DEFAULT_API)
        build = source.get_release(release).build or release
    return cache.clean(build)
