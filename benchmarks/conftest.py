"""Benchmarks run by `nox -s bench` (not part of the default test run).

Ratios are computed from pytest-benchmark's own stats of benchmarks measured side by side in the
same run, and printed at the end (and stored in the JSON's `extra_info`).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# (label, numerator, denominator, goal); the denominator is a benchmark's name, a number of
# seconds (an ideal), or None for the numerator's median alone
RATIOS: list[tuple[str, str, str | float | None, str]] = []
NOTES: list[str] = []  # lines a benchmark wants printed at the end (e.g. verdict counts)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if NOTES:
        terminalreporter.section("llama-harness verdicts (same run)")
        for line in NOTES:
            terminalreporter.write_line(line)
    session = getattr(config, "_benchmarksession", None)
    if session is None or not RATIOS:
        return
    medians = {b.name: b.stats.median for b in session.benchmarks if b.stats}
    terminalreporter.section("llama-harness figures (medians, same run)")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    terminalreporter.write_line(f"load average now (1/5/15 min): {load} on {os.cpu_count()} CPUs")
    for label, num, den, goal in RATIOS:
        if num in medians and den is None:
            terminalreporter.write_line(f"{label}: {medians[num]:.3f}s  (goal {goal})")
        elif num in medians and isinstance(den, float):
            ratio = medians[num] / den
            terminalreporter.write_line(
                f"{label}: {medians[num]:.3f}s / {den:.3f}s = {ratio:.2f}  (goal {goal})"
            )
        elif num in medians and den in medians:
            ratio = medians[num] / medians[den]
            terminalreporter.write_line(
                f"{label}: {medians[num]:.3f}s / {medians[den]:.3f}s = {ratio:.2f}  (goal {goal})"
            )
    for b in session.benchmarks:  # figures a benchmark measured itself (interleaved rounds)
        for label, value, goal in (b.extra_info or {}).get("figures", []):
            terminalreporter.write_line(
                f"{label}: {value:.3f}" + (f"  (goal {goal})" if goal else "")
            )
    for name, med in sorted(medians.items()):
        terminalreporter.write_line(f"{name}: median {med:.3f}s")
