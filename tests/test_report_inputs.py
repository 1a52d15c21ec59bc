"""`report` on files someone else wrote: each input is checked against report.schema.json (exit 2
naming the file and the place), `--out` must be a folder, and every value that reaches report.md
(also the GitHub step summary) renders as text: no HTML, no links, no comment that hides the rest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.report.markdown import markdown, md
from tests.conftest import one_error_line
from tests.test_report import cell, check, synthetic


def _report(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["report", *args])
    return code, capsys.readouterr().err


def _shard(folder: Path, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return folder


@pytest.mark.parametrize(
    ("data", "place"),
    [
        ({"cells": [{}]}, "top level"),  # no harness/created/host
        ({**synthetic(), "cells": [{}]}, "cells[0]"),
        ({**synthetic(), "cells": "all"}, "cells"),
        ({**synthetic(), "cells": [{**synthetic()["cells"][0], "release": 5}]}, "cells[0].release"),
        (
            {**synthetic(), "cells": [{**synthetic()["cells"][0], "status": "ok"}]},
            "cells[0].status",
        ),
        ([1, 2], "top level"),
        ("{not json", "invalid JSON"),
        ("[" * 50_000 + "]" * 50_000, "invalid JSON"),
    ],
)
def test_a_malformed_shard_is_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: Any, place: str
) -> None:
    good = _shard(tmp_path / "good", synthetic())
    bad = _shard(tmp_path / "bad", data)
    code, err = _report(tmp_path, capsys, "--out", str(tmp_path / "out"), str(good), str(bad))
    assert code == 2, err
    line = one_error_line(err)
    assert str(bad / "report.json") in line and place in line
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_malformed_baseline_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _shard(tmp_path / "good", synthetic())
    base = _shard(tmp_path / "base", {"cells": [{}]}) / "report.json"
    code, err = _report(
        tmp_path, capsys, "--out", str(tmp_path / "out"), "--baseline", str(base), str(good)
    )
    assert code == 2, err
    assert str(base) in one_error_line(err)


@pytest.mark.parametrize("parent", [False, True])
def test_out_that_is_a_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parent: bool
) -> None:
    good = _shard(tmp_path / "good", synthetic())
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    out = blocker / "sub" if parent else blocker
    code, err = _report(tmp_path, capsys, "--out", str(out), str(good))
    assert code == 2, err
    assert "--out" in one_error_line(err)
    assert blocker.read_text() == "mine"


def test_run_refuses_an_out_file_before_any_work(
    tmp_path: Path, matrix_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    code = cli.main(
        [
            "--api-url",
            "http://127.0.0.1:9",
            "--cache-dir",
            str(tmp_path / "c"),
            "--matrix",
            str(matrix_file),
            "run",
            "--out",
            str(blocker),
        ]
    )
    assert code == 2
    assert "--out" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["run", "--timeout", "-1"], "--timeout"),
        (["run", "--timeout", "nan"], "--timeout"),
        (["run", "--timeout", "inf"], "--timeout"),
        (["run", "--timeout", "0"], "--timeout"),
        (["run", "--workers", "0"], "--workers"),
        (["run", "--threads", "-2"], "--threads"),
        (["--jobs", "0", "download"], "--jobs"),
        (["releases", "--limit", "-1"], "--limit"),
        (["releases", "--limit", "1e3"], "--limit"),
    ],
)
def test_numeric_options_are_validated(
    capsys: pytest.CaptureFixture[str], args: list[str], what: str
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    assert what in one_error_line(capsys.readouterr().err)


HOSTILE = {
    "release": "<script>alert(1)</script>",
    "reason": '<img src=x onerror="alert(1)"> and ![pixel](https://evil.example/p.png)',
    "comment": "<!-- everything after this would vanish",
    "variant": "[click](javascript:alert(1))",
    "check": "a`b<i>",
    "pipe": "x | y",
}


def _hostile_report() -> dict[str, Any]:
    rep = synthetic()
    rep["cells"] += [
        cell(
            HOSTILE["release"],
            "linux",
            "cpu",
            "fail",
            reason=HOSTILE["reason"],
            checks={HOSTILE["check"]: check("fail", HOSTILE["comment"])},
        ),
        cell("b9999", "linux", HOSTILE["variant"], "error", reason=HOSTILE["comment"]),
        cell(
            "b9998",
            "linux",
            "cpu",
            "crash",
            reason=HOSTILE["pipe"],
            log_tail=["</code><script>x</script>"],
        ),
    ]
    rep["host"]["os"] = "<b>bold</b>"
    return rep


def _no_markup(text: str) -> None:
    outside_code = re.sub(r"`[^`\n]*`", "", text)  # a code span shows its text as it is
    for bad in ("<script", "<img", "<!--", "<b>", "<i>", "</code"):
        assert bad not in outside_code, bad
    assert not re.search(r"(?<!\\)\]\(", outside_code)  # a link or image: `](` unescaped
    assert "\\| y" in text  # a pipe in a value does not split the table cell


def test_report_md_and_the_step_summary_escape_every_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    shard = _shard(tmp_path / "shard", _hostile_report())
    out = tmp_path / "out"
    code, err = _report(tmp_path, capsys, "--out", str(out), str(shard))
    assert code == 1, err  # cells failed: the report is still written
    for text in ((out / "report.md").read_text(), summary.read_text()):
        _no_markup(text)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&lt;!-- everything" in text
        assert text.rstrip().endswith("|") or "## " in text.split("&lt;!--")[-1]


def test_md_renders_values_as_text() -> None:
    assert md("a_b*c*") == "a\\_b\\*c\\*"
    assert md("<!--") == "&lt;!--"
    assert md("x\n| y") == "x \\| y"
    assert md(12.5) == "12.5"
    _no_markup(markdown(_hostile_report()))
