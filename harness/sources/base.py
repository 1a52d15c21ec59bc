"""The shape every source returns, and the Protocol a source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.assets import AssetMatch, classify_asset


@dataclass(frozen=True)
class Asset:
    name: str
    size: int
    digest: str | None  # `sha256:<hex>`; None on assets older than mid-2025
    url: str

    @property
    def match(self) -> AssetMatch:
        return classify_asset(self.name)

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
