"""Mirror and npm sources, and the fallback chain between sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from harness import cli
from harness.errors import ReleaseNotFound
from harness.sources.npm import NpmSource, platform_cell
from tests.conftest import NEW, OLD, one_error_line
from tests.fakegithub import FakeGitHub

TGZ = f"llama-{NEW}-bin-ubuntu-x64.tar.gz"


def write_mirror(gh: FakeGitHub, folder: Path) -> Path:
    """Lay out the fake GitHub's releases as a mirror: releases.json + <tag>/<asset>."""
    folder.mkdir(parents=True, exist_ok=True)
    releases = []
    for rel in gh.releases:
        if rel.draft:
            continue
        item = gh.release_json(rel)
        for a in item["assets"]:  # a copied API answer points at github.com
            a["browser_download_url"] = (
                f"https://github.com/x/y/releases/download/{rel.tag}/{a['name']}"
            )
        releases.append(item)
        (folder / rel.tag).mkdir(exist_ok=True)
        for a in rel.assets:
            (folder / rel.tag / a.name).write_bytes(a.data)
    (folder / "releases.json").write_text(json.dumps(releases))
    return folder


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_mirror_folder_serves_a_matrix(
    gh: FakeGitHub, tmp_path: Path, matrix_file: Path, capsys
) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    code, out, err = run(
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "--matrix",
        str(matrix_file),
        "--json",
        "download",
        capsys=capsys,
    )
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 7 and {r["source"] for r in rows} == {"mirror"}
    assert {r["verify"] for r in rows if r["release"] == NEW} == {"verified"}
    assert sum(gh.asset_hits.values()) == 0  # nothing from the network


