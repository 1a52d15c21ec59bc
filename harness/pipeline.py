"""`llama-harness run`: the matrix job, as stages run in order over one `Run`.

    prepare → provision → abi → binding → static → plan → cpu_variants → conformance → judge → bench
    → report

Each stage is a plain function of the `Run` (like nox's `workflow.execute`): it reads what the
earlier ones left and fills each cell's typed `CellResult` (harness.report.cell); the verdict
rules are in harness.report.judge. A cell whose fate is settled (not provisioned, not runnable
here, no ABI) is left alone by the stages after. Provisioning and preparation (headers → ABI,
the model and its NumPy reference) happen here in the parent; each runnable cell then runs in
its own child process, one pytest test per cell, spread over pytest-xdist workers. The parent
never loads libllama.

Adding a stage: a function `def my_stage(run: Run) -> None` inserted into `STAGES` where its
inputs exist (e.g. a per-cell check on the extracted tree after `provision`, one on the ABI
after `abi`, a scheduler of its own in place of `bench`). It records checks with
`cell.set_check(...)` and fails a cell with `judge.fail(cell, reason)`.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.abi import diff as apidiff
from harness.abi import manifest as manifests
from harness.abi.release import headers_dir, release_api
from harness.binding import fetch as binding_source
from harness.binding.check import exports_of
from harness.binding.model import BindingDecl
from harness.binding.releases import ReleaseAbi, check_release
from harness.cache.store import check_before_load
from harness.config.matrix import Cell
from harness.errors import HarnessError
from harness.host import choose, probe
from harness.library import LibraryDownloader
from harness.load.backends import supported_variants
from harness.load.loader import find_libdir
from harness.provision import CellResult as Provisioned
from harness.report import judge
from harness.report import model as report
from harness.report.cell import CellResult
from harness.report.compare import compare
from harness.static import check_tree
from harness.suites.child import Outcome
from harness.suites.conformance import NAMES
from harness.suites.fixtures import model as models
from harness.suites.fixtures import reference
from harness.suites.plugin import run_tests
from harness.suites.throughput import presets_for
from harness.suites.throughput_json import write_benchmark_json
from harness.suites.throughput_rounds import measure_platform

log = logging.getLogger(__name__)

# A cell's child takes ~0.15 s, an xdist worker ~1 s to start: spread only what pays for it.
MIN_CELLS_PER_WORKER = 8
STATIC_FACTS = (
    "libdir",
    "glibc_max",
    "glibcxx_max",
    "macos_min",
    "cpu_variants",
    "exports_missing",
    "external",
)
CHECK_NAMES = [*NAMES, "greedy_across_releases"]


@dataclass
class Options:
    out: Path
    workers: int = 2
    threads: int = 1
    timeout: float = 120.0
    model: str = "tiny"
    quiet: bool = False
    manifest: str | None = None
    binding: str | None = None  # matrix.yaml `binding:`: a file, folder or pip requirement
    cpu_variants: bool = True
    suites: tuple[str, ...] = ("conformance", "bench")
    bench_presets: tuple[str, ...] = ("tiny", "small-f16", "small-q8_0")
    baseline: dict[str, Any] | None = None
    bench_rounds: int | None = None  # None: throughput_rounds.ROUNDS
    bench_aa: bool = False


def expectations(model: Path, tiny: bool, prompt: str, n_predict: int) -> dict[str, Any]:
    """What every release must produce, from an independent NumPy forward pass (tiny model)."""
    if not tiny:
        return {}
    ids = reference.tokenize(model, prompt)
    first = reference.forward(model, ids)[-1]
    return {
        "prompt_ids": ids,
        "greedy": reference.greedy(model, ids, n_predict),
        "first_logits": [float(x) for x in first],
        "n_vocab": int(first.shape[0]),
        "bos": 1,
        "eos": 2,
    }


@dataclass
class Run:
    """One run's state, as the stages fill it."""

    dl: LibraryDownloader
    wanted: Sequence[Cell]
    opts: Options
    host: probe.HostInfo = field(default_factory=probe.inspect_host)  # `choose.plan` reads it
    model: Path | None = None
    manifest: Any = None  # the consumer manifest, loaded
    binding: BindingDecl | None = None  # matrix.yaml's `binding:`, read
    provisioned: dict[str, Provisioned] = field(default_factory=dict)
    cells: dict[str, CellResult] = field(default_factory=dict)  # by cell id, matrix order
    settled: set[str] = field(default_factory=set)  # cells the later stages leave alone
    apis: dict[str, Api] = field(default_factory=dict)  # build → its ABI
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # runnable: child specs
    variant_runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → spec (+ "of")
    judged: dict[str, CellResult] = field(default_factory=dict)  # CPU-variant runs, judged
    api_diffs: list[dict[str, Any]] = field(default_factory=list)
    binding_releases: dict[str, dict[str, Any]] = field(default_factory=dict)  # release → verdict
    report: dict[str, Any] = field(default_factory=dict)

    def going(self) -> Iterator[tuple[CellResult, Provisioned]]:
        """The cells still in play, with what provisioning gave each."""
        for cid, cell in self.cells.items():
            if cid not in self.settled:
                yield cell, self.provisioned[cid]

    def settle(self, cell: CellResult) -> None:
        self.settled.add(cell.id)


