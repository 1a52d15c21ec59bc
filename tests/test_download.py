"""`download`, the cache and `verify` / `clean-cache` end to end against the fake GitHub."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.sources.assets import default_variant, host_platform
from tests.conftest import NEW, OLD, grow, one_error_line
from tests.fakegithub import FakeGitHub

TGZ = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"
OLDZIP = f"llama-{OLD}-bin-ubuntu-x64.zip"


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith((".incomplete", ".tmp"))]


def test_download_matrix_cold_then_warm(harness, gh: FakeGitHub, matrix_file: Path) -> None:
    r = harness("--json", "--matrix", str(matrix_file), "download")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert len(rows) == 7
    assert {tuple(x[k] for k in ("release", "os", "arch", "variant")) for x in rows} >= {
        (OLD, "windows", "x64", "cuda-12.4"),
        (NEW, "macos", "arm64", "metal"),
    }
    for row in rows:
        assert set(row) >= {
            "release",
            "build",
            "os",
            "arch",
            "variant",
            "asset",
            "digest",
            "archive",
            "path",
            "source",
            "cached",
        }
        assert row["source"] == "github" and row["cached"] is False
        assert Path(row["path"]).is_dir() and Path(row["archive"]).is_file()
        assert row["digest"].startswith("sha256:")
        assert row["verify"] == ("verified" if row["release"] == NEW else "no-digest")
    cuda = next(x for x in rows if x["variant"] == "cuda-12.4")
    assert [c["asset"] for c in cuda["companions"]] == ["cudart-llama-bin-win-cuda-12.4-x64.zip"]
    hits = sum(gh.asset_hits.values())
    assert hits == 8  # 7 cells + 1 companion, each once
    assert "xcframework" not in " ".join(gh.asset_hits)

    warm = harness("--json", "--matrix", str(matrix_file), "download")
    assert warm.code == 0
    assert all(x["cached"] for x in json.loads(warm.out))
    assert sum(gh.asset_hits.values()) == hits  # zero asset requests when warm
    assert leftovers(harness.cache) == []


def test_marker_records_digest_size_source_time(harness, gh: FakeGitHub) -> None:
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0, r.err
    row = json.loads(r.out)[0]
    marker = json.loads(Path(row["archive"] + ".ready.json").read_text())
    assert marker["digest"] == gh.asset(TGZ).digest == marker["expected_digest"]
    assert marker["size"] == len(gh.asset(TGZ).data)
    assert marker["source"] == "github" and marker["time"].endswith("+00:00")
    # the tar.gz era's symlink chain still resolves after extraction
    libs = list(Path(row["path"]).rglob("libllama.so"))
    assert libs and libs[0].is_symlink() and libs[0].resolve().is_file()


def test_v_tag_downloads_its_build(harness) -> None:
    r = harness("--json", "download", "v0.5.0", "--os", "linux", "--arch", "x64")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert {(x["release"], x["build"], x["variant"]) for x in rows} == {
        ("v0.5.0", NEW, "cpu"),
        ("v0.5.0", NEW, "vulkan"),
    }


def test_host_downloads_this_machines_asset(harness) -> None:
    os_, arch = host_platform()
    r = harness("--json", "download", NEW, "--host")
    rows = json.loads(r.out)
    assert [(x["os"], x["arch"], x["variant"]) for x in rows] == [
        (os_, arch, default_variant(os_, arch))
    ]
    if (os_, arch) == ("linux", "x64"):
        assert r.code == 0 and rows[0]["asset"] == TGZ


def test_digest_mismatch_once_is_retried(harness, gh: FakeGitHub) -> None:
    gh.faults.corrupt[TGZ] = 1
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0, r.err
    assert gh.asset_hits[TGZ] == 2
    assert "downloading once more" in r.err


def test_digest_mismatch_twice_is_exit_4_and_leaves_nothing(harness, gh: FakeGitHub) -> None:
    gh.faults.corrupt[TGZ] = 2
    r = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 4
    assert TGZ in r.err and "digest mismatch" in r.err
    folder = harness.cache / "releases" / NEW
    assert sorted(p.name for p in folder.iterdir()) == []  # its lock lives under locks/


def test_verify_required_refuses_assets_without_digest(harness, tmp_path: Path) -> None:
    r = harness("download", OLD, "--os", "linux", "--verify", "required")
    assert r.code == 4
    assert "publishes no digest" in r.err
    assert not list((harness.cache / "releases" / OLD).glob("*.zip"))


def test_verify_off_is_recorded(harness, gh: FakeGitHub) -> None:
    gh.asset(TGZ).digest = "sha256:" + "0" * 64  # wrong, but not checked
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu", "--verify", "off")
    assert r.code == 0
    assert json.loads(r.out)[0]["verify"] == "off"


def test_cut_connection_resumes_with_range(harness, gh: FakeGitHub) -> None:
    size = grow(gh, TGZ, 3 * 1024 * 1024)
    gh.faults.cut[TGZ], gh.faults.cut_times[TGZ] = size // 2, 1
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0, r.err
    ranges = [h.get("Range") for h in gh.asset_headers if h.get("Range")]
    assert len(ranges) == 1
    resumed_at = int(ranges[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= size // 2  # kept what arrived before the cut
    assert gh.asset_hits[TGZ] == 2
    assert json.loads(r.out)[0]["verify"] == "verified"


def test_resume_when_server_ignores_range(harness, gh: FakeGitHub) -> None:
    gh.faults.cut[TGZ], gh.faults.cut_times[TGZ] = 100, 1
    gh.faults.ignore_range = True
    r = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0, r.err


def test_missing_asset_is_exit_3_others_still_download(harness, gh: FakeGitHub) -> None:
    gh.faults.missing.add(TGZ)
    r = harness("--json", "download", NEW, "--os", "linux")
    assert r.code == 3
    rows = {x["variant"]: x for x in json.loads(r.out)}
    assert rows["cpu"]["error"] and rows["vulkan"]["path"]


def test_partial_release_names_the_missing_cell(harness, tmp_path: Path) -> None:
    m = tmp_path / "partial.yaml"
    m.write_text(
        f"releases: [{NEW}]\nplatforms: [{{os: windows, arch: x64, variants: [cpu, cuda-12.4]}}]\n"
    )
    r = harness("--json", "--matrix", str(m), "download")
    assert r.code == 3
    rows = {x["variant"]: x for x in json.loads(r.out)}
    assert rows["cpu"]["path"] and rows["cuda-12.4"]["path"] is None
    assert "no asset for windows/x64/cuda-12.4" in rows["cuda-12.4"]["error"]
    assert one_error_line(r.err)


def test_filters_that_match_nothing_are_exit_2(harness, matrix_file: Path) -> None:
    r = harness("--matrix", str(matrix_file), "download", "--os", "android")
    assert r.code == 2 and "no cells" in one_error_line(r.err)
    r = harness("--matrix", str(matrix_file), "download", "--os", "beos")
    assert r.code == 2 and "--os 'beos'" in one_error_line(r.err)


def test_verify_finds_and_repairs_corruption(harness, gh: FakeGitHub) -> None:
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    archive = Path(json.loads(r.out)[0]["archive"])
    ok = harness("--json", "verify")
    assert ok.code == 0 and json.loads(ok.out)[0]["status"] == "ok"
    data = bytearray(archive.read_bytes())
    data[10] ^= 0xFF
    archive.write_bytes(bytes(data))
    bad = harness("--json", "verify")
    assert bad.code == 4
    assert json.loads(bad.out)[0]["status"] == "bad"
    assert TGZ in bad.err
    fixed = harness("--json", "verify", "--repair")
    assert fixed.code == 0 and json.loads(fixed.out)[0]["status"] == "repaired"
    assert archive.read_bytes() == gh.asset(TGZ).data
    assert harness("verify").code == 0


def test_clean_cache_one_release_then_all(harness, matrix_file: Path) -> None:
    assert harness("--matrix", str(matrix_file), "download").code == 0
    releases = harness.cache / "releases"
    assert sorted(p.name for p in releases.iterdir()) == [OLD, NEW]
    assert harness("clean-cache", "v0.5.0").code == 0  # resolves to its build
    assert sorted(p.name for p in releases.iterdir()) == [OLD]
    assert harness("clean-cache").code == 0
    assert not releases.exists()


def test_cache_dir_from_environment(gh: FakeGitHub, tmp_path: Path, monkeypatch, capsys) -> None:
    from harness import cli
    monkeypatch.setenv("LLAMA_HARNESS_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("LLAMA_HARNESS_API_URL", gh.api_url)
    assert cli.main(["download", NEW, "--os", "macos"]) == 0
    assert (tmp_path / "envcache" / "releases" / NEW).is_dir()


def test_test_download_checks_reachability_without_downloading(harness, gh: FakeGitHub) -> None:
    r = harness("--json", "test-download")
    os_, arch = host_platform()
    if (os_, arch) != ("linux", "x64"):
        return
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["asset"] == TGZ and data["build"] == NEW and data["reachable"] is True
    assert [h.get("Range") for h in gh.asset_headers if h["_asset"] == TGZ] == ["bytes=0-0"]
    assert not (harness.cache / "releases").exists()


def test_unsafe_archive_is_exit_4_and_nothing_kept(tmp_path: Path, capsys) -> None:
    from harness import cli
    from tests.archives import Entry, write_zip

    evil = write_zip(tmp_path / "evil.zip", [Entry("../../escape.txt", b"x")]).read_bytes()
    with FakeGitHub() as gh:
        gh.add_release("b1", {"llama-b1-bin-ubuntu-x64.zip": evil})
        code = cli.main(
            [
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(tmp_path / "c"),
                "download",
                "b1",
                "--os",
                "linux",
            ]
        )
    assert code == 4
    assert "llama-b1-bin-ubuntu-x64.zip" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(os.listdir(tmp_path / "c" / "releases" / "b1")) == []  # lock: under locks/


def test_more_bytes_than_published_is_refused(harness, gh: FakeGitHub) -> None:
    gh.faults.extra_bytes[TGZ] = 10_000_000
    r = harness("download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 4
    assert "more than the published" in one_error_line(r.err)
    assert not list((harness.cache / "releases" / NEW).glob(f"{TGZ}*.incomplete"))


def test_asset_names_cannot_escape_the_cache(tmp_path: Path, capsys) -> None:
    from harness import cli
    with FakeGitHub() as gh:
        gh.add_release("b1", {"llama-b1-bin-ubuntu-x64.zip/../../../../evil.zip": b"x"})
        code = cli.main(
            [
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(tmp_path / "c"),
                "download",
                "b1",
                "--all-platforms",
            ]
        )
    err = capsys.readouterr().err
    assert code in (2, 4), err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("evil.zip"))


def test_unusable_cache_dir_is_exit_2(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    from harness import cli
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = cli.main(["--api-url", gh.api_url, "--cache-dir", str(blocker / "c"), "releases"])
    assert code == 2
    assert "is not usable" in one_error_line(capsys.readouterr().err)


def test_verified_archive_left_by_a_killed_run_is_reused(harness, gh: FakeGitHub) -> None:
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    row = json.loads(r.out)[0]
    Path(row["archive"] + ".ready.json").unlink()  # killed after the rename, before the marker
    import shutil

    shutil.rmtree(row["path"])
    again = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    assert again.code == 0
    assert gh.asset_hits[TGZ] == 1
    assert Path(json.loads(again.out)[0]["path"]).is_dir()


def test_a_stale_unverifiable_archive_is_replaced(harness, gh: FakeGitHub) -> None:
    folder = harness.cache / "releases" / NEW
    folder.mkdir(parents=True)
    (folder / TGZ).write_bytes(b"stale junk")
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    assert r.code == 0, r.err
    assert (folder / TGZ).read_bytes() == gh.asset(TGZ).data


def test_verify_reports_an_unreadable_marker(harness) -> None:
    r = harness("--json", "download", NEW, "--os", "linux", "--variant", "cpu")
    marker = Path(json.loads(r.out)[0]["archive"] + ".ready.json")
    marker.write_text("{not json")
    bad = harness("--json", "verify")
    assert bad.code == 4 and json.loads(bad.out)[0]["problem"] == "ready-marker unreadable"
    fixed = harness("--json", "verify", "--repair")
    assert json.loads(fixed.out)[0]["status"] == "failed" and not marker.exists()
    assert harness("download", NEW, "--os", "linux", "--variant", "cpu").code == 0
    assert harness("verify").code == 0
