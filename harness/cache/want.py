"""What the cache is asked to store, and how it gets the bytes: the two types the cache shares
with the sources. They live here, below the sources, so that the cache never imports a source
(`harness.sources.base` re-exports them for the sources' side)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

# Called with an open, empty binary file and a hash algorithm; writes the asset's bytes into it
# and returns (bytes written, `algo:hex` of those bytes).
Fetcher = Callable[[BinaryIO, str], tuple[int, str]]


@dataclass(frozen=True)
class Want:
    """An asset to provision: what the source says about it."""

    build: str
    name: str
    size: int | None
    digest: str | None
    url: str
    source: str
