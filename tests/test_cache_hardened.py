"""The cache is shared and can be moved (issue 11): links out of the cache, foreign folders, moved
caches, trees changed after extraction, case-colliding archives. Real archives, the fake GitHub,
the CLI in-process; the multi-process items are in test_cache_concurrency.py."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness import clean_library_cache
from harness.cache import root as cache_root
from harness.cache.extract import safe_extract
from harness.cache.store import check_before_load
from harness.errors import ConfigError, IntegrityError, UnsafeArchive
from tests.archives import Entry, write_targz, write_zip
from tests.conftest import NEW, ROOT, one_error_line
from tests.fakegithub import FakeGitHub

TGZ = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"
LINUX = ("download", NEW, "--os", "linux", "--variant", "cpu")


def snapshot(folder: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `folder`, links not followed: what it is and its bytes or target."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(folder))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "")
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def download(harness) -> dict:
    r = harness("--json", *LINUX)
    assert r.code == 0, r.err
    return json.loads(r.out)[0]


def asset_downloads(gh: FakeGitHub) -> int:
    return gh.asset_hits.get(TGZ, 0)


# --- nothing outside the cache root is written or deleted ---------------------------------------


def test_repair_never_deletes_through_a_build_folder_linked_out(harness, tmp_path: Path) -> None:
    download(harness)
    build = harness.cache / "releases" / NEW
    elsewhere = tmp_path / "elsewhere"
    shutil.move(build, elsewhere)
    build.symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / TGZ).write_bytes(b"someone else's file")  # makes the entry "bad"
    before = snapshot(elsewhere)

    r = harness("--json", "verify", "--repair")
    rows = json.loads(r.out)
    assert r.code == 4 and rows[0]["status"] == "failed"
    assert "leads outside the cache root" in rows[0]["problem"]
    assert snapshot(elsewhere) == before

    r = harness(*LINUX)  # a download does not write through the link either
    assert r.code == 5 and "leads outside the cache root" in one_error_line(r.err)
    assert snapshot(elsewhere) == before

    r = harness("clean-cache", NEW)  # the link goes, what it points to stays
    assert r.code == 0, r.err
    assert not os.path.lexists(build) and snapshot(elsewhere) == before


def test_a_top_level_link_out_of_the_cache_is_refused(harness, tmp_path: Path) -> None:
    outside = tmp_path / "other-disk"
    outside.mkdir()
    harness.cache.mkdir()
    (harness.cache / "releases").symlink_to(outside, target_is_directory=True)
    r = harness(*LINUX)
    assert r.code == 2 and "leads outside the cache folder" in one_error_line(r.err)
    assert list(outside.iterdir()) == []


# --- clean-cache: empty names, foreign folders, the tag ------------------------------------------


def test_clean_cache_refuses_an_empty_or_unsafe_name(harness) -> None:
    download(harness)
    before = snapshot(harness.cache / "releases")
    for bad in ("", " ", "../x", "b1/../.."):
        r = harness("clean-cache", bad)
        assert r.code == 2, (bad, r.err)
        assert "clean-cache" in one_error_line(r.err)
    assert snapshot(harness.cache / "releases") == before


def test_clean_cache_refuses_a_folder_that_is_not_a_cache(harness, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    (project / "releases" / "b1").mkdir(parents=True)
    (project / "releases" / "b1" / "notes.md").write_text("release notes\n")
    before = snapshot(project)
    r = harness("--cache-dir", str(project), "clean-cache")
    assert r.code == 2 and "CACHEDIR.TAG" in one_error_line(r.err)
    with pytest.raises(ConfigError, match=r"no CACHEDIR\.TAG"):
        clean_library_cache(project)
    assert snapshot(project) == before


def test_a_new_cache_is_tagged(harness) -> None:
    download(harness)
    tag = (harness.cache / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")


# --- a moved cache, and an earlier version's cache ------------------------------------------------


def test_a_moved_cache_keeps_working(harness, gh: FakeGitHub, tmp_path: Path) -> None:
    first = download(harness)
    marker = json.loads((harness.cache / "releases" / NEW / f"{TGZ}.ready.json").read_text())
    assert marker["path"] == f"releases/{NEW}/llama-{NEW}-bin-ubuntu-x64"  # relative to the root
    moved = tmp_path / "restored-elsewhere"
    shutil.move(harness.cache, moved)
    r = harness("--cache-dir", str(moved), "--json", *LINUX)
    row = json.loads(r.out)[0]
    assert r.code == 0 and row["cached"] is True
    assert row["path"] == str(moved / "releases" / NEW / f"llama-{NEW}-bin-ubuntu-x64")
    assert Path(row["path"], f"llama-{NEW}", "libllama.so").is_file()
    assert row["path"] != first["path"] and asset_downloads(gh) == 1


def _make_it_an_earlier_versions_cache(cache: Path) -> None:
    """What the previous release of llama-harness left: no tag, no record of the tree, absolute
    paths (of another machine) in the marker, the lock beside the archive."""
    folder = cache / "releases" / NEW
    marker_path = folder / f"{TGZ}.ready.json"
    marker = json.loads(marker_path.read_text())
    marker.pop("files_digest")
    marker["archive"] = f"/home/ci/.cache/llama-harness/releases/{NEW}/{TGZ}"
    marker["path"] = f"/home/ci/.cache/llama-harness/releases/{NEW}/llama-{NEW}-bin-ubuntu-x64"
    marker_path.write_text(json.dumps(marker))
    (folder / f"{TGZ}.files.json").unlink()
    (folder / f"{TGZ}.lock").touch()
    shutil.rmtree(cache / "locks")
    (cache / "CACHEDIR.TAG").unlink()


def test_an_earlier_versions_cache_is_adopted_without_downloading(harness, gh) -> None:
    download(harness)
    _make_it_an_earlier_versions_cache(harness.cache)
    r = harness("--json", "verify")  # the tree cannot be vouched for yet
    assert r.code == 4 and "no record of the extracted files" in json.loads(r.out)[0]["problem"]
    row = download(harness)  # re-extracted from the archive that still verifies
    assert row["path"] == str(harness.cache / "releases" / NEW / f"llama-{NEW}-bin-ubuntu-x64")
    assert asset_downloads(gh) == 1
    assert (harness.cache / "CACHEDIR.TAG").is_file()
    assert harness("verify").code == 0
    assert harness("clean-cache").code == 0
    assert not (harness.cache / "releases").exists()


# --- the extracted tree is recorded, verified, repaired, checked before loading ------------------


def _tree(harness) -> Path:
    return Path(download(harness)["path"])


@pytest.mark.parametrize("change", ["modified", "added", "now-a-link", "removed"])
def test_verify_sees_a_changed_tree_and_repair_reextracts_it(
    harness, gh: FakeGitHub, change: str
) -> None:
    tree = _tree(harness)
    libdir = tree / f"llama-{NEW}"
    lib = libdir / "libllama.so.0.0.8095"
    original = snapshot(tree)
    if change == "modified":
        lib.write_bytes(lib.read_bytes()[:-4] + b"EVIL")
    elif change == "added":
        (libdir / "libggml-cpu-evil.so").write_bytes(b"\x7fELF backdoor")
    elif change == "now-a-link":
        lib.unlink()
        lib.symlink_to("/usr/lib/x86_64-linux-gnu/libc.so.6")
    else:
        lib.unlink()
    with pytest.raises(IntegrityError, match=r"libllama\.so\.0\.0\.8095|libggml-cpu-evil"):
        check_before_load(tree, libdir)  # `run` and load_library call this before loading

    r = harness("--json", "verify")
    assert r.code == 4
    assert json.loads(r.out)[0]["problem"].startswith("extracted tree: ")
    r = harness("--json", "verify", "--repair")
    assert r.code == 0 and json.loads(r.out)[0]["status"] == "repaired"
    assert snapshot(tree) == original and asset_downloads(gh) == 1  # no download: re-extracted
    check_before_load(tree, libdir)
    assert harness("verify").code == 0


def test_a_changed_record_is_seen(harness) -> None:
    tree = _tree(harness)
    record = tree.parent / f"{TGZ}.files.json"
    data = json.loads(record.read_text())
    key = f"llama-{NEW}/libllama.so.0.0.8095"
    data["files"][key]["digest"] = "sha256:" + "0" * 64
    record.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="record of extracted files was changed"):
        check_before_load(tree, tree / f"llama-{NEW}")
    r = harness("--json", "verify")
    assert r.code == 4 and "was changed" in json.loads(r.out)[0]["problem"]


# --- archives with case-colliding members ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize(
    "names",
    [("A/x", "a/x"), ("lib/LIBLLAMA.so", "lib/libllama.so"), ("Dir/", "dir/")],
    ids=["folder", "file", "dirs"],
)
def test_case_colliding_members_are_refused(tmp_path: Path, fmt: str, names) -> None:
    entries = [Entry(n, kind="dir") if n.endswith("/") else Entry(n, n.encode()) for n in names]
    path = tmp_path / f"a.{fmt}"
    archive = write_zip(path, entries) if fmt == "zip" else write_targz(path, entries)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match="differs only in case"):
        safe_extract(archive, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- the root and the lock wait: one line, a documented exit code ---------------------------------


def test_a_cache_root_that_is_a_symlink_loop(harness, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    r = harness("--cache-dir", str(tmp_path / "a"), *LINUX)
    assert r.code == 2 and "symlink loop" in one_error_line(r.err)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_bad_lock_timeout_is_exit_2(harness, value: str, monkeypatch) -> None:
    r = harness("--lock-timeout", value, *LINUX)
    assert r.code == 2 and "lock timeout" in one_error_line(r.err)
    monkeypatch.setenv(cache_root.ENV_LOCK_TIMEOUT, value)
    r = harness(*LINUX)
    assert r.code == 2 and cache_root.ENV_LOCK_TIMEOUT in one_error_line(r.err)


def test_a_lock_that_is_a_folder_is_one_line(harness) -> None:
    lock = harness.cache / "locks" / NEW / f"{TGZ}.lock"
    lock.mkdir(parents=True)
    r = harness(*LINUX)
    line = one_error_line(r.err)
    assert r.code == 5 and str(lock) in line and "Is a directory" in line
    assert not list((harness.cache / "releases").rglob("*.ready.json"))


# --- `run` and load_library check a real build's libraries before loading them -------------------


def test_run_and_load_library_refuse_a_library_changed_after_extraction(tmp_path: Path) -> None:
    from tests.realbuilds import era_archive, provision, source_tarball

    build = provision(["b8095"])["b8095"]
    cache = tmp_path / "cache"
    with FakeGitHub() as gh:
        name, data = era_archive("b8095", build, tmp_path / "assets")
        gh.add_release("b8095", {name: data})
        gh.source_tarballs["b8095"] = source_tarball(build)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LLAMA_HARNESS_API_URL": gh.api_url}
        base = [sys.executable, "-m", "harness", "--cache-dir", str(cache)]
        got = subprocess.run(
            [*base, "--json", "download", "b8095", "--os", "linux", "--variant", "cpu"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert got.returncode == 0, got.stderr
        tree = Path(json.loads(got.stdout)[0]["path"])
        lib = next((tree / "llama-b8095").glob("libllama*.so"))
        lib.write_bytes(lib.read_bytes() + b"\0patched")  # still loads: only the record knows
        (tmp_path / "matrix.yaml").write_text(
            "releases: [b8095]\nplatforms: [{os: linux, arch: x64}]\n"
        )
        ran = subprocess.run(
            [*base, "run", "--suite", "conformance", "--out", str(tmp_path / "out")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, harness\n"
                f"harness.load_library('b8095', cache_dir={str(cache)!r}, sources=('github',))",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert ran.returncode == 1, ran.stderr
    cell = json.loads((tmp_path / "out" / "report.json").read_text())["cells"][0]
    assert cell["status"] == "error", cell
    assert f"{lib.name}: changed since extraction" in cell["reason"]
    assert "verify --repair" in cell["reason"]
    assert loaded.returncode != 0 and "IntegrityError" in loaded.stderr
    assert f"{lib.name}: changed since extraction" in loaded.stderr
