"""Progress helpers: a line per item with its count in a log, nothing for quick phases shown
`after` a delay, results of other processes counted as their files land, nothing drawn when
there is nothing to do."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from harness.progress import Reporter, mode_for, size_text


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def test_each_counts_every_item_in_a_log() -> None:
    buf = io.StringIO()
    seen = []
    for x in Reporter("lines", buf).each("prepare", ["b1", "b2", "b3"]):
        if x == "b2":
            continue  # still counted: the item is done
        seen.append(x)
    assert seen == ["b1", "b3"]
    got = [ln.rsplit(" (", 1)[0] for ln in lines(buf)]
    assert got == [
        "llama-harness: prepare 1/3 b1",
        "llama-harness: prepare 2/3 b2",
        "llama-harness: prepare 3/3 b3",
    ]


def test_quick_phase_shown_after_a_delay_prints_nothing() -> None:
    buf = io.StringIO()
    with Reporter("lines", buf).stage("resolve", 5, after=30) as st:
        for tag in "abcde":
            st.advance(tag)
    assert buf.getvalue() == ""


def test_watching_counts_files_as_they_land_not_stale_ones(tmp_path: Path) -> None:
    buf = io.StringIO()
    stale, fresh = tmp_path / "old.json", tmp_path / "new.json"
    stale.write_text("{}")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # an earlier run's result
    with Reporter("lines", buf).watching("conformance", [(stale, "old"), (fresh, "new")]):
        threading.Timer(0.2, fresh.write_text, args=("{}",)).start()
        time.sleep(1.2)
        assert [ln.rsplit(" (", 1)[0] for ln in lines(buf)] == [
            "llama-harness: conformance 1/2 new"
        ]
        stale.write_text("{}")  # rewritten by this run
    assert lines(buf)[-1].startswith("llama-harness: conformance 2/2 old")


def test_transfer_lines_and_a_warm_run_draws_nothing() -> None:
    buf = io.StringIO()
    r = Reporter("lines", buf)
    with r:
        r.expect(2, 3_000_000)
        with r.transfer("a.tar.gz", 2_000_000) as advance:
            advance(2_000_000)
        with r.transfer("b.zip", None) as advance:  # size unknown: never "0/?" or "/0"
            advance(1_000_000)
    assert [ln.rsplit(" in ", 1)[0] for ln in lines(buf)] == [
        "llama-harness: download 1/2 a.tar.gz 2.0 MB",
        "llama-harness: download 2/2 b.zip 1.0 MB",
    ]
    bars = Reporter("bars", io.StringIO())
    with bars:
        bars.expect(0, 0)  # everything was cached
    assert bars._rich is None  # no bar was ever started


def test_modes() -> None:
    tty = type("T", (), {"isatty": lambda self: True})()
    pipe = io.StringIO()
    assert mode_for(False, stream=tty) == "bars"
    assert mode_for(True, stream=tty) == "lines"  # --json: no redrawn bars, lines on stderr
    assert mode_for(False, stream=pipe) == "lines"
    assert mode_for(False, quiet=True, stream=tty) == "off"
    assert size_text(None) == "? bytes" and size_text(10_164_694) == "10.2 MB"


def test_pytests_own_output_goes_to_its_log_beside_the_count(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """With progress on, the conformance child's "bringing up nodes..." and dots go to a file in
    the work folder, not between the per-cell lines (and not over the child protocol's log)."""
    from harness.suites.plugin import run_tests

    log = tmp_path / "work" / "pytest.output.log"
    run_tests({}, tmp_path, workers=2, timeout=60, quiet=False, log=log)
    assert "bringing up nodes" in log.read_text()
    assert "bringing up nodes" not in capfd.readouterr().err
