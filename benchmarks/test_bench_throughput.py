"""Throughput benchmarks (issue 5): pp/tg per release and preset, harness and native, on the real
node-llama-cpp linux-x64 builds.

- harness: the suite's child process (`harness.suites.throughput`), t/s over llama_decode only
- native: `harness/native/driver.c` built against the release's own llama.h, same loop, same
  library, model and parameters; the ratio harness ÷ native is printed at the end (goal ≥ 0.95 on
  the small presets) and stored in each benchmark's `extra_info`
- every release measured interleaved with the others (`throughput_rounds.measure_platform`: each
  round runs every release back to back, ABBA order), so each release's change vs the previous one
  (paired per-round ratio, sign-test interval, verdict) in the harness benchmarks' `extra_info`,
  and the whole table in `bench-throughput.json`, are not the machine's drift

One release per process (shared SONAME), so the decode calls are timed in the release's child, not
here. Each benchmark's rounds are that child's measured seconds per repetition, replayed into
pytest-benchmark by a timer (`Replay`) that advances by exactly those seconds: its statistics,
JSON, `--benchmark-compare` and `--benchmark-compare-fail` then work on the real measurements.

Environment: LLAMA_HARNESS_BENCH_RELEASES (comma list, default every era),
LLAMA_HARNESS_BENCH_THREADS (default 1), LLAMA_HARNESS_BENCH_ROUNDS (interleaved rounds, default
6: the fewest that give a 95 % verdict), LLAMA_HARNESS_BENCH_REPORT (default bench-throughput.json).

`test_bench_verdicts.py` proves the verdicts hold under load (A/A, flips, real changes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import RATIOS
from harness.report import compare
from harness.suites.throughput import DEFAULT_SIZES, presets_for
from harness.suites.throughput_rounds import measure_platform
from tests.realbuilds import CACHE, ERAS

RELEASES = [r for r in os.environ.get("LLAMA_HARNESS_BENCH_RELEASES", "").split(",") if r] or ERAS
PRESETS = ["tiny", "small-f16", "small-q8_0"]
THREADS = int(os.environ.get("LLAMA_HARNESS_BENCH_THREADS", "1"))
ROUNDS = int(os.environ.get("LLAMA_HARNESS_BENCH_ROUNDS", "6"))
CELL = {"os": "linux", "arch": "x64", "variant": "cpu"}


def _test_name(kind: str, preset: str) -> str:
    n_prompt, n_gen, _ = DEFAULT_SIZES[preset]
    return f"pp{n_prompt}" if kind == "pp" else f"tg{n_gen}"


PARAMS = [
    pytest.param(r, p, k, run, id=f"{r}-{p}-{k}-{run}")
    for r in RELEASES
    for p in PRESETS
    for k in ("pp", "tg")
    for run in ("harness", "native")
]
for _r in RELEASES:
    for _p in PRESETS:
        for _k in ("pp", "tg"):
            base = f"test_throughput[{_r}-{_p}-{_k}"
            goal = "≥ 0.95" if _p.startswith("small") else "(call overhead)"
            # medians are seconds: native ÷ harness seconds = harness ÷ native t/s
            label = f"{_r} {_p} {_test_name(_k, _p)} harness/native t/s"
            RATIOS.append((label, f"{base}-native]", f"{base}-harness]", goal))


class Replay:
    """A pytest-benchmark timer that replays measured durations: `step` advances the clock by the
    next one, so pedantic(step) records exactly them."""

    __name__ = "replayed_child_seconds"

    def __init__(self) -> None:
        self.now = 0.0
        self.queue: list[float] = []

    def __call__(self) -> float:
        return self.now

    def load(self, seconds: list[float]) -> None:
        self.queue = list(seconds)

    def step(self) -> None:
        self.now += self.queue.pop(0)


REPLAY = Replay()


def bench_spec(tag: str, tmp: Path, presets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A bench spec for a real release (node-llama-cpp's linux-x64 build), as `run` builds it."""
    from harness.abi.release import headers_dir
    from harness.load.loader import find_libdir
    from tests.realbuilds import api_of, downloader, provision

    res = provision([tag])[tag]
    assert res.stored
    api = tmp / f"api-{tag}.json"
    api.write_text(api_of(tag).to_json(), encoding="utf-8")
    return {
        "libdir": str(find_libdir(Path(res.stored.path))),
        "api": str(api),
        "presets": presets,
        "threads": THREADS,
        "include": str(headers_dir(downloader(), res)),
        "cache": str(CACHE),
        "build": res.build,
        "tree": str(res.stored.path),
        **extra,
    }


class Runs:
    """Every release measured once, all interleaved in the same rounds, on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cells: dict[str, dict[str, Any]] = {}

    def __call__(self, tag: str) -> dict[str, Any]:
        if not self.cells:
            presets = presets_for(CACHE, PRESETS)
            specs = {t: bench_spec(t, self.tmp, presets) for t in RELEASES}
            benches = measure_platform(specs, self.tmp / "work", timeout=600, rounds=ROUNDS)
            for t, bench in benches.items():
                build = specs[t]["build"]
                self.cells[t] = {"release": t, "build": build, **CELL, "bench": bench}
        return self.cells[tag]

    def previous(self, tag: str) -> dict[str, Any] | None:
        i = RELEASES.index(tag)
        return self(RELEASES[i - 1]) if i else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    r = Runs(tmp_path_factory.mktemp("throughput"))
    yield r
    cells = [r.cells[t] for t in RELEASES if t in r.cells]
    report = {"cells": cells, "comparison": compare.compare({"cells": cells})}
    out = Path(os.environ.get("LLAMA_HARNESS_BENCH_REPORT", "bench-throughput.json"))
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")


@pytest.mark.benchmark(timer=REPLAY, disable_gc=True)
@pytest.mark.parametrize(("release", "preset", "kind", "runner"), PARAMS)
def test_throughput(
    benchmark: Any, runs: Runs, release: str, preset: str, kind: str, runner: str
) -> None:
    cell = runs(release)
    bench = cell["bench"]
    if "error" in bench:
        pytest.fail(f"{release}: {bench['error']}", pytrace=False)
    section = bench if runner == "harness" else bench.get("native") or {}
    if runner == "native" and "error" in section:
        pytest.skip(f"native driver: {section['error']}")
    test = _test_name(kind, preset)
    fig = (section.get(preset) or {}).get(test)
    if not fig:
        pytest.fail(f"{release} {preset} {test}: no figures ({section.get(preset)})", pytrace=False)
    benchmark.group = f"{preset} {test}"
    benchmark.extra_info.update(
        tok_per_s_median=fig["median"],
        tok_per_s_iqr=fig["iqr"],
        tokens=fig["tokens"],
        threads=fig["threads"],
        flash_attn=bench["params"][preset].get("flash_attn"),
    )
    if runner == "harness":
        ratios = (bench.get("ratio") or {}).get(preset, {})
        spread = (bench.get("ratio_interval") or {}).get(preset, {})
        benchmark.extra_info["harness_over_native"] = ratios.get(test)
        benchmark.extra_info["harness_over_native_95"] = spread.get(test)
        prev = runs.previous(release)
        if prev is not None:
            for e in compare.compare({"cells": [prev, cell]}):
                if (e["preset"], e["test"]) == (preset, test):
                    benchmark.extra_info["vs_previous"] = {
                        k: e[k] for k in ("previous", "change", "noise", "verdict")
                    }
    REPLAY.load(fig["seconds"])
    benchmark.pedantic(REPLAY.step, rounds=len(fig["seconds"]), iterations=1, warmup_rounds=0)
