"""The native baseline: `driver.c`, built per release with the system C compiler, runs the same
decode loop as the throughput suite, so the report can show harness t/s ÷ native t/s.

One binary per release build: `llama_model_params` and `llama_context_params` change layout
between releases, so the driver is compiled against that release's own `llama.h`. Which API
flavour it calls comes from `-D` macros derived from the parsed header (`driver_flags`), the same
facts `harness.suites.llama.Llama` decides by. The driver dlopens the release by absolute path
(ggml-base, ggml, llama, as `harness.load.loader` does), so it never links against it and the
binary is cached under `<cache>/native/<build>-<hash>/` keyed by the source, the flags, the header
and the compiler.

Where a release archive ships llama.cpp's own `llama-bench` (GitHub assets do, npm packages do
not), `run_llama_bench` runs it with `-o json` on the same model and sizes, for a second opinion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.cache import atomic
from harness.load.child import signal_name
from harness.load.loader import library_paths
from harness.suites.throughput_stats import summary as stats

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("driver.c")
COMPILERS = ("cc", "gcc", "clang")
CTX_FIELDS = ("n_ctx", "n_batch", "n_ubatch", "n_seq_max", "n_threads", "n_threads_batch")
CTX_FLASH = ("flash_attn_type", "flash_attn")


@dataclass
class Driver:
    """A built driver (`path`), or why there is none (`reason`)."""

    path: Path | None
    reason: str = ""
    flags: list[str] = field(default_factory=list)


def find_compiler() -> str | None:
    """$CC when set, else the first of cc, gcc, clang on the PATH."""
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc
    return next((found for name in COMPILERS if (found := shutil.which(name))), None)


def _first(api: Api, *names: str) -> str | None:
    return next((n for n in names if n in api.functions), None)


def driver_flags(api: Api) -> list[str]:
    """The `-D` macros that pick this release's API flavour, from its parsed header.

    The same choices, in the same order of preference, as `harness.suites.llama.Llama`.
    """
    fns = api.functions
    need = {
        "FN_LOAD_MODEL": _first(api, "llama_model_load_from_file", "llama_load_model_from_file"),
        "FN_FREE_MODEL": _first(api, "llama_model_free", "llama_free_model"),
        "FN_NEW_CONTEXT": _first(api, "llama_init_from_model", "llama_new_context_with_model"),
        "FN_N_VOCAB": _first(api, "llama_vocab_n_tokens", "llama_n_vocab"),
    }
    missing = [k for k, v in need.items() if v is None]
    if missing or "llama_batch_get_one" not in fns or "llama_decode" not in fns:
        raise ValueError(
            f"the header lacks what the driver calls ({', '.join(missing) or 'decode'})"
        )
    flags = [f"-D{k}={v}" for k, v in need.items()]
    flags.append(f"-DBATCH_GET_ONE_ARGS={len(fns['llama_batch_get_one'].params)}")
    if "llama_model_get_vocab" in fns:
        flags.append("-DHAS_VOCAB_API")
    if "llama_memory_clear" in fns and "llama_get_memory" in fns:
        flags.append("-DHAS_MEMORY_API")
    else:
        clear = _first(api, "llama_kv_self_clear", "llama_kv_cache_clear")
        if clear is None:
            raise ValueError("the header declares no way to clear the KV cache")
        flags.append(f"-DFN_KV_CLEAR={clear}")
    for name, macro in (
        ("llama_synchronize", "HAS_SYNCHRONIZE"),
        ("llama_set_n_threads", "HAS_SET_N_THREADS"),
        ("llama_log_set", "HAS_LOG_SET"),
        ("ggml_backend_load_all_from_path", "HAS_LOAD_ALL_FROM_PATH"),
        ("ggml_backend_load_all", "HAS_LOAD_ALL"),
    ):
        if name in fns:
            flags.append(f"-D{macro}")
    if "llama_backend_init" in fns:
        flags += [
            "-DHAS_BACKEND_INIT",
            f"-DBACKEND_INIT_ARGS={len(fns['llama_backend_init'].params)}",
        ]
    ctx = api.structs.get("llama_context_params")
    have = {f.name for f in ctx.fields} if ctx else set()
    flags += [f"-DCTX_HAS_{n.upper()}" for n in (*CTX_FIELDS, *CTX_FLASH) if n in have]
    mp = api.structs.get("llama_model_params")
    if mp and any(f.name == "n_gpu_layers" for f in mp.fields):
        flags.append("-DMP_HAS_N_GPU_LAYERS")
    return flags


def build_driver(cache_root: Path, include: Path, api: Api, build: str = "release") -> Driver:
    """The driver for one release (compiled on first use, then cached), or why there is none."""
    if sys.platform == "win32":
        return Driver(None, "the native driver is POSIX-only (dlopen); not built on Windows")
    cc = find_compiler()
    if cc is None:
        return Driver(None, "no C compiler on the PATH (cc, gcc or clang; or set $CC)")
    if not SOURCE.is_file():
        return Driver(None, f"{SOURCE} is missing (not installed as package data)")
    header = Path(include) / "llama.h"
    if not header.is_file():
        return Driver(None, f"no llama.h in {include}")
    try:
        flags = driver_flags(api)
    except ValueError as err:
        return Driver(None, str(err))
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), header.read_bytes(), " ".join([cc, *flags]).encode()):
        digest.update(part)
    folder = Path(cache_root) / "native" / f"{build}-{digest.hexdigest()[:16]}"
    target = folder / "llama-harness-driver"
    if target.is_file():
        return Driver(target, flags=flags)
    cmd = [*cc.split(), "-O2", "-std=gnu11", "-w", f"-I{include}", *flags, str(SOURCE)]
    try:
        with atomic.replacing(target) as tmp:
            subprocess.run(
                [*cmd, "-o", str(tmp), "-ldl"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
    except subprocess.CalledProcessError as err:
        lines = [ln for ln in err.stderr.splitlines() if "error" in ln][:3]
        said = " | ".join(lines or [err.stderr[-300:]])
        return Driver(None, f"{Path(cc.split()[0]).name} failed: {said}", flags)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Driver(None, f"cannot compile the driver: {err}", flags)
    log.info("built the native driver for %s: %s", build, target)
    return Driver(target, flags=flags)


def run_driver(
    driver: Path,
    libdir: Path,
    model: Path,
    n_prompt: int,
    n_gen: int,
    *,
    reps: int,
    warmup: int = 1,
    threads: int = 1,
    gpu_layers: int = 0,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One preset's run of the driver: its JSON (`tests` → per-rep seconds), or `{"error"}`."""
    libs = library_paths(Path(libdir))
    argv = [
        str(driver),
        str(libs.get("ggml-base", "-")),
        str(libs.get("ggml", "-")),
        str(libs["llama"]),
        str(libdir),
        str(model),
        *(str(x) for x in (n_prompt, n_gen, reps, warmup, threads, gpu_layers)),
    ]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the native driver timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        rc = proc.returncode
        why = signal_name(rc) if rc < 0 else f"exit status {rc}"
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        return {"error": f"the native driver failed ({why})", "log_tail": tail}
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"the native driver printed no JSON: {proc.stdout[-200:]!r}"}
    return out


