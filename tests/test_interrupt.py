"""Ctrl-C and SIGTERM during downloads: a real `python -m harness` process, a slow loopback
server. It must stop within a couple of seconds, cancel what is queued, cut what is in flight,
leave no temp file and no lock held, and exit 130."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import filelock
import pytest

from tests.conftest import NEW, grow, spawn
from tests.fakegithub import FakeGitHub

BIG = [
    f"llama-{NEW}-bin-ubuntu-x64.tar.gz",
    f"llama-{NEW}-bin-macos-arm64.tar.gz",
    f"llama-{NEW}-bin-win-cpu-x64.zip",
    f"llama-{NEW}-bin-ubuntu-vulkan-x64.tar.gz",
]
STOP_WITHIN_S = 3.0  # "a couple of seconds", with room for a loaded 2-core machine


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Killed at the end: a process left running by a failed assertion would download on."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _start(gh: FakeGitHub, cache: Path, jobs: int) -> subprocess.Popen[str]:
    return spawn(
        [
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(cache),
            "--jobs",
            str(jobs),
            "download",
            NEW,
            "--all-platforms",
        ]
    )


def _wait_for_transfers(gh: FakeGitHub, cache: Path, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(gh.asset_hits.values()) >= n and list(cache.rglob("*.incomplete")):
            time.sleep(0.3)  # bytes are flowing
            return
        time.sleep(0.05)
    raise AssertionError(f"no download started: {gh.asset_hits}")


def _assert_clean(cache: Path) -> None:
    assert not list(cache.rglob("*.incomplete")), "temp files left behind"
    assert not list(cache.rglob("*.ready.json")), "nothing was finished, nothing is ready"
    for lock in cache.rglob("*.lock"):
        filelock.FileLock(str(lock)).acquire(timeout=0)  # free: released by the process


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_at_once_and_cleans_up(
    gh: FakeGitHub, tmp_path: Path, sig: signal.Signals, procs: list
) -> None:
    for name in BIG:
        grow(gh, name, 3_000_000)
    gh.faults.throttle_bps = 100_000  # 30 s an asset: without a cancel this takes minutes
    cache = tmp_path / "cache"
    proc = _start(gh, cache, jobs=2)
    procs.append(proc)
    _wait_for_transfers(gh, cache, 2)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
    assert err.strip().splitlines()[-1] == "llama-harness: interrupted"
    assert "Traceback" not in err
    assert sum(gh.asset_hits.values()) == 2, gh.asset_hits  # the queued ones never started
    _assert_clean(cache)


def test_interrupt_cuts_a_stalled_transfer(gh: FakeGitHub, tmp_path: Path, procs: list) -> None:
    """A server that sends a few bytes and then nothing: the reader is blocked in recv() for
    the whole read timeout unless the socket is shut under it."""
    name = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"
    gh.faults.stall[name] = 10
    cache = tmp_path / "cache"
    proc = spawn(
        [
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(cache),
            "download",
            NEW,
            "--os",
            "linux",
            "--variant",
            "cpu",
        ]
    )
    procs.append(proc)
    _wait_for_transfers(gh, cache, 1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < STOP_WITHIN_S
    _assert_clean(cache)
