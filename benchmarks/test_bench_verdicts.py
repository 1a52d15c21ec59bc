"""Throughput verdicts that hold under load (issue 10): real builds, a background burner.

While these run, a second process burns one core about half the time (busy and idle phases of
0.2-1 s at random): the kind of load that made block-after-block comparisons flip.

- A/A: one build measured as two contenders (`run --aa`), 4 runs × 6 (preset, test) = 24
  comparisons: at most 1 may be called faster or slower.
- flips: b8390 vs b10361, 5 runs: no (preset, test) called "faster" in one and "slower" in another.
- detection: b5640 → b6673 tiny pp64 (flash attention `auto`, about −70 %) "slower" in all 5 runs;
  b10361 forced onto its x64/sse42 CPU backend vs the best one this CPU runs (small-q8_0 pp32 and
  tg8, 6 rounds): "faster" for the best in all 5 runs.

Each benchmark times one whole interleaved run per round (its wall time is the figure), keeps its
verdicts in `extra_info`, and prints a summary line at the end. Environment:
LLAMA_HARNESS_BENCH_VERDICT_RUNS (default 5), LLAMA_HARNESS_BENCH_NO_BURNER=1 (measure quiet).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import NOTES
from benchmarks.test_bench_throughput import CELL, bench_spec
from harness.report import compare
from harness.suites.throughput import presets_for
from harness.suites.throughput_rounds import measure_platform
from tests.realbuilds import CACHE

RUNS = int(os.environ.get("LLAMA_HARNESS_BENCH_VERDICT_RUNS", "5"))
AA_RUNS = 4  # × 6 (preset, test) = 24 comparisons
PRESETS = ["tiny", "small-f16", "small-q8_0"]
BURNER = """
import random, time
random.seed(10)
while True:
    end = time.perf_counter() + random.uniform(0.2, 1.0)
    while time.perf_counter() < end:
        pass
    time.sleep(random.uniform(0.2, 1.0))
