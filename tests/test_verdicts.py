"""A cell's child runs once per run, and the report says what the cell's test said (issue 10).

The end-to-end test breaks one release on purpose (its ABI file is garbage, so its children
cannot read what they need) in a run wide enough to be spread over two pytest-xdist workers,
then counts each cell's child starts and compares report.json with the JUnit file of the very
tests that judged the cells. `nox -s verdicts` runs this file under the oldest and the newest
pytest / pytest-xdist that pyproject.toml allows.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.report import judge
from harness.report.cell import CellResult
from harness.suites.child import Outcome
from tests.realbuilds import CACHE, ERAS, provision
from tests.test_run import harness_run

pytestmark = pytest.mark.xdist_group("real-builds")

BROKEN = "b8095"


def _cell() -> CellResult:
    return CellResult("b1", "linux", "x64", "cpu")


def test_a_failed_test_never_publishes_pass() -> None:
    cell = _cell()
    judge.conformance(cell, Outcome("pass"), {"outcome": "failed", "message": "boom"})
    assert (cell.status, cell.reason) == ("error", "its test failed: boom")


def test_a_cell_without_a_verdict_or_result_is_an_error() -> None:
    cell = _cell()
    judge.conformance(cell, Outcome("pass"), None)
    assert cell.status == "error" and "left no verdict" in cell.reason
    cell = _cell()
    judge.conformance(cell, None, {"outcome": "error", "message": "FileNotFoundError: spec"})
    assert cell.status == "error"
    assert cell.reason == f"{judge.NO_RESULT} (error: FileNotFoundError: spec)"


def test_a_child_started_twice_is_an_error() -> None:
    cell = _cell()
    judge.conformance(cell, Outcome("pass"), {"outcome": "passed", "message": ""}, starts=2)
    assert cell.status == "error" and "started 2 times" in cell.reason


def test_a_failure_keeps_its_own_reason() -> None:
    cell = _cell()
    judge.conformance(cell, Outcome("crash", "SIGSEGV in check greedy"), {"outcome": "failed"})
    assert (cell.status, cell.reason) == ("crash", "SIGSEGV in check greedy")


def _junit(path: Path) -> dict[str, str]:
    """{cell id: passed | skipped | failed} from pytest's JUnit XML."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        cid = name[name.index("[") + 1 : -1]
        kids = {k.tag for k in case}
        out[cid] = (
            "failed"
            if kids & {"failure", "error"}
            else "skipped"
            if "skipped" in kids
            else "passed"
        )
    return out


def test_a_broken_cell_fails_once_and_the_report_agrees_with_its_tests(tmp_path: Path) -> None:
    provision(ERAS)
    out = tmp_path / "out"
    (out / "abi").mkdir(parents=True)
    (out / "abi" / f"{BROKEN}.json").write_text("{not json")  # what every child of it reads
    (tmp_path / "matrix.yaml").write_text(
        f"sources: [npm]\nreleases: [{', '.join(ERAS)}]\nplatforms: [{{os: linux, arch: x64}}]\n"
    )
    code, report, err = harness_run(
        ["--cache-dir", str(CACHE), "run", "--workers", "2", "--out", str(out)], tmp_path
    )
    assert code == 1, err
    by = {c["release"]: c for c in report["cells"]}
    assert by[BROKEN]["status"] == "error", by[BROKEN]
    assert "JSONDecodeError" in by[BROKEN]["reason"]
    assert {r: c["status"] for r, c in by.items() if r != BROKEN} == dict.fromkeys(
        [e for e in ERAS if e != BROKEN], "pass"
    )

    # every child (cells and their CPU-variant runs) started exactly once ...
    work = out / "work"
    runs = sorted(p.name for p in work.iterdir() if (p / "cell.starts.jsonl").exists())
    assert len(runs) >= 16, runs  # enough for `run` to use both workers
    starts = {r: len((work / r / "cell.starts.jsonl").read_text().splitlines()) for r in runs}
    assert set(starts.values()) == {1}, starts

    # report.json says what the tests said: a cell passes only if its test passed
    tests = _junit(out / "junit-conformance.xml")
    assert set(tests) == set(runs)
    for c in report["cells"]:
        cid = f"{c['release']}-{c['os']}-{c['arch']}-{c['variant']}"
        assert (c["status"] == "pass") == (tests[cid] == "passed"), (cid, c["status"], tests[cid])
    variants = [r for r in runs if r.startswith(f"{BROKEN}-") and "+cpu-" in r]
    assert variants and all(tests[v] == "failed" for v in variants)
    record = json.loads((work / "pytest.result.json").read_text())["tests"]
    assert all(record[r]["reports"] == 1 for r in runs)
    assert {record[r]["worker"] for r in runs} == {"gw0", "gw1"}  # spread over two workers
