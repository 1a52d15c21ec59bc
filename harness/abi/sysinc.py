"""The C library headers that llama.h includes, for a libclang that ships none.

The `libclang` wheel has no resource folder, so `<stdbool.h>`, `<stddef.h>`, `<stdint.h>` and
`<stdio.h>` are not found. For the host we borrow the system compiler's folder (its own
`stddef.h` & co.; libclang finds the system headers by itself). For another target, or a host
without a compiler, we hand clang minimal headers of our own as in-memory files, built on the
macros clang predefines for every target (`__SIZE_TYPE__`, `__INT64_TYPE__` ...), so they are
right for any triple and never mix in the host's libc.
"""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SHIM_DIR", "compiler_include_dir", "host_triple", "shim_files"]

SHIM_DIR = "/__llama_harness_libc__"  # virtual: the files exist only in clang's memory

_INTS = "".join(
    f"typedef __{s}INT{n}_TYPE__ {s.lower()}int{n}_t;\n" for s in ("", "U") for n in (8, 16, 32, 64)
)
_LIMITS = "".join(
    f"#define INT{n}_MAX __INT{n}_MAX__\n#define INT{n}_MIN (-__INT{n}_MAX__ - 1)\n"
    f"#define UINT{n}_MAX __UINT{n}_MAX__\n"
    for n in (8, 16, 32, 64)
)
_SHIMS = {
    "stddef.h": """\
typedef __SIZE_TYPE__ size_t;
typedef __PTRDIFF_TYPE__ ptrdiff_t;
#ifndef __cplusplus
typedef __WCHAR_TYPE__ wchar_t;
#endif
typedef struct { long long __ll; long double __ld; } max_align_t;
#define NULL ((void *)0)
#define offsetof(t, m) __builtin_offsetof(t, m)
""",
    "stdbool.h": """\
#ifndef __cplusplus
#define bool _Bool
#define true 1
#define false 0
#endif
#define __bool_true_false_are_defined 1
""",
    "stdint.h": _INTS
    + """\
typedef __INTPTR_TYPE__ intptr_t;
typedef __UINTPTR_TYPE__ uintptr_t;
typedef __INTMAX_TYPE__ intmax_t;
typedef __UINTMAX_TYPE__ uintmax_t;
#define SIZE_MAX __SIZE_MAX__
"""
    + _LIMITS,
    "stdarg.h": """\
typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_end(ap) __builtin_va_end(ap)
#define va_arg(ap, t) __builtin_va_arg(ap, t)
#define va_copy(d, s) __builtin_va_copy(d, s)
""",
    "stdio.h": """\
#include <stddef.h>
#include <stdarg.h>
typedef struct _IO_FILE FILE;
""",
}
for _name in ("stdlib.h", "string.h", "assert.h", "limits.h", "math.h", "inttypes.h"):
    _SHIMS.setdefault(_name, "#include <stddef.h>\n#include <stdint.h>\n")


def shim_files() -> list[tuple[str, str]]:
    """(path, contents) pairs for libclang's `unsaved_files`, each with an include guard."""
    out = []
    for name, body in _SHIMS.items():
        guard = "_LLAMA_HARNESS_" + name.replace(".", "_").upper()
        out.append((f"{SHIM_DIR}/{name}", f"#ifndef {guard}\n#define {guard}\n{body}#endif\n"))
    return out


@functools.lru_cache(maxsize=1)
def compiler_include_dir() -> Path | None:
    """The system compiler's own header folder (with stddef.h), if a compiler is installed."""
    probes = [[cc, "-print-file-name=include"] for cc in ("cc", "gcc", "clang") if shutil.which(cc)]
    if shutil.which("clang"):
        probes.append(["clang", "-print-resource-dir"])
    for cmd in probes:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        out = done.stdout.strip()
        if done.returncode != 0 or not out:
            continue
        for cand in (Path(out), Path(out) / "include"):
            if (cand / "stddef.h").is_file() and (cand / "stdbool.h").is_file():
                return cand
    return None


@functools.lru_cache(maxsize=1)
def host_triple() -> str:
    """The clang triple whose ABI this Python's ctypes speaks."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686"}.get(
        machine, machine
    )
    if sys.maxsize <= 2**32 and arch == "x86_64":
        arch = "i686"
    if sys.platform == "win32":
        return f"{arch}-pc-windows-msvc"
    if sys.platform == "darwin":
        return f"{'arm64' if arch == 'aarch64' else arch}-apple-darwin"
    if sys.platform.startswith("linux"):
        return f"{arch}-{'pc' if arch in ('x86_64', 'i686') else 'unknown'}-linux-gnu"
    return f"{arch}-unknown-{sys.platform}"
