"""`llama-harness run` end to end on REAL llama.cpp builds of every API era.

Two paths to the same builds: the npm source (node-llama-cpp's packages) and the loopback fake
GitHub, serving them repackaged in their era's release layout with a source archive for headers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.load.loader import find_libdir
from harness.suites.child import run_cell
from harness.suites.conformance import NAMES
from tests.conftest import ROOT, run_harness
from tests.fakegithub import FakeGitHub
from tests.realbuilds import CACHE, ERAS, era_archive, provision, source_tarball

pytestmark = pytest.mark.xdist_group("real-builds")

REPORT_KEYS = {
    "release",
    "build",
    "os",
    "arch",
    "variant",
    "asset",
    "digest",
    "source",
    "status",
    "reason",
    "checks",
    "api",
    "bench",
}


def harness_run(args: list[str], cwd: Path) -> tuple[int, dict[str, Any], str]:
    """`python -m harness … run …`; conformance only unless the test names its suites (the
    throughput suite has tests of its own)."""
    if "run" in args and "--suite" not in args:
        i = args.index("run") + 1
        args = [*args[:i], "--suite", "conformance", *args[i:]]
    proc = run_harness(*args, cwd=cwd)
    out = Path(args[args.index("--out") + 1])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return proc.returncode, report, proc.stderr


@pytest.fixture(scope="module")
def npm_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    provision(ERAS)  # skips cleanly without npm
    tmp = tmp_path_factory.mktemp("npm-run")
    (tmp / "matrix.yaml").write_text(
        "sources: [npm]\n"
        f"releases: [{', '.join(ERAS)}]\n"
        "platforms:\n  - {os: linux, arch: x64}\n  - {os: linux, arch: arm64}\n"
    )
    code, report, err = harness_run(
        ["--cache-dir", str(CACHE), "run", "--out", str(tmp / "out")], tmp
    )
    assert report, err
    return code, report, tmp / "out"


def test_every_era_passes_conformance_from_npm(npm_report) -> None:
    code, report, _ = npm_report
    linux = [c for c in report["cells"] if c["arch"] == "x64"]
    assert [c["release"] for c in linux] == ERAS
    for c in linux:
        assert c["status"] == "pass", (c["release"], c["reason"])
        assert c["source"] == "npm" and c["digest"].startswith("sha512:")
        assert set(NAMES) <= set(c["checks"])
        ran = {k: v["status"] for k, v in c["checks"].items() if not k.startswith("static.")}
        extra = ["cpu_variants"] if c["release"] != "b3889" else []  # b3889 links its CPU code
        assert ran == dict.fromkeys([*NAMES, "greedy_across_releases", *extra], "pass")
        static = {k: v["status"] for k, v in c["checks"].items() if k.startswith("static.")}
        assert static and set(static.values()) <= {"pass", "skip"}, static
    assert code == 0


def test_greedy_tokens_match_numpy_and_each_other(npm_report) -> None:
    from harness.suites.fixtures import model, reference
    _, report, _ = npm_report
    m = model.ensure_model(CACHE)
    want = reference.greedy(m, reference.tokenize(m, model.PROMPT), 16)
    got = {c["release"]: c["facts"]["greedy"] for c in report["cells"] if c["arch"] == "x64"}
    assert set(map(tuple, got.values())) == {tuple(want)}
    diffs = [c["facts"]["max_logit_diff"] for c in report["cells"] if c["arch"] == "x64"]
    assert max(diffs) < 1e-2


def test_api_flavours_were_taken_from_each_header(npm_report) -> None:
    _, report, _ = npm_report
    by = {c["release"]: c for c in report["cells"] if c["arch"] == "x64"}
    assert "llama_kv_cache_clear" in by["b3889"]["checks"]["memory_clear"]["message"]
    assert "llama_memory_clear" in by["b10361"]["checks"]["memory_clear"]["message"]
    assert by["b3889"]["api"]["backends"] == "linked"
    assert by["b4435"]["api"]["backends"] == "load_all_from_path"


def test_report_files_and_skips(npm_report) -> None:
    _, report, out = npm_report
    assert set(report) >= {"harness", "created", "host", "cells"}
    for c in report["cells"]:
        assert set(c) >= REPORT_KEYS
        assert c["status"] in ("pass", "fail", "skip", "error", "crash")
    arm = [c for c in report["cells"] if c["arch"] == "arm64"]
    # not runnable here: they pass or fail on their static checks alone
    assert len(arm) == len(ERAS) and {c["status"] for c in arm} == {"pass"}
    assert {c["scope"] for c in arm} == {"static"}
    assert all("built for linux/arm64; this host is linux/x64" in c["reason"] for c in arm)
    assert all(c["checks"]["static.architecture"]["status"] == "pass" for c in arm)
    md = (out / "report.md").read_text()
    assert "| release | linux/x64/cpu | linux/arm64/cpu |" in md
    assert "| b10361 | ✅ | ☑️ |" in md
    assert "## API changes" in md and "**b3889 → b4435**" in md
    diffs = {(d["old"], d["new"]): d for d in report["api_diffs"]}
    tokenize = next(
        f
        for f in diffs[("b4435", "b4753")]["diff"]["functions_changed"]
        if f["name"] == "llama_tokenize"
    )
    assert any("llama_vocab" in w for w in tokenize["what"])
    assert (out / "junit-conformance.xml").is_file()


def test_same_builds_through_fake_github_in_era_layouts(tmp_path: Path) -> None:
    tags = ["b4435", "b8095"]  # a build/bin/ zip and a tar.gz with symlink chains
    builds = provision(tags)
    with FakeGitHub() as gh:
        for tag in tags:
            name, data = era_archive(tag, builds[tag], tmp_path / "assets")
            gh.add_release(tag, {name: data})
            gh.source_tarballs[tag] = source_tarball(builds[tag])
        (tmp_path / "matrix.yaml").write_text(
            f"releases: [{', '.join(tags)}]\nplatforms: [{{os: linux, arch: x64}}]\n"
        )
        code, report, err = harness_run(
            [
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(tmp_path / "cache"),
                "run",
                "--out",
                str(tmp_path / "out"),
            ],
            tmp_path,
        )
        assert gh.source_tarballs and sum(gh.asset_hits.values()) == 2
    assert code == 0, err
    for c in report["cells"]:
        assert (c["source"], c["status"]) == ("github", "pass"), c["reason"]
        assert c["digest"].startswith("sha256:")
    tree = tmp_path / "cache" / "releases" / "b8095" / "llama-b8095-bin-ubuntu-x64"
    assert (tree / "llama-b8095" / "libllama.so").is_symlink()


def test_a_wrong_abi_is_isolated_in_its_child(tmp_path: Path) -> None:
    """b10361's library driven with b3889's header: the child dies or fails; we go on."""
    from harness.abi.release import release_api
    from harness.suites.fixtures import model
    from tests.realbuilds import downloader

    builds = provision(["b3889", "b10361"])
    dl = downloader()
    wrong = tmp_path / "b3889-api.json"
    wrong.write_text(release_api(dl, builds["b3889"]).to_json())
    libdir = find_libdir(Path(builds["b10361"].stored.path))  # type: ignore[union-attr]
    spec = {
        "libdir": str(libdir),
        "api": str(wrong),
        "model": str(model.ensure_model(CACHE)),
        "prompt": model.PROMPT,
        "expect": {},
        "threads": 1,
    }
    outcome = run_cell(spec, tmp_path / "cell", timeout=60)
    assert outcome.status in ("crash", "fail"), outcome
    if outcome.status == "crash":
        assert outcome.reason.startswith("SIG")
        assert outcome.log_tail
    right = dict(spec, api=str(tmp_path / "right.json"))
    Path(right["api"]).write_text(release_api(dl, builds["b10361"]).to_json())
    assert run_cell(right, tmp_path / "cell2", timeout=60).status == "pass"


def test_load_library_in_a_fresh_process(tmp_path: Path) -> None:
    """The Python API loads one release into the caller's process, and refuses a second."""
    provision(["b8095", "b10361"])
    code = f"""
import harness
from harness.load.loader import LoadFailed
lib = harness.load_library("b10361", cache_dir={str(CACHE)!r}, sources=("npm",))
print(lib.fns.llama_print_system_info().decode()[:20])
assert harness.load_library("b10361", cache_dir={str(CACHE)!r}, sources=("npm",)) is lib
try:
    harness.load_library("b8095", cache_dir={str(CACHE)!r}, sources=("npm",))
except LoadFailed as err:
    print("refused:", err)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout
    assert "SONAME" in proc.stdout


def test_a_users_own_gguf_is_compared_across_releases(tmp_path: Path) -> None:
    from harness.suites.fixtures import model
    provision(["b6673", "b10361"])
    mine = tmp_path / "my-model.gguf"
    mine.write_bytes(model.ensure_model(CACHE).read_bytes())
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b6673, b10361]\nplatforms: [{os: linux, arch: x64}]\n"
        f"model: {mine}\n"
    )
    code, report, err = harness_run(
        ["--cache-dir", str(CACHE), "run", "--out", str(tmp_path / "out")], tmp_path
    )
    assert code == 0, err
    assert report["model"] == str(mine)
    for c in report["cells"]:
        assert c["status"] == "pass", c["reason"]
        assert "vs NumPy" not in c["checks"]["decode_logits"]["message"]  # no reference
        assert c["checks"]["greedy_across_releases"]["status"] == "pass"


def test_a_missing_model_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text(
        "releases: [b1]\nplatforms: [{os: linux, arch: x64}]\nmodel: nope.gguf\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--cache-dir",
            str(tmp_path / "c"),
            "--api-url",
            "http://127.0.0.1:9",
            "run",
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "nope.gguf" in proc.stderr.strip().splitlines()[-1]


def test_shards_merge_into_the_unsharded_report(npm_report, tmp_path: Path) -> None:
    _, whole, _ = npm_report
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "sources: [npm]\n"
        f"releases: [{', '.join(ERAS)}]\n"
        "platforms:\n  - {os: linux, arch: x64}\n  - {os: linux, arch: arm64}\n"
    )
    for k in (1, 2):
        code, part, err = harness_run(
            [
                "--cache-dir",
                str(CACHE),
                "run",
                "--shard",
                f"{k}/2",
                "--out",
                str(tmp_path / f"s{k}"),
            ],
            tmp_path,
        )
        assert code == 0, err
        assert 0 < len(part["cells"]) < len(whole["cells"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "report",
            "--out",
            str(tmp_path / "merged"),
            str(tmp_path / "s1"),
            str(tmp_path / "s2"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())

    def key(r: dict[str, Any]) -> set[tuple[str, ...]]:
        return {(c["release"], c["os"], c["arch"], c["variant"], c["status"]) for c in r["cells"]}

    assert key(merged) == key(whole)
    md = (tmp_path / "merged" / "report.md").read_text()
    rows = {
        ln.split(" | ")[0][2:]: ln
        for ln in md.splitlines()
        if ln.startswith("| b") or ln.startswith("| v")
    }
    assert all("✅" in rows[tag] and "☑️" in rows[tag] for tag in ERAS)


def test_test_download_through_npm(tmp_path: Path) -> None:
    provision(["b10361"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--cache-dir",
            str(CACHE),
            "--source",
            "npm",
            "--json",
            "test-download",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["source"] == "npm" and data["reachable"] is True
    assert data["digest"].startswith("sha512:") and "linux-x64" in data["asset"]


def test_the_vulkan_build_runs_on_a_software_vulkan_device(tmp_path: Path) -> None:
    """Mesa's lavapipe (installed by .ci/run): ggml accepts it with GGML_VK_VISIBLE_DEVICES."""
    from harness.abi.release import release_api
    from harness.config.matrix import Cell
    from harness.host.choose import plan
    from harness.suites.fixtures import model, reference
    from tests.realbuilds import downloader

    why, extra = plan(Cell("b10361", "linux", "x64", "vulkan"))
    if why:
        pytest.skip(why)
    provision(["b10361"])
    dl = downloader()
    res = dl.download_cells([Cell("b10361", "linux", "x64", "vulkan")], raise_errors=False)[0]
    assert res.stored, res.error
    api = tmp_path / "api.json"
    api.write_text(release_api(dl, res).to_json())
    m = model.ensure_model(CACHE)
    ids = reference.tokenize(m, model.PROMPT)
    spec = {
        **extra,
        "libdir": str(find_libdir(Path(res.stored.path))),
        "api": str(api),
        "model": str(m),
        "prompt": model.PROMPT,
        "threads": 1,
        "expect": {"prompt_ids": ids, "greedy": reference.greedy(m, ids, 16)},
        "checks": ["system_info", "model_load", "vocab", "tokenize", "greedy"],
    }
    outcome = run_cell(spec, tmp_path / "cell", timeout=300, env=extra.get("env"))
    assert outcome.status == "pass", (outcome.reason, outcome.log_tail[-5:])
    assert any(d.startswith("Vulkan") for d in outcome.devices), outcome
    assert outcome.checks["greedy"]["status"] == "pass"


