"""Cells → releases → assets → cache, downloads in parallel, over a chain of sources.

`sources: [github, npm]` is a fallback chain tried per release: a source error (unreachable,
rate limited, release or asset missing) moves on to the next source; an integrity error never
does. A source that could not be reached at all is not asked again in the same run.

The schedule (measured in benchmarks/test_bench_download.py): every release is resolved at once,
cached cells are answered before any thread starts, and the rest start largest first (the
biggest asset bounds the wall time, so it must not start last). `jobs` is the number of
transfers in flight; extraction runs on extra threads outside those slots, so it overlaps the
next transfers instead of holding a connection idle.

Ctrl-C or SIGTERM (a KeyboardInterrupt in the main thread) cancels: queued work is dropped, open
transfers are cut (their sockets shut), each worker removes its temp file and releases its lock
on the way out, and the interrupt is re-raised within CANCEL_WAIT_S. Workers are daemon threads,
so one stuck elsewhere (another process's lock) cannot hold the exit.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.cache.store import Cache, Stored
from harness.config.matrix import Cell
from harness.errors import AssetNotFound, HarnessError, ReleaseNotFound, SourceError
from harness.progress import Reporter
from harness.sources.assets import companions_for
from harness.sources.base import Asset, Fetcher, Release, Source, Want
from harness.sources.cancel import CANCEL, Cancel, Cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

CANCEL_WAIT_S = 2.0  # how long an interrupt waits for workers to clean up
EXTRACT_THREADS = 2  # threads beyond `jobs`: extracting while the next transfers run
RESOLVE_THREADS = 8  # releases asked for at once (`--jobs` counts transfers, not API calls)


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


def run_all(
    fn: Callable[[T], R], items: Sequence[T], threads: int, cancel: Cancel
) -> list[R | BaseException]:
    """`fn` over `items` on daemon threads, taken in order; each result or the exception raised.

    An exception in the calling thread (KeyboardInterrupt) cancels: nothing queued starts, the
    running calls see `cancel` (their transfers are cut), and it is re-raised once they have
    returned or CANCEL_WAIT_S has passed."""
    results: list[R | BaseException] = [Cancelled("not started")] * len(items)
    if not items:
        return results
    cond = threading.Condition()
    state = {"next": 0, "left": len(items), "active": 0}

    def work() -> None:
        CANCEL.set(cancel)
        while True:
            with cond:
                i = state["next"]
                if i >= len(items) or cancel.is_set:
                    return
                state["next"] += 1
                state["active"] += 1
            try:
                results[i] = fn(items[i])
            except BaseException as err:  # handed to the caller
                results[i] = err
            with cond:
                state["active"] -= 1
                state["left"] -= 1
                cond.notify_all()

    for n in range(min(threads, len(items))):
        threading.Thread(target=work, name=f"llama-harness-{n}", daemon=True).start()
    try:
        with cond:
            while state["left"] and not (cancel.is_set and not state["active"]):
                cond.wait()
    except BaseException:
        cancel.set()
        deadline = time.monotonic() + CANCEL_WAIT_S
        with cond:
            while state["active"] and (left := deadline - time.monotonic()) > 0:
                cond.wait(left)
        raise
    return results


class _Slots:
    """`n` transfer slots, granted in the order they were asked for (largest asset first),
    given up at once when the run is cancelled."""

    def __init__(self, n: int, cancel: Cancel) -> None:
        self._free = n
        self._cancel = cancel
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()

    def wrap(self, fetch: Fetcher) -> Fetcher:
        def get(out: Any, algo: str) -> tuple[int, str]:
            self._acquire()
            try:
                return fetch(out, algo)
            finally:
                self._release()

        return get

    def _acquire(self) -> None:
        me = object()
        with self._cond:
            self._queue.append(me)
            try:
                while not (self._free and self._queue[0] is me):
                    self._cancel.check()
                    self._cond.wait(0.1)
            finally:
                self._queue.remove(me)
                self._cond.notify_all()
            self._free -= 1

    def _release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


class Provisioner:
    def __init__(
        self,
        cache: Cache,
        sources: Sequence[Source],
        *,
        jobs: int = 8,
        policy: str = "if-available",
        bars: Reporter | None = None,
    ) -> None:
        if not sources:
            raise ValueError("at least one source")
        self.cache = cache
        self.sources = list(sources)
        self.jobs = max(1, jobs)
        self.policy = policy
        self.progress = bars or Reporter("off")
        self._releases: dict[tuple[str, str], Release | HarnessError] = {}
        self._down: dict[str, HarnessError] = {}
        self._slots: _Slots | None = None

    @property
    def bars(self) -> Reporter:  # the old name
        return self.progress

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
                # releases are asked for concurrently: the first to find a source down says so
                if _unreachable(err) and self._down.setdefault(source.name, err) is err:
                    # said once, and only when another source takes over: otherwise the error
                    # itself is the one line
                    nxt = self._next(source)
                    if nxt is not None:
                        log.warning("source %s: %s; trying %s", source.name, err, nxt.name)
                    else:
                        log.info("source %s: %s", source.name, err)
        return self._releases[key]

    def _next(self, source: Source) -> Source | None:
        i = self.sources.index(source)
        return self.sources[i + 1] if i + 1 < len(self.sources) else None

    def _resolve(self, pairs: Iterable[tuple[Source, str]], cancel: Cancel) -> None:
        """Every release this round needs, all at once (each is one or two API round trips)."""
        todo = [(s, t) for s, t in dict.fromkeys(pairs, None) if (s.name, t) not in self._releases]
        if len(todo) < 2:
            return  # one is asked for by _plan, in this thread
        # shown only when it takes a while: kept answers come from disk in milliseconds
        with self.progress.stage("resolve", len(todo), after=1.0) as st:

            def one(pair: tuple[Source, str]) -> None:
                self.release(*pair)
                st.advance(pair[1])

            run_all(one, todo, max(self.jobs, RESOLVE_THREADS), cancel)

    def fetch_one(self, source: Source, want: Want) -> Stored:
        hit = self.cache.lookup(want)
        if hit:
            return hit
        want = source.prepare(want)
        with self.progress, self.progress.transfer(want.name, want.size) as advance:
            fetch = source.fetcher(want, advance)
            if self._slots is not None:
                fetch = self._slots.wrap(fetch)
            return self.cache.ensure(want, fetch, self.policy)

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
            except AssetNotFound as err:
                res.error = err
                fresh = self._asked_again(source, rel)
                if fresh is None:
                    res.unavailable[source.name] = str(err)
                    continue
                rel = fresh
                try:
                    asset, companions = pick(rel, res.cell)
                except AssetNotFound as err2:
                    res.error = err2
                    res.unavailable[source.name] = str(err2)
                    continue
            res.build, res.source, res.asset, res.error = rel.build, rel.source, asset.name, None
            res.rel = rel
            return i, source, self.want(rel, asset), [self.want(rel, c) for c in companions]
        return None

    def _asked_again(self, source: Source, rel: Release) -> Release | None:
        """A release answered from disk (never asked again: see sources/github.py) that lacks a
        cell's asset may have been kept while still being uploaded: ask once more."""
        refresh = getattr(source, "refresh_release", None)  # only sources that keep answers
        if not rel.extra.get("kept") or refresh is None:
            return None
        try:
            fresh: Release = refresh(rel.tag)
        except HarnessError:
            return None
        self._releases[(source.name, rel.tag)] = fresh
        return fresh

    def run(self, cells: Sequence[Cell]) -> list[CellResult]:
        results = [CellResult(cell) for cell in cells]
        pending = [(r, 0) for r in results]
        cancel = Cancel()
        with self.progress:
            self._prefetch(cells)
            while pending:
                self._resolve(((self.sources[i], r.cell.release) for r, i in pending), cancel)
                plans = []
                for res, start in pending:
                    plan = self._plan(res, start)
                    if plan:
                        plans.append((res, *plan))
                pending = self._download(plans, cancel)
        return results

    def _prefetch(self, cells: Sequence[Cell]) -> None:
        """Many releases wanted: a source that can list them (100 a call) does, up front."""
        tags = list(dict.fromkeys(c.release for c in cells))
        for source in self.sources:
            prefetch = getattr(source, "prefetch", None)
            if prefetch is not None:
                with self.progress.status(f"{source.name}: listing releases") as show:
                    prefetch(tags, show)

    def _download(self, plans: list[Any], cancel: Cancel) -> list[tuple[CellResult, int]]:
        """Fetch every planned asset once; cells whose source failed go on to the next one."""
        done: dict[tuple[str, str, str], Stored | BaseException] = {}
        jobs: dict[tuple[str, str, str], tuple[Source, Want]] = {}
        for _res, _i, source, main, extra in plans:
            for w in (main, *extra):
                key = (source.name, w.build, w.name)
                if key in done or key in jobs:
                    continue
                hit = self.cache.lookup(w)  # warm: answered here, no thread, no request
                if hit:
                    done[key] = hit
                else:
                    jobs[key] = (source, w)
        order = sorted(jobs, key=lambda k: -(jobs[k][1].size or 0))  # largest first
        sizes = [jobs[k][1].size for k in order]
        self.progress.expect(len(order), None if None in sizes else sum(s or 0 for s in sizes))
        self._slots = _Slots(self.jobs, cancel)
        try:
            got_all = run_all(
                lambda k: self._safe_fetch(*jobs[k]),
                order,
                self.jobs + EXTRACT_THREADS,
                cancel,
            )
        finally:
            self._slots = None
        for k, g in zip(order, got_all, strict=True):
            if not isinstance(g, (Stored, HarnessError)):
                raise g  # a bug, or Cancelled: not a per-cell outcome
            done[k] = g
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
