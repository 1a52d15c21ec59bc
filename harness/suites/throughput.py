"""The throughput suite: prompt processing (pp<N>) and token generation (tg<N>), llama-bench style.

    python -m harness.suites.throughput SPEC.json        (the child: one release, its presets)

t/s counts the `llama_decode` calls only (plus `llama_synchronize` where the header declares it):
each batch is built before the clock starts, tokens are fixed ids (`bench_tokens`, no tokenizer,
no sampling). Per preset, one context of n_ctx = n_prompt + n_gen (n_batch = n_ubatch = n_ctx,
n_seq_max 1, the release's other defaults, flash attention included); `warmup` unrecorded runs,
then `reps` recorded ones, each from a cleared KV cache: pp decodes n_prompt tokens in one batch,
tg decodes n_gen single tokens. The child records each repetition's seconds; the parent
(`harness.suites.throughput_rounds`) runs such children in interleaved rounds, one per round,
contender and preset, beside the native driver (`harness.suites.native`), and turns the seconds
into t/s statistics.

pytest-benchmark: the timings cross a process boundary (one release per process), so
pytest-benchmark cannot time them itself. `throughput_json` writes its JSON format from the child's
per-repetition seconds (statistics by pytest-benchmark's own `Stats`), so `pytest-benchmark
compare` reads it;
`benchmarks/test_bench_throughput.py` feeds the same seconds to the real plugin through a replaying
timer.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from pathlib import Path
from typing import Any

from harness.load.child import Child, child_main

# preset → (n_prompt, n_gen, repetitions per round); `throughput_rounds.ROUNDS` rounds. The tiny
# model's pp64 takes well under a millisecond, so one preemption on a shared runner ruins a
# repetition: it gets more (they cost nothing); a round's figure is the median of its repetitions.
DEFAULT_SIZES = {"tiny": (64, 16, 3), "small-f16": (128, 32, 2), "small-q8_0": (128, 32, 2)}
OTHER_SIZE = (128, 32, 1)  # a user's own GGUF
DEFAULT_REPS = 1  # per round, for a preset that names none
# Keys of a cell's `bench` section that are not presets.
RESERVED = (
    "native",
    "ratio",
    "ratio_interval",
    "llama_bench",
    "machine",
    "params",
    "error",
    "log_tail",
    "interleave",
    "aa",
)


def bench_tokens(n: int, n_vocab: int) -> list[int]:
    """Fixed, non-special token ids (the native driver computes the same ones)."""
    return [3 + (i * 31) % (n_vocab - 3) for i in range(n)]


def presets_of(bench: dict[str, Any]) -> list[str]:
    """The preset names in a `bench` section (everything but the reserved keys)."""
    return [k for k in bench if k not in RESERVED]


def presets_for(
    cache_root: Path,
    names: list[str],
    n_prompt: int | None = None,
    n_gen: int | None = None,
    reps: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The `presets` entry of a bench spec: generated presets by name, or a GGUF path; sizes and
    repetitions from `DEFAULT_SIZES` unless given."""
    from harness.suites.fixtures import model

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = model.ensure_model(cache_root, name)
        pp, tg, n = DEFAULT_SIZES.get(name, OTHER_SIZE)
        key = name if name in model.PRESETS else path.stem
        out[key] = {
            "model": str(path),
            "n_prompt": pp if n_prompt is None else n_prompt,
            "n_gen": tg if n_gen is None else n_gen,
            "reps": n if reps is None else reps,
        }
    return out


# ----------------------------------------------------------------------------- the child


def reps_of(spec: dict[str, Any], preset: dict[str, Any]) -> int:
    """Repetitions per round of one preset."""
    return max(1, int(preset.get("reps") or spec.get("reps") or DEFAULT_REPS))


def _flash(params: Any) -> str:
    names = {f[0] for f in type(params)._fields_}
    if "flash_attn_type" in names:
        v = int(params.flash_attn_type)
        return "auto" if v < 0 else ("off" if v == 0 else "on")
    if "flash_attn" in names:
        return "on" if params.flash_attn else "off"
    return "n/a"


