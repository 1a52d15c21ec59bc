"""The pytest plugin behind `llama-harness run`: one test per cell.

    python -m pytest -p harness.suites.plugin --pyargs harness.suites.test_conformance \
           --cells SPEC.json [-p xdist -n 2]

One test owns one cell: it starts the cell's child (which loads the release and runs every
check), writes the cell's outcome to `<out>/cells/<cell id>.json` and passes, skips or fails on
that outcome. Nothing relies on a mark or a distribution mode to keep a cell's work in one
process (pytest 9 drops pytest-xdist 3.8's `loadgroup` suffix, which once ran a cell's child on
two workers at once): whatever worker runs the test, the child starts once.

The SPEC file speaks the launcher's protocol (`harness.load.child`): the controlling process (the
only one, or xdist's controller) appends one fsync'd progress line per test as its report
arrives, and writes `{"tests": {cell id: {"outcome", "message", "reports", "worker"}}}` as the
result at
the end, so the parent publishes what the tests judged, even for a test that errored before its
cell's outcome was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from harness.cache import atomic
from harness.load.child import launch
from harness.suites.child import Outcome, run_cell


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llama-harness")
    group.addoption("--cells", help="JSON file: the cells to run and their child specs")


def _spec(config: pytest.Config) -> dict[str, Any]:
    path = config.getoption("cells")
    if not path:
        return {"cells": {}, "out": ".", "timeout": 120}
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell_id" in metafunc.fixturenames:
        cells = _spec(metafunc.config)["cells"]
        metafunc.parametrize("cell_id", [pytest.param(c, id=c) for c in cells])


class Cells:
    """Runs a cell's child and records its outcome; the test judges what this returns."""

    def __init__(self, config: pytest.Config) -> None:
        data = _spec(config)
        self.cells: dict[str, Any] = data["cells"]
        self.out = Path(data["out"])
        self.timeout = float(data.get("timeout", 120))

    def outcome(self, cell_id: str) -> Outcome:
        spec = self.cells[cell_id]
        got = run_cell(spec, self.out / "work" / cell_id, self.timeout, env=spec.get("env"))
        atomic.write_text(self.out / "cells" / f"{cell_id}.json", json.dumps(got.to_json()))
        return got


@pytest.fixture(scope="session")
def cells(request: pytest.FixtureRequest) -> Cells:
    return Cells(request.config)


# ------------------------------------------------------------- the controller's record


def cell_of(nodeid: str) -> str:
    """The cell id a test's node id carries (`...::test_conformance[<cell id>]`)."""
    return nodeid[nodeid.index("[") + 1 : -1] if nodeid.endswith("]") else nodeid


class Record:
    """What the tests judged, per cell, written by the controlling process only."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.tests: dict[str, dict[str, Any]] = {}
        self._progress = open(spec["progress"], "a", encoding="utf-8")  # noqa: SIM115

    def add(self, rep: pytest.TestReport) -> None:
        if not (rep.when == "call" or rep.failed or rep.skipped):
            return  # a passing setup or teardown says nothing yet
        cell = cell_of(rep.nodeid)
        outcome = "error" if rep.failed and rep.when != "call" else rep.outcome
        worker = getattr(getattr(getattr(rep, "node", None), "gateway", None), "id", "main")
        _keep(self.tests, cell, outcome, _message(rep), rep.when, worker)
        line = {"done": cell, "when": rep.when, "outcome": outcome, "message": _message(rep)}
        line["worker"] = worker
        self._progress.write(json.dumps(line) + "\n")
        self._progress.flush()
        os.fsync(self._progress.fileno())

    def finish(self) -> None:
        atomic.write_text(Path(self.spec["result"]), json.dumps({"tests": self.tests}))


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def _keep(
    tests: dict[str, dict[str, Any]],
    cell: str,
    outcome: str,
    message: str,
    when: str,
    worker: str,
) -> None:
    """Record one report of a cell's test: the worst outcome stands; calls are counted."""
    seen = tests.get(cell)
    if seen is None or _RANK.get(outcome, 3) > _RANK.get(seen["outcome"], 3):
        reports = seen["reports"] if seen else 0
        seen = tests[cell] = {"outcome": outcome, "message": message, "reports": reports}
    seen["reports"] += when == "call"
    seen["worker"] = worker  # which process ran it: "main", or xdist's gw0, gw1, ...


def _message(rep: pytest.TestReport) -> str:
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    text = rep.longreprtext.strip()
    return text.splitlines()[-1] if text else ""


class _Reporter:
    def __init__(self, record: Record) -> None:
        self.record = record

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record.add(report)

    def pytest_sessionfinish(self) -> None:
        self.record.finish()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.getoption("cells"):
        return  # an xdist worker: its reports reach the controller, which records them
    spec = _spec(config)
    if "result" in spec:
        config.pluginmanager.register(_Reporter(Record(spec)), "llama-harness-record")


# ------------------------------------------------------------- the parent: the pytest stage


def run_tests(
    cells: dict[str, dict[str, Any]],
    out: Path,
    *,
    workers: int,
    timeout: float,
    quiet: bool,
    log: Path | None = None,
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Run one test per cell in a pytest child (over `workers` xdist workers when above 1).
    Its own output goes to stderr, or to the file `log` (when progress counts the cells instead:
    "bringing up nodes..." and pytest's dots are no use beside it), or nowhere when `quiet`.
    (`log` must not be `<work>/pytest.log`: that is the child protocol's own log.)

    Returns ({cell id: what its test judged: {"outcome", "message", "reports"}}, why pytest
    itself did not finish cleanly, or None). A cell missing from the first has no verdict.
    """
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    for cid in cells:  # starts are counted per run
        (work / cid / "cell.starts.jsonl").unlink(missing_ok=True)
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    args = [
        "-c",
        str(ini),
        "--rootdir",
        str(work),
        "-p",
        "harness.suites.plugin",
        "-p",
        "no:cacheprovider",
        "--cells",
        "{spec}",
        "--pyargs",
        "harness.suites.test_conformance",
        "-q",
        "-rfE",
        "--junitxml",
        str(out / "junit-conformance.xml"),
    ]
    if workers > 1:
        args += ["-p", "xdist", "-n", str(workers)]
    # Only our plugin (and xdist): a user's installed pytest plugins have no business here,
    # and loading them costs every worker start-up time.
    with contextlib.ExitStack() as stack:
        output: IO[str] | int = subprocess.DEVNULL if quiet else sys.stderr
        if log is not None and not quiet:
            output = stack.enter_context(log.open("w", encoding="utf-8"))
        ran = launch(
            "pytest",
            {"cells": cells, "out": str(out), "timeout": timeout},
            work,
            timeout=timeout * (len(cells) + 2),
            env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
            name="pytest",
            args=args,
            output=output,
        )
    if ran.result is not None:
        tests: dict[str, dict[str, Any]] = ran.result.get("tests", {})
    else:  # pytest died or hung: what its controller recorded test by test
        tests = {}
        for item in ran.progress:
            if "done" in item:
                _keep(tests, str(item["done"]), item["outcome"], item["message"], item["when"], "?")
    # exit 1 just means a test failed; anything else, or no result at all, is pytest's trouble
    trouble = ran.error if ran.result is None or ran.returncode not in (0, 1) else None
    if trouble and log is not None and not quiet:
        trouble += f" (pytest's output: {log})"
    return tests, trouble
