"""Which builds this host runs: the one place that decides, for `inspect-host` (which variant of
a release to pick), the `download --host` cell, and `run` (which cells run here, and what their
child needs).

Which variant, in preference order (`choose_variant`):

1. metal: the Metal framework is there (macOS).
2. cuda-X: the CUDA driver is found and supports CUDA X's major version (a newer major is too
   new; an older minor of the same major runs through CUDA's minor-version compatibility and is
   ranked after the builds the driver fully supports). The runtime (cudart + cuBLAS of major X):
   GitHub releases ship it in the `cudart-llama-bin-...` companion that the harness provisions
   with the binary, so by default (`cuda_runtime_bundled=True`) only the driver matters; with
   `False` the host must have libcudart and libcublas of that major.
3. rocm-* / hip-*: the HIP runtime (libamdhip64 / amdhip64*.dll) is found.
4. vulkan (and the old Vulkan-based kompute): the loader and at least one ICD. An ICD that is
   a software rasteriser (Mesa lavapipe/llvmpipe, SwiftShader) runs on the CPU, slower than
   ggml's own CPU code, so a host with only software ICDs ranks vulkan after cpu: it is still
   chosen when the release has no CPU build.
5. sycl-*, openvino-*, opencl-*: only when their runtime is found.
6. cpu, and the old CPU flavours (avx512 > avx2 > avx > noavx; openblas, ...) when the CPU has
   the instructions they need.
Variants this module does not know are listed as not probed and never chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from harness.config.matrix import Cell
from harness.host import probe
from harness.host.probe import HostInfo
from harness.sources.assets import cuda_version


@dataclass
class Choice:
    variant: str | None  # None when nothing the release offers can run here
    reasons: list[str]  # one per variant, in preference order: "<variant>: <why>"
    usable: list[str]  # the variants that can run, best first

    def summary(self) -> str:
        """The reasons up to the chosen variant, like `cuda-12.4: ... → vulkan: ... → cpu`."""
        shown = []
        for r in self.reasons:
            shown.append(r)
            if self.variant is not None and r.split(":", 1)[0] == self.variant:
                break
        return " → ".join(shown)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


_CPU_FLAVOURS = {  # old CPU build names -> the feature they need (None: none)
    "cpu": None,
    "avx512": "avx512f",
    "avx2": "avx2",
    "avx": "avx",
    "noavx": None,
}
_CPU_ORDER = ["cpu", "avx512", "avx2", "avx", "openblas", "blas", "noavx"]
_CPU_LIKE = {"openblas", "blas", "llvm", "msvc", "kleidiai", "x64", "arm64"}
_RUNTIMES = {"sycl": "SYCL runtime", "openvino": "OpenVINO runtime", "opencl": "OpenCL loader"}
_GPU_NODES = ("/dev/dri/renderD", "/dev/nvidia", "/dev/dxg")  # /dev/dxg: WSL's GPU
METAL, CUDA, HIP, VULKAN, RUNTIME, CPU, SOFTWARE, UNKNOWN = range(8)


@dataclass
class _Verdict:
    variant: str
    group: int  # where it is considered
    why: str
    rank: tuple[int, ...] | None  # order within the group when usable; None: it cannot run
    demoted: bool = False  # usable, but ranked after cpu


def _base(path: str) -> str:
    """A path's file name, whichever OS wrote it."""
    return re.split(r"[\\/]", path)[-1]


