"""A mirror laid out like GitHub releases, for air-gapped users and proxies.

    <base>/releases.json          a list of GitHub-shaped release objects (what /releases returns)
    <base>/<tag>/<asset name>     the assets (a v* release: <base>/<tag>/nightly-tag.txt)

`<base>` is an http(s) URL or a local folder. Asset URLs are always derived from the layout, never
taken from the JSON's `browser_download_url` (a copied API answer points at github.com).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from harness.errors import AssetNotFound, ConfigError, ReleaseNotFound, SourceError
from harness.sources import stream as fetch
from harness.sources.base import Fetcher, Progress, Release, Want
from harness.sources.github import GitHubSource

if TYPE_CHECKING:
    import requests

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@=-]{0,200}")


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


class MirrorSource(GitHubSource):
    name = "mirror"
    label = "mirror"

    def __init__(
        self,
        cache_dir: Path,
        location: str,
        repo: str = "ggml-org/llama.cpp",
        downloads: requests.Session | Callable[[], requests.Session] | None = None,
    ) -> None:
        if location.startswith("file://"):
            location = urlsplit(location).path
        self.folder = None if is_url(location) else Path(location).expanduser().resolve()
        if self.folder is not None and not self.folder.is_dir():
            raise ConfigError(f"mirror {location}: not a folder or an http(s) URL")
        base = location.rstrip("/") if self.folder is None else str(self.folder)
        super().__init__(cache_dir, base, repo, token=None, downloads=downloads)
        self.base = base

    def _all(self) -> list[dict[str, Any]]:
        if self.folder is not None:
            path = self.folder / "releases.json"
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError as err:
                raise SourceError(f"mirror {self.base}: no releases.json") from err
            except (OSError, ValueError) as err:
                raise SourceError(f"mirror {self.base}: unreadable releases.json: {err}") from err
        else:
            got = self._get(f"{self.base}/releases.json")
            if got is None:
                raise SourceError(f"mirror {self.base}: no releases.json (HTTP 404)")
            body = got[0]
        if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
            raise SourceError(f"mirror {self.base}: releases.json is not a list of releases")
        return [r for r in body if not r.get("draft")]

    def prefetch(self, tags: Sequence[str], show: Callable[[str], None] | None = None) -> None:
        """Nothing to do: releases.json lists every release in one answer."""

    def list_releases(self, limit: int | None = None) -> list[Release]:
        items = self._all()
        return [self._release(i) for i in items[: limit if limit else None]]

    def get_release(self, tag: str) -> Release:
        items = self._all()
        if tag == "latest":
            item = next((i for i in items if not i.get("prerelease")), items[0] if items else None)
        else:
            item = next((i for i in items if i.get("tag_name") == tag), None)
        if item is None:
            raise ReleaseNotFound(f"release {tag!r} not found in the mirror at {self.base}")
        return self._with_binaries(self._release(item))

    def _asset_url(self, tag: str, asset: dict[str, Any]) -> str:
        name = str(asset["name"])
        if not (_SAFE.fullmatch(tag) and _SAFE.fullmatch(name)):
            raise SourceError(f"mirror {self.base}: refusing odd asset path {tag!r}/{name!r}")
        if self.folder is not None:
            return str(self.folder / tag / name)
        return f"{self.base}/{quote(tag)}/{quote(name)}"

    def _source_archive_url(self, release: Release) -> str | None:
        return self._asset_url(release.build or release.tag, {"name": "source.tar.gz"})

    def _read_small(self, url: str, what: str) -> str:
        if self.folder is None:
            return super()._read_small(url, what)
        try:
            return Path(url).read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError as err:
            raise AssetNotFound(f"cannot read {what} in the mirror: {err.strerror}") from err

    def download_to(self, url: str, target: Path) -> None:
        if self.folder is None:
            super().download_to(url, target)
            return
        with target.open("wb") as out:
            fetch.copy_file(Path(url), out, "sha256")

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        if self.folder is None:
            return super().fetcher(want, progress)
        return lambda out, algo: fetch.copy_file(Path(want.url), out, algo, progress)
