"""One test per cell: it runs the cell's child once and judges the outcome that the report
publishes (each check's verdict is in the report; the test's message names the failing ones)."""

from __future__ import annotations

import pytest

from harness.suites.plugin import Cells


def test_conformance(cell_id: str, cells: Cells) -> None:
    outcome = cells.outcome(cell_id)
    if outcome.status == "skip":
        pytest.skip(outcome.reason)
    if outcome.status != "pass":
        pytest.fail(f"{outcome.status}: {outcome.reason}", pytrace=False)
