"""Test-only probe: load one llama.cpp release through ctypes and run greedy decoding.

    python tests/llama_probe.py LIBDIR MODEL PROMPT N  → one JSON line on stdout

Run it in a child process, one release per process: every release's libggml-base has the same
SONAME, so a second release in one process would bind to the first one's ggml.

It needs no header and no per-release table. It only calls functions whose arguments are
pointers and integers, plus three by-value structs handled with one trick: `llama_*_default_params`
and `llama_batch_get_one` return structs larger than 16 bytes, which the x86-64 SysV ABI (and
AArch64, and Win64) returns through a caller-provided buffer, so an oversized ctypes buffer is
safe: the callee writes its real size into the front. Passing one back by value copies the whole
oversized buffer onto the stack; the callee reads its real struct from the front, which is safe
only when the struct is the call's last stack-passed argument (true for
`llama_model_load_from_file(path, params)`, `llama_init_from_model(model, params)` and
`llama_decode(ctx, batch)`). Defaults are used unchanged, so no field offset is ever needed.

API variants are chosen by which symbols the library exports, never by tag:
- `llama_model_get_vocab` (b4753+): tokenize/token_to_piece/n_tokens take the vocab, else the model
- `llama_model_load_from_file` / `llama_init_from_model` / `llama_model_free`, else the old names
- `llama_batch_get_one` is always called with (tokens, n, pos_0, seq_id): the 4-argument form
  (b3889) uses pos_0, the 2-argument form ignores the extra register arguments and tracks positions
  itself.
- `ggml_backend_load_all_from_path` (libggml, b4435+) must be called before loading a model.
"""

from __future__ import annotations

import ctypes as C
import json
import sys
from pathlib import Path
from typing import Any


class Blob(C.Structure):
    """An opaque by-value struct, bigger than any llama.cpp params struct or llama_batch."""

    _fields_ = [("raw", C.c_uint8 * 1024)]


LOG_CB = C.CFUNCTYPE(None, C.c_int, C.c_char_p, C.c_void_p)


