"""The shape every source returns, and the Protocol a source implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.cache.want import Fetcher, Want
from harness.sources.assets import AssetMatch, classify_asset

__all__ = ["Asset", "Fetcher", "Progress", "Release", "Source", "Want"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Asset:
    name: str
    size: int
    digest: str | None  # `sha256:<hex>` (GitHub, since mid-2025), `sha512:<hex>` (npm), or None
    url: str
    cell: AssetMatch | None = None  # set by sources whose names are not llama.cpp asset names

    @property
    def match(self) -> AssetMatch:
        return self.cell or classify_asset(self.name)

    def to_json(self) -> dict[str, Any]:
        m = self.match
        return {
            "name": self.name,
            "size": self.size,
            "digest": self.digest,
            "os": m.os,
            "arch": m.arch,
            "variant": m.variant,
            "kind": m.kind,
        }


@dataclass(frozen=True)
class Release:
    tag: str
    build: str | None  # the b<N> that carries the binaries (the tag itself for b<N>)
    name: str
    published_at: str | None
    prerelease: bool
    assets: tuple[Asset, ...] = ()
    tarball_url: str | None = None
    source: str = "github"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def asset(self, name: str) -> Asset | None:
        return next((a for a in self.assets if a.name == name), None)

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "build": self.build,
            "name": self.name,
            "published_at": self.published_at,
            "prerelease": self.prerelease,
            "assets": len(self.assets),
        }


class Source(Protocol):
    """A release source: GitHub's REST API, a mirror, npm packages."""

    name: str

    def list_releases(self, limit: int | None = None) -> list[Release]: ...

    def get_release(self, tag: str) -> Release:
        """`tag` may be `b<N>`, `v<semver>` or `latest`; the result's `build` is resolved."""
        ...

    def prepare(self, want: Want) -> Want:
        """Fill in what is only known at download time (npm's integrity); usually `want`."""
        ...

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        """How to get the bytes of `want` into a file."""
        ...

    def source_archive(self, release: Release, target: Path) -> Path:
        """Download the release's source tree (a `.tar.gz` that holds its headers) to `target`;
        `SourceError` where this source has none (npm carries a git bundle instead)."""
        ...
