"""The statistics of throughput: summaries (pytest-benchmark's `Stats`) and the change verdicts.

Why paired rounds: on a shared machine throughput drifts by tens of percent within minutes. Two
builds measured one block after the other differ by whatever the machine did in between, and no
interval computed inside each block can see it (pyperf's `compare_to` and llama.cpp's
`compare-llama-bench.py` both compare such blocks). `throughput_rounds` therefore measures the
contenders interleaved: each round runs every contender once, back to back, in a balanced order
(A B, then B A, ...). A round gives one ratio new ÷ old taken under the same machine state; drift
slower than a round cancels inside it, and the alternating order cancels a drift within one.

`paired` judges those per-round ratios with the sign test's interval for their median: the
interval between two order statistics of the log ratios, exact whatever their distribution
(a round spoilt by a burst of load is one outlier, not a shifted mean). At 95 % it needs at
least 6 rounds; with 9 to 10 it already drops the wildest round on each side.

`across_runs` compares runs made at different times (`--baseline`, or shards that measured two
releases apart): no pairing is possible, so the bootstrap interval of the ratio of medians is
widened by an allowance for drift between runs (`DRIFT_FLOOR`, or the spread the rounds of either
run showed, whichever is larger), and the report says so.

`judge` turns (change, interval) into a verdict with a minimum effect (`MIN_EFFECT`): a change
must be beyond the noise AND at least that large to be called; an interval that stays inside
±MIN_EFFECT (across runs: ±(MIN_EFFECT + the drift allowance)) is "within noise"; anything else
is "inconclusive" (the machine was too noisy to tell), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pytest_benchmark.stats import Stats

CONFIDENCE = 0.95
MIN_EFFECT = 0.05  # smaller changes are not called, however sure the interval
DRIFT_FLOOR = 0.10  # across runs: the least drift allowed for between two runs of the machine
RESAMPLES = 2000
SEED = 20240501
MIN_BOOTSTRAP = 3

FASTER, SLOWER, WITHIN, INCONCLUSIVE = "faster", "slower", "within noise", "inconclusive"
VERDICTS = (FASTER, SLOWER, WITHIN, INCONCLUSIVE)
SUMMARY = ("median", "iqr", "q1", "q3", "mean", "min", "max", "stddev", "rounds")


def _stats(samples: Iterable[float]) -> Stats:
    s = Stats()
    for x in samples:
        s.update(float(x))
    if not s.rounds:
        raise ValueError("no samples")
    return s


def summary(samples: Iterable[float]) -> dict[str, Any]:
    """median, q1, q3, iqr, mean, min, max, stddev, rounds (pytest-benchmark's own `Stats`)."""
    s = _stats(samples)
    return {k: getattr(s, k) for k in SUMMARY}


def benchmark_stats(seconds: Iterable[float]) -> dict[str, Any]:
    """pytest-benchmark's whole `stats` block for per-round seconds, plus `iterations`."""
    return {**_stats(seconds).as_dict(), "iterations": 1}


@dataclass(frozen=True)
class Change:
    """new ÷ old − 1 (positive: faster) with its interval; `low`/`high` are None when the rounds
    are too few for an interval at the confidence asked."""

    change: float
    low: float | None
    high: float | None
    n: int
    method: str
    drift: float = 0.0  # the allowance added for drift between runs (across_runs only)

    @property
    def noise(self) -> float | None:
        """Half the interval's width: the ±N % the machine allowed."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


def _binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) ≤ k): the sign test's null distribution (exact; no SciPy needed)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def sign_interval_rank(n: int, confidence: float = CONFIDENCE) -> int | None:
    """The largest k ≥ 1 such that [x_(k), x_(n+1-k)] covers the median with at least
    `confidence`; None when even [min, max] does not (n too small)."""
    best = None
    for k in range(1, n // 2 + 1):
        if 1 - 2 * _binom_cdf(k - 1, n) >= confidence:
            best = k
        else:
            break
    return best


def min_rounds(confidence: float = CONFIDENCE) -> int:
    """The fewest paired rounds that can give an interval at `confidence` (6 at 95 %)."""
    n = 1
    while sign_interval_rank(n, confidence) is None:
        n += 1
    return n


def paired(new: Sequence[float], old: Sequence[float], confidence: float = CONFIDENCE) -> Change:
    """new[i] and old[i] measured in the same round: the median ratio and its sign-test interval."""
    if len(new) != len(old) or not new:
        raise ValueError(f"paired rounds differ in number: {len(new)} vs {len(old)}")
    logs = sorted(math.log(a / b) for a, b in zip(new, old, strict=True) if a > 0 and b > 0)
    n = len(logs)
    if not n:
        raise ValueError("no positive figures to pair")
    mid = float(np.median(logs))
    k = sign_interval_rank(n, confidence)
    low = high = None
    if k is not None:
        low, high = math.expm1(logs[k - 1]), math.expm1(logs[n - k])
    return Change(math.expm1(mid), low, high, n, "interleaved")


def bootstrap(
    new: Sequence[float], old: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(change, low, high) of median(new) ÷ median(old) − 1: a percentile bootstrap with a fixed
    seed (a report is reproducible); with fewer than 3 on a side, the whole range the samples
    allow (min ÷ max … max ÷ min). For independent samples: the native ratio of one round, or
    runs made at different times."""
    a, b = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    change = float(np.median(a) / np.median(b) - 1.0)
    if len(a) < MIN_BOOTSTRAP or len(b) < MIN_BOOTSTRAP:
        return change, float(a.min() / b.max() - 1.0), float(a.max() / b.min() - 1.0)
    rng = np.random.default_rng(SEED)
    ma = np.median(a[rng.integers(0, len(a), (RESAMPLES, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (RESAMPLES, len(b)))], axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(ma / mb - 1.0, [tail, 100 - tail])
    return change, float(min(low, change)), float(max(high, change))


def spread(values: Sequence[float]) -> float:
    """How far a run's rounds wandered: the relative IQR of its per-round figures (0 for < 4)."""
    if len(values) < 4:
        return 0.0
    s = _stats(values)
    return float(s.iqr / s.median) if s.median else 0.0


def across_runs(
    new: Sequence[float],
    old: Sequence[float],
    confidence: float = CONFIDENCE,
    drift: float = DRIFT_FLOOR,
) -> Change:
    """Runs made at different times: the bootstrap interval, widened on both sides (in ratio
    terms) by the larger of `drift` and the spread either run's rounds showed."""
    change, low, high = bootstrap(new, old, confidence)
    allow = max(drift, spread(new), spread(old))
    low = (1 + low) / (1 + allow) - 1
    high = (1 + high) * (1 + allow) - 1
    return Change(change, low, high, min(len(new), len(old)), "across runs", round(allow, 4))


def judge(c: Change, min_effect: float = MIN_EFFECT) -> str:
    """faster / slower: the interval excludes no change and the change is at least `min_effect`;
    within noise: the whole interval lies inside ±min_effect (across runs: ±(min_effect + the
    drift allowance), the finest difference two runs can resolve); else inconclusive."""
    if c.low is None or c.high is None:
        return INCONCLUSIVE
    if c.high < 0 and c.change <= -min_effect:
        return SLOWER
    if c.low > 0 and c.change >= min_effect:
        return FASTER
    band = min_effect + c.drift
    if -band < c.low and c.high < band:
        return WITHIN
    return INCONCLUSIVE