def measure(loaded: Any, spec: dict[str, Any], child: Child) -> dict[str, Any]:
    """Every preset's pp and tg seconds per repetition, in this (the child's) process."""
    from harness.suites.llama import Llama, _first

    threads, warmup = int(spec.get("threads", 1)), int(spec.get("warmup", 1))
    llama = Llama(loaded, threads, int(spec.get("gpu_layers", 0)))
    fns = llama.fns
    sync = fns.llama_synchronize if "llama_synchronize" in fns else None
    get_one = fns.llama_batch_get_one
    four = len(get_one.argtypes) == 4
    decode = fns.llama_decode
    clock = time.perf_counter

    def timed(ctx: Any, arr: Any, n: int, pos: int) -> float:
        batch = get_one(arr, n, pos, 0) if four else get_one(arr, n)
        t0 = clock()
        rc = decode(ctx, batch)
        if sync is not None:
            sync(ctx)
        dt = clock() - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return dt

    out: dict[str, Any] = {}
    for preset, p in spec["presets"].items():
        n_prompt, n_gen, reps = int(p["n_prompt"]), int(p["n_gen"]), reps_of(spec, p)
        child.start(f"{preset} load")
        model = llama.load_model(Path(p["model"]))
        if model is None:
            out[preset] = {"error": f"the model did not load: {p['model']}"}
            continue
        n_ctx = n_prompt + n_gen
        cp = llama.context_params(n_ctx, n_seq_max=1)  # n_batch = n_ubatch = n_ctx
        new = _first(fns, "llama_init_from_model", "llama_new_context_with_model")
        ctx = getattr(fns, new)(model.handle, cp)
        if not ctx:
            out[preset] = {"error": f"{new} returned NULL"}
            llama.free_model(model)
            continue
        if "llama_set_n_threads" in fns:
            fns.llama_set_n_threads(ctx, threads, threads)
        n_vocab = llama.n_vocab(model)
        ids = bench_tokens(max(n_prompt, n_gen), n_vocab)
        prompt = (ctypes.c_int32 * max(n_prompt, 1))(*ids[:n_prompt])
        singles = [(ctypes.c_int32 * 1)(t) for t in ids[:n_gen]]

        def pp(ctx: Any = ctx, prompt: Any = prompt, n: int = n_prompt) -> float:
            llama.clear_memory(ctx)
            return timed(ctx, prompt, n, 0)

        def tg(ctx: Any = ctx, singles: list[Any] = singles) -> float:
            llama.clear_memory(ctx)
            return sum(timed(ctx, arr, 1, i) for i, arr in enumerate(singles))

        child.done(f"{preset} load")
        if gate := spec.pop("gate", None):  # loaded: wait until the parent lets this one measure
            child.note({"ready": preset})
            with open(gate, encoding="utf-8") as g:
                g.read()
        tests: dict[str, Any] = {}
        for kind, n, run in (("pp", n_prompt, pp), ("tg", n_gen, tg)):
            if n <= 0:
                continue
            name = f"{kind}{n}"
            child.start(f"{preset} {name}")
            gc.disable()
            try:
                for _ in range(warmup):
                    run()
                seconds = [run() for _ in range(reps)]
            finally:
                gc.enable()
            tests[name] = {"tokens": n, "seconds": seconds}
            child.done(f"{preset} {name}", seconds=seconds)
        out[preset] = {"n_vocab": n_vocab, "n_ctx": n_ctx, "flash_attn": _flash(cp), "tests": tests}
        llama.free_context(ctx)
        llama.free_model(model)
    return {"presets": out, "system_info": llama.system_info().strip()}


def body(child: Child) -> dict[str, Any]:
    """The child (`harness.load.child` protocol): load the release, measure, return the result."""
    from harness.abi import Api
    from harness.load.loader import load

    spec = child.spec
    api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))
    loaded = load(Path(spec["libdir"]), api, child.log, spec.get("cpu_variant"))
    return {**measure(loaded, spec, child), "backends": loaded.backends}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        child_main(body)
