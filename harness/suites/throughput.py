"""The throughput suite: prompt processing (pp<N>) and token generation (tg<N>), llama-bench style.

    python -m harness.suites.throughput SPEC.json        (the child: one release, every preset)

t/s counts the `llama_decode` calls only (plus `llama_synchronize` where the header declares it):
each batch is built before the clock starts, tokens are fixed ids (`bench_tokens`, no tokenizer,
no sampling). Per preset, one context of n_ctx = n_prompt + n_gen (n_batch = n_ubatch = n_ctx,
n_seq_max 1, the release's other defaults, flash attention included); `warmup` unrecorded runs,
then `reps` recorded ones, each from a cleared KV cache: pp decodes n_prompt tokens in one batch,
tg decodes n_gen single tokens. The child records each repetition's seconds; the parent
(`run_bench`) turns them into t/s statistics, runs the native driver
(`harness.suites.native`) on the same library, model and parameters for the harness ÷ native ratio,
and llama-bench where the release tree ships one.

pytest-benchmark: the timings cross a process boundary (one release per process), so
pytest-benchmark cannot time them itself. `benchmark_json` writes its JSON format from the child's
per-repetition seconds (the same statistics, computed the same way:
`harness.report.compare.stats`), so `pytest-benchmark compare` reads it;
`benchmarks/test_bench_throughput.py` feeds the same seconds to the real plugin through a replaying
timer.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.report.compare import NOT_PRESETS, interval, stats
from harness.suites.native import find_llama_bench, run_llama_bench, signal_name

# preset → (n_prompt, n_gen, repetitions). The tiny model's pp64 takes well under a millisecond,
# so one preemption on a shared runner ruins a repetition: it gets many (they cost nothing).
DEFAULT_SIZES = {"tiny": (64, 16, 20), "small-f16": (128, 32, 10), "small-q8_0": (128, 32, 10)}
OTHER_SIZE = (128, 32, 5)  # a user's own GGUF
DEFAULT_REPS = 5  # a preset that names none, as llama-bench
RESERVED = NOT_PRESETS  # keys of a cell's `bench` section that are not presets
LOG_TAIL_LINES = 30
FORMAT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written when it is not installed


def bench_tokens(n: int, n_vocab: int) -> list[int]:
    """Fixed, non-special token ids (the native driver computes the same ones)."""
    return [3 + (i * 31) % (n_vocab - 3) for i in range(n)]


def presets_of(bench: dict[str, Any]) -> list[str]:
    """The preset names in a `bench` section (everything but the reserved keys)."""
    return [k for k in bench if k not in RESERVED]


def presets_for(
    cache_root: Path,
    names: list[str],
    n_prompt: int | None = None,
    n_gen: int | None = None,
    reps: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The `presets` entry of a bench spec: generated presets by name, or a GGUF path; sizes and
    repetitions from `DEFAULT_SIZES` unless given."""
    from harness.suites.fixtures import model
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = model.ensure_model(cache_root, name)
        pp, tg, n = DEFAULT_SIZES.get(name, OTHER_SIZE)
        key = name if name in model.PRESETS else path.stem
        out[key] = {
            "model": str(path),
            "n_prompt": pp if n_prompt is None else n_prompt,
            "n_gen": tg if n_gen is None else n_gen,
            "reps": n if reps is None else reps,
        }
    return out


# ----------------------------------------------------------------------------- the child


def _reps(spec: dict[str, Any], preset: dict[str, Any]) -> int:
    return max(1, int(preset.get("reps") or spec.get("reps") or DEFAULT_REPS))


def _flash(params: Any) -> str:
    names = {f[0] for f in type(params)._fields_}
    if "flash_attn_type" in names:
        v = int(params.flash_attn_type)
        return "auto" if v < 0 else ("off" if v == 0 else "on")
    if "flash_attn" in names:
        return "on" if params.flash_attn else "off"
    return "n/a"


