"""Download benchmarks against the loopback fake GitHub (issue: provisioning core).

- warm cache: `download` of a 3-release × 3-platform matrix, zero asset requests (goal < 1 s)
- cold: 20 assets from a per-connection-throttled host, --jobs 8 vs --jobs 1 (goal ≥ 6×, and
  within 1.25× of the ideal bytes ÷ (jobs × rate))
- hash-while-streaming vs a plain download on unthrottled loopback (goal ≤ 15 % overhead)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from benchmarks.conftest import RATIOS
from harness import cli
from harness.sources import http
from harness.sources import stream as fetch
from tests.archives import make_archive_for
from tests.conftest import ROOT
from tests.fakegithub import FakeGitHub

TAGS = ("b8000", "b8095", "b8200")
PLATFORMS = ("ubuntu-x64.tar.gz", "win-cpu-x64.zip", "macos-arm64.tar.gz")
MATRIX = """\
releases: [b8000, b8095, b8200]
platforms:
  - {os: linux, arch: x64}
  - {os: windows, arch: x64}
  - {os: macos, arch: arm64}
"""


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGitHub, Path, Path]]:
    tmp = tmp_path_factory.mktemp("warm")
    gh = FakeGitHub(rate_limit=10_000)
    for tag in TAGS:
        names = [f"llama-{tag}-bin-{p}" for p in PLATFORMS]
        gh.add_release(tag, {n: make_archive_for(n, tmp / n, tag).read_bytes() for n in names})
    (tmp / "matrix.yaml").write_text(MATRIX)
    with gh:
        args = [
            "-q",
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(tmp / "cache"),
            "--matrix",
            str(tmp / "matrix.yaml"),
            "download",
        ]
        assert cli.main(args) == 0
        yield gh, tmp, tmp / "cache"


def test_warm_download_in_process(benchmark, warm) -> None:
    gh, tmp, cache = warm
    before = sum(gh.asset_hits.values())
    args = [
        "-q",
        "--api-url",
        gh.api_url,
        "--cache-dir",
        str(cache),
        "--matrix",
        str(tmp / "matrix.yaml"),
        "download",
    ]
    code = benchmark.pedantic(cli.main, args=(args,), rounds=20, iterations=1)
    assert code == 0
    assert sum(gh.asset_hits.values()) == before  # zero asset requests when warm
    benchmark.extra_info["asset_requests"] = sum(gh.asset_hits.values()) - before


def test_warm_download_wall_clock_subprocess(benchmark, warm) -> None:
    """What a user or CI step sees: a fresh `python -m harness download` process."""
    gh, tmp, cache = warm
    before = sum(gh.asset_hits.values())
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "-q",
        "--api-url",
        gh.api_url,
        "--cache-dir",
        str(cache),
        "--matrix",
        str(tmp / "matrix.yaml"),
        "download",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = benchmark.pedantic(
        lambda: subprocess.run(cmd, env=env, capture_output=True), rounds=10, iterations=1
    )
    assert result.returncode == 0, result.stderr
    assert sum(gh.asset_hits.values()) == before


N_ASSETS = 20
ASSET_BYTES = 256 * 1024
RATE = 512 * 1024  # bytes/s per connection


@pytest.fixture(scope="module")
def throttled() -> Iterator[FakeGitHub]:
    gh = FakeGitHub(rate_limit=10_000)
    assets = {
        f"llama-b9000-bin-asset{i:02d}-x64.zip": os.urandom(ASSET_BYTES) for i in range(N_ASSETS)
    }
    gh.add_release("b9000", assets)
    gh.faults.throttle_bps = RATE
    with gh:
        yield gh


def _cold(gh: FakeGitHub, jobs: int, tmp: Path) -> float:
    from harness.cache.store import Cache
    from harness.provision import Provisioner
    from harness.sources.github import GitHubSource

    cache = Cache(tmp / f"cold-{jobs}-{time.monotonic_ns()}")
    dl = http.download_session(pool=jobs)
    rel = GitHubSource(cache.root, gh.api_url).get_release("b9000")
    wants = [Provisioner.want(rel, a) for a in rel.assets]
    t0 = time.perf_counter()
    # Fetch only (no extraction: these are random bytes), through the same parallel engine.
    from concurrent.futures import ThreadPoolExecutor

    def one(w):
        with (tmp / f"{w.name}.{jobs}").open("wb") as out:
            return fetch.stream(dl, w.url, out, "sha256", name=w.name, expected_size=w.size)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, wants))
    took = time.perf_counter() - t0
    assert all(n == ASSET_BYTES for n, _ in results)
    shutil.rmtree(cache.root, ignore_errors=True)
    return took


@pytest.mark.parametrize("jobs", [1, 8])
def test_cold_parallel_download(benchmark, throttled, tmp_path: Path, jobs: int) -> None:
    benchmark.group = "cold-20-assets"
    benchmark.pedantic(_cold, args=(throttled, jobs, tmp_path), rounds=3, iterations=1)
    ideal = N_ASSETS * ASSET_BYTES / (jobs * RATE)
    benchmark.extra_info["ideal_s"] = ideal


RATIOS.append(
    (
        "cold speed-up --jobs 8 vs --jobs 1",
        "test_cold_parallel_download[1]",
        "test_cold_parallel_download[8]",
        ">= 6",
    )
)

BIG = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    """A plain HTTP server in its own process, as a real asset host is: the client's threads
    then compete only with each other, not with the server, for the GIL."""
    folder = tmp_path_factory.mktemp("big")
    data = os.urandom(BIG)
    (folder / "big.bin").write_bytes(data)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...)"
    port = int(line.split(" port ")[1].split()[0])
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
    benchmark.group = "hash-overhead-128MiB"
    url, data = big
    session = http.download_session()
    fn = _plain if mode == "plain" else _hashed
    n = benchmark.pedantic(fn, args=(session, url, tmp_path / "big.bin"), rounds=7, iterations=1)
    assert n == BIG
    assert (
        hashlib.sha256((tmp_path / "big.bin").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )


RATIOS.append(
    (
        "hash-while-streaming overhead (hashed / plain)",
        "test_hash_while_streaming_overhead[hashed]",
        "test_hash_while_streaming_overhead[plain]",
        "<= 1.15",
    )
)
RATIOS.append(
    (
        "warm download, subprocess wall",
        "test_warm_download_wall_clock_subprocess",
        "test_warm_download_wall_clock_subprocess",
        "< 1 s absolute",
    )
)
