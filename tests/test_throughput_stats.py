"""The throughput verdicts on synthetic machines: drift, noise, real changes, A/A.

A synthetic machine here is a speed as a function of time (drift, bursts of load); each unit of
the real schedule (`throughput_rounds.schedule`) runs at its slot in time, so these tests show
what the schedule and the statistics do together, with nothing timed for real.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.stats import Stats

from harness.report import compare
from harness.suites import throughput_stats as ts
from harness.suites.throughput_rounds import schedule

Machine = Callable[[float], float]  # time slot → speed factor


def drifting(total: float, by: float) -> Machine:
    """A machine that slows down linearly by `by` (0.3 = 30 %) over `total` slots."""
    return lambda t: 1.0 - by * t / total


def interleaved(
    speeds: dict[str, float], machine: Machine, rounds: int, rng: np.random.Generator, noise: float
) -> dict[str, list[float]]:
    """Per contender, per round, the t/s the schedule would see on this machine."""
    order = schedule(list(speeds), ["p"], rounds)
    out: dict[str, list[float]] = {c: [] for c in speeds}
    for slot, (_r, _p, c) in enumerate(order):
        out[c].append(speeds[c] * machine(slot) * (1 + noise * rng.standard_normal()))
    return out


def blocks(
    speeds: dict[str, float], machine: Machine, rounds: int, rng: np.random.Generator, noise: float
) -> dict[str, list[float]]:
    """The old way: every round of one contender, then every round of the next."""
    out: dict[str, list[float]] = {}
    slot = 0
    for c, speed in speeds.items():
        out[c] = []
        for _ in range(rounds):
            out[c].append(speed * machine(slot) * (1 + noise * rng.standard_normal()))
            slot += 1
    return out


# --- the schedule ---------------------------------------------------------------------------


def test_schedule_alternates_the_order_of_every_pair() -> None:
    order = schedule(["a", "b", "c"], ["tiny", "small"], 4)
    assert len(order) == 4 * 2 * 3
    for preset in ("tiny", "small"):
        seen = [[u for r, p, u in order if p == preset and r == k] for k in range(4)]
        assert (
            seen == [["a", "b", "c"], ["c", "b", "a"]] * 2
            or seen
            == [
                ["c", "b", "a"],
                ["a", "b", "c"],
            ]
            * 2
        )
    # each (round, preset) runs every unit back to back
    for i in range(0, len(order), 3):
        assert {u for _, _, u in order[i : i + 3]} == {"a", "b", "c"}


# --- the sign-test interval -----------------------------------------------------------------


def test_the_fewest_rounds_for_a_95_percent_interval() -> None:
    assert ts.min_rounds() == 6
    assert ts.sign_interval_rank(5) is None
    assert ts.sign_interval_rank(6) == 1  # [min, max]: 1 - 2/64 = 96.9 %
    assert ts.sign_interval_rank(9) == 2  # drops the wildest round on each side
    assert ts.sign_interval_rank(10) == 2


def test_too_few_rounds_is_inconclusive_and_says_why() -> None:
    c = ts.paired([50.0] * 4, [100.0] * 4)
    assert c.change == pytest.approx(-0.5) and c.low is None
    assert ts.judge(c) == ts.INCONCLUSIVE
    entry = _entries_of([50.0] * 4, [100.0] * 4)[0]
    assert entry["verdict"] == "inconclusive" and "too few rounds (4)" in entry["note"]


def test_one_wild_round_does_not_decide() -> None:
    """Ten rounds where nothing changed, one of them hit by a burst of load on one side."""
    old = [100.0, 101, 99, 100, 102, 98, 100, 101, 99, 100]
    new = [x * 1.004 for x in old]
    new[3] *= 0.5  # the burner ran during this round's `new` child
    c = ts.paired(new, old)
    assert ts.judge(c) == ts.WITHIN, c


@pytest.mark.parametrize(
    ("low", "high", "change", "verdict"),
    [
        (-0.40, -0.20, -0.30, ts.SLOWER),
        (0.10, 0.30, 0.20, ts.FASTER),
        (-0.04, 0.03, 0.0, ts.WITHIN),
        (-0.04, -0.01, -0.02, ts.WITHIN),  # real, but below the minimum effect
        (-0.12, -0.01, -0.04, ts.INCONCLUSIVE),  # real, and it may be beyond 5 %
        (-0.30, 0.25, -0.02, ts.INCONCLUSIVE),  # too noisy to tell
        (-0.30, -0.01, -0.03, ts.INCONCLUSIVE),  # beyond noise but the estimate is small
    ],
)
def test_judge(low: float, high: float, change: float, verdict: str) -> None:
    assert ts.judge(ts.Change(change, low, high, 10, "interleaved")) == verdict


def test_across_runs_the_band_of_no_change_includes_the_drift() -> None:
    c = ts.across_runs([100.0, 101, 99, 100], [100.0, 99, 101, 100])
    assert c.drift == ts.DRIFT_FLOOR and c.low < -0.09 and c.high > 0.09
    assert ts.judge(c) == ts.WITHIN


# --- drift: block order calls a change, interleaved does not ------------------------------------


def test_a_drift_reads_as_a_change_in_blocks_but_not_interleaved() -> None:
    rng = np.random.default_rng(1)
    rounds = 10
    machine = drifting(2 * rounds, 0.35)  # the machine loses 35 % over the measurement
    same = {"old": 100.0, "new": 100.0}
    b = blocks(same, machine, rounds, rng, noise=0.01)
    change, _low, high = ts.bootstrap(b["new"], b["old"])  # what the old report did
    assert high < 0 and change < -0.15  # block after block: "slower" by the drift alone
    i = interleaved(same, machine, rounds, rng, noise=0.01)
    c = ts.paired(i["new"], i["old"])
    assert ts.judge(c) in (ts.WITHIN, ts.INCONCLUSIVE), c
    assert abs(c.change) < 0.05


def test_a_real_30_percent_slowdown_is_found_despite_the_drift() -> None:
    rng = np.random.default_rng(2)
    rounds = 10
    machine = drifting(2 * rounds, 0.35)
    i = interleaved({"old": 100.0, "new": 70.0}, machine, rounds, rng, noise=0.03)
    c = ts.paired(i["new"], i["old"])
    assert ts.judge(c) == ts.SLOWER, c
    assert c.change == pytest.approx(-0.30, abs=0.05)


def test_aa_false_alarms_under_bursty_load_stay_rare() -> None:
    """200 A/A comparisons on a machine where a burner takes half the CPU half the time (a
    burst lasts about one child): at most 2 % are called faster or slower."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(200):
        load = rng.random(40) < 0.5

        def machine(t: float, load: Any = load) -> float:
            return 0.5 if load[int(t)] else 1.0

        i = interleaved({"a": 100.0, "b": 100.0}, machine, 10, rng, noise=0.02)
        alarms += ts.judge(ts.paired(i["b"], i["a"])) in (ts.FASTER, ts.SLOWER)
    assert alarms <= 4


