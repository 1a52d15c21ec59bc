"""Which ggml CPU backend a release picks on this CPU, which ones it could run, and forcing one.

From b4435 an x86-64 release ships its CPU code as one library per micro-architecture
(`libggml-cpu-haswell.so`, `-icelake`, `-zen4`, ...). `ggml_backend_load_all_from_path` dlopens
each, asks its `ggml_backend_score()` (0: this CPU cannot run it; more features, higher score),
keeps the best and registers it. Before that (b3889) the CPU code is linked into libggml:
"built in".

Everything that loads a release runs in a child process (`python -m harness.load.backends SPEC`,
started through `harness.load.child.launch`): one release per process, since every release has
the SONAME libggml-base.so. The child loads the release with `harness.load.loader` (`load`, or
`load_ggml` for ggml alone), the same sequence the suites use.

Which library got loaded: the CPU backend's registry entry (`ggml_backend_reg_t`) is a static
object inside the library that registered it, so `dladdr` (Windows: `GetModuleHandleExW`) on
that pointer names the file. /proc/self/maps is not enough: b4435 leaves a scored-but-rejected
variant mapped (seen: icelake chosen, sandybridge still mapped).

Forcing a variant (checked on b4435, b6673, b10361): `GGML_BACKEND_PATH` does NOT force one.
`load_all_from_path` still loads the best variant and then loads the GGML_BACKEND_PATH library
as a second CPU backend (b6673 and b10361 register two "CPU" backends, and llama.cpp uses the
first); b4435 ignores the variable. What works: skip `load_all_from_path` and call
`ggml_backend_load(<path of that libggml-cpu-*.so>)` (exported by libggml since b4435), plus
`ggml_backend_load` for each non-CPU backend module you still want: `loader.force_cpu_variant()`.
ggml refuses (returns NULL) a variant whose score is 0 on this CPU.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.host.probe import cpu_features
from harness.load.child import Child, Finished, child_main, launch
from harness.load.loader import backend_modules as backend_modules  # re-exported
from harness.load.loader import (
    c_function,
    cpu_libraries,
    library_paths,
    load,
    load_ggml,
    preload,
)
from harness.load.loader import force_cpu_variant as force_cpu_variant  # re-exported
from harness.static.names import GENERIC, X86_VARIANT_NEEDS, cpu_variant_of, is_core_ggml

MODULE = "harness.load.backends"
BUILT_IN = "built in"


# ---------------------------------------------------------------- files


def cpu_variants_in(libdir: Path) -> list[str]:
    """The variants shipped (`libggml-cpu-<name>`); `generic` for a plain libggml-cpu; [] when
    the CPU code is built into libggml."""
    return sorted(cpu_libraries(libdir))


def supported_by_flags(features: list[str], variants: list[str]) -> dict[str, bool | None]:
    """Whether this CPU runs each variant by the flags table; None for a variant not in it."""
    have = set(features)
    return {
        v: (set(X86_VARIANT_NEEDS[v]) <= have if v in X86_VARIANT_NEEDS else None) for v in variants
    }


# ---------------------------------------------------------------- ctypes, in the child


def _module_of(address: int) -> str | None:
    """The file of the loaded module that holds `address`."""
    if not address:
        return None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        from ctypes import wintypes

        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        hmod = wintypes.HMODULE()
        # FROM_ADDRESS | UNCHANGED_REFCOUNT
        if not k32.GetModuleHandleExW(0x4 | 0x2, ctypes.c_void_p(address), ctypes.byref(hmod)):
            return None
        buf = ctypes.create_unicode_buffer(32768)
        n = k32.GetModuleFileNameW(hmod, buf, len(buf))
        return buf.value[:n] or None

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        ]

    # int dladdr(const void *addr, Dl_info *info);
    dladdr = c_function(
        ctypes.CDLL(None), "dladdr", ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(DlInfo)
    )
    info = DlInfo()
    if dladdr is None or not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _mapped_cpu_libs() -> list[str]:
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    names = {Path(p).name for p in re.findall(r"(/\S+)$", maps, re.M)}
    return sorted(n for n in names if cpu_variant_of(n))


def _registry(ggml: ctypes.CDLL) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(backends, devices) from ggml's registry: name and library of each backend; name,
    description and backend of each device."""
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    # size_t ggml_backend_reg_count(void); ggml_backend_reg_t ggml_backend_reg_get(size_t);
    # const char * ggml_backend_reg_name(ggml_backend_reg_t);  and the same for devices
    reg_count = c_function(ggml, "ggml_backend_reg_count", sz)
    reg_get = c_function(ggml, "ggml_backend_reg_get", vp, sz)
    reg_name = c_function(ggml, "ggml_backend_reg_name", cp, vp)
    dev_count = c_function(ggml, "ggml_backend_dev_count", sz)
    dev_get = c_function(ggml, "ggml_backend_dev_get", vp, sz)
    dev_name = c_function(ggml, "ggml_backend_dev_name", cp, vp)
    dev_desc = c_function(ggml, "ggml_backend_dev_description", cp, vp)
    dev_reg = c_function(ggml, "ggml_backend_dev_backend_reg", vp, vp)

    def text(b: bytes | None) -> str | None:
        return b.decode("utf-8", "replace") if b is not None else None

    regs: list[dict[str, Any]] = []
    if reg_count and reg_get and reg_name:
        for i in range(reg_count()):
            reg = reg_get(i)
            regs.append({"name": text(reg_name(reg)), "library": _module_of(reg or 0)})
    devices: list[dict[str, Any]] = []
    if dev_count and dev_get and dev_name and dev_desc:
        for i in range(dev_count()):
            dev = dev_get(i)
            backend = text(reg_name(dev_reg(dev))) if dev_reg and reg_name else None
            devices.append(
                {
                    "name": text(dev_name(dev)),
                    "description": text(dev_desc(dev)),
                    "backend": backend,
                }
            )
    return regs, devices


