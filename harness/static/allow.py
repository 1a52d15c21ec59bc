"""Which libraries a build may need from outside its own tree.

A dependency that is neither shipped in the tree nor on these lists is one a user's machine may
not have (a Homebrew libomp, a build machine's absolute path, a libcurl only some distros
install): the cell fails and names it. The lists hold three kinds:

- system: the C/C++ runtime and OS libraries every supported machine has. On macOS every path
  under /usr/lib/ and /System/Library/ is allowed wholesale: SIP makes them OS-owned, so a
  framework there is there on every Mac (the minimum macOS version is the `macos_min` check).
- driver: what a GPU driver installs (libcuda, nvcuda.dll, libvulkan, vulkan-1.dll, OpenCL),
  never shipped by an application.
- runtime: a GPU toolkit's runtime, allowed only for the variant that needs it. llama.cpp ships
  the CUDA runtime (cudart, cublas, cublasLt) for Windows as the `cudart-llama-bin-*` companion
  asset and not at all for Linux; node-llama-cpp ships it for neither. So the harness does not
  require it in the tree; the `dependencies` fact `external` shows it as "runtime" so a report
  says what the user must install. ROCm/HIP, SYCL (oneAPI) and OpenVINO likewise.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

__all__ = ["classify"]

_SYSTEM = {
    "linux": [
        r"libc\.so\.6",
        r"libm\.so\.6",
        r"libstdc\+\+\.so\.6",
        r"libgcc_s\.so\.1",
        r"libatomic\.so\.1",
        r"ld-linux[-\w.]*\.so\.\d+",
        r"ld64\.so\.\d+",
        r"libpthread\.so\.0",
        r"libdl\.so\.2",
        r"librt\.so\.1",
        r"libgomp\.so\.1",
    ],
    "android": [r"lib(c|m|dl|log|android|mediandk)\.so"],
    "macos": [r"/usr/lib/.+", r"/System/Library/.+"],
    "windows": [
        r"(kernel|user|advapi|shell|ole|oleaut|ws2_|gdi|crypt|secur|comdlg)32\.dll",
        r"(ntdll|bcrypt|shlwapi|version|dbghelp|psapi|iphlpapi|userenv|setupapi|cfgmgr32)\.dll",
        r"(dxgi|d3d12|dxcore|winmm)\.dll",
        r"(msvcp|vcruntime|concrt|vcomp)140(_\w+)?\.dll",
        r"ucrtbase\.dll",
        r"(api|ext)-ms-win-[\w-]+\.dll",
        r"node\.exe",  # node-llama-cpp's addon delay-loads its host process
    ],
}
_DRIVER = {
    "linux": [r"libcuda\.so\.1", r"libvulkan\.so\.1", r"libOpenCL\.so\.1"],
    "android": [r"libvulkan\.so", r"libOpenCL\.so"],
    "macos": [],
    "windows": [r"nvcuda\.dll", r"vulkan-1\.dll", r"OpenCL\.dll"],
}
# variant prefix → the toolkit runtime that variant links against
_RUNTIME = {
    "cuda": [
        r"libcudart\.so\.\d+",
        r"libcublas(Lt)?\.so\.\d+",
        r"cudart64_\d+\.dll",
        r"cublas(Lt)?64_\d+\.dll",
    ],
    "rocm": [r"lib(amdhip64|hipblas|hipblaslt|rocblas|hsa-runtime64)\.so(\.\d+)*"],
    "hip": [r"(amdhip64|hipblas|hipblaslt|rocblas)(_\d+)?\.dll"],
    "sycl": [
        r"lib(sycl|svml|imf|intlc|irng|ur_loader|dnnl|tbb)\.so(\.\d+)*",
        r"libmkl_\w+\.so(\.\d+)*",
        r"(sycl\d*|svml_dispmd|libmmd|ur_loader|ur_adapter_\w+|mkl_\w+)(\.\d+)?\.dll",
    ],
    "openvino": [r"libopenvino\w*\.so(\.[\d.]+)*", r"openvino\w*\.dll", r"libtbb\.so\.\d+"],
}


def _matches(patterns: Iterable[str], name: str, fold: bool) -> bool:
    flags = re.IGNORECASE if fold else 0
    return any(re.fullmatch(p, name, flags) for p in patterns)


def classify(name: str, os: str, variant: str, extra: Iterable[str] = ()) -> str | None:
    """The kind of a dependency from outside the tree: "system", "driver", "runtime", or
    "allowed" (a caller's glob in `extra`); None when it is on no list. Windows names compare
    case-insensitively."""
    fold = os == "windows"
    if _matches(_SYSTEM.get(os, []), name, fold):
        return "system"
    if _matches(_DRIVER.get(os, []), name, fold):
        return "driver"
    family = next((f for f in _RUNTIME if variant.startswith(f)), None)
    if family and _matches(_RUNTIME[family], name, fold):
        return "runtime"
    base = name.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(base.lower() if fold else base, g) for g in extra):
        return "allowed"
    return None
