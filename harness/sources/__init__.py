"""Where releases come from. Each source resolves a tag to a `Release` with its assets."""

from __future__ import annotations

from harness.sources.base import Asset, Release, Source

__all__ = ["Asset", "Release", "Source"]