"""


@pytest.fixture(scope="module")
def burner() -> Iterator[str]:
    """A process that burns a core half the time, for the whole module."""
    if os.environ.get("LLAMA_HARNESS_BENCH_NO_BURNER"):
        yield "no burner"
        return
    proc = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        yield "a core burnt half the time"
    finally:
        proc.kill()
        proc.wait()


def _cells(benches: dict[str, dict[str, Any]], builds: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for name, bench in benches.items():
        assert "error" not in bench, bench
        out.append({"release": name, "build": builds.get(name), **CELL, "bench": bench})
    return out


def _line(title: str, verdicts: Counter[str], seconds: list[float]) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in verdicts.most_common())
    per_run = sorted(seconds)[len(seconds) // 2] if seconds else 0
    return f"{title}: {counts} (median {per_run:.0f} s per interleaved run)"


def _timed(benchmark: Any, once: Any, runs: int) -> list[float]:
    benchmark.pedantic(once, rounds=runs, iterations=1, warmup_rounds=0)
    return list(benchmark.stats.stats.data) if benchmark.stats else []


def test_aa_false_alarms(benchmark: Any, burner: str, tmp_path: Path) -> None:
    spec = bench_spec("b10361", tmp_path, presets_for(CACHE, PRESETS), native=False)
    entries: list[dict[str, Any]] = []

    def once() -> None:
        benches = measure_platform({"b10361": spec}, tmp_path / f"aa{len(entries)}", aa=True)
        cells = _cells(benches, {"b10361": "b10361"})
        entries.extend(e for e in compare.compare({"cells": cells}) if e["against"] == "A/A")

    seconds = _timed(benchmark, once, AA_RUNS)
    verdicts = Counter(e["verdict"] for e in entries)
    alarms = [e for e in entries if e["verdict"] in ("faster", "slower")]
    benchmark.extra_info.update(
        load=burner,
        verdicts=dict(verdicts),
        false_alarms=[f"{e['preset']} {e['test']} {e['change']:+.1%}" for e in alarms],
        noise=[e["noise"] for e in entries],
    )
    NOTES.append(_line(f"A/A b10361 ({burner}), {len(entries)} comparisons", verdicts, seconds))
    assert len(entries) >= 20
    assert len(alarms) <= 1, alarms


def test_no_flips_between_runs(benchmark: Any, burner: str, tmp_path: Path) -> None:
    presets = presets_for(CACHE, PRESETS)
    specs = {t: bench_spec(t, tmp_path, presets, native=False) for t in ("b8390", "b10361")}
    seen: dict[tuple[str, str], list[str]] = {}

    def once() -> None:
        runs = len(next(iter(seen.values()), []))
        benches = measure_platform(specs, tmp_path / f"run{runs}")
        cells = _cells(benches, {t: t for t in specs})
        for e in compare.compare({"cells": cells}):
            seen.setdefault((e["preset"], e["test"]), []).append(
                f"{e['verdict']} {e['change']:+.1%}"
            )

    seconds = _timed(benchmark, once, RUNS)
    table = {f"{p} {t}": v for (p, t), v in seen.items()}
    benchmark.extra_info.update(load=burner, verdicts=table)
    verdicts = Counter(v.rsplit(" ", 1)[0] for vs in seen.values() for v in vs)
    NOTES.append(_line(f"b8390 → b10361 ({burner}), {RUNS} runs", verdicts, seconds))
    NOTES.extend(f"  {k}: {' | '.join(v)}" for k, v in table.items())
    flips = {
        k: v
        for k, v in table.items()
        if any(x.startswith("faster") for x in v) and any(x.startswith("slower") for x in v)
    }
    assert not flips, flips


def test_flash_attention_slowdown_found_every_run(
    benchmark: Any, burner: str, tmp_path: Path
) -> None:
    presets = presets_for(CACHE, ["tiny"], n_gen=0)
    specs = {t: bench_spec(t, tmp_path, presets, native=False) for t in ("b5640", "b6673")}
    got: list[str] = []

    def once() -> None:
        benches = measure_platform(specs, tmp_path / f"run{len(got)}")
        [e] = compare.compare({"cells": _cells(benches, {t: t for t in specs})})
        got.append(f"{e['verdict']} {e['change']:+.1%}")

    seconds = _timed(benchmark, once, RUNS)
    benchmark.extra_info.update(load=burner, verdicts=got)
    verdicts = Counter(v.rsplit(" ", 1)[0] for v in got)
    NOTES.append(_line(f"b5640 → b6673 tiny pp64 ({burner})", verdicts, seconds))
    NOTES.append(f"  {' | '.join(got)}")
    assert all(v.startswith("slower") for v in got), got


def test_cpu_variant_difference_found_every_run(
    benchmark: Any, burner: str, tmp_path: Path
) -> None:
    from harness.load.backends import supported_variants

    # short tests, 6 rounds (the fewest for a 95 % verdict): sse42 is ~10× slower on pp
    presets = presets_for(CACHE, ["small-q8_0"], n_prompt=32, n_gen=8, reps=1)
    base = bench_spec("b10361", tmp_path, presets, native=False, rounds=6)
    variants = supported_variants(Path(base["libdir"]))
    slow = "sse42" if "sse42" in variants else variants[-1]
    best = variants[0]
    if best == slow:
        pytest.skip(f"this CPU runs one variant only ({variants})")
    specs = {slow: {**base, "cpu_variant": slow}, best: {**base, "cpu_variant": best}}
    got: dict[str, list[str]] = {}

    def once() -> None:
        runs = len(next(iter(got.values()), []))
        benches = measure_platform(specs, tmp_path / f"run{runs}")
        for e in compare.compare({"cells": _cells(benches, {})}):
            got.setdefault(e["test"], []).append(f"{e['verdict']} {e['change']:+.1%}")

    seconds = _timed(benchmark, once, RUNS)
    benchmark.extra_info.update(load=burner, variants=[slow, best], verdicts=got)
    verdicts = Counter(v.rsplit(" ", 1)[0] for vs in got.values() for v in vs)
    NOTES.append(_line(f"b10361 {slow} → {best} small-q8_0 ({burner})", verdicts, seconds))
    NOTES.extend(f"  {k}: {' | '.join(v)}" for k, v in got.items())
    assert got and all(all(v.startswith("faster") for v in vs) for vs in got.values()), got