def measure(
    loaded: Any, spec: dict[str, Any], note: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Every preset's pp and tg seconds per repetition, in this (the child's) process."""
    from harness.suites.llama import Llama, _first

    threads, warmup = int(spec.get("threads", 1)), int(spec.get("warmup", 1))
    llama = Llama(loaded, threads, int(spec.get("gpu_layers", 0)))
    fns = llama.fns
    sync = fns.llama_synchronize if "llama_synchronize" in fns else None
    get_one = fns.llama_batch_get_one
    four = len(get_one.argtypes) == 4
    decode = fns.llama_decode
    clock = time.perf_counter

    def timed(ctx: Any, arr: Any, n: int, pos: int) -> float:
        batch = get_one(arr, n, pos, 0) if four else get_one(arr, n)
        t0 = clock()
        rc = decode(ctx, batch)
        if sync is not None:
            sync(ctx)
        dt = clock() - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return dt

    out: dict[str, Any] = {}
    for preset, p in spec["presets"].items():
        n_prompt, n_gen, reps = int(p["n_prompt"]), int(p["n_gen"]), _reps(spec, p)
        note({"start": preset, "test": "load"})
        model = llama.load_model(Path(p["model"]))
        if model is None:
            out[preset] = {"error": f"the model did not load: {p['model']}"}
            continue
        n_ctx = n_prompt + n_gen
        cp = llama.context_params(n_ctx, n_seq_max=1)  # n_batch = n_ubatch = n_ctx
        new = _first(fns, "llama_init_from_model", "llama_new_context_with_model")
        ctx = getattr(fns, new)(model.handle, cp)
        if not ctx:
            out[preset] = {"error": f"{new} returned NULL"}
            llama.free_model(model)
            continue
        if "llama_set_n_threads" in fns:
            fns.llama_set_n_threads(ctx, threads, threads)
        n_vocab = llama.n_vocab(model)
        ids = bench_tokens(max(n_prompt, n_gen), n_vocab)
        prompt = (ctypes.c_int32 * max(n_prompt, 1))(*ids[:n_prompt])
        singles = [(ctypes.c_int32 * 1)(t) for t in ids[:n_gen]]

        def pp(ctx: Any = ctx, prompt: Any = prompt, n: int = n_prompt) -> float:
            llama.clear_memory(ctx)
            return timed(ctx, prompt, n, 0)

        def tg(ctx: Any = ctx, singles: list[Any] = singles) -> float:
            llama.clear_memory(ctx)
            return sum(timed(ctx, arr, 1, i) for i, arr in enumerate(singles))

        tests: dict[str, Any] = {}
        for kind, n, run in (("pp", n_prompt, pp), ("tg", n_gen, tg)):
            if n <= 0:
                continue
            name = f"{kind}{n}"
            note({"start": preset, "test": name})
            gc.disable()
            try:
                for _ in range(warmup):
                    run()
                seconds = [run() for _ in range(reps)]
            finally:
                gc.enable()
            tests[name] = {"tokens": n, "seconds": seconds}
            note({"done": preset, "test": name, "seconds": seconds})
        out[preset] = {"n_vocab": n_vocab, "n_ctx": n_ctx, "flash_attn": _flash(cp), "tests": tests}
        llama.free_context(ctx)
        llama.free_model(model)
    return {"presets": out, "system_info": llama.system_info().strip()}


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    log = open(spec["log"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open until exit
    progress = open(spec["progress"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def note(item: dict[str, Any]) -> None:
        progress.write(json.dumps(item) + "\n")
        progress.flush()
        os.fsync(progress.fileno())

    from harness.abi import Api
    from harness.load.loader import load

    api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))

    def on_log(_level: int, text: str) -> None:
        log.write(text)

    loaded = load(Path(spec["libdir"]), api, on_log, spec.get("cpu_variant"))
    result = {**measure(loaded, spec, note), "backends": loaded.backends}
    out = Path(spec["result"])
    tmp = out.with_name(out.name + ".incomplete")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, out)
    log.flush()
    os._exit(0)  # skip teardown: some releases' static destructors crash at exit


# ----------------------------------------------------------------------------- the parent


def _tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-LOG_TAIL_LINES:]


def _where(progress: Path) -> str:
    """Where a crashed child was: the test it started and did not finish."""
    last = ""
    try:
        for line in progress.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if "start" in item:
                last = f"{item['start']} {item['test']}"
            elif "done" in item:
                last = ""
    except (OSError, ValueError):
        pass
    return f" in {last}" if last else " while loading the library"


def _child(spec: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run the measuring child; its result, or {"error", "log_tail"} (crash, timeout, failure)."""
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = (("log", "log"), ("progress", "jsonl"), ("result", "json"), ("spec", "json"))
    paths = {k: workdir / f"bench-{k}.{ext}" for k, ext in kinds}
    for p in paths.values():
        p.unlink(missing_ok=True)
    full = {**spec, **{k: str(paths[k]) for k in ("log", "progress", "result")}}
    paths["spec"].write_text(json.dumps(full), encoding="utf-8")
    env = {**os.environ, **(spec.get("env") or {})}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "harness.suites.throughput", str(paths["spec"])]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            "error": f"timed out after {timeout:.0f} s{_where(paths['progress'])}",
            "log_tail": _tail(paths["log"]),
        }
    if paths["result"].is_file():
        data: dict[str, Any] = json.loads(paths["result"].read_text(encoding="utf-8"))
        return data
    stderr = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    tail = (_tail(paths["log"]) + stderr)[-LOG_TAIL_LINES:]
    if proc.returncode < 0:
        why = f"crash: {signal_name(proc.returncode)}{_where(paths['progress'])}"
    else:
        why = f"the bench child failed: {stderr[-1] if stderr else proc.returncode}"
    return {"error": why, "log_tail": tail}


