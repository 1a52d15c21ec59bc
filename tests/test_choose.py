"""`host.choose.plan`: which cells `run` runs here, decided by the same verdicts as
`choose_variant` (what `inspect-host` prints), so the two can never disagree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.config.matrix import Cell
from harness.host.choose import choose_variant, plan
from harness.host.probe import Vulkan, inspect_host
from tests.test_host import LVP, NV, driver, host

VARIANTS = ["cpu", "kleidiai", "avx512", "avx2", "noavx", "vulkan", "cuda-12.4", "cuda-13.1"]
VARIANTS += ["rocm-7.2", "sycl-fp16", "metal", "openeuler-910b"]


def cell(variant: str, os_: str = "linux", arch: str = "x64") -> Cell:
    return Cell("b10361", os_, arch, variant)


def test_another_platform_is_judged_statically() -> None:
    why, needs = plan(cell("cpu", "windows"), host())
    assert why == "built for windows/x64; this host is linux/x64" and needs == {}


def test_cpu_builds_run_when_the_cpu_has_what_they_need() -> None:
    h = host()
    assert plan(cell("cpu"), h) == (None, {})
    assert plan(cell("kleidiai"), h) == (None, {})  # once missing from the policy `run` used
    assert plan(cell("avx512"), h).why_not == (
        "the avx512 build cannot run here: CPU lacks avx512f"
    )


def test_gpu_builds_run_with_what_their_child_needs() -> None:
    h = host(cuda=driver("12.8"), vulkan=Vulkan("/usr/lib/libvulkan.so.1", [NV]))
    assert plan(cell("cuda-12.4"), h) == (None, {"gpu_layers": 99, "gpu": "cuda"})
    assert plan(cell("cuda-13.1"), h).why_not == (
        "the cuda-13.1 build cannot run here: CUDA driver found (CUDA 12.8), too old for CUDA 13.1"
    )
    vk = {"gpu_layers": 99, "env": {"GGML_VK_VISIBLE_DEVICES": "0"}, "gpu": "vulkan"}
    assert plan(cell("vulkan"), h) == (None, vk)
    assert plan(cell("vulkan"), host(vulkan=Vulkan("/l/libvulkan.so.1", [LVP]))) == (None, vk)
    assert plan(cell("vulkan"), host()).why_not == (
        "the vulkan build cannot run here: no Vulkan loader"
    )
    mac = host("macos", "arm64", metal="/System/Library/Frameworks/Metal.framework")
    assert plan(cell("metal", "macos", "arm64"), mac) == (None, {"gpu_layers": 99})


def test_probed_but_not_run_kinds_say_so() -> None:
    h = host(hip="/opt/rocm/lib/libamdhip64.so")
    assert plan(cell("rocm-7.2"), h).why_not == (
        "the harness does not run rocm-7.2 builds yet (HIP runtime found (libamdhip64.so))"
    )


@pytest.mark.parametrize(
    "h",
    [
        host(),
        host(cuda=driver("12.8"), vulkan=Vulkan("/usr/lib/libvulkan.so.1", [LVP])),
        host(cuda=driver("13.1"), vulkan=Vulkan("/usr/lib/libvulkan.so.1", [NV])),
    ],
)
def test_what_runs_is_what_inspect_host_calls_usable(h) -> None:
    usable = set(choose_variant(h, VARIANTS).usable)
    runs = {v for v in VARIANTS if plan(cell(v), h).why_not is None}
    kinds_not_run = {v for v in usable if v.startswith(("rocm", "sycl"))}
    assert runs == usable - kinds_not_run


def test_vk_driver_files_names_the_icds(tmp_path: Path, monkeypatch) -> None:
    """The old `run` policy looked in three fixed folders; the probe honours VK_DRIVER_FILES."""
    manifest = tmp_path / "lvp_icd.x86_64.json"
    manifest.write_text(json.dumps({"ICD": {"library_path": "libvulkan_lvp.so"}}))
    monkeypatch.setenv("VK_DRIVER_FILES", str(manifest))
    info = inspect_host()
    assert [i.manifest for i in info.vulkan.icds] == [str(manifest)]
    assert info.vulkan.icds[0].software
    why, _ = plan(cell("vulkan", info.os, info.arch), info)
    if info.vulkan.loader:
        assert why is None
    else:
        assert why == "the vulkan build cannot run here: no Vulkan loader"
    monkeypatch.setenv("VK_DRIVER_FILES", os.pathsep.join([str(tmp_path / "none.json")]))
    info = inspect_host()
    if info.vulkan.loader:
        assert plan(cell("vulkan", info.os, info.arch), info).why_not == (
            "the vulkan build cannot run here: loader found, no ICD"
        )
