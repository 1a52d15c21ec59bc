"""report.xml: the report as JUnit XML, for CI test views (GitHub, GitLab, Jenkins, Azure).

One `<testsuite>` per release; one `<testcase classname="<release>.<os>-<arch>-<variant>"
name="<check>">` per cell and check. A check that failed is a `<failure>`, one that errored an
`<error>`, a skipped one `<skipped>`. A cell whose outcome its checks do not tell (it crashed,
errored, was skipped, or failed for a reason outside its checks) gets one more testcase, `run`,
carrying the cell's reason (and, for a crash or error, the tail of llama.cpp's log).

The shape is the Ant / Jenkins `junit-10.xsd` one (tests/data/junit.xsd checks it):
testsuites(name, tests, failures, errors, time) / testsuite(name, tests, failures, errors,
skipped, time, timestamp) / testcase(name, classname, time).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from harness.report import model as rp
from harness.report.text import as_number
from harness.report.text import xml_text as _text

RUN = "run"  # the testcase that stands for the cell itself


def _seconds(v: Any) -> float:
    n = as_number(v)
    return n if n is not None and n >= 0 else 0.0


def _case(
    suite: ET.Element, classname: str, name: str, seconds: float, outcome: tuple[str, str, str]
) -> str:
    """Append a testcase; `outcome` is (kind, message, body), kind "" for a pass. Returns kind."""
    case = ET.SubElement(
        suite, "testcase", name=_text(name), classname=_text(classname), time=f"{seconds:.3f}"
    )
    kind, message, body = outcome
    if kind:
        el = ET.SubElement(case, kind, message=_text(message))
        if kind != "skipped":
            el.set("type", kind if kind == "failure" else "error")
        if body:
            el.text = _text(body)
    return kind


def _check_outcome(chk: dict[str, Any]) -> tuple[str, str, str]:
    status = chk.get("status")
    msg = str(chk.get("message") or "")
    kind = {"fail": "failure", "error": "error", "skip": "skipped"}.get(str(status), "")
    return kind, msg, msg if kind in ("failure", "error") else ""


def _run_outcome(c: dict[str, Any]) -> tuple[str, str, str] | None:
    """The cell's own testcase, or None when its checks already tell its outcome."""
    status, reason = c["status"], str(c.get("reason") or "")
    checks = c.get("checks") or {}
    told = {"fail": "failure", "error": "error"}
    if status in ("crash", "error"):
        tail = [str(ln) for ln in c.get("log_tail") or []]
        body = f"{status}: {reason}" + ("\n\nlog tail:\n" + "\n".join(tail) if tail else "")
        return "error", f"{status}: {reason}", body
    if status == "skip":
        return "skipped", reason, ""
    if status == "fail" and not any(told.get(v.get("status", "")) for v in checks.values()):
        return "failure", reason, reason
    if not checks:
        return "", "", ""
    return None


def render(report: dict[str, Any]) -> str:
    root = ET.Element("testsuites", name="llama-harness")
    totals = dict.fromkeys(("tests", "failures", "errors"), 0)
    total_time = 0.0
    stamp = str(report.get("created") or "")[:19]
    for rel in rp.releases_of(report):
        cells = [c for c in report["cells"] if c["release"] == rel]
        suite = ET.SubElement(root, "testsuite", name=_text(rel))
        if stamp:
            suite.set("timestamp", stamp)
        build = next((c.get("build") for c in cells if c.get("build")), None)
        props = [(k, v) for k, v in (("build", build), ("harness", report.get("harness"))) if v]
        if props:
            el = ET.SubElement(suite, "properties")
            for k, v in props:
                ET.SubElement(el, "property", name=k, value=_text(v))
        kinds = _cases(suite, cells)
        counts = {
            "tests": len(kinds),
            "failures": kinds.count("failure"),
            "errors": kinds.count("error"),
            "skipped": kinds.count("skipped"),
        }
        seconds = sum(float(t.get("time", 0)) for t in suite.iter("testcase"))
        for k, n in counts.items():
            suite.set(k, str(n))
        suite.set("time", f"{seconds:.3f}")
        for k in totals:
            totals[k] += counts[k]
        total_time += seconds
    for k, n in totals.items():
        root.set(k, str(n))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cases(suite: ET.Element, cells: Sequence[dict[str, Any]]) -> list[str]:
    kinds = []
    for c in cells:
        classname = f"{c['release']}.{c['os']}-{c['arch']}-{c['variant']}"
        for name, chk in (c.get("checks") or {}).items():
            kinds.append(
                _case(suite, classname, name, _seconds(chk.get("seconds")), _check_outcome(chk))
            )
        run = _run_outcome(c)
        if run is not None:  # its time: what the checks do not account for, so sums stay true
            wall = _seconds((c.get("seconds") or {}).get("wall"))
            spent = sum(_seconds(v.get("seconds")) for v in (c.get("checks") or {}).values())
            kinds.append(_case(suite, classname, RUN, max(wall - spent, 0.0), run))
    return kinds
