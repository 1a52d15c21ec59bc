"""`llama-harness run`: provision the matrix, run conformance on what this host can run, report.

Provisioning and preparation (headers → ABI, the model and its NumPy reference) happen here in
the parent; each runnable cell then runs in its own child process, driven by pytest and spread
over pytest-xdist workers. The parent never loads libllama.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.config.matrix import Cell
from harness.errors import HarnessError
from harness.library import LibraryDownloader
from harness.load.loader import find_libdir
from harness.provision import CellResult
from harness.report import model as report
from harness.sources import assets
from harness.static import check_tree
from harness.suites.conformance import NAMES

log = logging.getLogger(__name__)

# A cell's child takes ~0.15 s, an xdist worker ~1 s to start: spread only what pays for it.
MIN_CELLS_PER_WORKER = 8
CPU_VARIANTS = {"cpu", "avx", "avx2", "avx512", "noavx", "openblas", "blas", "llvm", "msvc"}


@dataclass
class Options:
    out: Path
    workers: int = 2
    threads: int = 1
    timeout: float = 120.0
    model: str = "tiny"
    quiet: bool = False
    manifest: str | None = None
    cpu_variants: bool = True
    suites: tuple[str, ...] = ("conformance", "bench")
    bench_presets: tuple[str, ...] = ("tiny", "small-f16", "small-q8_0")
    baseline: dict[str, Any] | None = None
    bench_rounds: int | None = None  # None: throughput_rounds.ROUNDS
    bench_aa: bool = False


def not_runnable(cell: Cell, host: tuple[str, str]) -> str | None:
    """Why this host cannot run the cell, or None when it can."""
    return plan(cell, host)[0]


def plan(cell: Cell, host: tuple[str, str]) -> tuple[str | None, dict[str, Any]]:
    """(why not, or None; what the cell's child needs) for running `cell` on this host.

    GPU builds run with every layer offloaded when the host has the driver they need: Vulkan
    with its loader and an ICD (a software one such as Mesa's lavapipe counts:
    GGML_VK_VISIBLE_DEVICES=0 makes ggml accept a CPU-type device), CUDA with libcuda.
    """
    if (cell.os, cell.arch) != host:
        return f"built for {cell.os}/{cell.arch}; this host is {host[0]}/{host[1]}", {}
    if cell.variant in CPU_VARIANTS:
        return None, {}
    if (cell.os, cell.variant) == ("macos", "metal"):
        return None, {"gpu_layers": 99}
    if cell.variant == "vulkan":
        why = _vulkan_missing()
        if why:
            return f"the vulkan build needs {why}", {}
        return None, {"gpu_layers": 99, "env": {"GGML_VK_VISIBLE_DEVICES": "0"}, "gpu": "vulkan"}
    if cell.variant.startswith("cuda"):
        if not _library("cuda", "nvcuda"):
            return "the CUDA build needs the NVIDIA driver (libcuda not found on this host)", {}
        return None, {"gpu_layers": 99, "gpu": "cuda"}
    return f"no probe for a {cell.variant} runtime on this host yet", {}


def _library(*names: str) -> str | None:
    import ctypes.util

    return next((found for n in names if (found := ctypes.util.find_library(n))), None)


def _vulkan_missing() -> str | None:
    if not _library("vulkan", "vulkan-1"):
        return "the Vulkan loader (libvulkan not found)"
    dirs = [
        Path(d)
        for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
    ]
    if sys.platform.startswith("linux") and not any(
        d.is_dir() and any(d.glob("*.json")) for d in dirs
    ):
        return "a Vulkan driver (no ICD in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d)"
    return None


def expectations(model: Path, tiny: bool, prompt: str, n_predict: int) -> dict[str, Any]:
    """What every release must produce, from an independent NumPy forward pass (tiny model)."""
    if not tiny:
        return {}
    from harness.suites.fixtures import reference
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


def _base_row(res: CellResult) -> dict[str, Any]:
    c = res.cell
    s = res.stored
    return {
        "release": c.release,
        "build": res.build,
        "os": c.os,
        "arch": c.arch,
        "variant": c.variant,
        "asset": res.asset,
        "digest": s.digest if s else None,
        "source": res.source,
        "status": "pass",
        "reason": "",
        "checks": {},
        "api": {},
        "bench": {},
    }


def run(dl: LibraryDownloader, cells: Sequence[Cell], opts: Options) -> dict[str, Any]:
    from harness.abi import manifest as manifests
    from harness.abi.release import release_api
    from harness.suites.fixtures import model as models

    host = assets.host_platform()
    model_path = models.ensure_model(dl.cache.root, opts.model)  # a bad `model:` fails first
    wanted = manifests.load(opts.manifest) if opts.manifest else None
    results = dl.download_cells(list(cells), raise_errors=False)
    rows: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {}
    apis: dict[str, Api] = {}  # build → its ABI
    expect: dict[str, Any] | None = None
    api_dir = opts.out / "abi"
    api_dir.mkdir(parents=True, exist_ok=True)
    for res in results:
        row = rows[res.cell.id] = _base_row(res)
        if res.error:
            row["status"], row["reason"] = "error", str(res.error)
            continue
        assert res.stored and res.build
        try:
            api = apis.get(res.build) or release_api(dl, res)
        except HarnessError as err:
            api = None
            row["api"]["error"] = str(err)
        if api is not None:
            apis[res.build] = api
            row["api"].update(
                {
                    "functions": len(api.functions),
                    "structs": len(api.structs),
                    "header": f"{res.build} llama.h",
                }
            )
        static = check_tree(
            Path(res.stored.path), res.cell.os, res.cell.arch, res.cell.variant, api
        )
        row["checks"].update({f"static.{k}": v for k, v in static.checks.items()})
        row["static"] = {k: static.facts.get(k) for k in STATIC_FACTS if k in static.facts}
        why, extra = plan(res.cell, host)
        if why:
            # another platform is judged by its binaries; this platform's GPU build that cannot
            # run here (no driver) is a skip, with the reason, unless its binaries are broken
            same_platform = (res.cell.os, res.cell.arch) == host
            _static_only(row, static, why, skip=same_platform)
            continue
        if api is None:  # runnable here, but without its header we cannot call it safely
            row["status"] = "error"
            row["reason"] = f"no ABI for {res.build}: {row['api'].get('error')}"
            continue
        try:
            libdir = find_libdir(Path(res.stored.path))
        except HarnessError as err:
            row["status"], row["reason"] = "error", str(err)
            continue
        api_path = api_dir / f"{res.build}.json"
        if not api_path.exists():
            api_path.write_text(api.to_json(), encoding="utf-8")
        if expect is None:
            expect = expectations(model_path, opts.model == models.TINY, models.PROMPT, 16)
        specs[res.cell.id] = {
            **extra,
            "libdir": str(libdir),
            "api": str(api_path),
            "model": str(model_path),
            "prompt": models.PROMPT,
            "expect": expect,
            "n_predict": 16,
            "threads": opts.threads,
        }
    variant_runs = _cpu_variant_specs(specs, opts) if opts.cpu_variants else {}
    if specs and "conformance" in opts.suites:
        _pytest({**specs, **variant_runs}, opts)
    for cid, spec in specs.items():
        if "conformance" in opts.suites:
            _merge(rows[cid], opts.out / "cells" / f"{cid}.json", spec)
        else:
            rows[cid]["reason"] = "conformance not run (--suite)"
    _compare_across_releases([rows[c] for c in specs])
    _merge_cpu_variants(rows, variant_runs, opts.out)
    diffs = _api_diffs(list(rows.values()), apis)
    if wanted is not None:
        _manifest(list(rows.values()), apis, wanted, str(opts.manifest))
    for row in rows.values():
        _fold_static(row)
    if "bench" in opts.suites:
        _bench(dl, results, rows, specs, opts)
    rep = report.build(list(rows.values()), {"model": str(model_path), "api_diffs": diffs})
    from harness.report.compare import compare

    rep["comparison"] = compare(rep, opts.baseline)
    return rep


def _bench(
    dl: LibraryDownloader,
    results: list[CellResult],
    rows: dict[str, dict[str, Any]],
    specs: dict[str, dict[str, Any]],
    opts: Options,
) -> None:
    """Throughput, one child at a time (timings taken in parallel would mean nothing), on the
    cells that ran, the releases of each platform interleaved (`measure_platform`); GPU builds on
    a software device are not worth timing."""
    from harness.abi.release import headers_dir
    from harness.suites.throughput import presets_for, write_benchmark_json
    from harness.suites.throughput_rounds import measure_platform

    presets = presets_for(dl.cache.root, list(opts.bench_presets))
    platforms: dict[str, dict[str, dict[str, Any]]] = {}  # releases of a platform: interleaved
    for res in results:
        cid = res.cell.id
        spec, row = specs.get(cid), rows[cid]
        if spec is None or spec.get("gpu") == "vulkan" or row["status"] not in ("pass", "fail"):
            continue
        assert res.stored
        bspec = {
            **spec,
            "presets": presets,
            "threads": opts.threads,
            "include": str(headers_dir(dl, res)),
            "cache": str(dl.cache.root),
            "build": res.build,
            "tree": str(res.stored.path),
        }
        platforms.setdefault(f"{res.cell.os}-{res.cell.arch}-{res.cell.variant}", {})[cid] = bspec
    for plat, contenders in platforms.items():
        work = opts.out / "work" / "bench" / plat
        timeout = max(opts.timeout, 600)
        benches = measure_platform(contenders, work, timeout, opts.bench_rounds, opts.bench_aa)
        for cid, bench in benches.items():
            rows[cid]["bench"] = bench
            if "error" not in bench:
                write_benchmark_json(opts.out, bench, rows[cid])


def _cpu_variant_specs(
    specs: dict[str, dict[str, Any]], opts: Options
) -> dict[str, dict[str, Any]]:
    """One more run per ggml CPU backend variant this CPU supports, each forced in its child."""
    from harness.load.backends import supported_variants

    out: dict[str, dict[str, Any]] = {}
    for cid, spec in specs.items():
        if spec.get("gpu"):
            continue
        try:
            variants = supported_variants(Path(spec["libdir"]), timeout=opts.timeout)
        except HarnessError as err:
            log.info("%s: no CPU variant runs: %s", cid, err)
            continue
        if len(variants) < 2:  # one variant (or none: built in) is what the main run used
            continue
        for v in variants:
            out[f"{cid}+cpu-{v}"] = {**spec, "cpu_variant": v, "of": cid}
    return out


def _merge_cpu_variants(
    rows: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]], out: Path
) -> None:
    """The variants of one build must all pass and agree on the greedy tokens."""
    by_cell: dict[str, dict[str, Any]] = {}
    for vid, spec in runs.items():
        try:
            outcome = json.loads((out / "cells" / f"{vid}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            outcome = {"status": "error", "reason": "no result", "facts": {}}
        by_cell.setdefault(spec["of"], {})[spec["cpu_variant"]] = outcome
    for cid, variants in by_cell.items():
        row = rows[cid]
        want = (row.get("facts") or {}).get("greedy")
        summary, bad = {}, []
        for v, o in variants.items():
            same = (o.get("facts") or {}).get("greedy") == want
            summary[v] = {"status": o["status"], "reason": o.get("reason", ""), "greedy_same": same}
            if o["status"] != "pass" or not same:
                bad.append(f"{v}: {o['status']}{'' if same else ', other greedy tokens'}")
        row["cpu_variants"] = summary
        row["checks"]["cpu_variants"] = {
            "status": "fail" if bad else "pass",
            "message": "; ".join(bad)
            if bad
            else f"{len(variants)} CPU backend variants pass with the same greedy tokens",
            "seconds": 0.0,
        }
        if bad and row["status"] == "pass":
            row["status"], row["reason"] = "fail", "CPU variants: " + "; ".join(bad)


STATIC_FACTS = (
    "libdir",
    "glibc_max",
    "glibcxx_max",
    "macos_min",
    "cpu_variants",
    "exports_missing",
    "external",
)


def _static_only(row: dict[str, Any], static: Any, why: str, skip: bool = False) -> None:
    """A cell this host cannot run passes or fails on its static checks alone (or, for a build
    of this very platform, is a skip when they pass)."""
    row["scope"] = "static"
    if static.ok and skip:
        row["status"], row["reason"] = "skip", why
    elif static.ok:
        row["status"], row["reason"] = "pass", f"static checks only: {why}"
    else:
        bad = [f"{k}: {v['message']}" for k, v in static.checks.items() if v["status"] == "fail"]
        row["status"], row["reason"] = "fail", "; ".join(bad)


def _fold_static(row: dict[str, Any]) -> None:
    """A cell that ran still fails when its binaries fail a static check."""
    if row.get("scope") == "static" or row["status"] not in ("pass",):
        return
    bad = [
        f"{k}: {v['message']}"
        for k, v in row["checks"].items()
        if k.startswith("static.") and v["status"] == "fail"
    ]
    if bad:
        row["status"], row["reason"] = "fail", "; ".join(bad)


def _api_diffs(rows: list[dict[str, Any]], apis: dict[str, Api]) -> list[dict[str, Any]]:
    """Each release's llama.h against the previous release of the matrix."""
    from harness.abi import diff as apidiff
    builds = list(dict.fromkeys(r["build"] for r in rows if r.get("build") in apis))
    out = []
    for old, new in itertools.pairwise(builds):
        d = apidiff.diff(apis[old], apis[new])
        out.append({"old": old, "new": new, "summary": d.summary(), "diff": d.to_json()})
        for r in rows:
            if r.get("build") == new:
                r["api"]["diff_vs_previous"] = f"vs {old}: {d.summary()}"
    return out


def _manifest(rows: list[dict[str, Any]], apis: dict[str, Api], wanted: Any, name: str) -> None:
    from harness.abi import manifest as manifests
    verdicts = {b: manifests.check(wanted, api) for b, api in apis.items()}
    for r in rows:
        v = verdicts.get(r.get("build") or "")
        if v is None:
            continue
        r["api"]["manifest"] = "compatible" if v.compatible else "breaks: " + "; ".join(v.breaks)
        r["checks"]["manifest"] = {
            "status": "pass" if v.compatible else "fail",
            "message": f"{name}: compatible"
            if v.compatible
            else f"{name} breaks: " + "; ".join(v.breaks),
            "seconds": 0.0,
        }
        if not v.compatible and r["status"] == "pass":
            r["status"], r["reason"] = "fail", f"{name} breaks: " + "; ".join(v.breaks)


def _pytest(specs: dict[str, dict[str, Any]], opts: Options) -> None:
    work = opts.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    cells_file = work / "cells.json"
    cells_file.write_text(
        json.dumps({"cells": specs, "out": str(opts.out), "timeout": opts.timeout}),
        encoding="utf-8",
    )
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(ini),
        "--rootdir",
        str(work),
        "-p",
        "harness.suites.plugin",
        "-p",
        "no:cacheprovider",
        "--cells",
        str(cells_file),
        "--pyargs",
        "harness.suites.test_conformance",
        "-q",
        "-rfE",
        "--junitxml",
        str(opts.out / "junit-conformance.xml"),
    ]
    workers = min(opts.workers, len(specs) // MIN_CELLS_PER_WORKER)
    if workers > 1:
        cmd += ["-p", "xdist", "-n", str(workers), "--dist", "loadgroup"]
    # Only our plugin (and xdist): a user's installed pytest plugins have no business here,
    # and loading them costs every worker start-up time.
    env = {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    subprocess.run(
        cmd, check=False, env=env, stdout=subprocess.DEVNULL if opts.quiet else sys.stderr
    )


def _merge(row: dict[str, Any], path: Path, spec: dict[str, Any]) -> None:
    try:
        outcome = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        row["status"], row["reason"] = "error", "the cell produced no result"
        return
    row["status"], row["reason"] = outcome["status"], outcome["reason"]
    row["checks"] = {**outcome["checks"], **row["checks"]}  # the static checks came first
    row["facts"] = outcome.get("facts", {})
    row["log_tail"] = outcome.get("log_tail", [])
    row["seconds"] = outcome.get("seconds", {})
    row["api"].update(
        {"backends": outcome.get("backends"), "missing_symbols": outcome.get("missing_symbols", [])}
    )
    row["devices"] = outcome.get("devices", [])
    gpu = spec.get("gpu")
    if (
        gpu
        and row["status"] in ("pass", "fail")
        and not any(d.lower().startswith(gpu) for d in row["devices"])
    ):  # it ran, but on the CPU: say so instead of claiming the GPU build works
        said = next((d for d in row["devices"] if "ound" in d or "no " in d), "no device used")
        row["status"], row["reason"] = "skip", f"ggml accepted no {gpu} device here ({said})"


def _compare_across_releases(rows: list[dict[str, Any]]) -> None:
    """Greedy tokens must agree across every release that produced them."""
    seen = [(r, tuple(r.get("facts", {}).get("greedy") or ())) for r in rows]
    seen = [(r, g) for r, g in seen if g]
    if len(seen) < 2:
        return
    common, _ = Counter(g for _, g in seen).most_common(1)[0]
    for r, g in seen:
        same = g == common
        r["checks"]["greedy_across_releases"] = {
            "status": "pass" if same else "fail",
            "message": f"same {len(g)} tokens as the other releases"
            if same
            else f"{list(g)} differs from the other releases' {list(common)}",
            "seconds": 0.0,
        }
        if not same and r["status"] == "pass":
            r["status"], r["reason"] = "fail", "greedy tokens differ from the other releases"


CHECK_NAMES = [*NAMES, "greedy_across_releases"]