def test_every_cpu_variant_this_cpu_runs_agrees(npm_report) -> None:
    from harness.load.backends import supported_variants

    _, report, _ = npm_report
    by = {c["release"]: c for c in report["cells"] if c["arch"] == "x64"}
    assert "cpu_variants" not in by["b3889"]  # no variant libraries: one CPU backend, built in
    for tag in ("b4435", "b10361"):
        variants = by[tag]["cpu_variants"]
        libdir = find_libdir(Path(provision([tag])[tag].stored.path))  # type: ignore[union-attr]
        assert sorted(variants) == sorted(supported_variants(libdir)) and len(variants) >= 2
        assert all(v["status"] == "pass" and v["greedy_same"] for v in variants.values())


def test_a_consumer_manifest_gates_the_run(tmp_path: Path) -> None:
    provision(["b8390", "b10361"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--cache-dir",
            str(CACHE),
            "--source",
            "npm",
            "api-manifest",
            "--from",
            "b8390",
            "--functions",
            "llama_tokenize,llama_decode",
            "--struct",
            "llama_model_params:n_gpu_layers,use_mmap",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "my-binding.yaml").write_text(made.stdout)
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b8390, b10361]\nplatforms: [{os: linux, arch: x64}]\n"
        "manifest: my-binding.yaml\n"
    )
    code, report, err = harness_run(
        ["--cache-dir", str(CACHE), "run", "--no-cpu-variants", "--out", str(tmp_path / "out")],
        tmp_path,
    )
    assert code == 1, err
    by = {c["release"]: c for c in report["cells"]}
    assert by["b8390"]["status"] == "pass" and by["b8390"]["api"]["manifest"] == "compatible"
    assert by["b10361"]["status"] == "fail"
    assert by["b10361"]["api"]["manifest"] == "breaks: llama_model_params.use_mmap: removed"
    assert "my-binding.yaml breaks" in (tmp_path / "out" / "report.md").read_text()