def _ver(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def _group(variant: str) -> int:
    v = variant.lower()
    if v == "metal":
        return METAL
    prefixes = {CUDA: ("cuda", "cublas"), HIP: ("rocm", "hip"), VULKAN: ("vulkan", "kompute")}
    for g, pre in prefixes.items():
        if v.startswith(pre):
            return g
    if v.split("-")[0] in _RUNTIMES:
        return RUNTIME
    return CPU if v in _CPU_FLAVOURS or v in _CPU_LIKE else UNKNOWN


def _judge_cuda(host: HostInfo, variant: str, bundled: bool) -> tuple[str, tuple[int, ...] | None]:
    c = host.cuda
    if not c.driver:
        return "no CUDA driver", None
    want = cuda_version(variant)
    have = c.driver_cuda
    found = f"CUDA driver found (CUDA {have})" if have else "CUDA driver found"
    compat, level = "", 0
    if want and have:
        if _ver(have)[:1] < _ver(want)[:1]:
            return f"{found}, too old for CUDA {want}", None
        if _ver(have) < _ver(want):
            compat, level = " (minor-version compatibility)", 1
    major = want.split(".")[0] if want else None
    if bundled:
        runtime = "runtime from the cudart companion"
    elif major is None:
        runtime = "runtime version unknown"
    elif major in c.cudart and major in c.cublas:
        runtime = f"runtime {major} found"
    else:
        return f"{found}, runtime missing", None
    newest_first = tuple(-x for x in _ver(want)) if want else (0,)
    return f"{found}{compat}, {runtime}", (level, *newest_first)


def _judge_vulkan(host: HostInfo) -> tuple[str, tuple[int, ...] | None, bool]:
    vk = host.vulkan
    if not vk.loader:
        return "no Vulkan loader", None, False
    if not vk.icds:
        return "loader found, no ICD", None, False
    names = ", ".join(i.name + (": software" if i.software else "") for i in vk.icds)
    found = (
        f"loader and {'an ICD' if len(vk.icds) == 1 else f'{len(vk.icds)} ICDs'} found ({names})"
    )
    if not vk.hardware:
        return f"{found}; software only, ranked after cpu", (0,), True
    if host.os == "linux" and not any(n.startswith(_GPU_NODES) for n in host.gpu_nodes):
        # Mesa installs every vendor's ICD; without a device node none of them finds a GPU
        return f"{found}; no GPU device node, so software only, ranked after cpu", (0,), True
    return found, (0,), False


def _judge(host: HostInfo, variant: str, bundled: bool) -> _Verdict:
    v = variant.lower()
    g = _group(v)
    rank: tuple[int, ...] | None = None
    demoted = False
    if g == METAL:
        why, rank = ("Metal framework found", (0,)) if host.metal else ("no Metal framework", None)
    elif g == CUDA:
        why, rank = _judge_cuda(host, v, bundled)
    elif g == HIP:
        why = "no HIP runtime (libamdhip64)"
        if host.hip:
            target = re.search(r"gfx\w+", v)
            extra = f"; built for {target[0]}, the GPU's target is not probed" if target else ""
            why, rank = f"HIP runtime found ({_base(host.hip)}){extra}", (0,)
    elif g == VULKAN:
        why, rank, demoted = _judge_vulkan(host)
    elif g == RUNTIME:
        kind = v.split("-")[0]
        lib = {"sycl": host.sycl, "openvino": host.openvino, "opencl": host.opencl}[kind]
        why = f"{_RUNTIMES[kind]} found ({_base(lib)})" if lib else f"no {_RUNTIMES[kind]}"
        rank = (0,) if lib else None
    elif g == CPU:
        order = (_CPU_ORDER.index(v) if v in _CPU_ORDER else len(_CPU_ORDER),)
        need = _CPU_FLAVOURS.get(v)
        if need is None:
            why, rank = "always usable", order
        elif not host.cpu_features:
            why = f"needs {need}; CPU features unknown"
        elif need in host.cpu_features:
            why, rank = f"CPU has {need}", order
        else:
            why = f"CPU lacks {need}"
    else:
        why = "not probed (unknown variant)"
    return _Verdict(variant, g, why, rank, demoted)


def choose_variant(
    host: HostInfo, variants: Iterable[str], *, cuda_runtime_bundled: bool = True
) -> Choice:
    """Which of a release's variants (for this os/arch) this host should run, and why.

    `cuda_runtime_bundled`: the CUDA runtime comes with the build (GitHub's cudart companion,
    which the harness provisions with every cuda cell); False requires it on the host.
    """
    verdicts = [_judge(host, v, cuda_runtime_bundled) for v in dict.fromkeys(variants)]
    order = {id(v): i for i, v in enumerate(verdicts)}

    def considered(v: _Verdict) -> tuple[Any, ...]:
        return (v.group, v.rank or (99,), order[id(v)])

    def preferred(v: _Verdict) -> tuple[Any, ...]:
        return (SOFTWARE if v.demoted else v.group, v.rank, order[id(v)])

    verdicts.sort(key=considered)
    usable = [v.variant for v in sorted((v for v in verdicts if v.rank is not None), key=preferred)]
    return Choice(
        usable[0] if usable else None, [f"{v.variant}: {v.why}" for v in verdicts], usable
    )


# ---------------------------------------------------------------- what runs here

GPU_LAYERS = 99  # every layer offloaded


class Plan(NamedTuple):
    """Whether this host runs a cell, and what the cell's child then needs (a pair, so that
    `why, needs = plan(cell, host)` reads)."""

    why_not: str | None  # None: it runs here
    needs: dict[str, Any]  # gpu_layers, env, gpu


def plan(cell: Cell, host: HostInfo | None = None) -> Plan:
    """Whether `cell` runs on this host (`host`: probed when None), by the same verdict that
    `choose_variant` gives, and what its child needs.

    GPU builds run with every layer offloaded where the host has what they need: Metal; Vulkan
    with its loader and an ICD (a software one such as Mesa's lavapipe counts:
    GGML_VK_VISIBLE_DEVICES=0 makes ggml accept a CPU-type device); CUDA with a driver new
    enough for the build (the runtime comes with the build's cudart companion). HIP, SYCL,
    OpenVINO and OpenCL builds are probed but not run yet: the child does not set them up.
    """
    host = host or probe.inspect_host()
    if (cell.os, cell.arch) != (host.os, host.arch):
        return Plan(f"built for {cell.os}/{cell.arch}; this host is {host.os}/{host.arch}", {})
    v = _judge(host, cell.variant, bundled=True)
    if v.rank is None:
        return Plan(f"the {cell.variant} build cannot run here: {v.why}", {})
    if v.group == CPU:
        return Plan(None, {})
    if v.group == METAL:
        return Plan(None, {"gpu_layers": GPU_LAYERS})
    if v.group == VULKAN:
        env = {"GGML_VK_VISIBLE_DEVICES": "0"}
        return Plan(None, {"gpu_layers": GPU_LAYERS, "env": env, "gpu": "vulkan"})
    if v.group == CUDA:
        return Plan(None, {"gpu_layers": GPU_LAYERS, "gpu": "cuda"})
    return Plan(f"the harness does not run {cell.variant} builds yet ({v.why})", {})


# ---------------------------------------------------------------- text


def render(host: HostInfo, choice: Choice | None = None, of: str | None = None) -> str:
    """The text of `llama-harness inspect-host`: the host, then the variant it would pick (`of`:
    which release that is, when the user named none)."""
    lines = [probe.render(host)]
    if choice is not None:
        variant = choice.variant or "none of the offered variants can run here"
        lines.append(f"variant   {variant}" + (f" (of {of})" if of else ""))
        lines += [f"          {r}" for r in choice.reasons]
    return "\n".join(lines)
