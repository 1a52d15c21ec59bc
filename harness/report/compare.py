"""Is the new release slower? Throughput changes across releases, against a baseline, and A/A.

The statistics are `harness.suites.throughput_stats` (read its docstring for why). Here: which
figures are compared and how.

- Releases of one platform measured in the same run (`throughput_rounds.measure_platform`, the
  same `interleave.session`) are compared round by round: `paired`, the sign-test interval of the
  median per-round ratio. These are "interleaved" and the only ones `gate` judges by default.
- Figures measured apart (a `--baseline` report, or shards that measured two releases of a
  platform on different runners) cannot be paired: `across_runs`, the bootstrap interval widened
  by an allowance for drift between runs; each entry says so (`method`, `drift`, `note`).
- A cell measured with an A/A twin (`run --aa`) gets one entry per test against itself
  (`against: "A/A"`): any verdict but "within noise"/"inconclusive" there is a false alarm.

A change is new ÷ old − 1 (positive: faster). Verdicts: faster, slower, within noise,
inconclusive (`throughput_stats.judge`: a minimum effect of `MIN_EFFECT`, `CONFIDENCE` intervals).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

from harness.errors import ConfigError
from harness.suites import throughput_stats as ts
from harness.suites.throughput import RESERVED as NOT_PRESETS

CONFIDENCE = ts.CONFIDENCE
MIN_EFFECT = ts.MIN_EFFECT
AA = "A/A"
stats = ts.summary  # pytest-benchmark's statistics, under the name the report code used
interval = ts.bootstrap


def _figures(bench: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(preset, test) → a test's figures (median, samples, by_round) in a `bench` section."""
    if not isinstance(bench, dict) or "error" in bench:
        return {}
    out = {}
    for preset, tests in bench.items():
        if preset in NOT_PRESETS or not isinstance(tests, dict):
            continue
        for test, fig in tests.items():
            if isinstance(fig, dict) and _values(fig, "samples"):
                out[(preset, test)] = fig
    return out


def _values(fig: dict[str, Any], key: str) -> list[float]:
    got = [float(x) for x in fig.get(key) or [] if x]
    if key == "samples" and not got and fig.get("median"):
        return [float(fig["median"])]
    return got


def _session(bench: Any) -> str | None:
    info = bench.get("interleave") if isinstance(bench, dict) else None
    return info.get("session") if isinstance(info, dict) else None


def judge(new: dict[str, Any], old: dict[str, Any], interleaved: bool) -> ts.Change:
    """Paired rounds when both were measured in the same interleaved session; else across runs
    (per-round figures where there are enough, else every repetition)."""
    a, b = _values(new, "by_round"), _values(old, "by_round")
    if interleaved and a and len(a) == len(b):
        return ts.paired(a, b)
    if len(a) < ts.MIN_BOOTSTRAP or len(b) < ts.MIN_BOOTSTRAP:
        a, b = _values(new, "samples"), _values(old, "samples")
    return ts.across_runs(a, b)


def _note(c: ts.Change, verdict: str) -> str:
    parts = []
    if verdict == ts.INCONCLUSIVE:
        if c.noise is None:
            parts.append(
                f"too few rounds ({c.n}) for a {CONFIDENCE:.0%} interval "
                f"(at least {ts.min_rounds()})"
            )
        else:
            parts.append(f"the machine was too noisy (±{c.noise:.1%})")
    if c.method == "across runs":
        parts.append(f"measured in different runs: interval widened by ±{c.drift:.0%} for drift")
    return "; ".join(parts)


def _entries(
    new: dict[str, Any],
    old: dict[str, Any],
    against: str,
    old_bench: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    nb, ob = new.get("bench"), old_bench if old_bench is not None else old.get("bench")
    a, b = _figures(nb), _figures(ob)
    same = against == AA or (_session(nb) is not None and _session(nb) == _session(ob))
    out = []
    for key, fig in a.items():
        if key not in b:
            continue
        c = judge(fig, b[key], same)
        v = ts.judge(c)
        out.append(
            {
                "release": new.get("release"),
                "previous": old.get("release"),
                "against": against,
                "cell": _platform(new),
                "preset": key[0],
                "test": key[1],
                "median": ts.summary(_values(fig, "samples"))["median"],
                "previous_median": ts.summary(_values(b[key], "samples"))["median"],
                "change": round(c.change, 4),
                "noise": None if c.noise is None else round(c.noise, 4),
                "low": None if c.low is None else round(c.low, 4),
                "high": None if c.high is None else round(c.high, 4),
                "rounds": [len(_values(fig, "by_round")), len(_values(b[key], "by_round"))],
                "interleaved": c.method == "interleaved",
                "method": c.method,
                "drift": c.drift,
                "min_effect": MIN_EFFECT,
                "confidence": CONFIDENCE,
                "verdict": v,
                "note": _note(c, v),
            }
        )
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


def _by_platform(cells: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        if _figures(c.get("bench")):
            groups.setdefault(_platform(c), []).append(c)
    return {k: _order(v) for k, v in groups.items()}


def compare(report: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every cell with figures vs the previous release of the same platform ("previous release"),
    vs its A/A twin when it has one ("A/A"), and vs the baseline report ("baseline"): its cell of
    the same release and platform, else its newest release on that platform."""
    out: list[dict[str, Any]] = []
    groups = _by_platform(report.get("cells", []))
    for cells in groups.values():
        for old, new in itertools.pairwise(cells):
            out += _entries(new, old, "previous release")
        for c in cells:
            twin = (c.get("bench") or {}).get("aa")
            if isinstance(twin, dict):
                out += _entries(c, c, AA, {**twin, "interleave": c["bench"].get("interleave")})
    if baseline is not None:
        base = _by_platform(baseline.get("cells", []))
        for platform, cells in groups.items():
            if platform not in base:
                continue
            same = {c.get("release"): c for c in base[platform]}
            for c in cells:
                out += _entries(c, same.get(c.get("release"), base[platform][-1]), "baseline")
    return out


def gate(
    comparison: list[dict[str, Any]], threshold: float, across_runs: bool = False
) -> list[str]:
    """The real slowdowns beyond `threshold` (0.05 = 5 %), one line each; empty: the gate passes.

    Only interleaved comparisons count unless `across_runs` (`--gate-baseline`): a baseline
    measured another day cannot tell the machine's drift from the release's change. A/A entries
    never count (they measure the machine)."""
    return [
        f"{e['release']} {e['cell']} {e['preset']} {e['test']}: {e['change']:+.1%} "
        f"(noise ±{e['noise'] or 0:.1%}) vs {e['previous']} ({e['against']})"
        for e in comparison
        if e["verdict"] == "slower"
        and e["change"] <= -threshold
        and e.get("against") != AA
        and (across_runs or e.get("interleaved", True))
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
