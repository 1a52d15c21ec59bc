"""What llama.cpp's libraries are called, in every era and by every packager: the one table that
the static checks (any platform, read from the tree) and the loader (this host, by ctypes) share.

    libllama.so, libllama.so.0.0.N (GitHub, Linux; symlink chains since late 2025)
    libllama.b10361.so, libllama.vulkan.b10361.so, libllama.metal.b10361.dylib (npm)
    llama.dll, llama.b10361.dll (Windows)
    libggml-cpu-<variant>.so, ggml-cpu.dll (CPU backend, one per micro-architecture from b4435)
    libggml-<backend>.so (GPU backend plugins: vulkan, cuda, ...)

Never a role library: libllama-common.*, the ggml-<backend> plugins. Names are matched
case-insensitively (Windows file names are).
"""

from __future__ import annotations

import re
from pathlib import Path

EXT = {"linux": "so", "android": "so", "macos": "dylib", "windows": "dll"}
ROLES = ("ggml-base", "ggml", "llama")  # load order; ggml-base exists from b4435 on
GENERIC = "generic"  # the variant of a plain libggml-cpu: one CPU library, no variants
_ANY_EXT = "(?:so|dylib|dll)"

_SSE42 = ("sse4_2",)
_AVX = (*_SSE42, "avx")
_HASWELL = (*_AVX, "f16c", "fma", "avx2", "bmi2")
_SKYLAKEX = (*_HASWELL, "avx512f")
_ICELAKE = (*_SKYLAKEX, "avx512vbmi", "avx512_vnni")
# What each x86 CPU variant library is built with (ggml/src/CMakeLists.txt,
# GGML_CPU_ALL_VARIANTS), in /proc/cpuinfo spelling: the fallback when a variant library exports
# no ggml_backend_score, and the CPU flags worth reporting.
X86_VARIANT_NEEDS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": _SSE42,
    "sandybridge": _AVX,
    "ivybridge": (*_AVX, "f16c"),
    "piledriver": (*_AVX, "f16c", "fma"),
    "haswell": _HASWELL,
    "alderlake": (*_HASWELL, "avx_vnni"),
    "skylakex": _SKYLAKEX,
    "cannonlake": (*_SKYLAKEX, "avx512vbmi"),
    "cascadelake": (*_SKYLAKEX, "avx512_vnni"),
    "cooperlake": (*_SKYLAKEX, "avx512_vnni", "avx512_bf16"),
    "icelake": _ICELAKE,
    "zen4": (*_ICELAKE, "avx512_bf16"),
    "sapphirerapids": (*_ICELAKE, "avx512_bf16", "amx_tile", "amx_int8"),
}

_CPU_LIB = re.compile(rf"(?:lib)?ggml-cpu(?:-(?P<variant>.+?))?\.{_ANY_EXT}", re.IGNORECASE)
_BACKEND_LIB = re.compile(rf"(?:lib)?ggml-(?P<name>[a-z0-9_]+)\.{_ANY_EXT}", re.IGNORECASE)


def role_pattern(role: str, os: str | None = None) -> re.Pattern[str]:
    """The file names of one role (`llama`, `ggml`, `ggml-base`) in `os`'s naming, any OS's when
    None: an optional `lib`, the role, an optional `.<tag or flavour>` that does not start with
    `-` (so never libllama-common or libggml-cpu), the extension, trailing version numbers."""
    ext = EXT.get(os, "so") if os else _ANY_EXT
    return re.compile(rf"(?:lib)?{role}(?:\.[^-][^/]*?)?\.{ext}(?:\.\d+)*", re.IGNORECASE)


def find_libdir(tree: Path, os: str | None = None) -> Path | None:
    """The shallowest folder holding libllama (in `os`'s naming; any OS's when None), wherever an
    era's archive put it: build/bin/, llama-<tag>/, bins/<platform>/, or the flat root."""
    pattern = role_pattern("llama", os)
    hits = {p.parent for p in tree.rglob("*") if pattern.fullmatch(p.name)}
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def role_files(names: list[str], os: str | None = None) -> dict[str, str]:
    """Role → the file name that plays it among `names`, in load order; the first alphabetically
    where several do (`libllama.so` before `libllama.so.0`: the link before its target)."""
    out = {}
    for role in ROLES:
        pattern = role_pattern(role, os)
        found = sorted(n for n in names if pattern.fullmatch(n))
        if found:
            out[role] = found[0]
    return out


def cpu_variant_of(name: str) -> str | None:
    """`haswell` for libggml-cpu-haswell.so, `generic` for a plain libggml-cpu, None for a file
    that is not a CPU backend library."""
    m = _CPU_LIB.fullmatch(name)
    return (m["variant"] or GENERIC) if m else None


def backend_module_of(name: str) -> str | None:
    """`vulkan` for libggml-vulkan.so: a non-CPU backend plugin, else None."""
    m = _BACKEND_LIB.fullmatch(name)
    return m["name"].lower() if m and m["name"].lower() not in ("base", "cpu") else None


def is_core_ggml(name: str) -> bool:
    """libggml itself (the CPU backend is built into it before b4435)."""
    return role_pattern("ggml").fullmatch(name) is not None
