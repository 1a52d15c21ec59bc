"""Is the new release slower? Throughput changes across releases and against a baseline report.

Every cell's `bench` section keeps each test's per-repetition t/s (`samples`). A change is the
ratio of medians, new ÷ old, minus one (positive: faster). Its noise is a 95 % percentile
bootstrap interval of that ratio (both sides resampled, a fixed seed so a report is
reproducible); with fewer than 3 repetitions on a side, the interval is the whole range the
samples allow (min ÷ max … max ÷ min). The verdict is "faster" or "slower" only when the interval
excludes zero, "within noise" otherwise; `gate` fails on a slowdown that is both real (the
interval excludes zero) and beyond the threshold.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from harness.errors import ConfigError

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 20240501
MIN_BOOTSTRAP = 3
# Keys of a cell's `bench` section that are not presets.
NOT_PRESETS = (
    "native",
    "ratio",
    "ratio_interval",
    "llama_bench",
    "machine",
    "params",
    "error",
    "log_tail",
)


def _q1(data: Sequence[float]) -> float:
    """pytest-benchmark's first quartile (Wikipedia's method 3 for odd n, method 2 for even)."""
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, r = n // 4, n % 4
        return (
            0.25 * data[k - 1] + 0.75 * data[k] if r == 1 else 0.75 * data[k] + 0.25 * data[k + 1]
        )
    return statistics.median(data[: n // 2])


def _q3(data: Sequence[float]) -> float:
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, r = n // 4, n % 4
        if r == 1:
            return 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[n // 2 :])


def stats(samples: Iterable[float]) -> dict[str, Any]:
    """median, q1, q3, iqr, mean, min, max, stddev, rounds: pytest-benchmark's definitions."""
    data = sorted(float(x) for x in samples)
    if not data:
        raise ValueError("no samples")
    q1, q3 = _q1(data), _q3(data)
    return {
        "median": statistics.median(data),
        "iqr": q3 - q1,
        "q1": q1,
        "q3": q3,
        "mean": statistics.mean(data),
        "min": data[0],
        "max": data[-1],
        "stddev": statistics.stdev(data) if len(data) > 1 else 0.0,
        "rounds": len(data),
    }


def interval(new: Sequence[float], old: Sequence[float]) -> tuple[float, float, float]:
    """(change, low, high) of median(new) ÷ median(old) − 1."""
    a, b = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    change = float(np.median(a) / np.median(b) - 1.0)
    if len(a) < MIN_BOOTSTRAP or len(b) < MIN_BOOTSTRAP:
        return change, float(a.min() / b.max() - 1.0), float(a.max() / b.min() - 1.0)
    rng = np.random.default_rng(SEED)
    ma = np.median(a[rng.integers(0, len(a), (RESAMPLES, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (RESAMPLES, len(b)))], axis=1)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ma / mb - 1.0, [tail, 100 - tail])
    return change, float(min(low, change)), float(max(high, change))


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "faster"
    if high < 0:
        return "slower"
    return "within noise"


def _samples(fig: dict[str, Any]) -> list[float]:
    got = [float(x) for x in fig.get("samples") or [] if x]
    return got or ([float(fig["median"])] if fig.get("median") else [])


def _figures(cell: dict[str, Any]) -> dict[tuple[str, str], list[float]]:
    """(preset, test) → per-repetition t/s of a cell's harness figures."""
    bench = cell.get("bench") or {}
    if not isinstance(bench, dict) or "error" in bench:
        return {}
    out = {}
    for preset, tests in bench.items():
        if preset in NOT_PRESETS or not isinstance(tests, dict):
            continue
        for test, fig in tests.items():
            if isinstance(fig, dict) and (s := _samples(fig)):
                out[(preset, test)] = s
    return out


def _platform(cell: dict[str, Any]) -> str:
    return f"{cell.get('os')}/{cell.get('arch')}/{cell.get('variant')}"


def _order(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first: by the b<N> build number, else as listed."""

    def key(item: tuple[int, dict[str, Any]]) -> tuple[float, int]:
        i, c = item
        m = re.fullmatch(r"b(\d+)", str(c.get("build") or c.get("release") or ""))
        return (float(m.group(1)) if m else float("inf"), i)

    return [c for _, c in sorted(enumerate(cells), key=key)]


def _entries(new: dict[str, Any], old: dict[str, Any], against: str) -> list[dict[str, Any]]:
    a, b = _figures(new), _figures(old)
    out = []
    for (preset, test), samples in a.items():
        if (preset, test) not in b:
            continue
        change, low, high = interval(samples, b[(preset, test)])
        out.append(
            {
                "release": new.get("release"),
                "previous": old.get("release"),
                "against": against,
                "cell": _platform(new),
                "preset": preset,
                "test": test,
                "median": float(np.median(samples)),
                "previous_median": float(np.median(b[(preset, test)])),
                "change": round(change, 4),
                "noise": round((high - low) / 2, 4),
                "low": round(low, 4),
                "high": round(high, 4),
                "rounds": [len(samples), len(b[(preset, test)])],
                "verdict": verdict(low, high),
            }
        )
    return out


def _by_platform(cells: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        if _figures(c):
            groups.setdefault(_platform(c), []).append(c)
    return {k: _order(v) for k, v in groups.items()}


def compare(report: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every cell with figures vs the previous release of the same platform ("previous release"),
    and vs the baseline report ("baseline"): its cell of the same release and platform, else its
    newest release on that platform."""
    out: list[dict[str, Any]] = []
    groups = _by_platform(report.get("cells", []))
    for cells in groups.values():
        for old, new in itertools.pairwise(cells):
            out += _entries(new, old, "previous release")
    if baseline is not None:
        base = _by_platform(baseline.get("cells", []))
        for platform, cells in groups.items():
            if platform not in base:
                continue
            same = {c.get("release"): c for c in base[platform]}
            for c in cells:
                out += _entries(c, same.get(c.get("release"), base[platform][-1]), "baseline")
    return out


def gate(comparison: list[dict[str, Any]], threshold: float) -> list[str]:
    """The real slowdowns beyond `threshold` (0.05 = 5 %), one line each; empty: the gate passes."""
    return [
        f"{e['release']} {e['cell']} {e['preset']} {e['test']}: {e['change']:+.1%} "
        f"(noise ±{e['noise']:.1%}) vs {e['previous']} ({e['against']})"
        for e in comparison
        if e["verdict"] == "slower" and e["change"] <= -threshold
    ]


def parse_threshold(text: str) -> float:
    """ "5%" or "0.05" → 0.05 (for `--fail-on-regression`)."""
    s = text.strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ConfigError(f"not a threshold: {text!r} (expected e.g. 5% or 0.05)") from None
    if not 0 <= value < 1:
        raise ConfigError(f"threshold {text!r} out of range (0% to 100%)")
    return value
