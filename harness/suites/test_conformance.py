"""One test per (cell, check): the verdict the cell's child process gave for that check."""

from __future__ import annotations

from typing import Any

import pytest


def test_conformance(cell_id: str, check: str, outcome_of: Any) -> None:
    outcome = outcome_of(cell_id)
    result = outcome.checks.get(check)
    if result is None:
        if outcome.status in ("crash", "error"):
            pytest.fail(f"{outcome.status}: {outcome.reason}", pytrace=False)
        pytest.skip("not run")
    if result["status"] == "skip":
        pytest.skip(result["message"])
    if result["status"] in ("fail", "error"):
        pytest.fail(f"{result['status']}: {result['message']}", pytrace=False)