# --- compare: which entries are paired, which are across runs, what the gate sees --------------


def _cell(
    release: str, rounds: list[float], session: str | None = "s1", aa: list[float] | None = None
) -> dict[str, Any]:
    fig = {**ts.summary(rounds), "samples": rounds, "by_round": rounds}
    bench: dict[str, Any] = {"tiny": {"pp64": fig}}
    if session:
        bench["interleave"] = {"session": session, "rounds": len(rounds)}
    if aa is not None:
        bench["aa"] = {"tiny": {"pp64": {**ts.summary(aa), "samples": aa, "by_round": aa}}}
    return {
        "release": release,
        "build": release,
        "os": "linux",
        "arch": "x64",
        "variant": "cpu",
        "bench": bench,
    }


def _entries_of(new: list[float], old: list[float]) -> list[dict[str, Any]]:
    return compare.compare({"cells": [_cell("b1", old), _cell("b2", new)]})


OLD = [100.0, 96, 104, 99, 101, 97, 103, 100, 98, 102]


def test_interleaved_releases_are_paired_and_gated() -> None:
    [e] = _entries_of([x * 0.7 for x in OLD], OLD)
    assert (e["against"], e["interleaved"], e["method"]) == (
        "previous release",
        True,
        "interleaved",
    )
    assert e["verdict"] == "slower" and e["change"] == pytest.approx(-0.3)
    assert e["rounds"] == [10, 10] and e["min_effect"] == ts.MIN_EFFECT
    assert len(compare.gate([e], 0.05)) == 1


