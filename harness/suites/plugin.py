"""The pytest plugin behind `llama-harness run`: one test per (cell, check).

    pytest -p harness.suites.plugin --pyargs harness.suites.test_conformance \
           --cells CELLS.json -n 2 --dist loadgroup

Each cell's checks form one xdist group, so one worker runs them all: the cell's child process
runs once (it loads the release and runs every check), and each test reports one check's verdict.
The worker writes the cell's whole outcome to `<out>/<cell id>.json` for the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cache import atomic
from harness.suites.child import Outcome, run_cell
from harness.suites.conformance import NAMES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llama-harness")
    group.addoption("--cells", help="JSON file: the cells to run and their child specs")


def _cells(config: pytest.Config) -> dict[str, Any]:
    path = config.getoption("cells")
    if not path:
        return {"cells": {}, "out": ".", "timeout": 120}
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell_id" not in metafunc.fixturenames:
        return
    cells = _cells(metafunc.config)["cells"]
    params = [
        pytest.param(cid, check, id=f"{cid}::{check}", marks=pytest.mark.xdist_group(cid))
        for cid in cells
        for check in NAMES
    ]
    metafunc.parametrize(("cell_id", "check"), params)


class _Outcomes:
    def __init__(self, config: pytest.Config) -> None:
        data = _cells(config)
        self.cells: dict[str, Any] = data["cells"]
        self.out = Path(data["out"])
        self.timeout = float(data.get("timeout", 120))
        self._done: dict[str, Outcome] = {}

    def __call__(self, cell_id: str) -> Outcome:
        if cell_id not in self._done:
            spec = self.cells[cell_id]
            outcome = run_cell(spec, self.out / "work" / cell_id, self.timeout, env=spec.get("env"))
            path = self.out / "cells" / f"{cell_id}.json"
            atomic.write_text(path, json.dumps(outcome.to_json()))
            self._done[cell_id] = outcome
        return self._done[cell_id]


@pytest.fixture(scope="session")
def outcome_of(request: pytest.FixtureRequest) -> _Outcomes:
    return _Outcomes(request.config)
