"""The conformance checks: the same for every release, run in the release's own child process.

Each check gets the shared `State` and returns a message (pass), raises `Fail` (the release got
it wrong), `Skip` (this release's header does not declare what the check needs), or anything else
(error). Order matters: later checks use the model and context earlier ones made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.load.loader import Loaded
from harness.suites.llama import Llama, Model, finite


class Fail(Exception):
    pass


class Skip(Exception):
    pass


@dataclass
class State:
    llama: Llama
    spec: dict[str, Any]  # model path, expected ids and tokens, prompt, n_predict
    model: Model | None = None
    ctx: Any = None
    n_vocab: int = 0
    prompt_ids: list[int] = field(default_factory=list)
    first_logits: list[float] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what the report shows per cell

    @property
    def expect(self) -> dict[str, Any]:
        return dict(self.spec.get("expect") or {})


def _need(cond: bool, why: str) -> None:
    if not cond:
        raise Fail(why)


def _model(s: State) -> Model:
    if s.model is None:
        raise Skip("the model did not load")
    return s.model


def _ctx(s: State) -> Any:
    if s.ctx is None:
        raise Skip("no context")
    return s.ctx


def system_info(s: State) -> str:
    info = s.llama.system_info()
    _need(bool(info.strip()), "llama_print_system_info returned an empty string")
    s.facts["system_info"] = info.strip()
    return info.strip()[:120]


def default_params(s: State) -> str:
    mp, cp = s.llama.model_params(), s.llama.context_params()
    checks = {
        "model.use_mmap": getattr(mp, "use_mmap", True) in (True, 1),
        "model.n_gpu_layers": getattr(mp, "n_gpu_layers", 0) >= -1,
        "context.n_ctx": getattr(cp, "n_ctx", 1) >= 0,
        "context.n_batch": getattr(cp, "n_batch", 1) > 0,
    }
    bad = [k for k, ok in checks.items() if not ok]
    _need(not bad, f"implausible defaults: {', '.join(bad)}")
    return f"n_batch={getattr(cp, 'n_batch', '?')} use_mmap={getattr(mp, 'use_mmap', '?')}"


def model_load(s: State) -> str:
    path = Path(s.spec["model"])
    s.model = s.llama.load_model(path)
    if s.model is None:
        raise Fail(f"could not load {path.name}")
    s.ctx = s.llama.new_context(s.model)
    return path.name


def vocab(s: State) -> str:
    m = _model(s)
    s.n_vocab = s.llama.n_vocab(m)
    bos, eos = s.llama.special(m)
    e = s.expect
    if "n_vocab" in e:
        _need(s.n_vocab == e["n_vocab"], f"n_vocab {s.n_vocab}, expected {e['n_vocab']}")
    if "bos" in e:
        _need(
            (bos, eos) == (e["bos"], e["eos"]),
            f"bos/eos {bos}/{eos}, expected {e['bos']}/{e['eos']}",
        )
    return f"n_vocab={s.n_vocab} bos={bos} eos={eos}"


def tokenize(s: State) -> str:
    m = _model(s)
    prompt = s.spec["prompt"]
    s.prompt_ids = s.llama.tokenize(m, prompt)
    if "prompt_ids" in s.expect:
        _need(
            s.prompt_ids == s.expect["prompt_ids"],
            f"{prompt!r} → {s.prompt_ids}, expected {s.expect['prompt_ids']}",
        )
    text = s.llama.detokenize(m, s.prompt_ids)
    _need(text.strip() == prompt, f"detokenize gave {text!r}, expected {prompt!r}")
    pieces = b"".join(s.llama.piece(m, t) for t in s.prompt_ids[1:]).decode("utf-8", "replace")
    _need(pieces.strip() == prompt, f"token_to_piece pieces give {pieces!r}")
    return f"{prompt!r} → {s.prompt_ids}"


def decode_logits(s: State) -> str:
    ctx, _ = _ctx(s), _model(s)
    if not s.prompt_ids:
        raise Skip("no prompt tokens")
    s.llama.clear_memory(ctx)
    s.llama.decode(ctx, s.prompt_ids, 0)
    row = s.llama.logits(ctx, s.n_vocab)
    _need(len(row) == s.n_vocab and finite(row), "logits are not finite")
    s.first_logits = row
    ref = s.expect.get("first_logits")
    if ref:
        diff = max(abs(a - b) for a, b in zip(row, ref, strict=True))
        s.facts["max_logit_diff"] = diff
        _need(diff <= s.spec.get("logit_tolerance", 1e-2), f"logits differ by {diff:.3g}")
        return f"{s.n_vocab} finite logits, max diff vs NumPy {diff:.2e}"
    return f"{s.n_vocab} finite logits"


def greedy(s: State) -> str:
    ctx = _ctx(s)
    if not s.prompt_ids:
        raise Skip("no prompt tokens")
    s.llama.clear_memory(ctx)
    n = int(s.spec.get("n_predict", 16))
    s.generated, _ = s.llama.greedy(ctx, s.prompt_ids, s.n_vocab, n)
    s.facts["greedy"] = s.generated
    want = s.expect.get("greedy")
    if want:
        _need(s.generated == want, f"greedy {s.generated}, NumPy reference {want}")
    return f"{n} tokens {s.generated}"


def memory_clear(s: State) -> str:
    ctx = _ctx(s)
    if not s.first_logits:
        raise Skip("no first logits to compare")
    how = s.llama.clear_memory(ctx)
    s.llama.decode(ctx, s.prompt_ids, 0)
    row = s.llama.logits(ctx, s.n_vocab)
    diff = max(abs(a - b) for a, b in zip(row, s.first_logits, strict=True))
    _need(diff <= 1e-4, f"after {how} the logits moved by {diff:.3g}")
    return f"{how}: same logits (max diff {diff:.1e})"


def sampler_chain(s: State) -> str:
    ctx = _ctx(s)
    if not s.llama.has("llama_sampler_chain_init"):
        raise Skip("this release's header declares no sampler chain API")
    picks = []
    for seed in (7, 7, 8):
        s.llama.clear_memory(ctx)
        s.llama.decode(ctx, s.prompt_ids, 0)
        picks.append(s.llama.sample_chain(ctx, seed))
    _need(picks[0] == picks[1], f"seed 7 sampled {picks[0]} then {picks[1]}")
    _need(all(0 <= p < s.n_vocab for p in picks), f"sampled ids out of range: {picks}")
    return f"top-k/temp/dist: seed 7 → {picks[0]} twice, seed 8 → {picks[2]}"


def state_roundtrip(s: State) -> str:
    """Save after the prompt, decode a token, restore, decode it again: the same logits."""
    ctx = _ctx(s)
    if not s.prompt_ids:
        raise Skip("no prompt tokens")
    nxt = s.generated[0] if s.generated else s.prompt_ids[-1]
    s.llama.clear_memory(ctx)
    s.llama.decode(ctx, s.prompt_ids, 0)
    saved = s.llama.state(ctx)
    s.llama.decode(ctx, [nxt], len(s.prompt_ids))
    before = s.llama.logits(ctx, s.n_vocab)
    s.llama.clear_memory(ctx)
    s.llama.set_state(ctx, saved)
    s.llama.decode(ctx, [nxt], len(s.prompt_ids))
    after = s.llama.logits(ctx, s.n_vocab)
    diff = max(abs(a - b) for a, b in zip(before, after, strict=True))
    _need(diff <= 1e-4, f"after restoring the state the next token's logits moved by {diff:.3g}")
    return f"{len(saved)} bytes of state; restored, the next token's logits match"


def two_sequences(s: State) -> str:
    """In a context of its own, so earlier checks' use of the shared one cannot leak in."""
    m = _model(s)
    if not s.llama.has("llama_batch_init"):
        raise Skip("no llama_batch_init")
    if not s.prompt_ids:
        raise Skip("no prompt tokens")
    ctx = s.llama.new_context(m)
    try:
        a, b = s.prompt_ids, s.prompt_ids[:-1] or s.prompt_ids
        singles = []
        for ids in (a, b):
            s.llama.clear_memory(ctx)
            s.llama.decode(ctx, ids, 0)
            singles.append(s.llama.logits(ctx, s.n_vocab))
        s.llama.clear_memory(ctx)
        rows = s.llama.decode_two_sequences(ctx, a, b)
        both = [s.llama.logits(ctx, s.n_vocab, i) for i in rows]
    finally:
        s.llama.free_context(ctx)
    diff = max(
        abs(x - y)
        for one, two in zip(singles, both, strict=True)
        for x, y in zip(one, two, strict=True)
    )
    # batched and one-at-a-time kernels round differently (GPU builds more so): same bound as
    # the NumPy comparison
    tol = float(s.spec.get("logit_tolerance", 1e-2))
    _need(diff <= tol, f"two sequences in one batch differ from one at a time by {diff:.3g}")
    return f"seq 0 and 1 match single runs (max diff {diff:.1e})"


