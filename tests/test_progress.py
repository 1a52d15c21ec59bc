"""Progress bars: shown to a person at a terminal, never in --json or piped output."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from tests.conftest import NEW, ROOT, grow
from tests.fakegithub import FakeGitHub

TGZ = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"


def run_on_tty(args: list[str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_bars_on_a_terminal(gh: FakeGitHub, tmp_path: Path) -> None:
    grow(gh, TGZ, 400_000)
    gh.faults.throttle_bps = 800_000
    code, err = run_on_tty(
        [
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "download",
            NEW,
            "--os",
            "linux",
            "--variant",
            "cpu",
        ]
    )
    assert code == 0, err
    assert "download 1/1" in err and TGZ[:30] in err  # the count, then the file's own bar
    assert "/400.4 kB" in err  # bytes of a known size: never "0/?" or "/0"
    assert "━" in err  # a bar, drawn by rich


def test_no_bars_with_json_even_on_a_terminal(gh: FakeGitHub, tmp_path: Path) -> None:
    grow(gh, TGZ, 400_000)
    gh.faults.throttle_bps = 800_000
    code, err = run_on_tty(
        [
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
            "download",
            NEW,
            "--os",
            "linux",
            "--variant",
            "cpu",
        ]
    )
    assert code == 0, err
    assert "━" not in err and "\x1b[" not in err  # no bar, no cursor movement: plain lines
    assert "llama-harness: download 1/1 " + TGZ in err


def test_no_bars_when_piped(harness, gh: FakeGitHub) -> None:
    r = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0
    # a CI log: one line per finished transfer, with its count, size and time; no bar
    lines = r.err.splitlines()
    assert len(lines) == 1 and "━" not in r.err
    assert re.fullmatch(rf"llama-harness: download 1/1 {TGZ} [0-9]+ bytes in [0-9.]+ s", lines[0])
    again = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert again.code == 0 and again.err == ""  # warm: nothing to report

