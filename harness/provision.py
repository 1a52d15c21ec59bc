"""Cells → releases → assets → cache, downloads in parallel. The `download` command's engine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import requests

from harness import fetch
from harness.assets import classify_asset, companions_for
from harness.cache import Cache, Stored, Want
from harness.errors import AssetNotFound, HarnessError
from harness.matrix import Cell
from harness.progress import Bars
from harness.sources.base import Asset, Release, Source

log = logging.getLogger(__name__)


@dataclass
class CellResult:
    cell: Cell
    build: str | None = None
    asset: str | None = None
    stored: Stored | None = None
    companions: list[Stored] = field(default_factory=list)
    source: str | None = None
    error: HarnessError | None = None

    def to_json(self) -> dict[str, Any]:
        s = self.stored
        out: dict[str, Any] = {
            "release": self.cell.release,
            "build": self.build,
            "os": self.cell.os,
            "arch": self.cell.arch,
            "variant": self.cell.variant,
            "asset": self.asset,
            "digest": s.digest if s else None,
            "archive": s.archive if s else None,
            "path": s.path if s else None,
            "source": self.source,
            "cached": s.cached if s else False,
            "verify": s.verify if s else None,
            "companions": [{"asset": c.asset, "path": c.path} for c in self.companions],
        }
        if self.error:
            out["error"] = str(self.error)
            out["exit_code"] = self.error.exit_code
        return out


def host_cells(releases: Sequence[str], os: str, arch: str, variant: str) -> list[Cell]:
    return [Cell(r, os, arch, variant) for r in releases]


def all_platform_cells(release: str, rel: Release) -> list[Cell]:
    cells = []
    for a in rel.assets:
        m = classify_asset(a.name)
        if m.kind == "binary" and m.os and m.arch and m.variant:
            cells.append(Cell(release, m.os, m.arch, m.variant))
    return list(dict.fromkeys(cells))


def resolve(source: Source, tags: Sequence[str]) -> dict[str, Release | HarnessError]:
    out: dict[str, Release | HarnessError] = {}
    for tag in dict.fromkeys(tags):
        try:
            out[tag] = source.get_release(tag)
        except HarnessError as err:
            out[tag] = err
    return out


def pick(rel: Release, cell: Cell) -> tuple[Asset, list[Asset]]:
    """The cell's binary asset and its companions; AssetNotFound for a partial release."""
    for a in rel.assets:
        m = classify_asset(a.name)
        if m.kind == "binary" and (m.os, m.arch, m.variant) == (cell.os, cell.arch, cell.variant):
            names = companions_for(a.name, [x.name for x in rel.assets])
            return a, [x for x in rel.assets if x.name in names]
    raise AssetNotFound(
        f"{rel.tag}: no asset for {cell.os}/{cell.arch}/{cell.variant} "
        f"(build {rel.build}; the release may be partial)"
    )


class Provisioner:
    def __init__(
        self,
        cache: Cache,
        downloads: requests.Session,
        *,
        jobs: int = 8,
        policy: str = "if-available",
        bars: Bars | None = None,
    ) -> None:
        self.cache = cache
        self.downloads = downloads
        self.jobs = max(1, jobs)
        self.policy = policy
        self.bars = bars or Bars(False)

    def want(self, rel: Release, asset: Asset) -> Want:
        assert rel.build
        return Want(rel.build, asset.name, asset.size or None, asset.digest, asset.url, rel.source)

    def fetch_one(self, want: Want) -> Stored:
        def get(out: BinaryIO, algo: str) -> tuple[int, str]:
            with self.bars.download(want.name, want.size) as advance:
                return fetch.stream(
                    self.downloads,
                    want.url,
                    out,
                    algo,
                    name=want.name,
                    expected_size=want.size,
                    progress=advance,
                )

        return self.cache.ensure(want, get, self.policy)

    def run(
        self, cells: Sequence[Cell], releases: dict[str, Release | HarnessError]
    ) -> list[CellResult]:
        results: list[CellResult] = []
        plans: dict[tuple[str, str], Want] = {}
        needs: list[tuple[CellResult, Want, list[Want]]] = []
        for cell in cells:
            res = CellResult(cell)
            results.append(res)
            rel = releases[cell.release]
            if isinstance(rel, HarnessError):
                res.error = rel
                continue
            res.build, res.source = rel.build, rel.source
            try:
                asset, companions = pick(rel, cell)
            except HarnessError as err:
                res.error = err
                continue
            res.asset = asset.name
            main = self.want(rel, asset)
            extra = [self.want(rel, c) for c in companions]
            for w in (main, *extra):
                plans.setdefault((w.build, w.name), w)
            needs.append((res, main, extra))

        done: dict[tuple[str, str], Stored | HarnessError] = {}
        with self.bars, ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {key: pool.submit(self._safe_fetch, w) for key, w in plans.items()}
            for key, fut in futures.items():
                done[key] = fut.result()

        for res, main, extra in needs:
            got = done[(main.build, main.name)]
            if isinstance(got, HarnessError):
                res.error = got
                continue
            res.stored = got
            for w in extra:
                c = done[(w.build, w.name)]
                if isinstance(c, HarnessError):
                    res.error = c
                else:
                    res.companions.append(c)
        return results

    def _safe_fetch(self, want: Want) -> Stored | HarnessError:
        try:
            return self.fetch_one(want)
        except HarnessError as err:
            log.debug("%s failed: %s", want.name, err)
            return err