def _one(libdir: Path, pattern: str) -> Path:
    found = sorted(libdir.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {libdir}, found {[p.name for p in found]}")
    return found[0]


def _fn(lib: C.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


def _has(lib: C.CDLL, name: str) -> bool:
    return hasattr(lib, name)


def main(libdir: Path, model: Path, prompt: str, n_gen: int) -> dict[str, Any]:
    base = libdir / "libggml-base.so"
    if base.exists():  # absent in b3889, whose libggml has everything
        C.CDLL(str(base), mode=C.RTLD_GLOBAL)
    ggml = C.CDLL(str(_one(libdir, "libggml.*so")), mode=C.RTLD_GLOBAL)
    llama = C.CDLL(str(_one(libdir, "libllama.*so")), mode=C.RTLD_GLOBAL)
    api: dict[str, str] = {}

    # void llama_log_set(ggml_log_callback cb, void * user_data)
    quiet = LOG_CB(lambda level, text, user: None)  # referenced until exit
    _fn(llama, "llama_log_set", None, LOG_CB, C.c_void_p)(quiet, None)
    if _has(ggml, "ggml_backend_load_all_from_path"):
        # void ggml_backend_load_all_from_path(const char * dir_path)
        _fn(ggml, "ggml_backend_load_all_from_path", None, C.c_char_p)(str(libdir).encode())
        api["backends"] = "ggml_backend_load_all_from_path"
    _fn(llama, "llama_backend_init", None)()

    # struct llama_model_params llama_model_default_params(void)
    mparams = _fn(llama, "llama_model_default_params", Blob)()
    load_name = next(n for n in ("llama_model_load_from_file", "llama_load_model_from_file")
                     if _has(llama, n))  # fmt: skip
    api["load"] = load_name
    # struct llama_model * llama_model_load_from_file(const char * path, struct llama_model_params)
    mdl = _fn(llama, load_name, C.c_void_p, C.c_char_p, Blob)(str(model).encode(), mparams)
    if not mdl:
        raise SystemExit(f"{load_name} returned NULL for {model}")
    cparams = _fn(llama, "llama_context_default_params", Blob)()
    init_name = next(n for n in ("llama_init_from_model", "llama_new_context_with_model")
                     if _has(llama, n))  # fmt: skip
    api["context"] = init_name
    # struct llama_context * llama_init_from_model(struct llama_model *,
    #                                              struct llama_context_params)
    ctx = _fn(llama, init_name, C.c_void_p, C.c_void_p, Blob)(mdl, cparams)
    if not ctx:
        raise SystemExit(f"{init_name} returned NULL")
    # One thread: the default 4 spin-waiting threads crawl on a 2-core runner (0.4 s a token),
    # worse under pytest-xdist; the model is too small to gain from more.
    # void llama_set_n_threads(struct llama_context *, int32_t n_threads, int32_t n_threads_batch)
    _fn(llama, "llama_set_n_threads", None, C.c_void_p, C.c_int32, C.c_int32)(ctx, 1, 1)

    if _has(llama, "llama_model_get_vocab"):
        # const struct llama_vocab * llama_model_get_vocab(const struct llama_model *)
        handle = _fn(llama, "llama_model_get_vocab", C.c_void_p, C.c_void_p)(mdl)
        api["vocab"] = "llama_vocab*"
    else:
        handle = mdl
        api["vocab"] = "llama_model*"
    n_tokens_name = (
        "llama_vocab_n_tokens" if _has(llama, "llama_vocab_n_tokens") else "llama_n_vocab"
    )
    n_vocab = _fn(llama, n_tokens_name, C.c_int32, C.c_void_p)(handle)

    # int32_t llama_tokenize(vocab_or_model, const char * text, int32_t text_len,
    #                        llama_token * tokens, int32_t n_tokens_max, bool add_special,
    #                        bool parse_special)
    tokenize = _fn(llama, "llama_tokenize", C.c_int32, C.c_void_p, C.c_char_p, C.c_int32,
                   C.POINTER(C.c_int32), C.c_int32, C.c_bool, C.c_bool)  # fmt: skip
    text = prompt.encode()
    buf = (C.c_int32 * (len(text) + 8))()
    n = tokenize(handle, text, len(text), buf, len(buf), True, False)
    if n < 0:
        raise SystemExit(f"llama_tokenize failed: {n}")
    tokens = list(buf[:n])

    # struct llama_batch llama_batch_get_one(llama_token * tokens, int32_t n_tokens
    #                                        [, llama_pos pos_0, llama_seq_id seq_id])
    batch_get_one = _fn(llama, "llama_batch_get_one", Blob,
                        C.POINTER(C.c_int32), C.c_int32, C.c_int32, C.c_int32)  # fmt: skip
    # int32_t llama_decode(struct llama_context * ctx, struct llama_batch batch)
    decode = _fn(llama, "llama_decode", C.c_int32, C.c_void_p, Blob)
    # float * llama_get_logits_ith(struct llama_context * ctx, int32_t i)
    logits_ith = _fn(llama, "llama_get_logits_ith", C.POINTER(C.c_float), C.c_void_p, C.c_int32)
    # int32_t llama_token_to_piece(vocab_or_model, llama_token, char * buf, int32_t length,
    #                              int32_t lstrip, bool special)
    to_piece = _fn(llama, "llama_token_to_piece", C.c_int32, C.c_void_p, C.c_int32, C.c_char_p,
                   C.c_int32, C.c_int32, C.c_bool)  # fmt: skip

    def run(ids: list[int], pos: int) -> list[float]:
        arr = (C.c_int32 * len(ids))(*ids)
        rc = decode(ctx, batch_get_one(arr, len(ids), pos, 0))
        if rc != 0:
            raise SystemExit(f"llama_decode returned {rc}")
        row = logits_ith(ctx, -1)
        return [float(row[i]) for i in range(n_vocab)]

    rows = [run(tokens, 0)]
    generated: list[int] = []
    for step in range(n_gen):
        last = rows[-1]
        generated.append(max(range(n_vocab), key=last.__getitem__))  # greedy: first max wins
        if step + 1 < n_gen:
            rows.append(run([generated[-1]], len(tokens) + step))
    text_out = b""
    piece = C.create_string_buffer(64)
    for tid in generated:
        k = to_piece(handle, tid, piece, len(piece), 0, False)
        text_out += piece.raw[: max(k, 0)]

    _fn(llama, "llama_free", None, C.c_void_p)(ctx)
    free_name = "llama_model_free" if _has(llama, "llama_model_free") else "llama_free_model"
    _fn(llama, free_name, None, C.c_void_p)(mdl)
    _fn(llama, "llama_backend_free", None)()
    return {"n_vocab": n_vocab, "tokens": tokens, "generated": generated, "logits": rows,
            "text_hex": text_out.hex(), "api": api}  # fmt: skip


if __name__ == "__main__":
    result = main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3],
                  int(sys.argv[4]))  # fmt: skip
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
