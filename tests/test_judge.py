"""The verdict rules (harness.report.judge) over typed cell results, and their one serialisation."""

from __future__ import annotations

from harness.report import judge
from harness.report.cell import CellResult, check


def _cell(release: str = "b1", greedy: list[int] | None = None) -> CellResult:
    cell = CellResult(release, "linux", "x64", "cpu", build=release)
    if greedy is not None:
        cell.facts = {"greedy": greedy}
    return cell


def test_greedy_tokens_are_judged_against_the_most_common_sequence() -> None:
    a, b, c = _cell("b1", [1, 2]), _cell("b2", [1, 2]), _cell("b3", [1, 3])
    judge.across_releases([a, b, c])
    assert (a.status, b.status) == ("pass", "pass")
    assert c.status == "fail" and c.reason == "greedy tokens differ from the other releases"
    assert c.checks["greedy_across_releases"]["status"] == "fail"


def test_a_missing_or_disagreeing_cpu_variant_fails_the_cell() -> None:
    cell = _cell("b1", [1, 2])
    other = _cell("b1", [9])
    judge.cpu_variants(cell, {"haswell": _cell("b1", [1, 2]), "zen4": None, "x64": other})
    assert cell.cpu_variants is not None and cell.cpu_variants["haswell"]["greedy_same"]
    assert cell.status == "fail"
    assert (
        cell.reason
        == "CPU variants: zen4: error, other greedy tokens; x64: pass, other greedy tokens"
    )


def test_the_first_failure_names_the_reason() -> None:
    cell = _cell()
    cell.checks["static.exports"] = check("fail", "llama_decode missing")
    judge.manifest(cell, "mine.yaml", ["llama_foo: removed"])
    judge.fold_static(cell)
    assert (cell.status, cell.reason) == ("fail", "mine.yaml breaks: llama_foo: removed")
    assert cell.api["manifest"] == "breaks: llama_foo: removed"


def test_static_only_cells_pass_skip_or_fail_on_their_binaries() -> None:
    ok, skip, bad = _cell(), _cell(), _cell()
    bad.checks["static.architecture"] = check("fail", "x86-64, expected aarch64")
    judge.static_only(ok, "built for linux/arm64", skip=False)
    judge.static_only(skip, "no CUDA driver", skip=True)
    judge.static_only(bad, "built for linux/arm64", skip=False)
    assert (ok.status, ok.reason) == ("pass", "static checks only: built for linux/arm64")
    assert (skip.status, bad.status) == ("skip", "fail")
    assert bad.reason == "static.architecture: x86-64, expected aarch64"


def test_optional_sections_appear_only_once_set() -> None:
    cell = _cell()
    assert set(cell.to_json()) == {
        "release", "build", "os", "arch", "variant", "asset", "digest", "source",
        "status", "reason", "checks", "api", "bench",
    }  # fmt: skip
    cell.scope, cell.extra["binding"] = "static", {"verdict": "compatible"}
    assert cell.to_json()["scope"] == "static" and cell.to_json()["binding"]
