"""Say what happened (issue 10, part 3): a package a source never published is "not available
from <source>", not a failed platform; a GPU build judged on its static checks is "static checks
only"; verdicts read as English; greedy tokens are never cut mid-number; `inspect-host` names the
release its variant is of; `run` prints the answer, not the whole report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cache.want import Want
from harness.errors import AssetNotFound
from harness.report import model
from harness.report.markdown import markdown, tokens
from harness.sources.npm import SCOPE, NpmSource
from tests.conftest import NEW, OLD, ROOT, run_harness
from tests.fakegithub import FakeGitHub
from tests.fakenpm import FakeNpm
from tests.realbuilds import era_archive, provision, source_tarball

# ---------------------------------------------------------------- the bump line, in English


def cell(variant: str, status: str, os_: str = "linux", **kw: Any) -> dict[str, Any]:
    return {
        "release": "b9000",
        "build": "b9000",
        "os": os_,
        "arch": "x64",
        "variant": variant,
        "status": status,
        "reason": "",
        "checks": {},
        **kw,
    }


def line(*cells: dict[str, Any]) -> str:
    return model.verdicts({"cells": list(cells)})[0]["text"]


def test_counts_read_as_english() -> None:
    assert line(cell("cpu", "pass")) == "bump — the one platform passes"
    assert line(cell("cpu", "pass"), cell("vulkan", "pass")) == "bump — both platforms pass"
    three = [cell("cpu", "pass"), cell("vulkan", "pass"), cell("cuda", "pass")]
    assert line(*three) == "bump — all 3 platforms pass"
    three[2] = cell("cuda", "fail", reason="boom")
    assert line(*three).startswith("don't bump — 1 of 3 platforms fails: linux/x64/cuda")
    assert line(cell("cpu", "skip")) == "unknown — its one platform could not be checked here"


def test_a_gpu_build_that_only_passed_its_static_checks_says_so() -> None:
    ran = cell("cpu", "pass")
    gpu = cell("vulkan", "skip", scope="static", reason="the vulkan build cannot run here: …")
    other = cell("cpu", "pass", "windows", scope="static")
    assert line(ran, gpu) == "bump — both platforms pass (1 ran here, 1 static checks only)"
    assert line(ran, gpu, other) == (
        "bump — all 3 platforms pass (1 ran here, 2 static checks only)"
    )
    assert line(gpu) == "bump — the one platform passes (static checks only)"
    assert model.glyph(gpu) == model.STATIC_PASS  # ☑️ in the matrix, not ⏭️
    failed = cell("vulkan", "fail", scope="static", reason="static.exports: …")
    assert line(ran, failed).startswith("don't bump")


def test_a_package_no_source_published_is_not_checked_not_failed() -> None:
    gone = cell(
        "metal",
        "skip",
        "macos",
        reason="not available from npm: node-llama-cpp lists @node-llama-cpp/mac-arm64-metal "
        "for b9000, but npm never published it (tried 3.19.0, 3.18.1)",
    )
    text = line(cell("cpu", "pass"), gone)
    assert text == (
        "bump — 1 of 2 platforms passes; 1 not checked: macos/x64/metal (not available from npm)"
    )
    md = markdown(model.build([cell("cpu", "pass"), gone]))
    assert "tried 3.19.0, 3.18.1" in md.split("## Skipped")[1]  # every version, in the details


def test_npm_names_every_version_it_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback registry (behind a real npm's settings) that never published the package."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (the npm source reads its settings through it)")
    with FakeNpm() as reg:
        reg.add("3.18.1", "b9842", {"linux-x64": 1000})
        reg.add("3.19.0", "b9842", {"linux-x64": 1000})
        (tmp_path / "npmrc").write_text(f"registry={reg.url}\n")
        monkeypatch.setenv("NPM_CONFIG_USERCONFIG", str(tmp_path / "npmrc"))
        src = NpmSource(tmp_path / "cache")
        first, older = f"{SCOPE}/mac-arm64-metal@3.19.0", f"{SCOPE}/mac-arm64-metal@3.18.1"
        src._alternates[first] = [older]  # what get_release records: older versions of the build
        want = Want(
            "b9842", "node-llama-cpp-mac-arm64-metal-3.19.0.tgz", None, None, f"npm:{first}", "npm"
        )
        with pytest.raises(AssetNotFound) as err:
            src.prepare(want)
    assert str(err.value) == (
        f"node-llama-cpp lists {SCOPE}/mac-arm64-metal for b9842, but npm never published it "
        "(tried 3.19.0, 3.18.1)"
    )


# ---------------------------------------------------------------- report.md's greedy tokens


def test_greedy_tokens_are_whole_or_counted() -> None:
    ids = [317, 4099, 12, 288, 1001, 77, 3053, 419, 2, 65535, 901, 33, 7, 8, 12000, 404]
    shown = tokens(ids)
    head, _, count = shown.partition(" … ")
    assert count == f"({len(ids)} tokens)"
    assert head.split() == [str(i) for i in ids[: len(head.split())]]  # no number cut
    assert len(head) <= 60
    assert tokens([1, 2, 3]) == "1 2 3"
    rep = model.build([cell("cpu", "pass", facts={"greedy": ids}, checks={})])
    row = next(ln for ln in markdown(rep).splitlines() if ln.startswith("| b9000 linux/x64/cpu"))
    assert shown in row


# ---------------------------------------------------------------- inspect-host


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_harness(*args, cwd=cwd, env={"GITHUB_STEP_SUMMARY": ""})


@pytest.mark.parametrize(
    ("releases", "newest", "label"),
    [([OLD, NEW], NEW, NEW), ([OLD, "v0.5.0"], "v0.5.0", f"v0.5.0 ({NEW})")],
)
def test_inspect_host_names_the_newest_release_of_the_matrix(
    gh: FakeGitHub, tmp_path: Path, releases: list[str], newest: str, label: str
) -> None:
    (tmp_path / "matrix.yaml").write_text(
        f"releases: [{', '.join(releases)}]\nplatforms: [{{os: linux, arch: x64}}]\n"
    )
    base = ["--api-url", gh.api_url, "--cache-dir", str(tmp_path / "c")]
    got = cli(*base, "--json", "inspect-host", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert data["release"] == newest and data["build"] == NEW
    assert data["release_from"] == "the newest release of matrix.yaml"
    assert data["choice"]["variant"] in data["variants"]
    text = cli(*base, "inspect-host", cwd=tmp_path).stdout
    want = f"variant   {data['choice']['variant']} (of {label}, the newest release of matrix.yaml)"
    assert want in text


def test_inspect_host_without_a_matrix_or_a_network_still_describes_the_host(
    tmp_path: Path,
) -> None:
    got = cli("--json", "inspect-host", cwd=tmp_path)
    assert got.returncode == 0 and "choice" not in json.loads(got.stdout)
    (tmp_path / "matrix.yaml").write_text(
        "releases: [latest]\nplatforms: [{os: linux, arch: x64}]\n"
    )
    got = cli("--api-url", "http://127.0.0.1:9", "--cache-dir", str(tmp_path / "c"),
              "--json", "inspect-host", cwd=tmp_path)  # fmt: skip
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert data["host"]["os"] and data["choice_error"].startswith("cannot resolve the newest")


# ---------------------------------------------------------------- run, end to end


@pytest.mark.xdist_group("real-builds")
def test_run_says_what_happened_in_a_few_lines(tmp_path: Path) -> None:
    """A real build through the fake GitHub, whose release lacks the vulkan package the matrix
    asks for: that platform is not available (not checked), the run passes, stdout has the
    answer and where the report is, the step summary has the whole Markdown."""
    tag = "b10361"
    build = provision([tag])[tag]
    with FakeGitHub() as gh:
        name, data = era_archive(tag, build, tmp_path / "assets")
        gh.add_release(tag, {name: data})
        gh.source_tarballs[tag] = source_tarball(build)
        (tmp_path / "matrix.yaml").write_text(
            f"releases: [{tag}]\nplatforms: [{{os: linux, arch: x64, variants: [cpu, vulkan]}}]\n"
        )
        summary = tmp_path / "summary.md"
        env_args = ["--api-url", gh.api_url, "--cache-dir", str(tmp_path / "cache")]
        os.environ["GITHUB_STEP_SUMMARY"] = str(summary)
        try:
            got = subprocess.run(
                [sys.executable, "-m", "harness", *env_args, "-q", "run", "--suite",
                 "conformance", "--no-cpu-variants", "--out", str(tmp_path / "out")],
                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
        finally:
            del os.environ["GITHUB_STEP_SUMMARY"]
    assert got.returncode == 0, got.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    vulkan = next(c for c in report["cells"] if c["variant"] == "vulkan")
    assert vulkan["status"] == "skip"
    assert vulkan["reason"].startswith(f"not available from github: {tag}: no asset for ")
    assert got.stdout.splitlines() == [
        f"✅ {tag}: bump — 1 of 2 platforms passes; 1 not checked: linux/x64/vulkan "
        "(not available from github)",
        f"report: {tmp_path / 'out' / 'report.md'} (also report.json, report.html, report.xml)",
    ]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Can I bump?" in md and md in summary.read_text()