def _choice(child: Child) -> dict[str, Any]:
    """Load the release (with its ABI: exactly as the suites do; without: ggml alone) and say
    what ggml registered."""
    spec = child.spec
    libdir = Path(spec["libdir"])
    log: list[str] = []

    def sink(_level: int, text: str) -> None:
        log.append(text)

    if spec.get("api"):
        api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))
        loaded = load(libdir, api, sink)
        mode = loaded.backends
        ggml = ctypes.CDLL(str(library_paths(libdir)["ggml"]), mode=ctypes.RTLD_GLOBAL)
    else:
        ggml, mode, _keep = load_ggml(libdir, sink, spec.get("force"))
    regs, devices = _registry(ggml)
    lines = "".join(log).splitlines()
    return {
        "backends": mode,
        "regs": regs,
        "devices": devices,
        "mapped": _mapped_cpu_libs(),
        "log": [ln for ln in lines if "backend" in ln][-20:],
    }


def _score(child: Child) -> dict[str, Any]:
    """Each variant's own ggml_backend_score(), one progress step per variant: a variant whose
    loading kills the child is the step it died in."""
    libdir = Path(child.spec["libdir"])
    preload(libdir, ("ggml-base",))
    scores: dict[str, int | None] = {}
    for variant, path in cpu_libraries(libdir).items():
        child.start(variant)
        lib = ctypes.CDLL(str(path))
        score = c_function(lib, "ggml_backend_score", ctypes.c_int)  # int ggml_backend_score(void);
        scores[variant] = score() if score else None
        child.done(variant, score=scores[variant])
    return {"scores": scores}


def body(child: Child) -> dict[str, Any]:
    return _score(child) if child.spec.get("score") else _choice(child)


# ---------------------------------------------------------------- the parent side


def _run_child(
    spec: dict[str, Any], timeout: float, env: dict[str, str] | None, name: str
) -> Finished:
    """How the probe went (its result is None when it wrote none). Its folder is a fresh
    temporary one: the probes are questions, not records."""
    with tempfile.TemporaryDirectory(prefix="llama-harness-backends-") as tmp:
        ran = launch(
            MODULE, spec, Path(tmp), timeout=timeout, env=env, name=name,
            drop_env=("GGML_BACKEND_PATH",),
        )  # fmt: skip
    return ran