def test_run_times_releases_and_gates_a_real_slowdown(tmp_path: Path) -> None:
    """b6673 turned flash attention to `auto`: pp on the tiny model dropped markedly."""
    provision(["b5640", "b6673"])
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b5640, b6673]\nplatforms: [{os: linux, arch: x64}]\n"
    )
    args = [
        "--cache-dir",
        str(CACHE),
        "run",
        "--suite",
        "conformance",
        "--suite",
        "bench",
        "--bench-presets",
        "tiny",
        "--no-cpu-variants",
        "--out",
        str(tmp_path / "out"),
    ]
    code, report, err = harness_run([*args, "--fail-on-regression", "10%"], tmp_path)
    assert code == 1, err
    assert "regression: b6673 linux/x64/cpu tiny pp64" in err
    pp = next(c for c in report["comparison"] if c["release"] == "b6673" and c["test"] == "pp64")
    assert pp["verdict"] == "slower" and pp["change"] < -0.3
    for c in report["cells"]:
        assert c["bench"]["tiny"]["pp64"]["median"] > 0 and c["bench"]["tiny"]["tg16"]["rounds"]
    assert list((tmp_path / "out").glob("bench-*.json"))
    # against itself as the baseline, nothing is slower beyond noise: merged, the gate passes
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "report",
            "--out",
            str(tmp_path / "again"),
            str(tmp_path / "out"),
            "--baseline",
            str(tmp_path / "out" / "report.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert {c["verdict"] for c in again["comparison"] if c["against"] == "baseline"} == {
        "within noise"
    }


