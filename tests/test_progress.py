"""Progress bars: shown to a person at a terminal, never in --json or piped output."""

from __future__ import annotations

import os
import pty
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
    assert "total" in err and TGZ[:30] in err
    assert "MB" in err or "kB" in err


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
    assert "total" not in err and "kB" not in err


def test_no_bars_when_piped(harness, gh: FakeGitHub) -> None:
    r = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0
    assert "total" not in r.err and r.err == ""