def cpu_backend_choice(
    libdir: Path,
    api_json: Path | None = None,
    timeout: float = 60,
    *,
    force: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Which CPU backend the release registers on this CPU, loaded in a child process.

    Without `api_json` only ggml is loaded (ggml-base, ggml, then load_all_from_path); with it
    the release is loaded exactly as the suites load it (`harness.load.loader.load`). `force` loads
    that variant with `force_cpu_variant` instead. The child's environment is this one without
    GGML_BACKEND_PATH, updated with `env`. Never raises for the release's sake: a failure is in
    "error".

    Returns {"variant": <variant> | "built in" | None, "library": file name | None,
    "loaded": [variants of every CPU backend registered, the one llama.cpp uses first],
    "mapped": [libggml-cpu-* files mapped (Linux)], "devices": [{"name", "description",
    "backend"}], "available": cpu_variants_in(libdir), "backends": how they were loaded,
    "log": ggml's backend log lines, "error": None | str}.
    """
    libdir = Path(libdir)
    result: dict[str, Any] = {
        "variant": None,
        "library": None,
        "loaded": [],
        "mapped": [],
        "devices": [],
        "available": cpu_variants_in(libdir),
        "backends": None,
        "log": [],
        "error": None,
    }
    if api_json is not None and force is not None:
        raise ValueError("force loads ggml only: give api_json or force, not both")
    spec = {"libdir": str(libdir), "api": str(api_json) if api_json else None, "force": force}
    ran = _run_child(spec, timeout, env, "choice")
    data = ran.result
    if data is None:
        result["error"] = ran.error or "the child reported nothing"
        return result
    result.update({k: data[k] for k in ("backends", "devices", "mapped", "log")})
    result["error"] = ran.error
    cpu_files = [Path(r["library"] or "").name for r in data["regs"] if r["name"] == "CPU"]
    result["loaded"] = [
        cpu_variant_of(f) or (BUILT_IN if is_core_ggml(f) else f) for f in cpu_files
    ]
    if cpu_files:
        result["library"] = cpu_files[0] or None
        result["variant"] = result["loaded"][0]
    elif data["mapped"]:  # no registry to ask
        result["library"] = data["mapped"][0]
        result["variant"] = cpu_variant_of(data["mapped"][0])
    elif not result["available"]:
        result["variant"] = BUILT_IN
    return result


def score_variants(libdir: Path, timeout: float = 60) -> dict[str, Any]:
    """Each shipped CPU variant's verdict on this CPU.

    Method: the variant's own `ggml_backend_score()` (what ggml uses to choose), dlopened in a
    child process; for a variant that exports none, the flags table (X86_VARIANT_NEEDS against
    this CPU's features); a variant whose loading killed the child is unsupported ("crashed"),
    and those after it fall back to the table.

    Returns {"method": "ggml_backend_score" | "cpu flags" | "mixed" | "none", "variants":
    {variant: {"score": int | None, "supported": bool | None, "method": ...}}, "error": ...}.
    """

    variants = cpu_variants_in(libdir)
    out: dict[str, dict[str, Any]] = {}
    error = None
    if variants:
        ran = _run_child({"libdir": str(libdir), "score": True}, timeout, None, "score")
        error = ran.error
        for variant, facts in ran.done.items():
            if facts.get("score") is not None:
                score = int(facts["score"])
                out[variant] = {
                    "score": score,
                    "supported": score > 0,
                    "method": "ggml_backend_score",
                }
        if ran.running is not None:  # loading it killed the child
            out[ran.running] = {"score": None, "supported": False, "method": "crashed"}
    rest = [v for v in variants if v not in out]
    if rest:
        by_flags = supported_by_flags(cpu_features()[1], rest)
        for v in rest:
            known = by_flags[v]
            method = "cpu flags" if known is not None else "unknown"
            if v == GENERIC and known is None:
                known, method = True, "no variants"
            out[v] = {"score": None, "supported": known, "method": method}
    methods = {d["method"] for d in out.values()}
    method = "none" if not methods else methods.pop() if len(methods) == 1 else "mixed"
    return {"method": method, "variants": {v: out[v] for v in variants}, "error": error}


def supported_variants(libdir: Path, timeout: float = 60) -> list[str]:
    """The shipped CPU variants this CPU can run, best first (highest ggml score; by the flags
    table, most features first). `score_variants` says how each was judged."""
    verdicts = score_variants(libdir, timeout)["variants"]
    ok = [v for v, d in verdicts.items() if d["supported"]]
    return sorted(
        ok,
        key=lambda v: (
            -(verdicts[v]["score"] or 0),
            -len(X86_VARIANT_NEEDS.get(v, ())),
        ),
    )


if __name__ == "__main__":
    child_main(body)
