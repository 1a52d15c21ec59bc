"""The model the suites run on: a tiny llama GGUF the harness generates itself.

Why generate one: a real model is hundreds of MB to download and its logits say nothing a
reference can check. This one is ~0.6 MB, loads in every release from b3889 on, has a real
SentencePiece (llama) vocabulary, and `harness.reference` recomputes its output in NumPy, so a
release that tokenizes or computes differently is caught, not just one that crashes.

The bytes are a pure function of the code here (fixed seed, no timestamps, no names or paths), so
every machine, CI runner and cache holds the same file; bump `CONTENT_VERSION` whenever they change.

The "small" presets (`small-f16`, `small-q8_0`: ~24 M parameters, 8 layers, n_embd 512) are for
the throughput suite: big enough that the matrix products, not the per-call overhead, dominate a
decode, so harness t/s ÷ native t/s measures the binding rather than the call. Same vocabulary,
same determinism; bump `SMALL_VERSION` whenever their bytes change.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError

TINY = "tiny"
SMALL_F16 = "small-f16"
SMALL_Q8_0 = "small-q8_0"
PRESETS = (TINY, SMALL_F16, SMALL_Q8_0)
SMALL_VERSION = 1
SMALL_SEED = 7
PROMPT = "Hello world"
CONTENT_VERSION = 1
GGUF_MAGIC = b"GGUF"
SEED = 91  # picked from 300 seeds: widest greedy margin vs. f16-rounding error, no loop

# Every prefix of "▁" + word becomes a piece: SPM only merges a pair whose concatenation is a piece,
# so "▁Hello" is reachable only through "▁H", "▁He", "▁Hel", "▁Hell". Pieces that start with "▁"
# never match inside a word, so each word merges along exactly one chain.
WORDS = (
    "Hello", "world", "hello", "the", "llama", "model", "tiny", "test", "release", "token",
    "and", "of", "is", "to", "in", "it", "on", "for", "you", "we", "run", "fast", "with", "this",
    "that", "from", "build", "good", "day", "sun",
)  # fmt: skip
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"
SPACE = "▁"  # U+2581, SentencePiece's visible space

# gguf TokenType values (llama.cpp's llama_token_type / LLAMA_TOKEN_ATTR mapping).
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class Hparams:
    """Small enough to write in milliseconds, big enough to exercise GQA, RoPE, SwiGLU."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2  # grouped-query attention: two query heads share each K/V head
    n_ff: int = 192
    n_ctx_train: int = 512  # >= llama_context_default_params' n_ctx (512) so no release warns
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


HPARAMS = Hparams()

# Output-matrix gain: logits |x| <= ~13, every greedy step's top-1 margin >= 0.6 (tests demand
# > 0.3) while releases stay within 4e-3 of the float64 reference (f16 KV cache, f16 tables,
# flash attention). Q and K keep unit gain: sharper attention made f16 K/V errors 4x larger.
OUTPUT_GAIN = 3.0