def test_releases_measured_apart_are_judged_across_runs_and_not_gated() -> None:
    old, new = _cell("b1", OLD, session="run1"), _cell("b2", [x * 0.7 for x in OLD], "run2")
    [e] = compare.compare({"cells": [old, new]})
    assert e["interleaved"] is False and e["drift"] >= ts.DRIFT_FLOOR
    assert "widened" in e["note"]
    assert e["verdict"] == "slower"  # 30 % survives the drift allowance
    assert compare.gate([e], 0.05) == []  # the gate defaults to in-run comparisons
    assert len(compare.gate([e], 0.05, across_runs=True)) == 1


def test_a_baseline_a_few_percent_apart_is_within_the_drift_allowed() -> None:
    now = {"cells": [_cell("b2", OLD, "today")]}
    base = {"cells": [_cell("b2", [x * 1.03 for x in OLD], "last-week")]}
    [e] = compare.compare(now, base)
    assert e["against"] == "baseline" and e["verdict"] == "within noise"
    assert "widened by ±10%" in e["note"]
    assert compare.gate([e], 0.02, across_runs=True) == []
    # a 12 % slowdown across runs cannot be told from drift: inconclusive, not "slower"
    base = {"cells": [_cell("b2", [x * 1.12 for x in OLD], "last-week")]}
    [e] = compare.compare(now, base)
    assert e["verdict"] == "inconclusive", e
    assert "too noisy" in e["note"]


def test_aa_entries_compare_a_cell_with_its_twin_and_never_gate() -> None:
    twin = [x * 0.8 for x in OLD]  # a (simulated) false alarm
    [e] = compare.compare({"cells": [_cell("b2", OLD, aa=twin)]})
    assert (e["against"], e["release"], e["previous"]) == ("A/A", "b2", "b2")
    assert e["interleaved"] and e["verdict"] == "faster"
    assert compare.gate([e], 0.05) == []


def test_summary_is_pytest_benchmarks_stats() -> None:
    data = [((i * 7919) % 23) / 3.0 + 1.0 for i in range(11)]
    ref = Stats()
    for x in data:
        ref.update(x)
    assert ts.summary(data) == {k: getattr(ref, k) for k in ts.SUMMARY}
    assert ts.benchmark_stats(data)["outliers"] == ref.outliers
    assert math.isclose(ts.benchmark_stats(data)["hd15iqr"], ref.hd15iqr)


def test_the_report_shows_inconclusive_with_its_noise_and_ignores_aa() -> None:
    from harness.report.markdown import markdown
    from harness.report.model import verdicts
    from tests.test_report import synthetic

    rep = synthetic()
    noisy = [100.0, 150, 70, 120, 60, 140, 90, 130, 80, 110]
    base = _cell("b6673", OLD)
    cells = [{**base, "bench": {**base["bench"], "aa": {"tiny": {"pp64": {
        **ts.summary(OLD), "samples": OLD, "by_round": [x * 2 for x in OLD]}}}}},
        _cell("b7000", [x * n / 100 for x, n in zip(OLD, noisy, strict=True)])]  # fmt: skip
    rep["comparison"] = compare.compare({"cells": cells})
    against = {e["against"]: e["verdict"] for e in rep["comparison"]}
    assert against == {"A/A": "slower", "previous release": "inconclusive"}
    md = markdown(rep)
    assert "1 inconclusive" in md
    assert "❔ inconclusive: the machine was too noisy (±" in md
    assert "| b6673 | itself (A/A) | linux/x64/cpu | tiny pp64 |" in md
    # an A/A false alarm never makes a release "slower" on the first screen
    assert all(not v["slower"] for v in verdicts(rep) if v["release"] == "b6673")
