"""How a cell's status follows from what the stages found: the verdict rules, in one place.

A cell starts as `pass`; a rule can only make it worse (its first failure names the reason), with
one exception: a cell this host cannot run is judged on its static checks alone (`static_only`).
The order `harness.pipeline` applies them in: static_only (cells that do not run), conformance
(the child's outcome and the test that judged it), across_releases, cpu_variants, manifest,
binding, fold_static.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.cell import CellResult
from harness.suites.child import Outcome

NO_RESULT = "the cell produced no result"
NO_RUN: tuple[str, str, dict[str, Any]] = ("error", "no result", {})


def fail(cell: CellResult, reason: str, status: str = "fail") -> None:
    """Mark the cell failed for `reason`, unless it already failed (the first reason stands)."""
    if cell.status == "pass":
        cell.status, cell.reason = status, reason


def error(cell: CellResult, reason: str) -> None:
    """The cell could not be judged: whatever it was, it is an error now."""
    cell.status, cell.reason = "error", reason


def not_available(cell: CellResult, why: Mapping[str, str]) -> None:
    """A platform package no source published (npm lists some it never uploaded; a GitHub
    release can be partial): `skip`, "not available from <source>", never a failed platform."""
    cell.status = "skip"
    cell.reason = f"not available from {' or '.join(why)}: " + "; ".join(why.values())


def failed_checks(checks: Mapping[str, Mapping[str, Any]], prefix: str = "") -> list[str]:
    return [
        f"{k}: {v['message']}"
        for k, v in checks.items()
        if k.startswith(prefix) and v["status"] == "fail"
    ]


def static_only(cell: CellResult, why: str, *, skip: bool) -> None:
    """A cell this host cannot run passes or fails on its static checks alone; a build of this
    very platform (a GPU build without its driver here) is a skip when they pass."""
    cell.scope = "static"
    bad = failed_checks(cell.checks, "static.")
    if bad:
        cell.status, cell.reason = "fail", "; ".join(bad)
    elif skip:
        cell.status, cell.reason = "skip", why
    else:
        cell.status, cell.reason = "pass", f"static checks only: {why}"


def conformance(
    cell: CellResult,
    outcome: Outcome | None,
    test: Mapping[str, Any] | None,
    starts: int = 1,
) -> None:
    """The child's outcome, as its test judged it: a test that failed or errored never leaves
    the cell `pass`, and neither does a child that started other than once."""
    if outcome is None:
        said = f" ({test['outcome']}: {test['message']})" if test and test.get("message") else ""
        error(cell, NO_RESULT + said)
        return
    cell.status, cell.reason = outcome.status, outcome.reason
    cell.checks = {**outcome.checks, **cell.checks}  # the static checks were recorded first
    cell.facts = outcome.facts
    cell.log_tail = outcome.log_tail
    cell.seconds = outcome.seconds
    cell.api.update({"backends": outcome.backends, "missing_symbols": outcome.missing_symbols})
    cell.devices = outcome.devices
    if test is None:
        error(cell, f"its test left no verdict (child said {outcome.status}: {outcome.reason})")
    elif test["outcome"] in ("failed", "error") and cell.status in ("pass", "skip"):
        error(cell, f"its test {test['outcome']}: {test['message']}")
    if starts != 1:
        error(cell, f"its child started {starts} times in this run (once expected)")


def across_releases(cells: Sequence[CellResult]) -> None:
    """Greedy tokens must agree across every release that produced them (the most common
    sequence is the reference)."""
    seen = [(c, tuple((c.facts or {}).get("greedy") or ())) for c in cells]
    seen = [(c, g) for c, g in seen if g]
    if len(seen) < 2:
        return
    common, _ = Counter(g for _, g in seen).most_common(1)[0]
    for c, g in seen:
        if g == common:
            c.set_check(
                "greedy_across_releases", "pass", f"same {len(g)} tokens as the other releases"
            )
        else:
            c.set_check(
                "greedy_across_releases",
                "fail",
                f"{list(g)} differs from the other releases' {list(common)}",
            )
            fail(c, "greedy tokens differ from the other releases")


def cpu_variants(cell: CellResult, runs: Mapping[str, CellResult | None]) -> None:
    """The CPU backend variants of one build (each run judged like a cell) must all pass and
    agree on the greedy tokens."""
    want = (cell.facts or {}).get("greedy")
    summary, bad = {}, []
    for v, run in runs.items():
        status, reason, facts = (run.status, run.reason, run.facts or {}) if run else NO_RUN
        same = facts.get("greedy") == want
        summary[v] = {"status": status, "reason": reason, "greedy_same": same}
        if status != "pass" or not same:
            bad.append(f"{v}: {status}{'' if same else ', other greedy tokens'}")
    cell.cpu_variants = summary
    good = f"{len(runs)} CPU backend variants pass with the same greedy tokens"
    cell.set_check("cpu_variants", "fail" if bad else "pass", "; ".join(bad) or good)
    if bad:
        fail(cell, "CPU variants: " + "; ".join(bad))


def manifest(cell: CellResult, name: str, breaks: Sequence[str] | None) -> None:
    """A consumer manifest (`breaks` None: compatible) gates the cell."""
    if breaks is None:
        cell.api["manifest"] = "compatible"
        cell.set_check("manifest", "pass", f"{name}: compatible")
        return
    cell.api["manifest"] = "breaks: " + "; ".join(breaks)
    cell.set_check("manifest", "fail", f"{name} breaks: " + "; ".join(breaks))
    fail(cell, f"{name} breaks: " + "; ".join(breaks))


def binding(cell: CellResult) -> None:
    """matrix.yaml's binding gates the cell: its `binding` check (recorded by the pipeline's
    `binding` stage, before the cell was planned or ran) fails it."""
    found = cell.checks.get("binding")
    if found and found["status"] == "fail":
        fail(cell, found["message"])


def fold_static(cell: CellResult) -> None:
    """A cell that ran still fails when its binaries fail a static check."""
    if cell.scope == "static":
        return
    bad = failed_checks(cell.checks, "static.")
    if bad:
        fail(cell, "; ".join(bad))
