"""The cache shared by real processes (issue 11): clean-cache and other users' downloads, a lock
held past the wait, a lock that cannot be opened, a disk that fills up. Every process here is the
real console entry point; the server is the loopback fake GitHub, throttled where a download must
still be running when the next process starts."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NEW, ROOT, grow, spawn
from tests.fakegithub import FakeGitHub

TGZ = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"
WINZIP = f"llama-{NEW}-bin-win-cpu-x64.zip"
LINUX = ["download", NEW, "--os", "linux", "--variant", "cpu"]
WINDOWS = ["download", NEW, "--os", "windows", "--variant", "cpu"]


def cli(gh: FakeGitHub, cache: Path, *args: str, **kw) -> subprocess.Popen[str]:
    return spawn(["--api-url", gh.api_url, "--cache-dir", str(cache), *args], **kw)


def error_lines(err: str) -> list[str]:
    """Warnings (`waiting for lock on …`) may precede it: exactly one error line, no traceback."""
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("llama-harness: error: ")]
    assert len(lines) == 1, err
    return lines


def wait_for_partial(folder: Path, name: str, timeout: float = 30) -> None:
    """Until a download of `name` is under way (its temp file holds bytes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 0 for p in folder.glob(f"{name}.*.incomplete")):
            return
        time.sleep(0.02)
    raise AssertionError(f"the download of {name} never started")


def slow(gh: FakeGitHub, *names: str, seconds: float = 3.0) -> None:
    """Each asset takes about `seconds` to download."""
    for name in names:
        grow(gh, name, 300_000)
    gh.faults.throttle_bps = int(max(len(gh.asset(n).data) for n in names) / seconds)