def test_run_needs_nothing_beyond_the_runtime_dependencies() -> None:
    """`run` drives pytest and pytest-xdist in a child: a plain `pip install llama-harness`
    (the `nox -s matrix` venv) must bring them."""
    from importlib.metadata import requires

    names = {
        re.split(r"[<>=!~;\[ ]", r)[0].lower()  # the name, before any version bound
        for r in requires("llama-harness") or []
        if "extra ==" not in r
    }
    assert {"pytest", "pytest-xdist", "libclang", "lief", "gguf", "numpy"} <= names


def test_a_runnable_cell_without_headers_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """No source archive at the fake GitHub and no npm on PATH: nothing declares the ABI."""
    builds = provision(["b8095"])
    with FakeGitHub() as gh:
        name, data = era_archive("b8095", builds["b8095"], tmp_path / "assets")
        gh.add_release("b8095", {name: data})
        (tmp_path / "matrix.yaml").write_text(
            "releases: [b8095]\nplatforms: [{os: linux, arch: x64}]\n"
        )
        (tmp_path / "bin").mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": str(tmp_path / "bin")}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "--api-url",
                gh.api_url,
                "--cache-dir",
                str(tmp_path / "cache"),
                "run",
                "--suite",
                "conformance",
                "--out",
                str(tmp_path / "out"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    cell = json.loads((tmp_path / "out" / "report.json").read_text())["cells"][0]
    assert cell["status"] == "error" and "no ABI for b8095" in cell["reason"]
    assert "npm is not installed" in cell["reason"]


def test_gpu_builds_this_host_cannot_run_are_skips_with_the_reason(tmp_path: Path) -> None:
    provision(["b10361"])
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b10361]\n"
        "platforms: [{os: linux, arch: x64, variants: [cuda-12.4]}, {os: windows, arch: x64}]\n"
    )
    code, report, err = harness_run(
        ["--cache-dir", str(CACHE), "run", "--out", str(tmp_path / "out")], tmp_path
    )
    assert code == 0, err
    by = {c["os"]: c for c in report["cells"]}
    cuda = by["linux"]
    assert cuda["status"] == "skip" and "cannot run here: no CUDA driver" in cuda["reason"]
    assert cuda["checks"]["static.architecture"]["status"] == "pass"  # still inspected
    assert by["windows"]["status"] == "pass" and by["windows"]["scope"] == "static"


@pytest.mark.parametrize(
    ("os_", "arch", "variant", "want"),
    [
        (
            "linux",
            "x64",
            "vulkan",
            ("libggml-base.so", "libggml.vulkan.b10361.so", "libllama.vulkan.b10361.so"),
        ),
        (
            "macos",
            "arm64",
            "metal",
            ("libggml-base.dylib", "libggml.metal.b10361.dylib", "libllama.metal.b10361.dylib"),
        ),
        ("windows", "x64", "cpu", ("ggml-base.dll", "ggml.b10361.dll", "llama.b10361.dll")),
    ],
)
def test_the_loader_finds_each_platforms_libraries(
    os_: str, arch: str, variant: str, want: tuple[str, ...]
) -> None:
    """Names per packager and OS; the loader never takes libllama-common or a backend plugin."""
    from harness.load.loader import library_paths
    from tests.realbuilds import platform_tree

    provision(["b10361"])
    libdir = find_libdir(platform_tree("b10361", os_, arch, variant))
    found = library_paths(libdir, os_)
    assert tuple(found[r].name for r in ("ggml-base", "ggml", "llama")) == want
