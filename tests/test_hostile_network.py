"""Hostile and broken servers: every answer is capped and deadlined, every odd field a source
error (exit 3, one line), never a hang, a MemoryError or an internal error.

The servers are the loopback fake GitHub with its hostile switches; endless bodies end when the
client hangs up or the server stops, so each test is bounded in bytes and time.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.sources import limits
from tests.conftest import NEW, ROOT, Ran, grow, one_error_line, without_progress
from tests.fakegithub import FakeGitHub

ASSET = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"


def _limit_memory() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_an_endless_api_answer_is_cut_at_the_cap_in_bounded_memory(
    gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.faults.api_endless = True
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--api-url",
            gh.api_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "releases",
        ],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "larger than 33,554,432 bytes" in one_error_line(proc.stderr)


def test_an_answer_that_trickles_forever_meets_a_total_deadline(
    harness: Any, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(api_deadline_s=1.0))
    gh.faults.api_trickle = True  # a byte every 50 ms: each read is well inside the timeout
    started = time.monotonic()
    r: Ran = harness("releases")
    assert r.code == 3, r.err
    assert "no complete answer within 1 s" in one_error_line(r.err)
    assert time.monotonic() - started < 30  # a bound for the test, not a benchmark


def test_headers_that_trickle_forever_meet_the_same_deadline(
    harness: Any, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(api_deadline_s=1.0))
    gh.faults.api_slow_headers = True  # one header line that never ends
    r: Ran = harness("releases")
    assert r.code == 3, r.err
    assert "no complete answer within 1 s" in one_error_line(r.err)


def test_a_next_link_to_the_same_page_stops(harness: Any, gh: FakeGitHub) -> None:
    gh.faults.self_link = True
    r = harness("releases", "--limit", "0")
    assert r.code == 3, r.err
    assert "pagination loops back" in one_error_line(r.err)
    assert gh.api_hits[f"/repos/{gh.repo}/releases"] == 2  # the first page, then its echo


def test_too_many_pages_stop(harness: Any, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(max_pages=1))
    for i in range(100):
        gh.add_release(f"b{9000 + i}", {}, prerelease=True)
    r = harness("releases", "--limit", "0")
    assert r.code == 3, r.err
    assert "more than 1 pages" in one_error_line(r.err)


def test_an_endless_nightly_tag_is_cut(harness: Any, gh: FakeGitHub) -> None:
    gh.faults.endless_assets.add("nightly-tag.txt")
    r = harness("assets", "v0.5.0")
    assert r.code == 3, r.err
    assert "larger than 65,536 bytes" in one_error_line(r.err)


@pytest.mark.parametrize("size", [0, None])
def test_an_asset_of_undeclared_size_stops_at_the_ceiling(
    harness: Any, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch, size: int | None
) -> None:
    monkeypatch.setenv(limits.ENV_MAX_ASSET, str(4 << 20))
    gh.faults.declared_size[ASSET] = size
    gh.faults.endless_assets.add(ASSET)
    r = harness("download", NEW, "--os", "linux", "--arch", "x64", "--variant", "cpu")
    assert r.code == 3, r.err
    line = one_error_line(r.err)
    assert "more than 4,194,304 bytes" in line and limits.ENV_MAX_ASSET in line
    kept = sum(p.stat().st_size for p in harness.cache.rglob("*") if p.is_file())
    assert kept < 1 << 20  # nothing half-written stays behind


def test_a_bad_asset_ceiling_is_a_usage_error(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(limits.ENV_MAX_ASSET, "-1")
    r = harness("download", NEW, "--os", "linux", "--arch", "x64", "--variant", "cpu")
    assert r.code == 2, r.err
    assert limits.ENV_MAX_ASSET in one_error_line(r.err)


def _odd(gh: FakeGitHub, where: str, value: Any) -> None:
    """Every answer about NEW carries one field of the wrong type."""
    rel = gh.release_json(next(r for r in gh.releases if r.tag == NEW))
    if where == "release":
        rel["name"] = value
    else:
        rel["assets"][0][where] = value
    gh.faults.release_body = rel


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("release", 123),
        ("name", 123),
        ("name", None),
        ("digest", 12345),
        ("digest", ["sha256:00"]),
        ("digest", "sha256:not-hex"),
        ("size", "big"),
        ("size", -5),
        ("browser_download_url", {"a": 1}),
    ],
)
def test_odd_field_types_are_a_source_error(
    harness: Any, gh: FakeGitHub, where: str, value: Any
) -> None:
    _odd(gh, where, value)
    r = harness("assets", NEW)
    assert r.code == 3, r.err
    assert "unexpected shape" in one_error_line(r.err)


def test_fifty_thousand_deep_json_is_a_source_error(harness: Any, gh: FakeGitHub) -> None:
    gh.faults.api_raw = b"[" * 50_000 + b"]" * 50_000
    r = harness("assets", NEW)
    assert r.code == 3, r.err
    assert "invalid JSON" in one_error_line(r.err)


@pytest.mark.parametrize("reset", ["1e20", "1²³", "99999999999999999999", "-5"])
def test_odd_rate_limit_reset_is_still_one_line(harness: Any, gh: FakeGitHub, reset: str) -> None:
    gh.remaining = 0
    gh.faults.api_headers["x-ratelimit-reset"] = reset
    r = harness("assets", NEW)
    assert r.code == 3, r.err
    assert "resets at an unknown time" in one_error_line(r.err)


def test_an_unreachable_api_is_one_line_per_failure(
    tmp_path: Path, matrix_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub() as dead:  # started and stopped: nothing listens on its port any more
        url = dead.api_url
    code = cli.main(
        [
            "--api-url",
            url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--matrix",
            str(matrix_file),
            "download",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    lines = without_progress(err).splitlines()  # `resolve 1/2 …` when resolving took a while
    assert len(lines) == 7, err  # the seven cells of the matrix, one line each
    assert all(x.startswith("llama-harness: error: ") and "cannot reach" in x for x in lines)


def test_many_releases_are_listed_not_asked_for_one_by_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 2_000
    tags = [f"b{1000 + i}" for i in range(n)]
    with FakeGitHub(rate_limit=100_000) as gh:
        for tag in tags:
            gh.add_release(tag, {}, prerelease=True)
        path = tmp_path / "matrix.yaml"
        path.write_text(
            "releases: [" + ", ".join(tags) + "]\nplatforms:\n  - {os: linux, arch: x64}\n"
        )
        code = cli.main(
            [
                "-v",
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(tmp_path / "c"),
                "--matrix",
                str(path),
                "--json",
                "download",
            ]
        )
        err = capsys.readouterr().err
        assert code == 3  # no release has assets: every cell is "no asset"
        per_tag = sum(v for k, v in gh.api_hits.items() if "/releases/tags/" in k)
        assert per_tag == 0
        assert gh.api_hits[f"/repos/{gh.repo}/releases"] == n // 100
        assert f"listing releases: page {n // 100}, {n:,} of {n:,} found" in err


def test_a_few_releases_are_still_asked_for_directly(harness: Any, gh: FakeGitHub) -> None:
    r = harness("download", NEW, "--os", "linux", "--arch", "x64", "--variant", "cpu")
    assert r.code == 0, r.err
    assert gh.api_hits[f"/repos/{gh.repo}/releases"] == 0


def test_a_download_that_trickles_is_cut_as_stalled(
    harness: Any, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LIMITS", limits.Limits(min_rate_bps=1 << 20, min_rate_after_s=0.5))
    grow(gh, ASSET, 200_000)
    gh.faults.throttle_bps = 20_000  # every read arrives well inside the read timeout
    r = harness("download", NEW, "--os", "linux", "--arch", "x64", "--variant", "cpu")
    assert r.code == 3, r.err
    assert "stalled" in one_error_line(r.err)