def test_clean_cache_during_two_downloads_loses_nothing(gh: FakeGitHub, tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    # slowed first: the release answer is kept from the first download on (b<N> assets never
    # change), so they are published at their final size before it
    slow(gh, TGZ, WINZIP)
    done = cli(gh, cache, "download", NEW, "--os", "macos")  # a finished entry: clean removes it
    assert done.wait(timeout=60) == 0
    first, second = cli(gh, cache, "--json", *LINUX), cli(gh, cache, "--json", *WINDOWS)
    folder = cache / "releases" / NEW
    wait_for_partial(folder, TGZ)
    wait_for_partial(folder, WINZIP)

    cleaner = cli(gh, cache, "clean-cache")
    cleaned, said = cleaner.communicate(timeout=60)
    for proc in (first, second):  # both downloads still succeed
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert Path(json.loads(out)[0]["path"]).is_dir()
    assert cleaner.returncode == 0, said
    assert f"releases/{NEW}/llama-{NEW}-bin-macos-arm64.tar.gz" in cleaned.replace(os.sep, "/")
    assert f"{NEW}/{TGZ} is in use by another process" in said  # says which it skipped
    assert f"{NEW}/{WINZIP} is in use by another process" in said
    assert not (folder / f"llama-{NEW}-bin-macos-arm64.tar.gz").exists()
    check = cli(gh, cache, "--json", "verify")
    out, err = check.communicate(timeout=60)
    assert check.returncode == 0, err
    assert sorted(r["asset"] for r in json.loads(out)) == sorted([TGZ, WINZIP])


def test_clean_cache_wait_removes_an_entry_once_its_download_is_done(
    gh: FakeGitHub, tmp_path: Path
) -> None:
    cache = tmp_path / "shared"
    slow(gh, TGZ, seconds=2)
    downloader = cli(gh, cache, *LINUX)
    wait_for_partial(cache / "releases" / NEW, TGZ)
    cleaner = cli(gh, cache, "clean-cache", "--wait")
    _, err = downloader.communicate(timeout=60)
    assert downloader.returncode == 0, err
    out, err = cleaner.communicate(timeout=60)
    assert cleaner.returncode == 0, err
    assert "waiting for lock on" in err and "removed" in out
    assert not (cache / "releases").exists()


def test_a_lock_held_past_the_wait_is_exit_5(gh: FakeGitHub, tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    slow(gh, TGZ, seconds=10)
    holder = cli(gh, cache, *LINUX)
    wait_for_partial(cache / "releases" / NEW, TGZ)
    started = time.monotonic()
    waiter = cli(gh, cache, "--lock-timeout", "1", *LINUX)
    cleaner = cli(gh, cache, "--lock-timeout", "1", "clean-cache", "--wait")
    _, err = waiter.communicate(timeout=60)
    waited = time.monotonic() - started
    assert waiter.returncode == 5, err
    (line,) = error_lines(err)
    assert "still locked by another process after 1 s" in line
    assert str(cache / "locks" / NEW / f"{TGZ}.lock") in line and "--lock-timeout" in line
    assert waited < 30  # bounded: not the old hour
    _, err = cleaner.communicate(timeout=60)
    assert cleaner.returncode == 5, err
    (line,) = error_lines(err)
    assert f"{NEW}/{TGZ}: still in use by another process after 1 s" in line
    _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err


def _without_root_powers() -> list[str]:
    """A command prefix under which file modes bind: root keeps its uid but loses the
    capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to bind")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_a_lock_that_cannot_be_opened_is_one_line(gh: FakeGitHub, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    lock = cache / "locks" / NEW / f"{TGZ}.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    lock.chmod(0o400)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "harness", "--api-url", gh.api_url, "--cache-dir", str(cache)]
    proc = subprocess.run(
        [*_without_root_powers(), *argv, *LINUX],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 5, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"cannot lock {lock}: Permission denied" in line
    assert not list(cache.rglob("*.ready.json"))


# --- a disk that fills up ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: mounting needs root (CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the disk-full tests mount a tmpfs, which needs root")
    point = tmp_path / "small-disk"
    point.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _compressible(size: int) -> bytes:
    """About one bit of entropy a byte: gzip makes it ~7x smaller, well inside the bomb limit."""
    table = bytes(ord("a") + (i & 1) for i in range(256))
    return random.Random(0).randbytes(size).translate(table)


def _targz(path: Path, top: str, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


@pytest.mark.parametrize("where", ["download", "extraction"])
def test_a_full_disk_is_exit_5_and_nothing_is_marked_ready(
    gh: FakeGitHub, tmp_path: Path, small_disk: Path, where: str
) -> None:
    tag = "b9001"
    name = f"llama-{tag}-bin-ubuntu-x64.tar.gz"
    if where == "download":  # the archive itself does not fit
        data = _targz(tmp_path / name, f"llama-{tag}", {"libllama.so": os.urandom(1_300_000)})
    else:  # the archive fits, what it unpacks to does not
        data = _targz(tmp_path / name, f"llama-{tag}", {"libllama.so": _compressible(1_500_000)})
        assert len(data) < 400_000
    gh.add_release(tag, {name: data}, prerelease=True)
    cache = small_disk / "cache"
    proc = cli(gh, cache, "download", tag, "--os", "linux", "--variant", "cpu")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    (line,) = error_lines(err)
    assert "No space left on device" in line and str(small_disk) in line
    assert not list(cache.rglob("*.ready.json"))
    assert not [p for p in cache.rglob("*") if ".incomplete" in p.name or p.name.endswith(".tmp")]
    assert not (cache / "releases" / tag / name).exists()

    if where == "extraction":  # once there is room, the same cache just works
        shutil.rmtree(cache / "api", ignore_errors=True)
        big = tmp_path / "big-disk-cache"
        shutil.copytree(cache, big, symlinks=True)
        proc = cli(gh, big, "download", tag, "--os", "linux", "--variant", "cpu")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err


def test_verify_repair_holds_the_lock_against_clean_cache(gh: FakeGitHub, tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    slow(gh, TGZ, seconds=3)  # the repair downloads it again, slowly
    bps, gh.faults.throttle_bps = gh.faults.throttle_bps, 0
    first = cli(gh, cache, *LINUX)
    assert first.wait(timeout=60) == 0
    archive = cache / "releases" / NEW / TGZ
    archive.write_bytes(b"corrupted on disk")
    gh.faults.throttle_bps = bps
    repair = cli(gh, cache, "--json", "verify", "--repair")
    wait_for_partial(archive.parent, TGZ)
    cleaner = cli(gh, cache, "clean-cache")
    _, said = cleaner.communicate(timeout=60)
    out, err = repair.communicate(timeout=60)
    assert repair.returncode == 0, err
    assert json.loads(out)[0]["status"] == "repaired"
    assert cleaner.returncode == 0 and f"{NEW}/{TGZ} is in use by another process" in said
    assert archive.read_bytes() == gh.asset(TGZ).data
