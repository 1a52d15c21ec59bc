from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import cli
from tests.archives import make_archive_for
from tests.fakegithub import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent

OLD = "b7000"  # zip era, no digests (assets from before June 2025 have none)
NEW = "b8095"  # tar.gz era, with digests

CATALOGUE = {
    OLD: [
        f"llama-{OLD}-bin-ubuntu-x64.zip",
        f"llama-{OLD}-bin-macos-arm64.zip",
        f"llama-{OLD}-bin-win-cpu-x64.zip",
        f"llama-{OLD}-bin-win-cuda-12.4-x64.zip",
        "cudart-llama-bin-win-cuda-12.4-x64.zip",
        f"llama-{OLD}-xcframework.zip",
    ],
    NEW: [
        f"llama-{NEW}-bin-ubuntu-x64.tar.gz",
        f"llama-{NEW}-bin-ubuntu-vulkan-x64.tar.gz",
        f"llama-{NEW}-bin-macos-arm64.tar.gz",
        f"llama-{NEW}-bin-win-cpu-x64.zip",
        f"llama-{NEW}-xcframework.tar.gz",
    ],
}

MATRIX = f"""\
releases:
  - {OLD}
  - {NEW}
platforms:
  - {{os: linux, arch: x64, variants: [cpu]}}
  - {{os: windows, arch: x64, variants: [cpu, cuda-12.4]}}
  - {{os: macos, arch: arm64, variant: metal}}
exclude:
  - {{release: {NEW}, variant: cuda-12.4}}
"""


def archives_for(tag: str, names: list[str], folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    return {n: make_archive_for(n, folder / n, tag).read_bytes() for n in names}


def populate(gh: FakeGitHub, folder: Path) -> FakeGitHub:
    gh.add_release(
        OLD,
        archives_for(OLD, CATALOGUE[OLD], folder),
        digests=False,
        published_at="2025-05-01T00:00:00Z",
    )
    gh.add_release(
        NEW,
        archives_for(NEW, CATALOGUE[NEW], folder),
        prerelease=True,
        published_at="2026-02-01T00:00:00Z",
    )
    gh.add_release(
        "v0.5.0", {"nightly-tag.txt": f"{NEW}\n".encode()}, published_at="2026-02-02T00:00:00Z"
    )
    gh.add_release("b8100", {}, draft=True, prerelease=True)
    return gh


def grow(gh: FakeGitHub, name: str, extra: int) -> int:
    """Make an asset bigger, so it takes a while to download, and publish the new digest.

    tar.gz: zero padding after the end; zip: one more stored member (a zip ends with its
    central directory, so padding would break it)."""
    a = gh.asset(name)
    if name.endswith(".zip"):
        buf = io.BytesIO(a.data)
        with zipfile.ZipFile(buf, "a") as zf:
            zf.writestr("pad.bin", bytes(range(256)) * (extra // 256))
        a.data = buf.getvalue()
    else:
        a.data += bytes(extra)
    if a.digest:
        a.digest = f"sha256:{hashlib.sha256(a.data).hexdigest()}"
    return len(a.data)


@pytest.fixture
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGitHub]:
    with populate(FakeGitHub(), tmp_path_factory.mktemp("srv")) as server:
        yield server


@pytest.fixture
def matrix_file(tmp_path: Path) -> Path:
    p = tmp_path / "matrix.yaml"
    p.write_text(MATRIX)
    return p


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("GITHUB_TOKEN", "GH_TOKEN", "LLAMA_HARNESS_CACHE", "LLAMA_HARNESS_API_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def harness(gh: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process against the fake GitHub and a per-test cache."""
    cache = tmp_path / "cache"

    def run(*args: str) -> Ran:
        code = cli.main(["--api-url", gh.api_url, "--cache-dir", str(cache), *args])
        got = capsys.readouterr()
        return Ran(code, got.out, got.err)

    run.cache = cache  # type: ignore[attr-defined]
    return run


def spawn(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen[str]:
    """The real console entry point in a child process (python -m harness)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def run_harness(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`spawn` run to the end: the real console entry point, its output captured."""
    proc = spawn(list(args), env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# `llama-harness: download 3/15 …`: the progress lines a log (no terminal) gets; not errors
PROGRESS_LINE = re.compile(r"^llama-harness: [a-z-]+ [0-9]+/([0-9]+|\?)( |$)")


def without_progress(err: str) -> str:
    return "".join(ln for ln in err.splitlines(True) if not PROGRESS_LINE.match(ln))


def one_error_line(err: str) -> str:
    lines = [x for x in without_progress(err).splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("llama-harness: error: ")
    return lines[0]
