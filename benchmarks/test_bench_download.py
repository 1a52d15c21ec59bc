"""Download benchmarks (issue 12), each figure a ratio of medians measured side by side in one run.

- cold, a realistic mix: 15 archives of 5 releases × 3 platforms, sizes spread like real release
  assets (30 kB … 10.4 MB, 72 MB in all), from a loopback GitHub whose asset host throttles each
  connection to 4 MB/s. `llama-harness download` (a fresh process, a fresh cache) with --jobs 8
  and --jobs 1, against the ideal max(total ÷ (8 × rate), largest ÷ rate) and against curl
  (`--parallel --parallel-max 8`, and one by one) fetching the same URLs, where curl is installed.
- warm: the same matrix again, a fresh process: zero requests of any kind, wall time.
- hashing: verify-while-streaming against a plain download of 128 MiB from a server (its own
  process) throttled to 200 MB/s per connection, the rate a CI runner sees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from benchmarks.conftest import RATIOS
from harness.sources import http
from harness.sources import stream as fetch
from tests.archives import Entry, write_targz
from tests.conftest import ROOT
from tests.fakegithub import FakeGitHub

RATE = 4_000_000  # bytes/s per connection on the asset host
TAGS = ("b9001", "b9002", "b9003", "b9004", "b9005")
PLATFORMS = ("ubuntu-x64.tar.gz", "win-cpu-x64.zip", "macos-arm64.tar.gz")
# archive sizes in bytes, per release and platform: spread the way real release assets are
SIZES = (
    (10_400_000, 6_100_000, 3_200_000),
    (9_800_000, 5_700_000, 2_900_000),
    (8_900_000, 5_200_000, 1_100_000),
    (7_600_000, 4_400_000, 450_000),
    (3_900_000, 2_100_000, 30_000),
)
MATRIX = f"""\
releases: [{", ".join(TAGS)}]
platforms:
  - {{os: linux, arch: x64}}
  - {{os: windows, arch: x64}}
  - {{os: macos, arch: arm64}}
