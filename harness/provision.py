"""Cells → releases → assets → cache, downloads in parallel, over a chain of sources.

`sources: [github, npm]` is a fallback chain tried per release: a source error (unreachable,
rate limited, release or asset missing) moves on to the next source; an integrity error never
does. A source that could not be reached at all is not asked again in the same run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.cache.store import Cache, Stored
from harness.config.matrix import Cell
from harness.errors import AssetNotFound, HarnessError, ReleaseNotFound, SourceError
from harness.progress import Bars
from harness.sources.assets import companions_for
from harness.sources.base import Asset, Release, Source, Want

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
    rel: Release | None = None  # what the serving source said about the release
    unavailable: dict[str, str] = field(default_factory=dict)  # source → why it has no package

    @property
    def not_available(self) -> bool:
        """No source has this platform's package: not checked, never a failed platform."""
        return isinstance(self.error, AssetNotFound) and bool(self.unavailable)

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


def all_platform_cells(release: str, rel: Release) -> list[Cell]:
    cells = []
    for a in rel.assets:
        m = a.match
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
    """The cell's binary asset and its companions; AssetNotFound for a partial release.

    A `cuda-<version>` cell falls back to a source's unversioned `cuda` build (npm's packages)."""
    binaries = [a for a in rel.assets if a.match.kind == "binary"]
    for wanted in (cell.variant, "cuda" if cell.variant.startswith("cuda-") else None):
        for a in binaries:
            m = a.match
            if wanted and (m.os, m.arch, m.variant) == (cell.os, cell.arch, wanted):
                names = companions_for(a.name, [x.name for x in rel.assets])
                return a, [x for x in rel.assets if x.name in names]
    raise AssetNotFound(
        f"{rel.tag}: no asset for {cell.os}/{cell.arch}/{cell.variant} "
        f"(build {rel.build} at {rel.source}; the release may be partial)"
    )


def _unreachable(err: HarnessError) -> bool:
    return isinstance(err, SourceError) and not isinstance(err, (ReleaseNotFound, AssetNotFound))


class Provisioner:
    def __init__(
        self,
        cache: Cache,
        sources: Sequence[Source],
        *,
        jobs: int = 8,
        policy: str = "if-available",
        bars: Bars | None = None,
    ) -> None:
        if not sources:
            raise ValueError("at least one source")
        self.cache = cache
        self.sources = list(sources)
        self.jobs = max(1, jobs)
        self.policy = policy
        self.bars = bars or Bars(False)
        self._releases: dict[tuple[str, str], Release | HarnessError] = {}
        self._down: dict[str, HarnessError] = {}

    @staticmethod
    def want(rel: Release, asset: Asset) -> Want:
        assert rel.build
        return Want(rel.build, asset.name, asset.size or None, asset.digest, asset.url, rel.source)

    def release(self, source: Source, tag: str) -> Release | HarnessError:
        key = (source.name, tag)
        if key not in self._releases:
            if source.name in self._down:
                return self._down[source.name]
            try:
                self._releases[key] = source.get_release(tag)
            except HarnessError as err:
                self._releases[key] = err
                if _unreachable(err):
                    # Each cell reports the error itself; say it here only when a fallback
                    # source will answer instead (one line per failure, not two).
                    last = source is self.sources[-1]
                    (log.info if last else log.warning)("source %s: %s", source.name, err)
                    self._down[source.name] = err
        return self._releases[key]

    def fetch_one(self, source: Source, want: Want) -> Stored:
        hit = self.cache.lookup(want)
        if hit:
            return hit
        want = source.prepare(want)
        with self.bars.download(want.name, want.size) as advance:
            return self.cache.ensure(want, source.fetcher(want, advance), self.policy)

    def _plan(self, res: CellResult, start: int) -> tuple[int, Source, Want, list[Want]] | None:
        """The first source from `start` on that has the cell; the error otherwise."""
        for i in range(start, len(self.sources)):
            source = self.sources[i]
            rel = self.release(source, res.cell.release)
            if isinstance(rel, HarnessError):
                res.error = rel
                continue
            try:
                asset, companions = pick(rel, res.cell)
            except HarnessError as err:
                res.error = err
                if isinstance(err, AssetNotFound):
                    res.unavailable[source.name] = str(err)
                continue
            res.build, res.source, res.asset, res.error = rel.build, rel.source, asset.name, None
            res.rel = rel
            return i, source, self.want(rel, asset), [self.want(rel, c) for c in companions]
        return None

    def run(self, cells: Sequence[Cell]) -> list[CellResult]:
        results = [CellResult(cell) for cell in cells]
        pending = [(r, 0) for r in results]
        with self.bars:
            self._prefetch(cells)
            while pending:
                plans = []
                for res, start in pending:
                    plan = self._plan(res, start)
                    if plan:
                        plans.append((res, *plan))
                pending = self._download(plans)
        return results

    def _prefetch(self, cells: Sequence[Cell]) -> None:
        """Many releases wanted: a source that can list them (100 a call) does, up front."""
        tags = list(dict.fromkeys(c.release for c in cells))
        for source in self.sources:
            prefetch = getattr(source, "prefetch", None)
            if prefetch is not None:
                with self.bars.status(f"{source.name}: listing releases") as show:
                    prefetch(tags, show)

    def _download(self, plans: list[Any]) -> list[tuple[CellResult, int]]:
        """Fetch every planned asset once; cells whose source failed go on to the next one."""
        jobs: dict[tuple[str, str, str], tuple[Source, Want]] = {}
        for _res, _i, source, main, extra in plans:
            for w in (main, *extra):
                jobs.setdefault((source.name, w.build, w.name), (source, w))
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {k: pool.submit(self._safe_fetch, s, w) for k, (s, w) in jobs.items()}
            done = {k: f.result() for k, f in futures.items()}
        retry = []
        for res, i, source, main, extra in plans:
            got = [done[(source.name, w.build, w.name)] for w in (main, *extra)]
            stored = [g for g in got if isinstance(g, Stored)]
            if len(stored) == len(got):
                res.stored, res.companions = stored[0], stored[1:]
                res.asset = stored[0].asset  # a source may serve a stand-in (npm rebuilds)
                continue
            res.error = next(g for g in got if isinstance(g, HarnessError))
            if isinstance(res.error, AssetNotFound):
                res.unavailable[source.name] = str(res.error)
            if isinstance(res.error, SourceError) and i + 1 < len(self.sources):
                log.warning(
                    "%s from %s failed (%s); trying %s",
                    main.name,
                    source.name,
                    res.error,
                    self.sources[i + 1].name,
                )
                retry.append((res, i + 1))
        return retry

    def _safe_fetch(self, source: Source, want: Want) -> Stored | HarnessError:
        try:
            return self.fetch_one(source, want)
        except HarnessError as err:
            log.debug("%s failed: %s", want.name, err)
            return err