def test_mirror_latest_and_v_tags(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    code, out, err = run(
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "--json",
        "download",
        "latest",
        "--os",
        "linux",
        "--variant",
        "cpu",
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(out)[0]["build"] == NEW


def test_mirror_over_http(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(mirror),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split(" port ")[1].split()[0])
        code, out, err = run(
            "--cache-dir",
            str(tmp_path / "c"),
            "--source",
            "mirror",
            "--mirror",
            f"http://127.0.0.1:{port}",
            "--json",
            "download",
            OLD,
            "--os",
            "windows",
            capsys=capsys,
        )
    finally:
        proc.terminate()
        proc.wait()
    assert code == 0, err
    rows = json.loads(out)
    assert {r["variant"] for r in rows} == {"cpu", "cuda-12.4"}
    assert all(r["source"] == "mirror" for r in rows)


def test_mirror_tampered_file_is_exit_4(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    (mirror / NEW / TGZ).write_bytes(b"tampered")
    code, _, err = run(
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "download",
        NEW,
        "--os",
        "linux",
        "--variant",
        "cpu",
        capsys=capsys,
    )
    assert code == 4
    errors = [ln for ln in err.splitlines() if ln.startswith("llama-harness: error:")]
    assert len(errors) == 1 and "mismatch" in errors[0] and "nothing was kept" in errors[0]


def test_missing_mirror_is_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "mirror",
        "--mirror",
        str(tmp_path / "nope"),
        "releases",
        capsys=capsys,
    )
    assert code == 2 and "not a folder" in one_error_line(err)


def test_chain_falls_back_when_github_is_down(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    code, out, err = run(
        "--api-url",
        "http://127.0.0.1:9",
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "github",
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "--json",
        "download",
        NEW,
        OLD,
        "--os",
        "linux",
        capsys=capsys,
    )
    assert code == 0, err
    rows = json.loads(out)
    assert {r["source"] for r in rows} == {"mirror"}
    assert err.count("cannot reach the GitHub API") == 1  # asked once, then skipped


def test_chain_falls_back_per_release(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    """GitHub serves NEW; the mirror alone has an extra release."""
    mirror = write_mirror(gh, tmp_path / "mirror")
    data = json.loads((mirror / "releases.json").read_text())
    extra = dict(data[1], tag_name="b9999")
    extra["assets"] = [dict(a, name=a["name"].replace(NEW, "b9999")) for a in data[1]["assets"]]
    (mirror / "b9999").mkdir()
    for a in extra["assets"]:
        shutil.copy(mirror / NEW / a["name"].replace("b9999", NEW), mirror / "b9999" / a["name"])
    (mirror / "releases.json").write_text(json.dumps([extra, *data]))
    code, out, err = run(
        "--api-url",
        gh.api_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "github",
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "--json",
        "download",
        NEW,
        "b9999",
        "--os",
        "macos",
        capsys=capsys,
    )
    assert code == 0, err
    assert {r["release"]: r["source"] for r in json.loads(out)} == {
        NEW: "github",
        "b9999": "mirror",
    }


def test_chain_never_falls_back_on_integrity_errors(gh: FakeGitHub, tmp_path: Path, capsys) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    gh.faults.corrupt[TGZ] = 2
    code, out, _ = run(
        "--api-url",
        gh.api_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        "github",
        "--source",
        "mirror",
        "--mirror",
        str(mirror),
        "--json",
        "download",
        NEW,
        "--os",
        "linux",
        "--variant",
        "cpu",
        capsys=capsys,
    )
    assert code == 4
    assert json.loads(out)[0]["source"] == "github"


# -- npm: the real registry, through the real npm CLI ------------------------------------------

NPM_CACHE = Path(platformdirs.user_cache_dir("llama-harness")) / "test-npm"


def npm_or_skip() -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")


def test_platform_names_map_to_cells() -> None:
    cells = {
        p: (c.os, c.arch, c.variant)
        for p in (
            "linux-x64",
            "linux-x64-vulkan",
            "linux-x64-cuda",
            "linux-arm64",
            "mac-arm64-metal",
            "mac-x64",
            "win-x64",
            "win-x64-vulkan",
            "win-x64-cuda",
            "win-arm64",
        )
        if (c := platform_cell(p))
    }
    assert cells == {
        "linux-x64": ("linux", "x64", "cpu"),
        "linux-x64-vulkan": ("linux", "x64", "vulkan"),
        "linux-x64-cuda": ("linux", "x64", "cuda"),
        "linux-arm64": ("linux", "arm64", "cpu"),
        "mac-arm64-metal": ("macos", "arm64", "metal"),
        "mac-x64": ("macos", "x64", "cpu"),
        "win-x64": ("windows", "x64", "cpu"),
        "win-x64-vulkan": ("windows", "x64", "vulkan"),
        "win-x64-cuda": ("windows", "x64", "cuda"),
        "win-arm64": ("windows", "arm64", "cpu"),
    }
    assert platform_cell("freebsd-x64") is None


def test_npm_resolves_tags_from_package_metadata() -> None:
    npm_or_skip()
    src = NpmSource(NPM_CACHE)
    assert src.version_for("b10361") == "3.20.0"
    assert src.version_for("b4291") == "3.3.2"  # 3.3.1 carries it too: the newest wins
    assert src.tag_of("3.1.1") == "b3889"
    rel = src.get_release("b4753")
    assert rel.build == "b4753" and rel.extra["npm_version"] == "3.6.0"
    assert {(a.match.os, a.match.variant) for a in rel.assets} >= {
        ("linux", "cpu"),
        ("macos", "metal"),
    }
    with pytest.raises(ReleaseNotFound, match=r"carries no build of llama\.cpp b4000"):
        src.version_for("b4000")


def test_npm_download_verifies_integrity(tmp_path: Path, capsys) -> None:
    npm_or_skip()
    cache = tmp_path / "c"
    shutil.copytree(NPM_CACHE / "npm", cache / "npm", ignore=shutil.ignore_patterns(".*"))
    code, out, err = run(
        "--cache-dir",
        str(cache),
        "--source",
        "npm",
        "--json",
        "download",
        "b3889",
        "--os",
        "linux",
        "--arch",
        "x64",
        "--variant",
        "cpu",
        capsys=capsys,
    )
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["source"] == "npm" and row["digest"].startswith("sha512:")
    assert row["verify"] == "verified"
    assert list(Path(row["path"]).rglob("libllama*.so"))
    # a doctored integrity record: refused, nothing kept, exit 4
    index = json.loads((cache / "npm" / "index.json").read_text())
    spec = "@node-llama-cpp/mac-x64@3.1.1"
    index["integrity"][spec] = "sha512:" + "00" * 64
    (cache / "npm" / "index.json").write_text(json.dumps(index))
    code, out, err = run(
        "--cache-dir",
        str(cache),
        "--source",
        "npm",
        "download",
        "b3889",
        "--os",
        "macos",
        "--arch",
        "x64",
        capsys=capsys,
    )
    assert code == 4 and "digest mismatch" in err
    assert not list((cache / "releases" / "b3889").glob("*mac-x64*.tgz"))


def test_npm_tag_it_does_not_carry_is_a_cell_error(tmp_path: Path, capsys) -> None:
    npm_or_skip()
    cache = tmp_path / "c"
    shutil.copytree(NPM_CACHE / "npm", cache / "npm", ignore=shutil.ignore_patterns(".*"))
    code, out, err = run(
        "--cache-dir",
        str(cache),
        "--source",
        "npm",
        "--json",
        "download",
        "b4000",
        "b3889",
        "--os",
        "linux",
        "--arch",
        "x64",
        "--variant",
        "cpu",
        capsys=capsys,
    )
    assert code == 3
    rows = {r["release"]: r for r in json.loads(out)}
    assert "carries no build of llama.cpp b4000" in rows["b4000"]["error"]
    assert rows["b3889"]["path"]
    assert "Traceback" not in err


def test_missing_npm_cli_is_a_source_error(tmp_path: Path) -> None:
    src = NpmSource(tmp_path, npm=str(tmp_path / "no-npm-here"))
    with pytest.raises(Exception, match="npm is not installed"):
        src.version_for("b10361")
