"""Which ggml CPU backend a release picks on this CPU, which ones it could run, and forcing one.

From b4435 an x86-64 release ships its CPU code as one library per micro-architecture
(`libggml-cpu-haswell.so`, `-icelake`, `-zen4`, ...). `ggml_backend_load_all_from_path` dlopens
each, asks its `ggml_backend_score()` (0: this CPU cannot run it; more features, higher score),
keeps the best and registers it. Before that (b3889) the CPU code is linked into libggml:
"built in".

Everything that loads a release runs in a child process (`python -m harness.load.backends`): one
release per process, since every release has the SONAME libggml-base.so.

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

import argparse
import contextlib
import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.host.probe import cpu_features
from harness.load.loader import c_function as _fn
from harness.load.loader import cpu_libraries, force_cpu_variant, library_paths, load
from harness.static.names import (
    GENERIC,
    X86_VARIANT_NEEDS,
    cpu_variant_of,
    is_core_ggml,
)

_MARK = "@@cpuvariant "
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
    dladdr = _fn(ctypes.CDLL(None), "dladdr", ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(DlInfo))
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
    reg_count = _fn(ggml, "ggml_backend_reg_count", sz)
    reg_get = _fn(ggml, "ggml_backend_reg_get", vp, sz)
    reg_name = _fn(ggml, "ggml_backend_reg_name", cp, vp)
    dev_count = _fn(ggml, "ggml_backend_dev_count", sz)
    dev_get = _fn(ggml, "ggml_backend_dev_get", vp, sz)
    dev_name = _fn(ggml, "ggml_backend_dev_name", cp, vp)
    dev_desc = _fn(ggml, "ggml_backend_dev_description", cp, vp)
    dev_reg = _fn(ggml, "ggml_backend_dev_backend_reg", vp, vp)

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


def _emit(item: dict[str, Any]) -> None:
    sys.stdout.write(_MARK + json.dumps(item) + "\n")
    sys.stdout.flush()


def _child_choice(libdir: Path, api_json: Path | None, force: str | None) -> None:
    log: list[str] = []
    keep: list[Any] = []
    paths = library_paths(libdir)
    if api_json is not None:
        api = Api.from_json(api_json.read_text(encoding="utf-8"))
        loaded = load(libdir, api, lambda _level, text: log.append(text))
        mode = loaded.backends
        ggml = ctypes.CDLL(str(paths["ggml"]), mode=ctypes.RTLD_GLOBAL)
    else:
        for role in ("ggml-base", "ggml"):
            if role in paths:
                ggml = ctypes.CDLL(str(paths[role]), mode=ctypes.RTLD_GLOBAL)
        cb_type = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
        # void ggml_log_set(ggml_log_callback log_callback, void * user_data);
        log_set = _fn(ggml, "ggml_log_set", None, cb_type, ctypes.c_void_p)
        if log_set is not None:
            cb = cb_type(
                lambda _lvl, txt, _u: log.append(txt.decode("utf-8", "replace")) if txt else None
            )
            keep.append(cb)
            log_set(cb, None)
        mode = "linked"
        if force is not None:
            force_cpu_variant(ggml, libdir, force)
            mode = f"ggml_backend_load({force})"
        else:
            # void ggml_backend_load_all_from_path(const char * dir_path);
            load_all = _fn(ggml, "ggml_backend_load_all_from_path", None, ctypes.c_char_p)
            if load_all is not None:
                load_all(os.fsencode(libdir))
                mode = "load_all_from_path"
    regs, devices = _registry(ggml)
    lines = "".join(log).splitlines()
    _emit(
        {
            "backends": mode,
            "regs": regs,
            "devices": devices,
            "mapped": _mapped_cpu_libs(),
            "log": [ln for ln in lines if "backend" in ln][-20:],
        }
    )


def _child_score(libdir: Path) -> None:
    paths = library_paths(libdir)
    if "ggml-base" in paths:
        ctypes.CDLL(str(paths["ggml-base"]), mode=ctypes.RTLD_GLOBAL)
    for variant, path in cpu_libraries(libdir).items():
        _emit({"start": variant})
        lib = ctypes.CDLL(str(path))
        # int ggml_backend_score(void);
        score = _fn(lib, "ggml_backend_score", ctypes.c_int)
        _emit({"variant": variant, "score": score() if score else None})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.load.backends")
    ap.add_argument("libdir", type=Path)
    ap.add_argument("--api", type=Path, help="the release's ABI JSON: load it the harness's way")
    ap.add_argument("--force", help="load this CPU variant with ggml_backend_load")
    ap.add_argument("--score", action="store_true", help="ask every variant for its score")
    args = ap.parse_args(argv)
    if args.score:
        _child_score(args.libdir)
    else:
        _child_choice(args.libdir, args.api, args.force)
    sys.stdout.flush()
    os._exit(0)  # some releases' static destructors crash at exit


# ---------------------------------------------------------------- the parent side


def _run_child(
    args: list[str], timeout: float, env: dict[str, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The child's items and, when it did not finish cleanly, why."""
    child_env = {k: v for k, v in os.environ.items() if k != "GGML_BACKEND_PATH"}
    child_env.update(env or {})
    root = str(Path(__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, child_env.get("PYTHONPATH", "")) if p
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.load.backends", *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=child_env,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode("utf-8", "replace") if isinstance(err.stdout, bytes) else ""
        return _items(out), f"timed out after {timeout:.0f} s"
    items = _items(proc.stdout)
    if proc.returncode == 0:
        return items, None
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:]
    if proc.returncode < 0:
        return items, f"the child died of signal {-proc.returncode}"
    return items, f"the child failed: {tail[0] if tail else f'exit status {proc.returncode}'}"


def _items(stdout: str) -> list[dict[str, Any]]:
    out = []
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line[len(_MARK) :]))
    return out


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
    args = [str(libdir)]
    args += ["--api", str(api_json)] if api_json is not None else []
    args += ["--force", force] if force is not None else []
    items, error = _run_child(args, timeout, env)
    if not items:
        result["error"] = error or "the child reported nothing"
        return result
    data = items[-1]
    result.update({k: data[k] for k in ("backends", "devices", "mapped", "log")})
    result["error"] = error
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
        items, error = _run_child([str(libdir), "--score"], timeout, None)
        started = None
        for item in items:
            if "start" in item:
                started = item["start"]
            elif item.get("score") is not None:
                score = int(item["score"])
                out[item["variant"]] = {
                    "score": score,
                    "supported": score > 0,
                    "method": "ggml_backend_score",
                }
                started = None
        if started is not None and error:
            out[started] = {"score": None, "supported": False, "method": "crashed"}
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
    raise SystemExit(main())