Stage = Callable[[Run], None]


def prepare(run: Run) -> None:
    """The model first (a bad `model:` fails before any download), the consumer manifest, the
    binding (a source that cannot be read fails before any download too)."""
    run.model = models.ensure_model(run.dl.cache.root, run.opts.model)
    if run.opts.manifest:
        run.manifest = manifests.load(run.opts.manifest)
    if run.opts.binding:
        run.binding = binding_source.open_source(run.opts.binding, run.dl.cache.root)


def provision(run: Run) -> None:
    """Download, verify and extract every cell's build; a cell that could not be had is an error."""
    for res in run.dl.download_cells(list(run.wanted), raise_errors=False):
        c = res.cell
        cell = CellResult(
            c.release,
            c.os,
            c.arch,
            c.variant,
            build=res.build,
            asset=res.asset,
            digest=res.stored.digest if res.stored else None,
            source=res.source,
        )
        run.cells[c.id] = cell
        run.provisioned[c.id] = res
        if res.not_available:  # a package no source published: not checked, not failed
            judge.not_available(cell, res.unavailable)
            run.settle(cell)
        elif res.error:
            judge.error(cell, str(res.error))
            run.settle(cell)


def abi(run: Run) -> None:
    """Each build's llama.h → its ABI (once per build); without one a cell can still be
    inspected, not run."""
    going = list(run.going())
    for cell, res in run.dl.progress.each("headers", going, lambda cr: cr[0].id, after=2.0):
        assert res.build
        try:
            api = run.apis.get(res.build) or release_api(run.dl, res)
        except HarnessError as err:
            cell.api["error"] = str(err)
            continue
        run.apis[res.build] = api
        cell.api.update(
            {
                "functions": len(api.functions),
                "structs": len(api.structs),
                "header": f"{res.build} llama.h",
            }
        )


def binding(run: Run) -> None:
    """matrix.yaml's `binding:` against each cell: its release's headers and that cell's own
    exports (any platform's, read with LIEF). A `binding` check per cell, which fails the cell
    once it has been judged (`judge.binding`, in `judge_cells`: the verdicts of `plan_runs` and
    `conformance` replace a status set before them); one verdict per release for the report's
    "Your binding" section."""
    decl = run.binding
    if decl is None:
        return
    for cell, res in run.going():
        api = run.apis.get(res.build or "")
        if api is None or res.stored is None:
            continue
        try:
            exports: set[str] | None = exports_of(find_libdir(Path(res.stored.path)), cell.os)
        except (HarnessError, ValueError):
            exports = None
        v = check_release(decl, ReleaseAbi(cell.release, res.build or "", api, exports))
        text = "compatible" if not v.breaks else f"{len(v.breaks)} break(s): {v.breaks[0]}"
        cell.set_check("binding", "fail" if v.breaks else "pass", f"{decl.name}: {text}")
        run.binding_releases.setdefault(cell.release, v.to_json())


def static(run: Run) -> None:
    """The binaries of every platform: architecture, exports, libraries they need, ..."""
    going = list(run.going())
    for cell, res in run.dl.progress.each("static", going, lambda cr: cr[0].id, after=2.0):
        assert res.stored and res.build
        found = check_tree(
            Path(res.stored.path), cell.os, cell.arch, cell.variant, run.apis.get(res.build)
        )
        cell.checks.update({f"static.{k}": v for k, v in found.checks.items()})
        cell.static = {k: found.facts.get(k) for k in STATIC_FACTS if k in found.facts}