def bad_model_files(s: State) -> str:
    scratch = Path(s.spec["scratch"])
    missing = scratch / "missing.gguf"
    corrupt = scratch / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(64))
    for path in (missing, corrupt):
        m = s.llama.load_model(path)
        _need(m is None, f"{path.name}: the load succeeded")
    return "missing and corrupt files: NULL, no crash"


def free(s: State) -> str:
    if s.ctx is not None:
        s.llama.free_context(s.ctx)
        s.ctx = None
    if s.model is not None:
        s.llama.free_model(s.model)
        s.model = None
    return "context and model freed"


CHECKS: list[tuple[str, Callable[[State], str]]] = [
    ("system_info", system_info),
    ("default_params", default_params),
    ("model_load", model_load),
    ("vocab", vocab),
    ("tokenize", tokenize),
    ("decode_logits", decode_logits),
    ("greedy", greedy),
    ("memory_clear", memory_clear),
    ("sampler_chain", sampler_chain),
    ("state_roundtrip", state_roundtrip),
    ("two_sequences", two_sequences),
    ("model_free", free),
    ("bad_model_files", bad_model_files),
]
NAMES = [name for name, _ in CHECKS]


Progress = Callable[[str, dict[str, Any]], None]
Started = Callable[[str], None]


def run(
    loaded: Loaded,
    spec: dict[str, Any],
    progress: Progress | None = None,
    started: Started | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every check in order (or those `spec["checks"]` names); `started(name)` before each one
    and `progress(name, result)` after it let a crash be attributed to the check it died in."""
    llama = Llama(loaded, int(spec.get("threads", 1)), int(spec.get("gpu_layers", 0)))
    state = State(llama, spec)
    results: dict[str, dict[str, Any]] = {}
    only = set(spec.get("checks") or NAMES)
    for name, check in CHECKS:
        if name not in only:
            continue
        if started:
            started(name)
        t0 = time.perf_counter()
        try:
            status, message = "pass", check(state)
        except Fail as err:
            status, message = "fail", str(err)
        except Skip as err:
            status, message = "skip", str(err)
        except Exception as err:  # a check that could not run says why; the cell goes on
            status, message = "error", f"{type(err).__name__}: {err}"
        results[name] = {
            "status": status,
            "message": message,
            "seconds": round(time.perf_counter() - t0, 4),
        }
        if progress:
            progress(name, results[name])
    if state.first_logits:
        state.facts["first_logits_head"] = state.first_logits[:8]
    state.facts.setdefault("max_logit_diff", None)
    return results, state.facts
