"""The one child launcher (harness.load.child): protocol, timeouts, signals, crash attribution."""

from __future__ import annotations

import json
from pathlib import Path

from harness.load.child import LOADING, launch, signal_name

PROBE = "tests.child_probe"


def test_a_clean_child_returns_its_result_and_progress(tmp_path: Path) -> None:
    ran = launch(PROBE, {"steps": ["a", "b"]}, tmp_path, timeout=60, env={"PROBE_ENV": "seen"})
    assert ran.ok and ran.error is None and ran.returncode == 0
    assert ran.result == {"steps": ["a", "b"], "env": "seen"}
    assert ran.done == {"a": {"ok": True}, "b": {"ok": True}}
    assert ran.running is None
    assert ran.log_tail == ["probe: started"]
    spec = json.loads((tmp_path / "child.spec.json").read_text())
    assert {"log", "progress", "result", "scratch"} <= set(spec)


def test_a_crash_names_the_signal_and_the_step_it_died_in(tmp_path: Path) -> None:
    ran = launch(PROBE, {"steps": ["a", "b", "c"], "crash_in": "b"}, tmp_path, timeout=60)
    assert ran.crashed and not ran.ok and ran.result is None
    assert ran.error == "SIGSEGV in b"
    assert list(ran.done) == ["a"]
    assert ran.log_tail[0] == "probe: started"


def test_a_crash_before_any_step_is_while_loading(tmp_path: Path) -> None:
    ran = launch(PROBE, {"steps": [], "crash_at_start": True}, tmp_path, timeout=60)
    assert ran.error == f"SIGSEGV {LOADING}"
    assert signal_name(-11) == "SIGSEGV" and signal_name(-99) == "signal 99"


def test_a_hung_child_times_out_with_where_it_was(tmp_path: Path) -> None:
    ran = launch(PROBE, {"steps": ["a", "slow"], "hang_in": "slow"}, tmp_path, timeout=2)
    assert ran.timed_out and ran.returncode is None
    assert ran.error == "timed out after 2 s in slow"


def test_an_exception_is_the_last_stderr_line(tmp_path: Path) -> None:
    ran = launch(PROBE, {"steps": ["a"], "raise_in": "a"}, tmp_path, timeout=60)
    assert not ran.ok and not ran.crashed and ran.returncode == 1
    assert ran.error == "the child failed: RuntimeError: probe gave up in a"


def test_a_child_that_cannot_read_its_spec_fails_cleanly(tmp_path: Path) -> None:
    ran = launch(PROBE, {}, tmp_path, timeout=60, args=[str(tmp_path / "missing.json")])
    assert not ran.ok and ran.error is not None
    assert ran.error.startswith("the child failed: FileNotFoundError")


def test_every_launch_is_counted(tmp_path: Path) -> None:
    for _ in range(3):
        launch(PROBE, {"steps": []}, tmp_path, timeout=60, name="cell")
    starts = (tmp_path / "cell.starts.jsonl").read_text().splitlines()
    assert len(starts) == 3 and json.loads(starts[0])["module"] == PROBE
