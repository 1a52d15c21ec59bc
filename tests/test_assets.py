"""Asset-name rules, held to real release asset lists of every era (tests/data/assets)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from harness.sources.assets import (
    AssetMatch,
    classify_asset,
    companions_for,
    default_variant,
    host_platform,
    match_asset,
    platform_asset_pattern,
)

DATA = Path(__file__).parent / "data" / "assets"


def _load(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


LISTS: dict[str, list[str]] = {p.stem: _load(p) for p in sorted(DATA.glob("*.txt"))}
ALL_NAMES = sorted({name for names in LISTS.values() for name in names})
OSES = {"linux", "macos", "windows", "android"}
ARCHES = {"x64", "arm64", "s390x"}

# A sample per era: name -> "kind os arch variant archive".
EXPECTED = {
    # 2024: zip, Windows CPU flavours, cu<version> CUDA spelling, llvm/msvc arm64
    "llama-b3190-bin-win-rpc-x64.zip": "binary windows x64 rpc zip",
    "llama-b3672-bin-ubuntu-x64.zip": "binary linux x64 cpu zip",
    "llama-b3672-bin-macos-arm64.zip": "binary macos arm64 metal zip",
    "llama-b3672-bin-macos-x64.zip": "binary macos x64 cpu zip",
    "llama-b3672-bin-win-avx2-x64.zip": "binary windows x64 avx2 zip",
    "llama-b3672-bin-win-noavx-x64.zip": "binary windows x64 noavx zip",
    "llama-b3672-bin-win-kompute-x64.zip": "binary windows x64 kompute zip",
    "llama-b3672-bin-win-llvm-arm64.zip": "binary windows arm64 llvm zip",
    "llama-b3672-bin-win-msvc-arm64.zip": "binary windows arm64 msvc zip",
    "llama-b3672-bin-win-cuda-cu12.2.0-x64.zip": "binary windows x64 cuda-12.2.0 zip",
    "cudart-llama-bin-win-cu12.2.0-x64.zip": "companion windows x64 cuda-12.2.0 zip",
    # early 2025: cu12.4, an arch before a suffix (hip, opencl-adreno)
    "llama-b4585-bin-win-cuda-cu12.4-x64.zip": "binary windows x64 cuda-12.4 zip",
    "cudart-llama-bin-win-cu12.4-x64.zip": "companion windows x64 cuda-12.4 zip",
    "llama-b4585-bin-win-hip-x64-gfx1030.zip": "binary windows x64 hip-gfx1030 zip",
    "llama-b4753-bin-win-llvm-arm64-opencl-adreno.zip": "binary windows arm64 opencl-adreno zip",
    "llama-b4753-bin-ubuntu-vulkan-x64.zip": "binary linux x64 vulkan zip",
    "llama-b4753-xcframework.zip": "unmatched",
    # mid/late 2025: release.yml naming, still zip
    "llama-b5640-bin-win-cpu-x64.zip": "binary windows x64 cpu zip",
    "llama-b5640-bin-win-cpu-arm64.zip": "binary windows arm64 cpu zip",
    "llama-b6673-bin-win-cuda-12.4-x64.zip": "binary windows x64 cuda-12.4 zip",
    "cudart-llama-bin-win-cuda-12.4-x64.zip": "companion windows x64 cuda-12.4 zip",
    "llama-b6673-bin-win-hip-radeon-x64.zip": "binary windows x64 hip-radeon zip",
    "llama-b6673-bin-win-opencl-adreno-arm64.zip": "binary windows arm64 opencl-adreno zip",
    # 2026: tar.gz for Linux/macOS, openEuler, kleidiai
    "llama-b7898-bin-ubuntu-x64.tar.gz": "binary linux x64 cpu tar.gz",
    "llama-b7898-bin-ubuntu-s390x.tar.gz": "binary linux s390x cpu tar.gz",
    "llama-b7898-bin-macos-arm64.tar.gz": "binary macos arm64 metal tar.gz",
    "llama-b7898-bin-310p-openEuler-x86.tar.gz": "binary linux x64 openeuler-310p tar.gz",
    "llama-b7898-bin-910b-openEuler-aarch64-aclgraph.tar.gz": (
        "binary linux arm64 openeuler-910b-aclgraph tar.gz"
    ),
    "llama-b7898-bin-win-cuda-13.1-x64.zip": "binary windows x64 cuda-13.1 zip",
    "llama-b9000-bin-macos-arm64-kleidiai.tar.gz": "binary macos arm64 kleidiai tar.gz",
    "llama-b10892-bin-ubuntu-rocm-10.0-x64.tar.gz": "binary linux x64 rocm-10.0 tar.gz",
    "llama-b10892-bin-ubuntu-openvino-2026.3.1-x64.tar.gz": (
        "binary linux x64 openvino-2026.3.1 tar.gz"
    ),
    "llama-b10892-bin-ubuntu-sycl-fp16-x64.tar.gz": "binary linux x64 sycl-fp16 tar.gz",
    "llama-b10892-bin-android-arm64.tar.gz": "binary android arm64 cpu tar.gz",
    "llama-b10892-bin-win-cuda-13.4-arm64.zip": "binary windows arm64 cuda-13.4 zip",
    "cudart-llama-bin-win-cuda-13.4-arm64.zip": "companion windows arm64 cuda-13.4 zip",
    "llama-b10892-ui.tar.gz": "unmatched",
    "llama-b11459-bin-ubuntu-cuda-13.4-x64.tar.gz": "binary linux x64 cuda-13.4 tar.gz",
    "cudart-llama-b11459-bin-ubuntu-cuda-13.4-x64.tar.gz": "companion linux x64 cuda-13.4 tar.gz",
    "llama-b11459-bin-android-arm64-snapdragon.tar.gz": "binary android arm64 snapdragon tar.gz",
    "llama-b11459-bin-linux-arm64-snapdragon.tar.gz": "binary linux arm64 snapdragon tar.gz",
    "llama-b11459-bin-win-vulkan-arm64.zip": "binary windows arm64 vulkan zip",
    "nightly-tag.txt": "unmatched",
}

# Names no list holds: edge cases of the rules.
EDGE = {
    "llama-prism-b10685-7dffb15-bin-win-cpu-x64.zip": "binary windows x64 cpu zip",
    "llama-master-b9b7d94-bin-win-openblas-x64.zip": "binary windows x64 openblas zip",
    "LLAMA-B1-BIN-UBUNTU-X64.TAR.GZ": "binary linux x64 cpu tar.gz",
    "llama-b1-bin-win-x64.zip": "binary windows x64 cpu zip",
    "llama-b1-bin-freebsd-x64.tar.gz": "binary freebsd x64 cpu tar.gz",
    "llama-b1-bin-ubuntu-x86_64.tar.gz": "binary linux x64 cpu tar.gz",
    "llama-b1-bin-win-cublas-cu12.2.0-x64.zip": "binary windows x64 cublas-12.2.0 zip",
    "llama-b1-bin-win-bin-x64.zip": "binary windows x64 bin zip",
    "nightly-tag.txt.zip": "unmatched",
    "llama-b8095-xcframework.tar.gz": "unmatched",
    "Source code (zip)": "unmatched",
    "llama-b1-bin-win.zip": "unmatched",
    "llama-b1-bin-x64-ubuntu.zip": "unmatched",
    "llama-b1-bin-ubuntu-x64.tar.xz": "unmatched",
    "llama-b1-bin-ubuntu--x64.zip": "unmatched",
    "llama--bin-ubuntu-x64.zip": "unmatched",
    "cudart-sd-bin-win-cu12-x64.zip": "unmatched",
    "sd-master-8caa3f9-bin-win-avx2-x64.zip": "unmatched",
    "": "unmatched",
}


def _expected(spec: str) -> AssetMatch:
    kind, *cell = spec.split()
    return AssetMatch(kind, *cell) if cell else AssetMatch(kind, None, None, None, None)


def _cell(name: str) -> tuple[str, str, str] | None:
    m = classify_asset(name)
    if m.kind != "binary" or m.os is None or m.arch is None or m.variant is None:
        return None
    return m.os, m.arch, m.variant


def test_lists_cover_the_eras() -> None:
    assert len(LISTS) >= 6
    assert all(LISTS.values())
    assert LISTS["v0.4.0"] == ["nightly-tag.txt"]
    assert all(name in ALL_NAMES for name in EXPECTED)


@pytest.mark.parametrize("name", sorted({**EXPECTED, **EDGE}))
def test_classify(name: str) -> None:
    assert classify_asset(name) == _expected({**EXPECTED, **EDGE}[name])


@pytest.mark.parametrize("tag", sorted(LISTS))
def test_every_name_is_classified(tag: str) -> None:
    for name in LISTS[tag]:
        m = classify_asset(name)
        if m.kind == "unmatched":
            assert name == "nightly-tag.txt" or name.endswith(
                (f"{tag}-xcframework.zip", f"{tag}-ui.tar.gz")
            ), name
            assert (m.os, m.arch, m.variant, m.archive) == (None, None, None, None)
            continue
        assert m.os in OSES and m.arch in ARCHES, name
        assert m.variant and m.variant == m.variant.lower(), name
        assert m.archive == ("tar.gz" if name.endswith(".tar.gz") else "zip"), name
        assert name.startswith("cudart-" if m.kind == "companion" else f"llama-{tag}-bin-")


@pytest.mark.parametrize("tag", sorted(LISTS))
def test_one_binary_per_cell(tag: str) -> None:
    cells = [c for c in map(_cell, LISTS[tag]) if c]
    assert len(cells) == len(set(cells))


def test_same_cell_across_eras() -> None:
    """Old and new spellings of one build land in one cell, so one matrix line serves both."""
    assert _cell("llama-b4753-bin-win-llvm-arm64-opencl-adreno.zip") == _cell(
        "llama-b11459-bin-win-opencl-adreno-arm64.zip"
    )
    assert _cell("llama-b4585-bin-win-cuda-cu12.4-x64.zip") == _cell(
        "llama-b10892-bin-win-cuda-12.4-x64.zip"
    )
    assert _cell("llama-b3672-bin-ubuntu-x64.zip") == _cell("llama-b11459-bin-ubuntu-x64.tar.gz")


def test_pattern_agrees_with_classifier() -> None:
    names = ALL_NAMES + sorted(EDGE)
    cells = {c for c in map(_cell, names) if c}
    cells |= {
        ("windows", "x64", "cuda-13.3"),
        ("windows", "x64", "cuda-12.2"),
        ("macos", "arm64", "cpu"),
        ("linux", "riscv64", "cpu"),
        ("linux", "x64", "openeuler"),
        ("windows", "arm64", "llvm-opencl-adreno"),
        ("windows", "x64", ""),
    }
    for cell in sorted(cells):
        pattern = platform_asset_pattern(*cell)
        for name in names:
            assert bool(pattern.fullmatch(name)) == (_cell(name) == cell), (cell, name)


@pytest.mark.parametrize(
    ("tag", "binary", "companions"),
    [
        (
            "b3190",
            "llama-b3190-bin-win-cuda-cu11.7.1-x64.zip",
            ["cudart-llama-bin-win-cu11.7.1-x64.zip"],
        ),
        (
            "b3672",
            "llama-b3672-bin-win-cuda-cu12.2.0-x64.zip",
            ["cudart-llama-bin-win-cu12.2.0-x64.zip"],
        ),
        (
            "b4585",
            "llama-b4585-bin-win-cuda-cu12.4-x64.zip",
            ["cudart-llama-bin-win-cu12.4-x64.zip"],
        ),
        (
            "b4585",
            "llama-b4585-bin-win-cuda-cu11.7-x64.zip",
            ["cudart-llama-bin-win-cu11.7-x64.zip"],
        ),
        (
            "b6673",
            "llama-b6673-bin-win-cuda-12.4-x64.zip",
            ["cudart-llama-bin-win-cuda-12.4-x64.zip"],
        ),
        (
            "b7898",
            "llama-b7898-bin-win-cuda-13.1-x64.zip",
            ["cudart-llama-bin-win-cuda-13.1-x64.zip"],
        ),
        (
            "b10892",
            "llama-b10892-bin-win-cuda-13.4-arm64.zip",
            ["cudart-llama-bin-win-cuda-13.4-arm64.zip"],
        ),
        (
            "b11459",
            "llama-b11459-bin-win-cuda-13.4-x64.zip",
            ["cudart-llama-bin-win-cuda-13.4-x64.zip"],
        ),
        (
            "b11459",
            "llama-b11459-bin-ubuntu-cuda-13.4-arm64.tar.gz",
            ["cudart-llama-b11459-bin-ubuntu-cuda-13.4-arm64.tar.gz"],
        ),
        (
            "b11459",
            "llama-b11459-bin-ubuntu-cuda-12.8-x64.tar.gz",
            ["cudart-llama-b11459-bin-ubuntu-cuda-12.8-x64.tar.gz"],
        ),
        ("b11459", "llama-b11459-bin-ubuntu-vulkan-x64.tar.gz", []),
        ("b10892", "llama-b10892-bin-win-vulkan-x64.zip", []),
        ("b10892", "cudart-llama-bin-win-cuda-12.4-x64.zip", []),
        ("b10892", "llama-b10892-xcframework.zip", []),
    ],
)
def test_companions_for(tag: str, binary: str, companions: list[str]) -> None:
    assert companions_for(binary, LISTS[tag]) == companions


@pytest.mark.parametrize("tag", sorted(LISTS))
def test_every_cuda_binary_has_one_companion(tag: str) -> None:
    for name in LISTS[tag]:
        m = classify_asset(name)
        if m.kind == "binary" and m.variant and m.variant.startswith("cuda-"):
            assert len(companions_for(name, LISTS[tag])) == 1, name


def test_tagged_companion_must_carry_the_binary_tag() -> None:
    names = ["cudart-llama-b1-bin-ubuntu-cuda-13.4-x64.tar.gz"]
    assert companions_for("llama-b2-bin-ubuntu-cuda-13.4-x64.tar.gz", names) == []
    assert companions_for("llama-b1-bin-ubuntu-cuda-13.4-x64.tar.gz", names) == names


@pytest.mark.parametrize(
    ("tag", "cell", "expected"),
    [
        ("b3190", ("windows", "x64", "avx2"), "llama-b3190-bin-win-avx2-x64.zip"),
        ("b3672", ("linux", "x64", "cpu"), "llama-b3672-bin-ubuntu-x64.zip"),
        ("b3672", ("macos", "arm64", "metal"), "llama-b3672-bin-macos-arm64.zip"),
        ("b3672", ("windows", "x64", "cpu"), None),
        ("b4585", ("windows", "x64", "cuda-12.4"), "llama-b4585-bin-win-cuda-cu12.4-x64.zip"),
        (
            "b4753",
            ("windows", "arm64", "opencl-adreno"),
            "llama-b4753-bin-win-llvm-arm64-opencl-adreno.zip",
        ),
        ("b4753", ("windows", "arm64", "cpu"), None),
        ("b5640", ("windows", "arm64", "cpu"), "llama-b5640-bin-win-cpu-arm64.zip"),
        ("b6673", ("windows", "x64", "cuda-12.4"), "llama-b6673-bin-win-cuda-12.4-x64.zip"),
        ("b6673", ("linux", "x64", "vulkan"), "llama-b6673-bin-ubuntu-vulkan-x64.zip"),
        ("b7898", ("linux", "x64", "cpu"), "llama-b7898-bin-ubuntu-x64.tar.gz"),
        ("b7898", ("linux", "arm64", "cpu"), None),
        (
            "b7898",
            ("linux", "arm64", "openeuler-910b-aclgraph"),
            "llama-b7898-bin-910b-openEuler-aarch64-aclgraph.tar.gz",
        ),
        ("b9000", ("macos", "arm64", "metal"), "llama-b9000-bin-macos-arm64.tar.gz"),
        ("b9000", ("macos", "arm64", "kleidiai"), "llama-b9000-bin-macos-arm64-kleidiai.tar.gz"),
        ("b10892", ("linux", "arm64", "cpu"), "llama-b10892-bin-ubuntu-arm64.tar.gz"),
        ("b10892", ("windows", "x64", "rocm-10.0"), "llama-b10892-bin-win-rocm-10.0-x64.zip"),
        ("b11459", ("linux", "x64", "cuda-13.4"), "llama-b11459-bin-ubuntu-cuda-13.4-x64.tar.gz"),
        ("b11459", ("android", "arm64", "cpu"), "llama-b11459-bin-android-arm64.tar.gz"),
        ("v0.4.0", ("linux", "x64", "cpu"), None),
    ],
)
def test_match_asset(tag: str, cell: tuple[str, str, str], expected: str | None) -> None:
    assert match_asset(LISTS[tag], *cell) == expected


def test_match_asset_prefers_tar_gz() -> None:
    names = ["llama-b1-bin-ubuntu-x64.zip", "llama-b1-bin-ubuntu-x64.tar.gz"]
    assert match_asset(names, "linux", "x64", "cpu") == "llama-b1-bin-ubuntu-x64.tar.gz"
    assert match_asset(iter(names[:1]), "linux", "x64", "cpu") == names[0]


def test_default_variant() -> None:
    assert default_variant("macos", "arm64") == "metal"
    assert default_variant("macos", "x64") == "cpu"
    assert default_variant("linux", "arm64") == "cpu"
    assert default_variant("windows", "x64") == "cpu"


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Linux", "x86_64", ("linux", "x64")),
        ("Linux", "aarch64", ("linux", "arm64")),
        ("Linux", "s390x", ("linux", "s390x")),
        ("Darwin", "arm64", ("macos", "arm64")),
        ("Darwin", "x86_64", ("macos", "x64")),
        ("Windows", "AMD64", ("windows", "x64")),
        ("Windows", "ARM64", ("windows", "arm64")),
        ("Android", "aarch64", ("android", "arm64")),
        ("FreeBSD", "amd64", ("freebsd", "x64")),
        ("Linux", "i686", ("linux", "i686")),
    ],
)
def test_host_platform(
    monkeypatch: pytest.MonkeyPatch, system: str, machine: str, expected: tuple[str, str]
) -> None:
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert host_platform() == expected


def test_host_platform_here() -> None:
    os_, arch = host_platform()
    assert os_ in OSES and arch in ARCHES
    pattern = platform_asset_pattern(os_, arch, default_variant(os_, arch))
    assert any(pattern.fullmatch(n) for n in LISTS["b11459"])
