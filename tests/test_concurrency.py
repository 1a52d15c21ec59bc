"""Real processes sharing one cache: locks, kill -9, and the token never leaking."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.conftest import MATRIX, NEW, grow, spawn
from tests.fakegithub import FakeGitHub


def test_four_processes_fetch_each_asset_exactly_once(gh: FakeGitHub, tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    for rel in gh.releases:
        for a in rel.assets:
            grow(gh, a.name, 120_000)
    gh.faults.throttle_bps = 200_000  # ~0.6 s an asset: the four runs overlap
    cache = tmp_path / "shared-cache"
    procs = [
        spawn(
            [
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(cache),
                "--matrix",
                str(tmp_path / "matrix.yaml"),
                "--json",
                "download",
            ],
            cwd=tmp_path,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    assert gh.asset_hits and set(gh.asset_hits.values()) == {1}, gh.asset_hits
    assert len(gh.asset_hits) == 8
    paths = [sorted(r["path"] for r in json.loads(o)) for o, _ in outs]
    assert all(p == paths[0] for p in paths)
    assert any("waiting for lock on" in e for _, e in outs)
    assert not [p for p in cache.rglob("*") if p.name.endswith((".incomplete", ".tmp"))]


def test_kill_9_mid_download_then_rerun_succeeds(gh: FakeGitHub, tmp_path: Path) -> None:
    name = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"
    grow(gh, name, 300_000)  # big enough to be slow
    gh.faults.throttle_bps = 100_000
    cache = tmp_path / "c"
    args = [
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
    proc = spawn(args)
    folder = cache / "releases" / NEW
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = [p for p in folder.glob("*.incomplete")] if folder.exists() else []
        if partial and partial[0].stat().st_size > 0:
            break
        time.sleep(0.02)
    else:
        proc.kill()
        raise AssertionError("download never started")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(folder.glob("*.incomplete"))  # the dead process left its temp file
    assert not list(folder.glob("*.ready.json"))

    gh.faults.throttle_bps = 0
    rerun = spawn(args)
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert not [p for p in cache.rglob("*") if p.name.endswith((".incomplete", ".tmp"))]
    assert (folder / f"{name}.ready.json").is_file()


def test_token_goes_only_to_the_api_host(gh: FakeGitHub, tmp_path: Path) -> None:
    token = "ghp_SECRET0123456789abcdef"
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    cache = tmp_path / "c"
    outputs = []
    for args in (
        ["--json", "download"],
        ["releases"],
        ["assets", "v0.5.0"],
        ["verify"],
        ["--json", "test-download"],
        ["assets", "b424242"],
    ):
        p = spawn(
            [
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(cache),
                "--matrix",
                str(tmp_path / "matrix.yaml"),
                "-v",
                *args,
            ],
            env={"GITHUB_TOKEN": token},
            cwd=tmp_path,
        )
        outputs += list(p.communicate(timeout=60))
    api_auth = [h.get("Authorization") for h in gh.api_headers]
    assert f"Bearer {token}" in api_auth
    assert gh.asset_headers and not any("Authorization" in h for h in gh.asset_headers)
    assert not any("Authorization" in h for h in gh.redirect_headers)  # download URL: no token
    assert not any(token in "".join(out) for out in outputs)
    stored = b"".join(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    assert token.encode() not in stored


def test_token_never_follows_a_redirect_to_another_host(tmp_path: Path) -> None:
    """browser_download_url on the API host itself 302s to the asset host: the token stays."""
    from harness.sources import http
    with FakeGitHub() as gh:
        gh.add_release("b1", {"llama-b1-bin-ubuntu-x64.zip": b"data"})
        s = http.api_session(gh.api_url, "tok123")
        url = f"{gh.api_url}/{gh.repo}/releases/download/b1/llama-b1-bin-ubuntu-x64.zip"
        assert s.get(url).content == b"data"
        assert gh.redirect_headers[-1].get("Authorization") == "Bearer tok123"
        assert "Authorization" not in gh.asset_headers[-1]