def _figures(tests: dict[str, Any], threads: int) -> dict[str, Any]:
    """Per test: t/s statistics over the repetitions (median, IQR, ...) and the raw samples."""
    out = {}
    for name, t in tests.items():
        tps = [t["tokens"] / s for s in t["seconds"] if s > 0]
        if not tps:
            continue
        out[name] = {
            **stats(tps),
            "threads": threads,
            "tokens": t["tokens"],
            "samples": [round(x, 3) for x in tps],
            "seconds": t["seconds"],
        }
    return out


def machine_info(system_info: str = "", backends: str = "") -> dict[str, Any]:
    """This host, in pytest-benchmark's machine_info keys, plus llama.cpp's own system info."""
    from harness.host.probe import cpu_features

    try:
        brand, features = cpu_features()
    except Exception:  # a probe must never cost the figures
        brand, features = None, []
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {
            "brand_raw": brand or "",
            "count": os.cpu_count(),
            "avx512f": "avx512f" in features,
        },
        "llama_system_info": system_info,
        "backends": backends,
    }


def run_bench(spec: dict[str, Any], workdir: Path, timeout: float = 600.0) -> dict[str, Any]:
    """One cell's `bench` section: harness figures per preset, native figures and ratios,
    llama-bench's figures when the tree ships it, machine info; `{"error", ...}` on a crash.

    spec: libdir, api (ABI JSON path), presets ({name: {model, n_prompt, n_gen, reps}}; see
    `presets_for`), reps (for presets that name none: 5), warmup (1), threads (1), gpu_layers
    (0), env, rounds (1); for the native driver: include (the release's include folder), cache
    (cache root), build, native (default true); for llama-bench: tree (the extracted release),
    llama_bench (default true).

    rounds > 1 splits the repetitions into that many alternating harness / native blocks, so a
    load that drifts on a shared machine biases both sides alike (each block reloads the model).
    """
    if not spec.get("presets"):
        return {"error": "no presets to measure"}
    threads = int(spec.get("threads", 1))
    reps = {name: _reps(spec, p) for name, p in spec["presets"].items()}
    rounds = max(1, min(int(spec.get("rounds", 1)), *reps.values()))
    per_round = {name: -(-n // rounds) for name, n in reps.items()}
    part = {
        **spec,
        "presets": {n: {**p, "reps": per_round[n]} for n, p in spec["presets"].items()},
    }
    driver = _driver(spec)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for r in range(rounds):
        got = _child(part, Path(workdir) / f"round-{r}" if rounds > 1 else Path(workdir), timeout)
        if "error" in got:
            return {"error": got["error"], "log_tail": got.get("log_tail", [])}
        ours.append(got)
        if isinstance(driver, Path):
            theirs.append(_native_round(part, driver, timeout))
    bench: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for preset, p in spec["presets"].items():
        runs = [o["presets"].get(preset, {}) for o in ours]
        first = runs[0]
        params[preset] = {
            "model": Path(p["model"]).name,
            "n_prompt": p["n_prompt"],
            "n_gen": p["n_gen"],
            "reps": per_round[preset] * rounds,
            "rounds": rounds,
            "warmup": int(spec.get("warmup", 1)),
            **{k: first[k] for k in ("n_ctx", "flash_attn", "n_vocab", "error") if k in first},
        }
        bench[preset] = _figures(_pool([r.get("tests", {}) for r in runs]), threads)
    bench["params"] = params
    if driver is not None:
        native = _native_figures(spec, driver, theirs, threads)
        bench["native"] = native
        bench["ratio"], bench["ratio_interval"] = _ratios(bench, native)
    tree = spec.get("tree")
    exe = find_llama_bench(Path(tree)) if tree and spec.get("llama_bench", True) else None
    if exe is not None:
        bench["llama_bench"] = {
            preset: run_llama_bench(
                exe,
                Path(p["model"]),
                int(p["n_prompt"]),
                int(p["n_gen"]),
                reps=reps[preset],
                threads=threads,
                gpu_layers=int(spec.get("gpu_layers", 0)),
                timeout=timeout,
                env=spec.get("env"),
            )
            for preset, p in spec["presets"].items()
        }
    bench["machine"] = {
        **machine_info(ours[0].get("system_info", ""), ours[0].get("backends", "")),
        "threads": threads,
    }
    return bench


def _ratios(bench: dict[str, Any], native: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """harness t/s ÷ native t/s per preset and test (ratio of medians), and its 95 % bootstrap
    interval [low, high] from the two sides' repetitions."""
    ratio: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for preset, tests in native.items():
        if preset == "error" or not isinstance(tests, dict) or "error" in tests:
            continue
        for t, n in tests.items():
            ours = bench.get(preset, {}).get(t)
            if not ours or not n.get("samples"):
                continue
            change, low, high = interval(ours["samples"], n["samples"])
            ratio.setdefault(preset, {})[t] = round(1 + change, 4)
            spread.setdefault(preset, {})[t] = [round(1 + low, 4), round(1 + high, 4)]
    return ratio, spread


def _pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Tests of several rounds → one, their seconds concatenated."""
    out: dict[str, Any] = {}
    for tests in runs:
        for name, t in tests.items():
            slot = out.setdefault(name, {"tokens": t["tokens"], "seconds": []})
            slot["seconds"] = slot["seconds"] + list(t["seconds"])
    return out


def _driver(spec: dict[str, Any]) -> Path | str | None:
    """The native driver for this release (a path), why there is none (a string), or None when
    the spec does not ask for it (no include folder, or native: false)."""
    if not spec.get("native", True) or not spec.get("include"):
        return None
    if spec.get("cpu_variant"):
        return "the native driver does not force a CPU variant"
    from harness.abi import Api
    from harness.suites.native import build_driver

    api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))
    cache = Path(spec.get("cache") or Path(spec["api"]).parent)
    driver = build_driver(cache, Path(spec["include"]), api, str(spec.get("build") or "release"))
    return driver.path or driver.reason


def _native_round(spec: dict[str, Any], driver: Path, timeout: float) -> dict[str, Any]:
    """One round of the driver, every preset: {preset: driver JSON or {"error"}}."""
    from harness.suites.native import run_driver

    return {
        preset: run_driver(
            driver,
            Path(spec["libdir"]),
            Path(p["model"]),
            int(p["n_prompt"]),
            int(p["n_gen"]),
            reps=_reps(spec, p),
            warmup=int(spec.get("warmup", 1)),
            threads=int(spec.get("threads", 1)),
            gpu_layers=int(spec.get("gpu_layers", 0)),
            timeout=timeout,
            env=spec.get("env"),
        )
        for preset, p in spec["presets"].items()
    }


def _native_figures(
    spec: dict[str, Any], driver: Path | str, rounds: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    if isinstance(driver, str):
        return {"error": driver}
    out: dict[str, Any] = {}
    for preset in spec["presets"]:
        runs = [r[preset] for r in rounds]
        bad = next((r for r in runs if "error" in r), None)
        out[preset] = bad or _figures(_pool([r["tests"] for r in runs]), threads)
    return out


# ----------------------------------------------------------------------------- pytest-benchmark


def _seconds_stats(seconds: list[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` block for per-round seconds (same fields, same quartiles)."""
    s = stats(seconds)
    q1, q3, iqr = s["q1"], s["q3"], s["iqr"]
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    mean, sd = s["mean"], s["stddev"]
    data = sorted(seconds)
    ld = bisect.bisect_left(data, lo)
    hd = bisect.bisect_right(data, hi)  # pytest-benchmark's hd15iqr: the datum after the fence
    n_iqr = sum(1 for x in data if x < lo or x > hi)
    n_sd = sum(1 for x in data if x < mean - sd or x > mean + sd)
    return {
        "min": s["min"],
        "max": s["max"],
        "mean": mean,
        "stddev": sd,
        "rounds": s["rounds"],
        "median": s["median"],
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": n_iqr,
        "stddev_outliers": n_sd,
        "outliers": f"{n_sd};{n_iqr}",
        "ld15iqr": data[0] if len(data) == 1 else data[ld],
        "hd15iqr": data[-1] if len(data) == 1 or hd == len(data) else data[hd],
        "ops": 1.0 / mean if mean else 0.0,
        "total": sum(seconds),
        "iterations": 1,
    }


def benchmark_json(bench: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """A cell's bench section as a pytest-benchmark JSON document (rounds = repetitions, times in
    seconds per repetition; t/s and the native ratio in `extra_info`)."""
    try:
        from pytest_benchmark import __version__ as version
    except ImportError:
        version = FORMAT_VERSION
    cid = "-".join(str(cell.get(k, "?")) for k in ("release", "os", "arch", "variant"))
    benchmarks = []
    params = bench.get("params", {})
    for runner, section in (("harness", bench), ("native", bench.get("native") or {})):
        for preset in presets_of(section):
            tests = section.get(preset)
            if not isinstance(tests, dict) or "error" in tests:
                continue
            for test, fig in tests.items():
                if not isinstance(fig, dict) or not fig.get("seconds"):
                    continue
                ratio = (bench.get("ratio") or {}).get(preset, {}).get(test)
                benchmarks.append(
                    {
                        "group": f"{preset} {test}",
                        "name": f"{test}[{preset}-{runner}]",
                        "fullname": f"{cid}::{runner}::{preset}::{test}",
                        "params": {"preset": preset, "test": test, "runner": runner},
                        "param": f"{preset}-{runner}",
                        "extra_info": {
                            "tokens": fig["tokens"],
                            "tok_per_s_median": fig["median"],
                            "threads": fig.get("threads"),
                            "harness_over_native": ratio if runner == "harness" else None,
                            **(params.get(preset) or {}),
                        },
                        "options": {
                            "disable_gc": True,
                            "timer": "perf_counter" if runner == "harness" else "CLOCK_MONOTONIC",
                            "min_rounds": fig["rounds"],
                            "max_time": 0.0,
                            "min_time": 0.0,
                            "warmup": (params.get(preset) or {}).get("warmup", 1),
                        },
                        "stats": _seconds_stats(list(fig["seconds"])),
                    }
                )
    machine = dict(bench.get("machine") or machine_info())
    return {
        "machine_info": machine,
        "commit_info": {
            "id": cell.get("build") or cell.get("release"),
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": "llama.cpp",
            "branch": cell.get("release"),
        },
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": version,
    }


def write_benchmark_json(out_dir: Path, bench: dict[str, Any], cell: dict[str, Any]) -> Path:
    """Write `bench-<release>-<os>-<arch>-<variant>.json` (pytest-benchmark format) in out_dir."""
    cid = "-".join(str(cell.get(k, "?")) for k in ("release", "os", "arch", "variant"))
    path = Path(out_dir) / f"bench-{cid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".incomplete")
    tmp.write_text(json.dumps(benchmark_json(bench, cell), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main(sys.argv[1]))