def plan_runs(run: Run) -> None:
    """Which cells this host runs, and each one's child spec; the others are judged on their
    static checks (another platform), or skipped with the reason (a GPU build of this platform
    without its driver here)."""
    api_dir = run.opts.out / "abi"
    api_dir.mkdir(parents=True, exist_ok=True)
    expect: dict[str, Any] | None = None
    for cell, res in list(run.going()):
        assert res.stored and res.build and run.model
        why, extra = choose.plan(res.cell, run.host)
        if why:
            judge.static_only(cell, why, skip=(cell.os, cell.arch) == (run.host.os, run.host.arch))
            run.settle(cell)
            continue
        api = run.apis.get(res.build)
        if api is None:  # runnable here, but without its header we cannot call it safely
            judge.error(cell, f"no ABI for {res.build}: {cell.api.get('error')}")
            run.settle(cell)
            continue
        try:
            libdir = find_libdir(Path(res.stored.path))
            check_before_load(Path(res.stored.path), libdir)  # the tree is as it was extracted
        except HarnessError as err:
            judge.error(cell, str(err))
            run.settle(cell)
            continue
        api_path = api_dir / f"{res.build}.json"
        if not api_path.exists():
            api_path.write_text(api.to_json(), encoding="utf-8")
        if expect is None:
            tiny = run.opts.model == models.TINY
            expect = expectations(run.model, tiny, models.PROMPT, 16)
        run.specs[cell.id] = {
            **extra,
            "libdir": str(libdir),
            "api": str(api_path),
            "model": str(run.model),
            "prompt": models.PROMPT,
            "expect": expect,
            "n_predict": 16,
            "threads": run.opts.threads,
        }


def cpu_variants(run: Run) -> None:
    """One more run per ggml CPU backend variant this CPU supports, each forced in its child
    (a conformance run: nothing to do without that suite)."""
    if not run.opts.cpu_variants or "conformance" not in run.opts.suites:
        return
    cpu = [(cid, spec) for cid, spec in run.specs.items() if not spec.get("gpu")]
    for cid, spec in run.dl.progress.each("cpu-variants", cpu, lambda cs: cs[0], after=2.0):
        try:
            variants = supported_variants(Path(spec["libdir"]), timeout=run.opts.timeout)
        except HarnessError as err:
            log.info("%s: no CPU variant runs: %s", cid, err)
            continue
        if len(variants) < 2:  # one variant (or none: built in) is what the main run used
            continue
        for v in variants:
            run.variant_runs[f"{cid}+cpu-{v}"] = {**spec, "cpu_variant": v, "of": cid}


