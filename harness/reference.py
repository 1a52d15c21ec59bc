"""An independent float64 NumPy llama: what a release's tokens and logits should be.

Why: comparing releases only with each other would miss a bug they all share, or bless a model
that none of them reads as intended. This module reads the GGUF with `gguf.GGUFReader` and redoes
llama.cpp's SentencePiece tokenizer and llama forward pass from the file alone, in float64, so the
conformance suite can check every release against something that shares none of its code.

It follows llama.cpp's conventions, not Hugging Face's: RoPE in NORM mode (adjacent pairs
rotated, as llama.cpp's converter lays out Q and K for the llama arch), and SPM tokenization with a
"▁" space prefix, highest-score-leftmost bigram merges, and byte-token fallback.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPACE = "▁"
CONTROL, BYTE = 3, 6  # gguf TokenType values


@dataclass(frozen=True)
class _Model:
    hp: dict[str, Any]
    pieces: list[str]
    scores: list[float]
    types: list[int]
    ids: dict[str, int]
    tensors: dict[str, np.ndarray]

    @property
    def arch(self) -> str:
        return str(self.hp["general.architecture"])

    def key(self, name: str, default: Any = None) -> Any:
        return self.hp.get(f"{self.arch}.{name}", default)


def _field_value(field: Any) -> Any:
    """A KV value from a ReaderField via `parts`/`data` (stable across gguf versions)."""
    from gguf import GGUFValueType

    def one(kind: Any, part: np.ndarray) -> Any:
        if kind == GGUFValueType.STRING:
            return bytes(part).decode("utf-8")
        return part.tolist()[0]

    kinds = list(field.types)
    if kinds and kinds[0] == GGUFValueType.ARRAY:
        return [one(kinds[-1], field.parts[i]) for i in field.data]
    return one(kinds[0], field.parts[field.data[0]])


def _dequantize(tensor: Any) -> np.ndarray:
    """The tensor as float64 in NumPy shape (out, in); F32/F16 directly, others via gguf.quants."""
    data = np.asarray(tensor.data)
    if data.dtype in (np.float32, np.float16):
        out = data.astype(np.float64)
    else:
        from gguf import quants

        out = np.asarray(quants.dequantize(data, tensor.tensor_type), dtype=np.float64)
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    return out.reshape(shape)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> _Model:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    hp = {
        name: _field_value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")
    }
    pieces = list(hp.pop("tokenizer.ggml.tokens"))
    scores = list(hp.pop("tokenizer.ggml.scores", [0.0] * len(pieces)))
    types = list(hp.pop("tokenizer.ggml.token_type", [1] * len(pieces)))
    if hp.get("tokenizer.ggml.model") != "llama":
        raise ValueError(f"{path}: the reference only knows the SPM ('llama') tokenizer")
    if hp.get("general.architecture") != "llama":
        raise ValueError(f"{path}: the reference only knows the llama architecture")
    ids = {p: i for i, p in enumerate(pieces)}
    tensors = {t.name: _dequantize(t) for t in reader.tensors}
    return _Model(hp, pieces, scores, types, ids, tensors)


def _load(model: Path) -> _Model:
    st = Path(model).stat()
    return _load_cached(str(Path(model).resolve()), st.st_mtime_ns, st.st_size)


def tokenize(model: Path, text: str, add_bos: bool = True) -> list[int]:
    """Token ids as `llama_tokenize(vocab, text, add_special=add_bos, parse_special=false)`."""
    m = _load(model)
    out: list[int] = []
    if add_bos and m.hp.get("tokenizer.ggml.add_bos_token", True):
        out.append(int(m.hp["tokenizer.ggml.bos_token_id"]))
    if not text:
        return out
    if m.hp.get("tokenizer.ggml.add_space_prefix", True):
        text = " " + text
    symbols = list(text.replace(" ", SPACE))  # one symbol per code point, as llama.cpp splits
    while True:  # merge the best-scoring adjacent pair that is a piece; ties go leftmost
        best: tuple[float, int] | None = None
        for i in range(len(symbols) - 1):
            tid = m.ids.get(symbols[i] + symbols[i + 1])
            if tid is not None and (best is None or m.scores[tid] > best[0]):
                best = (m.scores[tid], i)
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    for sym in symbols:
        if sym in m.ids:
            out.append(m.ids[sym])
        else:  # byte fallback: one <0xXX> token per UTF-8 byte
            out.extend(m.ids[f"<0x{b:02X}>"] for b in sym.encode("utf-8"))
    return out


def _piece_bytes(m: _Model, tid: int) -> bytes:
    kind = m.types[tid]
    if kind == CONTROL:
        return b""
    if kind == BYTE:
        return bytes([int(m.pieces[tid][3:5], 16)])
    return m.pieces[tid].replace(SPACE, " ").encode("utf-8")


def detokenize(model: Path, ids: list[int]) -> str:
    """Text for `ids`, SentencePiece's decode: control tokens dropped, bytes joined, and the one
    space the tokenizer prefixed removed, so that detokenize(tokenize(t)) == t."""
    m = _load(model)
    text = b"".join(_piece_bytes(m, i) for i in ids).decode("utf-8", errors="replace")
    if m.hp.get("tokenizer.ggml.add_space_prefix", True) and text.startswith(" "):
        text = text[1:]
    return text


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope_norm(x: np.ndarray, n_rot: int, base: float) -> np.ndarray:
    """ggml_rope mode 0 (NORM): rotate pairs (x[2i], x[2i+1]) by pos * base^(-2i/n_rot).

    x: [n_tokens, n_heads, head_dim]; dims past n_rot pass through unrotated.
    """
    pos = np.arange(x.shape[0], dtype=np.float64)[:, None]
    theta = pos * base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)[None, :]
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    out = x.copy()
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = x0 * cos - x1 * sin
    out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    return out


def forward(model: Path, ids: list[int]) -> np.ndarray:
    """Logits [len(ids), n_vocab] (float64) for a causal pass over `ids` starting at position 0."""
    m = _load(model)
    t = m.tensors
    n_embd = int(m.key("embedding_length"))
    n_head = int(m.key("attention.head_count"))
    n_head_kv = int(m.key("attention.head_count_kv", n_head))
    head_dim = n_embd // n_head
    n_rot = int(m.key("rope.dimension_count", head_dim))
    base = float(m.key("rope.freq_base", 10000.0))
    eps = float(m.key("attention.layer_norm_rms_epsilon", 1e-5))
    n = len(ids)

    x = t["token_embd.weight"][np.asarray(ids, dtype=np.int64)]  # [n, n_embd]
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    group = n_head // n_head_kv
    for layer in range(int(m.key("block_count"))):
        p = f"blk.{layer}."
        h = _rms_norm(x, t[p + "attn_norm.weight"], eps)
        q = (h @ t[p + "attn_q.weight"].T).reshape(n, n_head, head_dim)
        k = (h @ t[p + "attn_k.weight"].T).reshape(n, n_head_kv, head_dim)
        v = (h @ t[p + "attn_v.weight"].T).reshape(n, n_head_kv, head_dim)
        q, k = _rope_norm(q, n_rot, base), _rope_norm(k, n_rot, base)
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # query head j → kv j//g
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(n, n_head * head_dim)
        x = x + attn @ t[p + "attn_output.weight"].T
        h = _rms_norm(x, t[p + "ffn_norm.weight"], eps)
        gate = h @ t[p + "ffn_gate.weight"].T
        x = (
            x
            + ((gate / (1.0 + np.exp(-gate))) * (h @ t[p + "ffn_up.weight"].T))
            @ t[p + "ffn_down.weight"].T
        )
    x = _rms_norm(x, t["output_norm.weight"], eps)
    out = t.get("output.weight", t["token_embd.weight"])  # tied embeddings when output is absent
    return np.asarray(x @ out.T, dtype=np.float64)


def greedy(model: Path, ids: list[int], n: int) -> list[int]:
    """The `n` tokens greedy decoding appends to `ids` (argmax; ties go to the lower id)."""
    seq = list(ids)
    for _ in range(n):
        seq.append(int(np.argmax(forward(model, seq)[-1])))
    return seq[len(ids) :]
