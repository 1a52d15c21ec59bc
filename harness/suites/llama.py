"""One release's llama API, whatever its era, behind a few plain methods.

Which variant to call is decided by what the release's own header declares (`Bindings.has`) and by
the argument counts it gives, never by the release number. The by-value structs
(`llama_model_params`, `llama_context_params`, `llama_batch`) are ctypes classes laid out from that
header, so setting `n_ctx` writes where this release keeps it.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.load.loader import Loaded


class LlamaError(HarnessError):
    pass


def _first(fns: Any, *names: str) -> str:
    for name in names:
        if name in fns:
            return name
    raise LlamaError(f"none of {', '.join(names)} is available in this release")


def _set(struct: Any, **values: Any) -> list[str]:
    """Set the fields this release has; return those it lacks."""
    have = {f[0] for f in type(struct)._fields_}
    for key, value in values.items():
        if key in have:
            setattr(struct, key, value)
    return [k for k in values if k not in have]


@dataclass
class Model:
    handle: Any
    vocab: Any  # the llama_vocab* (b4753+) or the model itself


class Llama:
    def __init__(self, loaded: Loaded, threads: int = 1, gpu_layers: int = 0) -> None:
        self.fns = loaded.fns
        self.has = loaded.bindings.has
        self.threads = threads
        self.gpu_layers = gpu_layers  # 0: CPU only; > 0 offloads to the build's GPU backend

    # -- model and context --------------------------------------------------------------------

    def system_info(self) -> str:
        raw = self.fns.llama_print_system_info()
        return raw.decode("utf-8", "replace") if raw else ""

    def model_params(self) -> Any:
        return self.fns.llama_model_default_params()

    def context_params(self, n_ctx: int = 256, n_seq_max: int = 2) -> Any:
        p = self.fns.llama_context_default_params()
        _set(
            p,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_seq_max=n_seq_max,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            seed=1234,
        )
        return p

    def load_model(self, path: Path) -> Model | None:
        name = _first(self.fns, "llama_model_load_from_file", "llama_load_model_from_file")
        params = self.model_params()
        _set(params, n_gpu_layers=self.gpu_layers)
        handle = getattr(self.fns, name)(str(path).encode(), params)
        if not handle:
            return None
        vocab = handle
        if "llama_model_get_vocab" in self.fns:
            vocab = self.fns.llama_model_get_vocab(handle)
        return Model(handle, vocab)

    def free_model(self, model: Model) -> None:
        getattr(self.fns, _first(self.fns, "llama_model_free", "llama_free_model"))(model.handle)

    def new_context(self, model: Model, n_ctx: int = 256) -> Any:
        name = _first(self.fns, "llama_init_from_model", "llama_new_context_with_model")
        ctx = getattr(self.fns, name)(model.handle, self.context_params(n_ctx))
        if not ctx:
            raise LlamaError(f"{name} returned NULL")
        if "llama_set_n_threads" in self.fns:
            self.fns.llama_set_n_threads(ctx, self.threads, self.threads)
        return ctx

    def free_context(self, ctx: Any) -> None:
        self.fns.llama_free(ctx)

    # -- vocab --------------------------------------------------------------------------------

    def n_vocab(self, m: Model) -> int:
        name = _first(self.fns, "llama_vocab_n_tokens", "llama_n_vocab")
        return int(getattr(self.fns, name)(m.vocab))

    def special(self, m: Model) -> tuple[int, int]:
        bos = _first(self.fns, "llama_vocab_bos", "llama_token_bos")
        eos = _first(self.fns, "llama_vocab_eos", "llama_token_eos")
        return int(getattr(self.fns, bos)(m.vocab)), int(getattr(self.fns, eos)(m.vocab))

    def tokenize(self, m: Model, text: str, add_special: bool = True) -> list[int]:
        raw = text.encode()
        buf = (ctypes.c_int32 * (len(raw) + 16))()
        n = self.fns.llama_tokenize(m.vocab, raw, len(raw), buf, len(buf), add_special, False)
        if n < 0:
            raise LlamaError(f"llama_tokenize returned {n}")
        return list(buf[:n])

    def piece(self, m: Model, token: int) -> bytes:
        f = self.fns.llama_token_to_piece
        buf = ctypes.create_string_buffer(128)
        extra = [0, False] if len(f.argtypes) == 6 else [False][: len(f.argtypes) - 4]
        n = f(m.vocab, token, buf, len(buf), *extra)
        if n < 0:
            raise LlamaError(f"llama_token_to_piece({token}) returned {n}")
        return buf.raw[:n]

    def detokenize(self, m: Model, ids: list[int]) -> str:
        if "llama_detokenize" not in self.fns:
            return b"".join(self.piece(m, t) for t in ids).decode("utf-8", "replace")
        arr = (ctypes.c_int32 * len(ids))(*ids)
        buf = ctypes.create_string_buffer(1024)
        n = self.fns.llama_detokenize(m.vocab, arr, len(ids), buf, len(buf), True, False)
        if n < 0:
            raise LlamaError(f"llama_detokenize returned {n}")
        return buf.raw[:n].decode("utf-8", "replace")

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, ctx: Any, ids: list[int], pos: int) -> None:
        arr = (ctypes.c_int32 * len(ids))(*ids)
        get_one = self.fns.llama_batch_get_one
        args = [arr, len(ids)] + ([pos, 0] if len(get_one.argtypes) == 4 else [])
        rc = self.fns.llama_decode(ctx, get_one(*args))
        if rc != 0:
            raise LlamaError(f"llama_decode returned {rc}")

    def logits(self, ctx: Any, n_vocab: int, i: int = -1) -> list[float]:
        row = self.fns.llama_get_logits_ith(ctx, i)
        if not row:
            raise LlamaError(f"llama_get_logits_ith({i}) returned NULL")
        return [float(row[k]) for k in range(n_vocab)]

    def clear_memory(self, ctx: Any) -> str:
        if "llama_memory_clear" in self.fns and "llama_get_memory" in self.fns:
            self.fns.llama_memory_clear(self.fns.llama_get_memory(ctx), True)
            return "llama_memory_clear"
        name = _first(self.fns, "llama_kv_self_clear", "llama_kv_cache_clear")
        getattr(self.fns, name)(ctx)
        return name

    def greedy(
        self, ctx: Any, prompt: list[int], n_vocab: int, n: int
    ) -> tuple[list[int], list[float]]:
        self.decode(ctx, prompt, 0)
        first = self.logits(ctx, n_vocab)
        row, out = first, []
        for step in range(n):
            out.append(max(range(n_vocab), key=row.__getitem__))
            if step + 1 < n:
                self.decode(ctx, [out[-1]], len(prompt) + step)
                row = self.logits(ctx, n_vocab)
        return out, first

    def decode_two_sequences(self, ctx: Any, a: list[int], b: list[int]) -> tuple[int, int]:
        """One llama_batch holding two sequences; the batch rows of each one's last token."""
        n = len(a) + len(b)
        batch = self.fns.llama_batch_init(n, 0, 2)
        try:
            for i, (tok, pos, seq) in enumerate(
                [(t, p, 0) for p, t in enumerate(a)] + [(t, p, 1) for p, t in enumerate(b)]
            ):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = int(i in (len(a) - 1, n - 1))
            batch.n_tokens = n
            rc = self.fns.llama_decode(ctx, batch)
            if rc != 0:
                raise LlamaError(f"llama_decode (two sequences) returned {rc}")
        finally:
            self.fns.llama_batch_free(batch)
        return len(a) - 1, n - 1

    # -- state and sampling ---------------------------------------------------------------------

    def state(self, ctx: Any) -> bytes:
        size = int(self.fns.llama_state_get_size(ctx))
        buf = (ctypes.c_uint8 * size)()
        get = self.fns.llama_state_get_data
        n = get(ctx, buf, size) if len(get.argtypes) == 3 else get(ctx, buf)
        return bytes(buf[:n])

    def set_state(self, ctx: Any, data: bytes) -> None:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        put = self.fns.llama_state_set_data
        n = put(ctx, buf, len(data)) if len(put.argtypes) == 3 else put(ctx, buf)
        if n != len(data):
            raise LlamaError(f"llama_state_set_data read {n} of {len(data)} bytes")

    def sample_chain(self, ctx: Any, seed: int, top_k: int = 20, temp: float = 0.9) -> int:
        f = self.fns
        chain = f.llama_sampler_chain_init(f.llama_sampler_chain_default_params())
        try:
            f.llama_sampler_chain_add(chain, f.llama_sampler_init_top_k(top_k))
            f.llama_sampler_chain_add(chain, f.llama_sampler_init_temp(temp))
            f.llama_sampler_chain_add(chain, f.llama_sampler_init_dist(seed))
            return int(f.llama_sampler_sample(chain, ctx, -1))
        finally:
            f.llama_sampler_free(chain)


def finite(row: list[float]) -> bool:
    return all(math.isfinite(x) for x in row)