def conformance(run: Run) -> None:
    """Every runnable cell and CPU-variant run: one pytest test each, one child each; each
    cell's outcome as its test judged it."""
    if not run.specs:
        return
    if "conformance" not in run.opts.suites:
        for cid in run.specs:
            run.cells[cid].reason = "conformance not run (--suite)"
        return
    every = {**run.specs, **run.variant_runs}
    opts = run.opts
    workers = min(opts.workers, len(every) // MIN_CELLS_PER_WORKER)
    landing = [(opts.out / "cells" / f"{cid}.json", cid) for cid in every]
    with run.dl.progress.watching("conformance", landing):  # a count per cell as results land
        tests, trouble = run_tests(
            every,
            opts.out,
            workers=workers,
            timeout=opts.timeout,
            quiet=opts.quiet,
            # the per-cell count replaces pytest's own lines ("bringing up nodes...")
            log=opts.out / "work" / "pytest.output.log" if run.dl.progress.mode != "off" else None,
        )
    if trouble:
        log.warning("the conformance tests did not finish: %s", trouble)
    for cid in every:
        target = run.cells.get(cid)
        if target is None:  # a CPU-variant run, judged the same way
            spec = run.variant_runs[cid]
            of = run.cells[spec["of"]]
            target = run.judged[cid] = CellResult(of.release, of.os, of.arch, spec["cpu_variant"])
        judge.conformance(target, _outcome(opts.out, cid), tests.get(cid), _starts(opts.out, cid))


def judge_cells(run: Run) -> None:
    """What no single cell's child can say: greedy tokens across releases, the CPU variants of
    one build, API changes, the consumer manifest, the binding; then the static checks of cells
    that ran."""
    ran = [run.cells[cid] for cid in run.specs]
    judge.across_releases(ran)
    by_cell: dict[str, dict[str, CellResult | None]] = {}
    for vid, spec in run.variant_runs.items():
        by_cell.setdefault(spec["of"], {})[spec["cpu_variant"]] = run.judged.get(vid)
    for cid, variants in by_cell.items():
        judge.cpu_variants(run.cells[cid], variants)
    run.api_diffs = api_diffs(list(run.cells.values()), run.apis)
    if run.manifest is not None:
        name = str(run.opts.manifest)
        verdicts = {b: manifests.check(run.manifest, api) for b, api in run.apis.items()}
        for cell in run.cells.values():
            verdict = verdicts.get(cell.build or "")
            if verdict is not None:
                judge.manifest(cell, name, None if verdict.compatible else list(verdict.breaks))
    for cell in run.cells.values():
        judge.binding(cell)
        judge.fold_static(cell)


def bench(run: Run) -> None:
    """Throughput, one child at a time (timings taken in parallel would mean nothing), on the
    cells that ran, the releases of each platform interleaved (`measure_platform`); GPU builds on
    a software device are not worth timing."""
    if "bench" not in run.opts.suites:
        return
    opts = run.opts
    presets = presets_for(run.dl.cache.root, list(opts.bench_presets))
    platforms: dict[str, dict[str, dict[str, Any]]] = {}  # releases of a platform: interleaved
    for cid, res in run.provisioned.items():
        spec, cell = run.specs.get(cid), run.cells[cid]
        if spec is None or spec.get("gpu") == "vulkan" or cell.status not in ("pass", "fail"):
            continue
        assert res.stored
        bspec = {
            **spec,
            "presets": presets,
            "threads": opts.threads,
            "include": str(headers_dir(run.dl, res)),
            "cache": str(run.dl.cache.root),
            "build": res.build,
            "tree": str(res.stored.path),
        }
        platforms.setdefault(f"{cell.os}-{cell.arch}-{cell.variant}", {})[cid] = bspec
    # a count per platform: its releases are measured together, interleaved
    for plat, contenders in run.dl.progress.each("bench", platforms.items(), lambda pc: pc[0]):
        work = opts.out / "work" / "bench" / plat
        timeout = max(opts.timeout, 600)
        benches = measure_platform(contenders, work, timeout, opts.bench_rounds, opts.bench_aa)
        for cid, section in benches.items():
            run.cells[cid].bench = section
            if "error" not in section:
                write_benchmark_json(opts.out, section, run.cells[cid].to_json())


def build_report(run: Run) -> None:
    """report.json's content: every cell serialised once, API diffs, the comparison."""
    cells = [c.to_json() for c in run.cells.values()]
    more: dict[str, Any] = {"model": str(run.model), "api_diffs": run.api_diffs}
    if run.binding is not None:
        more["binding"] = {
            "name": run.binding.name,
            "source": str(run.opts.binding),
            "releases": list(run.binding_releases.values()),
        }
    run.report = report.build(cells, more)
    run.report["comparison"] = compare(run.report, run.opts.baseline)


STAGES: tuple[Stage, ...] = (
    prepare,
    provision,
    abi,
    binding,
    static,
    plan_runs,
    cpu_variants,
    conformance,
    judge_cells,
    bench,
    build_report,
)


def execute(state: Run, stages: Sequence[Stage] = STAGES) -> Run:
    """Run the stages in order over one state."""
    for stage in stages:
        log.debug("stage %s", stage.__name__)
        stage(state)
    return state


def run(dl: LibraryDownloader, cells: Sequence[Cell], opts: Options) -> dict[str, Any]:
    """The matrix job: report.json's content for these cells (the CLI writes the files)."""
    return execute(Run(dl, cells, opts)).report


# ------------------------------------------------------------------------- helpers


def _outcome(out: Path, cid: str) -> Outcome | None:
    try:
        return Outcome.from_json(json.loads((out / "cells" / f"{cid}.json").read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _starts(out: Path, cid: str) -> int:
    try:
        return len((out / "work" / cid / "cell.starts.jsonl").read_text("utf-8").splitlines())
    except OSError:
        return 0


def api_diffs(cells: list[CellResult], apis: dict[str, Api]) -> list[dict[str, Any]]:
    """Each release's llama.h against the previous release of the matrix."""
    builds = list(dict.fromkeys(c.build for c in cells if c.build in apis))
    out = []
    for old, new in itertools.pairwise(builds):
        d = apidiff.diff(apis[old], apis[new])
        out.append({"old": old, "new": new, "summary": d.summary(), "diff": d.to_json()})
        for c in cells:
            if c.build == new:
                c.api["diff_vs_previous"] = f"vs {old}: {d.summary()}"
    return out
