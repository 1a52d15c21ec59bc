"""Measuring throughput interleaved: the parent side of the throughput suite.

`measure_platform` takes every contender of one platform (the releases of a cell's os/arch/variant,
optionally an A/A twin of each) and measures them in rounds. A round runs, for each preset, every
contender once, back to back, each in its own child process; the order alternates from one
(round, preset) to the next (A B, B A, A B, ...: ABBA), so a machine that drifts in between
favours nobody. Each round of each test yields one figure per contender (the median t/s of its
repetitions in that round); `harness.report.compare` pairs two contenders' figures round by round
(`throughput_stats.paired`). The native driver, when built, is one more unit in the same rounds,
so harness ÷ native is paired the same way.

Back to back means back to back: the harness children of one (round, preset) are started
together, load their release and model, and wait at a FIFO gate (`_Gated`); they are then let go
one after the other, so contender B starts measuring milliseconds after A stops, never while A
measures, and not a process start and a library load later.

Why one child per (round, contender, preset): one release per process (the shared SONAME), and a
fresh process each round also samples what differs between processes (memory layout, page
placement), which a single long-lived child would bake into one contender's figures.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.load.child import launch
from harness.suites import throughput_stats as ts
from harness.suites.native import find_llama_bench, run_llama_bench
from harness.suites.throughput import reps_of
from harness.suites.throughput_json import machine_info

log = logging.getLogger(__name__)

ROUNDS = 10  # paired rounds per comparison: ≥ 6 for a 95 % interval; 10 drops one wild round a side
AA_SUFFIX = "~aa"  # the id of a contender's A/A twin (the same build measured again)
GATE_WINDOW = 4  # children loaded at once, waiting for their turn (memory: one model each)


def schedule(units: list[Any], presets: list[str], rounds: int) -> list[tuple[int, str, Any]]:
    """(round, preset, unit) in run order: every (round, preset) runs all units back to back,
    forward when round + preset index is even, backward otherwise (A B | B A | A B ...)."""
    out = []
    for r in range(rounds):
        for j, preset in enumerate(presets):
            order = units if (r + j) % 2 == 0 else units[::-1]
            out += [(r, preset, u) for u in order]
    return out


# ----------------------------------------------------------------------------- one child


def _child(spec: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run one measuring child (the one launcher, `harness.load.child`): its result, or
    {"error", "log_tail"} (crash, with the test it died in; timeout; failure)."""
    ran = launch(
        "harness.suites.throughput", spec, workdir, timeout=timeout, env=spec.get("env"),
        name="bench",
    )  # fmt: skip
    if ran.ok and ran.result is not None:
        return ran.result
    why = f"crash: {ran.error}" if ran.crashed else str(ran.error)
    return {"error": why, "log_tail": ran.log_tail}