def vocab() -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and types in id order: <unk>=0, <s>=1, </s>=2, 256 bytes, chars, words.

    Scores follow SentencePiece's convention (higher merges first, later pieces lower); with the
    single merge chain per word the order does not change any result, but keeps it realistic.
    """
    pieces = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    normal: list[str] = [SPACE, *CHARS]
    for word in WORDS:
        for end in range(1, len(word) + 1):
            piece = SPACE + word[:end]
            if piece not in normal:
                normal.append(piece)
    pieces += normal
    types += [NORMAL] * len(normal)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(normal))]
    return pieces, scores, types


def weights(n_vocab: int, hp: Hparams = HPARAMS) -> dict[str, np.ndarray]:
    """Deterministic float32 tensors in GGUF names, NumPy shape (rows=out, cols=in).

    Q and K are written as llama.cpp uses them (RoPE NORM mode rotates adjacent pairs), not in the
    Hugging Face layout the converter permutes from: the reference reads the same convention.
    """
    rng = np.random.default_rng(SEED)
    d = hp.n_embd

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)

    embd = rng.standard_normal((n_vocab, d)).astype(np.float32)
    return _tensors(hp, n_vocab, embd, mat, norm)


def write_tiny_model(path: Path) -> Path:
    """Write the tiny model to `path` (overwritten); the same bytes on every call."""
    import gguf  # heavy import, only needed when a model is generated

    hp = HPARAMS
    w = gguf.GGUFWriter(str(path), "llama")  # adds general.architecture
    # b3889 and every later release read these hparams; all of them are set explicitly so no
    # release falls back to a default that another release does not share.
    _header(w, hp, "llama-harness tiny", gguf.LlamaFileType.ALL_F32)
    for name, tensor in weights(len(vocab()[0]), hp).items():
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# The throughput presets' shape: ~24 M parameters, the same 420-piece vocabulary.
SMALL = Hparams(n_layer=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=1408, n_ctx_train=2048)


def small_weights(n_vocab: int, hp: Hparams = SMALL) -> dict[str, np.ndarray]:
    """Like `weights`, drawn in float32 (half the time and memory of float64 at this size)."""
    rng = np.random.default_rng(SMALL_SEED)
    d = hp.n_embd

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        m = rng.standard_normal((rows, cols), dtype=np.float32)
        m *= np.float32(gain / np.sqrt(cols))
        return m

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(d, dtype=np.float32)).astype(np.float32)

    return _tensors(hp, n_vocab, mat(n_vocab, d, np.sqrt(d)), mat, norm)


def _tensors(
    hp: Hparams,
    n_vocab: int,
    embd: np.ndarray,
    mat: Callable[..., np.ndarray],
    norm: Callable[[], np.ndarray],
) -> dict[str, np.ndarray]:
    """Every tensor a llama GGUF needs, drawn in one fixed order (the bytes depend on it)."""
    d, kv = hp.n_embd, hp.n_head_kv * hp.head_dim
    out: dict[str, np.ndarray] = {"token_embd.weight": embd}
    for i in range(hp.n_layer):
        p = f"blk.{i}."
        out[p + "attn_norm.weight"] = norm()
        out[p + "attn_q.weight"] = mat(d, d)
        out[p + "attn_k.weight"] = mat(kv, d)
        out[p + "attn_v.weight"] = mat(kv, d)
        out[p + "attn_output.weight"] = mat(d, d)
        out[p + "ffn_norm.weight"] = norm()
        out[p + "ffn_gate.weight"] = mat(hp.n_ff, d)
        out[p + "ffn_up.weight"] = mat(hp.n_ff, d)
        out[p + "ffn_down.weight"] = mat(d, hp.n_ff)
    out["output_norm.weight"] = norm()
    out["output.weight"] = mat(n_vocab, d, OUTPUT_GAIN)
    return out


def _header(w: Any, hp: Hparams, name: str, file_type: int) -> None:
    pieces, scores, types = vocab()
    w.add_name(name)
    w.add_file_type(file_type)
    w.add_context_length(hp.n_ctx_train)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_rope_dimension_count(hp.head_dim)
    w.add_rope_freq_base(hp.rope_freq_base)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_vocab_size(len(pieces))
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)


def write_small_model(path: Path, preset: str = SMALL_F16) -> Path:
    """Write a small preset to `path`: 2-D tensors in f16 or q8_0, norms in f32 (as converters
    do); the same bytes on every call (~50 MB f16, ~27 MB q8_0, about a second)."""
    import gguf
    from gguf.quants import quantize

    q8 = preset == SMALL_Q8_0
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_F16
    w = gguf.GGUFWriter(str(path), "llama")
    _header(w, SMALL, f"llama-harness {preset}", file_type)
    n_vocab = len(vocab()[0])
    for name, tensor in small_weights(n_vocab).items():
        if tensor.ndim == 1:
            w.add_tensor(name, tensor)
        elif q8:
            qtype = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, quantize(tensor, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, tensor.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_WRITERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    TINY: (f"tiny-{CONTENT_VERSION}.gguf", write_tiny_model),
    SMALL_F16: (f"{SMALL_F16}-{SMALL_VERSION}.gguf", lambda p: write_small_model(p, SMALL_F16)),
    SMALL_Q8_0: (f"{SMALL_Q8_0}-{SMALL_VERSION}.gguf", lambda p: write_small_model(p, SMALL_Q8_0)),
}


def ensure_model(cache_root: Path, spec: str = TINY) -> Path:
    """The GGUF file for matrix.yaml's `model:`: a generated preset (`tiny`, `small-f16`,
    `small-q8_0`; written once, cached) or a path.

    Concurrent processes may race to generate it: each writes its own temp file next to the target
    and `os.replace`s it in, so a reader only ever sees a complete file (no lock needed: every
    writer produces the same bytes).
    """
    if spec in _WRITERS:
        name, write = _WRITERS[spec]
        target = Path(cache_root) / "models" / name
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.incomplete")
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model '{spec}': no such file (use {', '.join(PRESETS)} or a path to a GGUF file)"
        )
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ConfigError(f"model '{spec}': cannot read it: {err.strerror}") from err
    if head != GGUF_MAGIC:
        raise ConfigError(
            f"model {spec!r}: not a GGUF file (starts with {head!r}, expected b'GGUF')"
        )
    return path.resolve()