"""
CURL = shutil.which("curl")


def _archive(name: str, path: Path, tag: str, size: int) -> bytes:
    """A real archive of about `size` bytes: the usual layout plus incompressible payload, so
    that extraction costs what a real one does."""
    payload = os.urandom(max(0, size - 2_000))
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for lib in ("llama.dll", "ggml.dll", "ggml-base.dll"):
                zf.writestr(lib, f"{lib} of {tag}\n" * 8)
            zf.writestr("ggml-cpu.dll", payload)
    else:
        top = f"llama-{tag}"
        entries = [Entry(f"{top}/", kind="dir", mode=0o755)]
        for lib in ("libllama", "libggml", "libggml-base"):
            entries += [
                Entry(f"{top}/{lib}.so.0.0.9000", f"{lib} of {tag}\n".encode() * 8, 0o755),
                Entry(f"{top}/{lib}.so.0", kind="symlink", link=f"{lib}.so.0.0.9000"),
                Entry(f"{top}/{lib}.so", kind="symlink", link=f"{lib}.so.0"),
            ]
        entries.append(Entry(f"{top}/libggml-cpu.so", payload, 0o755))
        write_targz(path, entries)
    return path.read_bytes()


@dataclass
class Mix:
    gh: FakeGitHub
    folder: Path
    matrix: Path
    urls: list[str]
    total: int
    largest: int

    def ideal(self, jobs: int) -> float:
        return max(self.total / (jobs * RATE), self.largest / RATE)

    def requests(self) -> int:
        return sum(self.gh.api_hits.values()) + sum(self.gh.asset_hits.values())


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mix]:
    folder = tmp_path_factory.mktemp("mix")
    gh = FakeGitHub(rate_limit=1_000_000)
    for tag, sizes in zip(TAGS, SIZES, strict=True):
        assets = {}
        for plat, size in zip(PLATFORMS, sizes, strict=True):
            name = f"llama-{tag}-bin-{plat}"
            assets[name] = _archive(name, folder / name, tag, size)
        gh.add_release(tag, assets, prerelease=True)
    gh.faults.throttle_bps = RATE
    (folder / "matrix.yaml").write_text(MATRIX)
    sizes_all = [len(a.data) for r in gh.releases for a in r.assets]
    with gh:
        urls = [
            f"{gh.api_url}/{gh.repo}/releases/download/{r.tag}/{a.name}"
            for r in gh.releases
            for a in r.assets
        ]
        yield Mix(gh, folder, folder / "matrix.yaml", urls, sum(sizes_all), max(sizes_all))


def _harness(mix: Mix, cache: Path, jobs: int) -> subprocess.CompletedProcess[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "-q",
        "--api-url",
        mix.gh.api_url,
        "--cache-dir",
        str(cache),
        "--matrix",
        str(mix.matrix),
        "--jobs",
        str(jobs),
        "download",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, env=env, capture_output=True, check=False)


@pytest.mark.parametrize("jobs", [8, 1])
def test_cold_realistic_mix(benchmark, mix: Mix, tmp_path: Path, jobs: int) -> None:
    benchmark.group = "cold-15-archives-4MBps"
    caches = iter(tmp_path / f"cache-{i}" for i in range(100))

    def cold() -> subprocess.CompletedProcess[bytes]:
        return _harness(mix, next(caches), jobs)

    result = benchmark.pedantic(cold, rounds=3 if jobs == 8 else 2, iterations=1)
    assert result.returncode == 0, result.stderr.decode()
    benchmark.extra_info["ideal_s"] = mix.ideal(jobs)
    benchmark.extra_info["bytes"] = mix.total


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install -y curl)")
@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_cold_curl(benchmark, mix: Mix, tmp_path: Path, mode: str) -> None:
    """The same URLs (302 to the asset host, as GitHub's are), no hashing, no extraction."""
    benchmark.group = "cold-15-archives-4MBps"
    assert CURL is not None
    out = tmp_path / "curl"
    out.mkdir()
    cmd = [CURL, "-sSfL"]
    if mode == "parallel":
        cmd += ["--parallel", "--parallel-max", "8"]
    for i, url in enumerate(mix.urls):
        cmd += ["-o", str(out / f"{i}.bin"), url]
    result = benchmark.pedantic(
        lambda: subprocess.run(cmd, capture_output=True, check=False),
        rounds=3 if mode == "parallel" else 2,
        iterations=1,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert sum(p.stat().st_size for p in out.iterdir()) == mix.total


def test_warm_realistic_mix(benchmark, mix: Mix, tmp_path: Path) -> None:
    """What a CI step sees on a warm cache: a fresh process, 15 cells, no network at all."""
    cache = tmp_path / "warm"
    assert _harness(mix, cache, 8).returncode == 0
    before = mix.requests()
    result = benchmark.pedantic(lambda: _harness(mix, cache, 8), rounds=10, iterations=1)
    assert result.returncode == 0, result.stderr.decode()
    assert mix.requests() == before  # zero requests: not even a 304
    benchmark.extra_info["requests"] = mix.requests() - before


@pytest.mark.parametrize("what", ["python -c pass", "import harness.cli"])
def test_startup_floor(benchmark, what: str) -> None:
    """What a warm run cannot go below: the interpreter, then our imports (the breakdown of
    the warm figure; `python -X importtime -m harness …` names each module)."""
    code = "pass" if what == "python -c pass" else "import harness.cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code]
    benchmark.pedantic(lambda: subprocess.run(cmd, env=env, check=True), rounds=10, iterations=1)


RATIOS += [
    (
        "cold --jobs 8 ÷ ideal (max(total/(8×rate), largest/rate))",
        "test_cold_realistic_mix[8]",
        max(sum(map(sum, SIZES)) / (8 * RATE), max(map(max, SIZES)) / RATE),
        "<= 1.2",
    ),
    (
        "cold --jobs 8 ÷ curl --parallel-max 8",
        "test_cold_realistic_mix[8]",
        "test_cold_curl[parallel]",
        "< 1",
    ),
    (
        "cold speed-up --jobs 1 ÷ --jobs 8",
        "test_cold_realistic_mix[1]",
        "test_cold_realistic_mix[8]",
        ">= 5",
    ),
    (
        "cold --jobs 1 ÷ curl one by one",
        "test_cold_realistic_mix[1]",
        "test_cold_curl[serial]",
        "<= 1.1",
    ),
    ("warm download, 15 cells, fresh process", "test_warm_realistic_mix", None, "<= 0.2 s"),
    ("  of which the interpreter", "test_startup_floor[python -c pass]", None, ""),
    ("  of which interpreter + imports", "test_startup_floor[import harness.cli]", None, ""),
]


# -- hashing at a CI runner's rate ------------------------------------------------------------

BIG = 128 * 1024 * 1024
HASH_RATE = 200_000_000  # bytes/s per connection


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    folder = tmp_path_factory.mktemp("big")
    data = os.urandom(BIG)
    (folder / "big.bin").write_bytes(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.throttled_server", str(folder), str(HASH_RATE)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    try:
        yield f"http://127.0.0.1:{port}/big.bin", data
    finally:
        proc.terminate()
        proc.wait()


def _plain(session: requests.Session, url: str, out_path: Path) -> int:
    n = 0
    with session.get(url, stream=True) as resp, out_path.open("wb") as out:
        while chunk := resp.raw.read1(fetch.CHUNK, decode_content=False):
            out.write(chunk)
            n += len(chunk)
    return n


def _hashed(session: requests.Session, url: str, out_path: Path) -> int:
    with out_path.open("wb") as out:
        n, _ = fetch.stream(session, url, out, "sha256", name="big", expected_size=BIG)
    return n


@pytest.mark.parametrize("mode", ["plain", "hashed"])
def test_hash_while_streaming_overhead(benchmark, big, tmp_path: Path, mode: str) -> None:
    """Each timed round follows an untimed round of the other mode, so both see the same
    machine (on a shared one, timings drift within seconds); the hashed test also times those
    plain rounds and reports the interleaved ratio."""
    benchmark.group = "hash-overhead-128MiB-200MBps"
    url, data = big
    session = http.download_session()
    fn, other = (_plain, _hashed) if mode == "plain" else (_hashed, _plain)
    others: list[float] = []
    cpu: list[float] = []  # this process's CPU seconds per timed round: what load cannot blur

    def setup() -> None:
        t0 = time.perf_counter()
        other(session, url, tmp_path / "other.bin")
        others.append(time.perf_counter() - t0)

    def timed(out: Path) -> int:
        c0 = time.process_time()
        n = fn(session, url, out)
        cpu.append(time.process_time() - c0)
        return n

    n = benchmark.pedantic(timed, args=(tmp_path / "big.bin",), setup=setup, rounds=9, iterations=1)
    cpu_s = benchmark.extra_info["cpu_s"] = statistics.median(cpu)
    assert n == BIG
    assert (
        hashlib.sha256((tmp_path / "big.bin").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )
    figures = [[f"{mode} download, CPU seconds a round (this process)", cpu_s, ""]]
    if mode == "hashed":
        ratio = benchmark.stats.stats.median / statistics.median(others)
        figures.append(
            ["hash-while-streaming, interleaved rounds (hashed ÷ plain)", ratio, "<= 1.05"]
        )
    benchmark.extra_info["figures"] = figures


RATIOS.append(
    (
        "hash-while-streaming at 200 MB/s (hashed ÷ plain)",
        "test_hash_while_streaming_overhead[hashed]",
        "test_hash_while_streaming_overhead[plain]",
        "<= 1.05",
    )
)