class _Gated:
    """A measuring child started ahead of its turn: it loads its release and model, says
    `ready`, and blocks on a FIFO until `go`, so the contenders of one round measure back to back
    (milliseconds apart, not a process start and a library load apart) while no two measure at
    once."""

    def __init__(self, spec: dict[str, Any], workdir: Path, timeout: float) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.gate = workdir / "bench.gate"
        self.gate.unlink(missing_ok=True)
        os.mkfifo(self.gate)
        self.progress = workdir / "bench.progress.jsonl"  # the launcher's `Files(.., "bench")`
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(
            target=self._run, args=({**spec, "gate": str(self.gate)}, workdir, timeout), daemon=True
        )
        self.thread.start()

    def _run(self, spec: dict[str, Any], workdir: Path, timeout: float) -> None:
        self.result = _child(spec, workdir, timeout)

    def ready(self) -> bool:
        if not self.thread.is_alive():
            return True
        try:
            return '"ready"' in self.progress.read_text(encoding="utf-8")
        except OSError:
            return False

    def go(self) -> dict[str, Any]:
        """Let it measure; its result once it has finished."""
        while self.thread.is_alive():
            try:
                fd = os.open(self.gate, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:  # ENXIO: not reading yet (between `ready` and its open)
                if err.errno != errno.ENXIO:
                    raise
                time.sleep(0.001)
                continue
            os.close(fd)  # the child reads EOF and starts
            break
        self.thread.join()
        self.gate.unlink(missing_ok=True)
        return self.result


def _prestart(
    batch: list[tuple[str, dict[str, Any], Path]], timeout: float
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Harness children of one (round, preset), in run order: all started and loaded first
    (GATE_WINDOW at a time), then let go one after the other. Without FIFOs (Windows), or for a
    single child, each simply runs in turn."""
    if not hasattr(os, "mkfifo") or len(batch) < 2:
        for cid, spec, work in batch:
            yield cid, _child(spec, work, timeout)
        return
    for i in range(0, len(batch), GATE_WINDOW):
        chunk = [
            (cid, _Gated(spec, work, timeout)) for cid, spec, work in batch[i : i + GATE_WINDOW]
        ]
        while not all(g.ready() for _, g in chunk):
            time.sleep(0.005)
        for cid, g in chunk:
            yield cid, g.go()


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


def _native(spec: dict[str, Any], preset: str, driver: Path, timeout: float) -> dict[str, Any]:
    """One round of the driver on one preset: its JSON, or {"error"}."""
    from harness.suites.native import run_driver

    p = spec["presets"][preset]
    return run_driver(
        driver,
        Path(spec["libdir"]),
        Path(p["model"]),
        int(p["n_prompt"]),
        int(p["n_gen"]),
        reps=reps_of(spec, p),
        warmup=int(spec.get("warmup", 1)),
        threads=int(spec.get("threads", 1)),
        gpu_layers=int(spec.get("gpu_layers", 0)),
        timeout=timeout,
        env=spec.get("env"),
    )


# ----------------------------------------------------------------------------- figures


def _figures(rounds: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Per test, over the rounds: t/s statistics of every repetition (median, IQR, ...), the raw
    samples and seconds, and `by_round` (each round's median t/s: what comparisons pair)."""
    out: dict[str, Any] = {}
    names = dict.fromkeys(name for tests in rounds for name in tests)
    for name in names:
        per = [t[name] for t in rounds if name in t]
        tokens = per[0]["tokens"]
        seconds = [s for t in per for s in t["seconds"]]
        tps = [tokens / s for s in seconds if s > 0]
        if not tps:
            continue
        by_round = [
            ts.summary(x)["median"]
            for t in per
            if (x := [tokens / s for s in t["seconds"] if s > 0])
        ]
        out[name] = {
            **ts.summary(tps),
            "threads": threads,
            "tokens": tokens,
            "samples": [round(x, 3) for x in tps],
            "seconds": seconds,
            "by_round": [round(x, 3) for x in by_round],
        }
    return out


def _ratios(bench: dict[str, Any], native: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """harness t/s ÷ native t/s per preset and test, paired round by round (the bootstrap of
    the pooled repetitions when the rounds are too few for an interval), and its interval."""
    ratio: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for preset, tests in native.items():
        if preset == "error" or not isinstance(tests, dict) or "error" in tests:
            continue
        for t, n in tests.items():
            ours = bench.get(preset, {}).get(t)
            if not ours or not n.get("samples"):
                continue
            c = None
            if len(ours["by_round"]) == len(n["by_round"]) >= ts.min_rounds():
                c = ts.paired(ours["by_round"], n["by_round"])
            if c is not None and c.low is not None and c.high is not None:
                change, low, high = c.change, c.low, c.high
            else:
                change, low, high = ts.bootstrap(ours["samples"], n["samples"])
            ratio.setdefault(preset, {})[t] = round(1 + change, 4)
            spread.setdefault(preset, {})[t] = [round(1 + low, 4), round(1 + high, 4)]
    return ratio, spread


# ----------------------------------------------------------------------------- the schedule


def measure_platform(
    contenders: dict[str, dict[str, Any]],
    workdir: Path,
    timeout: float = 600.0,
    rounds: int | None = None,
    aa: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every contender's `bench` section, all measured in the same interleaved rounds.

    contenders: id → bench spec (libdir, api, presets — the same presets for all —, threads,
    warmup, gpu_layers, env, cpu_variant; for the native driver include, cache, build; for
    llama-bench tree). `rounds` defaults to the spec's `rounds`, else `ROUNDS`. With `aa`, each
    contender also gets a twin (the same build, measured as one more contender), whose figures
    land in its section under `aa`: comparing the two shows this machine's false-alarm rate.

    A contender whose child fails stops there (`{"error", "log_tail"}`); the others go on.
    """
    if not contenders:
        return {}
    first = next(iter(contenders.values()))
    n_rounds = max(1, int(rounds or first.get("rounds") or ROUNDS))
    specs = dict(contenders)
    if aa:
        specs.update({f"{c}{AA_SUFFIX}": {**s, "native": False} for c, s in contenders.items()})
    presets = list(first.get("presets") or {})
    if not presets:
        return {c: {"error": "no presets to measure"} for c in contenders}
    drivers = {c: _driver(s) for c, s in specs.items()}
    units = [(c, "harness") for c in specs]
    units += [(c, "native") for c in specs if isinstance(drivers[c], Path)]
    units.sort(key=lambda u: list(specs).index(u[0]))  # a contender's native right after it
    session = uuid.uuid4().hex[:12]
    got: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {u: {} for u in units}
    first_child: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    native_failed: dict[tuple[str, str], dict[str, Any]] = {}
    order = schedule(units, presets, n_rounds)
    for g in range(0, len(order), len(units)):  # one (round, preset): every unit, in its order
        group = order[g : g + len(units)]
        r, preset = group[0][0], group[0][1]
        live = [(c, run) for _, _, (c, run) in group if c not in failed]
        harness = [
            (c, {**specs[c], "presets": {preset: specs[c]["presets"][preset]}},
             Path(workdir) / c / f"r{r}-{preset}")
            for c, run in live if run == "harness"
        ]  # fmt: skip
        children = _prestart(harness, timeout)
        for cid, runner in live:
            if runner == "native":
                if (cid, preset) in native_failed:
                    continue
                driver = drivers[cid]
                assert isinstance(driver, Path)
                one = {**specs[cid], "presets": {preset: specs[cid]["presets"][preset]}}
                res = _native(one, preset, driver, timeout)
                if "error" in res:
                    native_failed[(cid, preset)] = res
                else:
                    got[(cid, runner)].setdefault(preset, []).append(res.get("tests", {}))
                continue
            done_cid, res = next(children)
            assert done_cid == cid
            if "error" in res:
                log.info(
                    "%s: bench child failed in round %d (%s): %s", cid, r, preset, res["error"]
                )
                failed[cid] = {"error": res["error"], "log_tail": res.get("log_tail", [])}
                continue
            first_child.setdefault(cid, res)
            section = res["presets"].get(preset, {})
            if "error" in section:
                failed[cid] = {"error": f"{preset}: {section['error']}", "log_tail": []}
                continue
            got[(cid, runner)].setdefault(preset, []).append(section)
    info = {"session": session, "rounds": n_rounds, "order": "ABBA", "contenders": list(specs)}
    out: dict[str, dict[str, Any]] = {}
    for cid, spec in specs.items():
        if cid in failed:
            out[cid] = failed[cid]
            continue
        out[cid] = _section(cid, spec, got, drivers[cid], native_failed, first_child, timeout)
        out[cid]["interleave"] = info
    if aa:
        for cid in contenders:
            twin = out.pop(f"{cid}{AA_SUFFIX}")
            if "error" not in out[cid] and "error" not in twin:
                out[cid]["aa"] = {p: twin[p] for p in presets if p in twin}
    return out


def _section(
    cid: str,
    spec: dict[str, Any],
    got: dict[tuple[str, str], dict[str, list[dict[str, Any]]]],
    driver: Path | str | None,
    native_failed: dict[tuple[str, str], dict[str, Any]],
    first_child: dict[str, dict[str, Any]],
    timeout: float,
) -> dict[str, Any]:
    """One contender's `bench` section from its rounds."""
    threads = int(spec.get("threads", 1))
    bench: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for preset, p in spec["presets"].items():
        runs = got[(cid, "harness")].get(preset, [])
        first = runs[0] if runs else {}
        params[preset] = {
            "model": Path(p["model"]).name,
            "n_prompt": p["n_prompt"],
            "n_gen": p["n_gen"],
            "reps": reps_of(spec, p) * len(runs),
            "rounds": len(runs),
            "warmup": int(spec.get("warmup", 1)),
            **{k: first[k] for k in ("n_ctx", "flash_attn", "n_vocab") if k in first},
        }
        bench[preset] = _figures([r.get("tests", {}) for r in runs], threads)
    bench["params"] = params
    if driver is not None:
        native: dict[str, Any] = {"error": driver} if isinstance(driver, str) else {}
        for preset in spec["presets"] if isinstance(driver, Path) else []:
            runs = got[(cid, "native")].get(preset, [])
            native[preset] = native_failed.get((cid, preset)) or _figures(runs, threads)
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
                reps=reps_of(spec, p) * int(params[preset]["rounds"] or 1),
                threads=threads,
                gpu_layers=int(spec.get("gpu_layers", 0)),
                timeout=timeout,
                env=spec.get("env"),
            )
            for preset, p in spec["presets"].items()
        }
    child = first_child.get(cid, {})
    bench["machine"] = {
        **machine_info(child.get("system_info", ""), child.get("backends", "")),
        "threads": threads,
    }
    return bench


def run_bench(spec: dict[str, Any], workdir: Path, timeout: float = 600.0) -> dict[str, Any]:
    """One cell's `bench` section (a platform of one contender): harness figures per preset,
    native figures and ratios, llama-bench's figures when the tree ships it, machine info;
    `{"error", ...}` on a crash. `spec["rounds"]` rounds (default 1 here: nothing to pair)."""
    return measure_platform({"cell": spec}, workdir, timeout, int(spec.get("rounds") or 1))["cell"]