# ------------------------------------------------------------------- llama-bench

_BENCH_NAMES = ("llama-bench", "llama-bench.exe")


def find_llama_bench(tree: Path) -> Path | None:
    """The `llama-bench` executable a release archive ships (GitHub assets do; npm ones don't)."""
    hits = sorted(
        (p for p in Path(tree).rglob("llama-bench*") if p.name in _BENCH_NAMES and p.is_file()),
        key=lambda p: len(p.parts),
    )
    return next((p for p in hits if os.access(p, os.X_OK) or p.suffix == ".exe"), None)


def parse_llama_bench(text: str, threads: int | None = None) -> dict[str, Any]:
    """llama-bench `-o json` output → {"pp<N>"/"tg<N>": {median, mean, stddev, rounds, ...}}.

    Each record is one test (n_prompt > 0, n_gen == 0: pp; the reverse: tg); the per-repetition
    `samples_ts` (newer llama-bench) give the median, else `avg_ts` stands in.
    """
    try:
        records = json.loads(text)
    except ValueError:
        # some builds print log lines before the JSON array
        m = re.search(r"^\[.*\]", text, re.S | re.M)
        if not m:
            raise
        records = json.loads(m.group(0))
    out: dict[str, Any] = {}
    for r in records if isinstance(records, list) else [records]:
        n_prompt, n_gen = int(r.get("n_prompt", 0)), int(r.get("n_gen", 0))
        if n_prompt and not n_gen:
            name = f"pp{n_prompt}"
        elif n_gen and not n_prompt:
            name = f"tg{n_gen}"
        else:
            name = f"pp{n_prompt}+tg{n_gen}"
        samples = [float(x) for x in r.get("samples_ts") or []]
        entry: dict[str, Any] = (
            stats(samples) if samples else {"median": float(r["avg_ts"]), "rounds": 1}
        )
        entry.update(
            mean=float(r.get("avg_ts", entry["median"])),
            stddev=float(r.get("stddev_ts", 0.0)),
            threads=int(r.get("n_threads", threads or 0)),
            samples=[round(x, 3) for x in samples],
        )
        keep = ("build_commit", "build_number", "backends", "n_batch", "n_ubatch", "flash_attn")
        entry.update({k: r[k] for k in keep if k in r})
        out[name] = entry
    return out


def run_llama_bench(
    exe: Path,
    model: Path,
    n_prompt: int,
    n_gen: int,
    *,
    reps: int,
    threads: int,
    gpu_layers: int = 0,
    timeout: float = 600.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the release's own llama-bench on the same model and sizes (its own defaults otherwise:
    n_batch 2048, n_ubatch 512, its flash-attention default)."""
    cmd = [str(exe), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen)]
    cmd += ["-r", str(reps), "-t", str(threads), "-ngl", str(gpu_layers), "-o", "json"]
    child_env = {**os.environ, **(env or {})}
    if sys.platform.startswith("linux"):  # old archives' RUNPATH names their build machine
        extra = child_env.get("LD_LIBRARY_PATH")
        child_env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(exe.parent), extra]))
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=exe.parent,
            env=child_env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"llama-bench: {err}"}
    if proc.returncode != 0:
        why = signal_name(proc.returncode) if proc.returncode < 0 else proc.returncode
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        return {"error": f"llama-bench failed ({why})", "log_tail": tail}
    try:
        return parse_llama_bench(proc.stdout, threads)
    except (ValueError, KeyError, TypeError) as err:
        return {"error": f"llama-bench printed no usable JSON: {err}"}
