"""inspect-host: what this machine reports, which variant a host picks and why, and which ggml CPU
backend a real release loads here (and how to force another)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.host.choose import choose_variant, render
from harness.host.probe import Cuda, HostInfo, Icd, Vulkan, inspect_host
from harness.load.backends import (
    BUILT_IN,
    cpu_backend_choice,
    cpu_variants_in,
    score_variants,
    supported_by_flags,
    supported_variants,
)
from harness.load.loader import backend_modules, cpu_libraries, find_libdir
from harness.sources.assets import host_platform

# ---------------------------------------------------------------- this machine


def test_inspect_host_on_this_machine_is_sane_and_quick() -> None:
    t0 = time.perf_counter()
    info = inspect_host()
    assert time.perf_counter() - t0 < 5
    assert (info.os, info.arch) == host_platform()
    assert info.cores and info.cores >= 1
    assert info.usable_cores and 1 <= info.usable_cores <= info.cores
    assert info.cpu_features == sorted(set(info.cpu_features))
    if info.os == "linux":
        assert info.libc in ("glibc", "musl")
        if info.libc == "glibc":
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?", info.libc_version or "")
        if info.arch == "x64":
            assert {"sse2", "sse4_2"} <= set(info.cpu_features)
    if info.cuda.driver is None:
        assert info.cuda.driver_cuda is None
    for major, path in {**info.cuda.cudart, **info.cuda.cublas}.items():
        assert major.isdigit() and Path(path).name
    for icd in info.vulkan.icds:
        assert Path(icd.manifest).is_file()
        soft = re.compile(r"lvp|lavapipe|llvmpipe|swiftshader", re.IGNORECASE)
        assert icd.software == bool(soft.search(icd.name) or soft.search(icd.library or ""))
    assert info.notes == []
    json.dumps(info.to_json())  # plain data all the way down

    choice = choose_variant(info, ["cpu", "vulkan", "cuda-12.4"])
    text = render(info, choice)
    assert text.startswith(f"OS        {info.os} {info.arch}")
    assert f"variant   {choice.variant}" in text
    if not info.cuda.driver:
        assert "cuda-12.4: no CUDA driver" in choice.reasons
        assert choice.variant in ("cpu", "vulkan")


# ---------------------------------------------------------------- choosing, on made-up hosts

LVP = Icd("lvp_icd", "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "libvulkan_lvp.so", "1.3", True)
NV = Icd(
    "nvidia_icd", "/usr/share/vulkan/icd.d/nvidia_icd.json", "libGLX_nvidia.so.0", "1.4", False
)
RADV = Icd(
    "radeon_icd", "/usr/share/vulkan/icd.d/radeon_icd.json", "libvulkan_radeon.so", "1.3", False
)
X64_FLAGS = ["avx", "avx2", "bmi2", "f16c", "fma", "sse2", "sse4_2"]


def host(os: str = "linux", arch: str = "x64", **kw: Any) -> HostInfo:
    base = HostInfo(os, arch, "test", "glibc", "2.36", "a CPU", X64_FLAGS, 8, 8)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def driver(cuda: str | None = "12.8", **kw: Any) -> Cuda:
    return Cuda(driver="/usr/lib/x86_64-linux-gnu/libcuda.so.1", driver_cuda=cuda, **kw)


def test_no_gpu_at_all_picks_cpu() -> None:
    c = choose_variant(host(), ["cpu", "vulkan", "cuda-12.4"])
    assert c.variant == "cpu"
    assert c.usable == ["cpu"]
    assert c.reasons == [
        "cuda-12.4: no CUDA driver",
        "vulkan: no Vulkan loader",
        "cpu: always usable",
    ]


def test_cuda_driver_with_bundled_runtime_wins() -> None:
    c = choose_variant(host(cuda=driver()), ["cpu", "cuda-12.4"])
    assert c.variant == "cuda-12.4"
    assert c.reasons[0] == (
        "cuda-12.4: CUDA driver found (CUDA 12.8), runtime from the cudart companion"
    )
    assert c.summary() == c.reasons[0]


def test_driver_without_runtime_falls_to_software_vulkan_then_cpu() -> None:
    h = host(cuda=driver(None), vulkan=Vulkan("/usr/lib/libvulkan.so.1", [LVP]))
    c = choose_variant(h, ["cpu", "vulkan", "cuda-12.4"], cuda_runtime_bundled=False)
    assert c.variant == "cpu"
    assert c.usable == ["cpu", "vulkan"]  # software Vulkan is still usable, after cpu
    assert c.summary() == (
        "cuda-12.4: CUDA driver found, runtime missing → "
        "vulkan: loader and an ICD found (lvp_icd: software); software only, ranked after cpu → "
        "cpu: always usable"
    )


def test_software_vulkan_is_chosen_when_the_release_has_nothing_else() -> None:
    h = host(vulkan=Vulkan("/usr/lib/libvulkan.so.1", [LVP]))
    assert choose_variant(h, ["vulkan"]).variant == "vulkan"


def test_host_runtime_is_required_when_not_bundled() -> None:
    rt = driver(cudart={"12": "/x/libcudart.so.12"}, cublas={"12": "/x/libcublas.so.12"})
    c = choose_variant(host(cuda=rt), ["cuda-12.4", "cuda-13.1", "cpu"], cuda_runtime_bundled=False)
    assert c.variant == "cuda-12.4"
    assert c.reasons == [
        "cuda-12.4: CUDA driver found (CUDA 12.8), runtime 12 found",
        "cuda-13.1: CUDA driver found (CUDA 12.8), too old for CUDA 13.1",
        "cpu: always usable",
    ]
    only_cudart = driver(cudart={"12": "/x/libcudart.so.12"})
    c = choose_variant(host(cuda=only_cudart), ["cuda-12.4", "cpu"], cuda_runtime_bundled=False)
    assert c.reasons[0] == "cuda-12.4: CUDA driver found (CUDA 12.8), runtime missing"
    assert c.variant == "cpu"


def test_newest_cuda_the_driver_fully_supports_comes_first() -> None:
    c = choose_variant(host(cuda=driver("13.1")), ["cuda-12.4", "cuda-13.1", "cpu"])
    assert c.usable == ["cuda-13.1", "cuda-12.4", "cpu"]
    # an older minor of the same major runs (minor-version compatibility), after exact ones
    c = choose_variant(host(cuda=driver("12.2")), ["cuda-12.4", "cublas-cu11.7.1", "cpu"])
    assert c.usable == ["cublas-cu11.7.1", "cuda-12.4", "cpu"]
    assert c.reasons[1] == (
        "cuda-12.4: CUDA driver found (CUDA 12.2) (minor-version compatibility), "
        "runtime from the cudart companion"
    )


def test_hardware_vulkan_needs_a_gpu_device_node_on_linux() -> None:
    vk = Vulkan("/usr/lib/libvulkan.so.1", [RADV, LVP])
    with_gpu = choose_variant(host(vulkan=vk, gpu_nodes=["/dev/dri/renderD128"]), ["cpu", "vulkan"])
    assert with_gpu.variant == "vulkan"
    assert with_gpu.reasons[0] == (
        "vulkan: loader and 2 ICDs found (radeon_icd, lvp_icd: software)"
    )
    no_gpu = choose_variant(host(vulkan=vk), ["cpu", "vulkan"])
    assert no_gpu.variant == "cpu"
    assert no_gpu.reasons[0].endswith("; no GPU device node, so software only, ranked after cpu")
    assert choose_variant(host(vulkan=Vulkan("/l/libvulkan.so.1", [])), ["vulkan"]).reasons == [
        "vulkan: loader found, no ICD"
    ]


def test_preference_order_cuda_hip_vulkan_runtimes_cpu() -> None:
    h = host(
        cuda=driver(),
        hip="/opt/rocm/lib/libamdhip64.so.6",
        vulkan=Vulkan("/usr/lib/libvulkan.so.1", [NV]),
        gpu_nodes=["/dev/nvidia0"],
        sycl="/opt/intel/oneapi/redist/lib/libsycl.so.8",
    )
    c = choose_variant(h, ["cpu", "sycl-fp16", "vulkan", "rocm-7.2", "cuda-12.4", "openvino-2025"])
    assert c.usable == ["cuda-12.4", "rocm-7.2", "vulkan", "sycl-fp16", "cpu"]
    assert c.reasons[1:] == [
        "rocm-7.2: HIP runtime found (libamdhip64.so.6)",
        "vulkan: loader and an ICD found (nvidia_icd)",
        "sycl-fp16: SYCL runtime found (libsycl.so.8)",
        "openvino-2025: no OpenVINO runtime",
        "cpu: always usable",
    ]


def test_windows_hip_and_old_cpu_flavours() -> None:
    h = host("windows", hip=r"C:\Windows\System32\amdhip64_6.dll")
    c = choose_variant(h, ["hip-gfx1030", "avx512", "avx2", "avx", "noavx", "openblas"])
    assert c.variant == "hip-gfx1030"
    assert c.reasons[0] == (
        "hip-gfx1030: HIP runtime found (amdhip64_6.dll); "
        "built for gfx1030, the GPU's target is not probed"
    )
    assert "avx512: CPU lacks avx512f" in c.reasons
    assert c.usable == ["hip-gfx1030", "avx2", "avx", "openblas", "noavx"]
    c = choose_variant(host("windows"), ["hip-radeon", "avx2"])
    assert c.reasons == ["hip-radeon: no HIP runtime (libamdhip64)", "avx2: CPU has avx2"]


def test_macos_metal() -> None:
    mac = host(
        "macos", "arm64", libc="libSystem", metal="/System/Library/Frameworks/Metal.framework"
    )
    c = choose_variant(mac, ["metal", "kleidiai"])
    assert (c.variant, c.reasons[0]) == ("metal", "metal: Metal framework found")
    assert choose_variant(host("macos", "x64", metal=mac.metal), ["cpu"]).variant == "cpu"
    assert choose_variant(host("macos"), ["metal"]).reasons == ["metal: no Metal framework"]


def test_unknown_variants_are_never_chosen() -> None:
    c = choose_variant(host(), ["openeuler-910b-aclgraph"])
    assert c.variant is None
    assert c.reasons == ["openeuler-910b-aclgraph: not probed (unknown variant)"]
    assert c.summary() == c.reasons[0]
    assert "none of the offered variants can run here" in render(host(), c)


# ---------------------------------------------------------------- CPU variant files


def test_cpu_variant_names_from_files(tmp_path: Path) -> None:
    for name in [
        "libggml-base.so",
        "libggml.b10361.so",
        "libggml-cpu-haswell.so",
        "libggml-cpu-armv8.2_3.so",
        "libggml-cpu.so",
        "ggml-cpu-zen4.dll",
        "libggml-vulkan.so",
        "libggml-cuda.so",
        "libllama-common.so",
    ]:
        (tmp_path / name).write_bytes(b"")
    assert cpu_variants_in(tmp_path) == ["armv8.2_3", "generic", "haswell", "zen4"]
    assert [p.name for p in backend_modules(tmp_path)] == ["libggml-cuda.so", "libggml-vulkan.so"]


def test_flags_table() -> None:
    got = supported_by_flags(X64_FLAGS, ["x64", "haswell", "skylakex", "alderlake", "armv8.2_3"])
    assert got == {
        "x64": True,
        "haswell": True,
        "skylakex": False,
        "alderlake": False,
        "armv8.2_3": None,
    }


# ---------------------------------------------------------------- real releases


@pytest.fixture(scope="module")
def libdirs() -> dict[str, Path]:
    from tests.realbuilds import provision

    got = provision(["b10361", "b6673", "b3889"])
    return {tag: find_libdir(Path(r.stored.path)) for tag, r in got.items() if r.stored}


@pytest.mark.parametrize("tag", ["b10361", "b6673"])
def test_release_picks_its_best_supported_cpu_variant(libdirs: dict[str, Path], tag: str) -> None:
    libdir = libdirs[tag]
    choice = cpu_backend_choice(libdir)
    assert choice["error"] is None
    shipped = cpu_variants_in(libdir)
    assert choice["available"] == shipped
    assert choice["variant"] in shipped
    assert choice["loaded"] == [choice["variant"]]
    assert choice["library"] == cpu_libraries(libdir)[choice["variant"]].name
    assert choice["backends"] == "load_all_from_path"
    assert any(d["backend"] == "CPU" for d in choice["devices"])

    scores = score_variants(libdir)
    assert scores["method"] == "ggml_backend_score"
    supported = supported_variants(libdir)
    assert set(supported) <= set(shipped)
    assert choice["variant"] in supported
    best = max(d["score"] for d in scores["variants"].values())
    assert scores["variants"][choice["variant"]]["score"] == best
    # the fallback table agrees with ggml's own scores on this CPU
    from harness.host.probe import cpu_features

    by_flags = supported_by_flags(cpu_features()[1], shipped)
    assert {v for v, ok in by_flags.items() if ok} == set(supported)


def test_b3889_has_the_cpu_backend_built_in(libdirs: dict[str, Path]) -> None:
    choice = cpu_backend_choice(libdirs["b3889"])
    assert choice["error"] is None
    assert (choice["variant"], choice["available"], choice["backends"]) == (BUILT_IN, [], "linked")
    assert choice["library"] == "libggml.so"
    assert supported_variants(libdirs["b3889"]) == []
    assert score_variants(libdirs["b3889"])["method"] == "none"


@pytest.mark.parametrize("tag", ["b10361", "b6673"])
def test_forcing_a_variant_loads_that_library_only(libdirs: dict[str, Path], tag: str) -> None:
    libdir = libdirs[tag]
    chosen = cpu_backend_choice(libdir)["variant"]
    other = next(v for v in reversed(supported_variants(libdir)) if v != chosen)
    lib = cpu_libraries(libdir)[other]

    forced = cpu_backend_choice(libdir, force=other)
    assert forced["error"] is None
    assert (forced["variant"], forced["loaded"], forced["library"]) == (other, [other], lib.name)
    assert forced["mapped"] == [lib.name]
    assert forced["backends"] == f"ggml_backend_load(cpu-{other})"

    # GGML_BACKEND_PATH does not force: it adds a second CPU backend after the best one
    env = cpu_backend_choice(libdir, env={"GGML_BACKEND_PATH": str(lib)})
    assert env["loaded"] == [chosen, other]
    assert env["variant"] == chosen

    unsupported = [v for v, d in score_variants(libdir)["variants"].items() if not d["supported"]]
    if unsupported:
        refused = cpu_backend_choice(libdir, force=unsupported[0])
        assert refused["variant"] is None
        assert "ggml refused" in refused["error"]


def test_loading_the_harness_way_picks_the_same_variant(
    libdirs: dict[str, Path], tmp_path: Path
) -> None:
    from tests.realbuilds import api_of

    api_json = tmp_path / "api.json"
    api_json.write_text(api_of("b10361").to_json(), encoding="utf-8")
    plain = cpu_backend_choice(libdirs["b10361"])
    full = cpu_backend_choice(libdirs["b10361"], api_json)
    assert full["error"] is None
    assert full["variant"] == plain["variant"]
    assert full["backends"] == "load_all_from_path"
