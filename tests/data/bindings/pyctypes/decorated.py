"""A small binding in llama-cpp-python's style, written for the binding reader's tests.

Its decorator binds nothing, so the tests can import this file and ask ctypes itself for the
layouts the reader must compute without importing it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import TYPE_CHECKING


def ctypes_function(name, argtypes, restype, enabled=True):
    def decorator(f):
        return f

    return decorator


# enum llama_vocab_type
LLAMA_VOCAB_TYPE_NONE = 0
LLAMA_VOCAB_TYPE_SPM = 1
LLAMA_VOCAB_TYPE_BPE = LLAMA_VOCAB_TYPE_SPM + 1
LLAMA_ROPE_TYPE_NONE = -1
LLAMA_ROPE_TYPE_NEOX = 1 << 1
LLAMA_DEFAULT_SEED = 0xFFFFFFFF
_PRIVATE = 7
NOT_AN_INT = "llama"
A_BOOL = True

llama_token = ctypes.c_int32
llama_token_p = ctypes.POINTER(llama_token)
llama_pos = llama_token
llama_context_p_ctypes = ctypes.c_void_p

if TYPE_CHECKING:
    llama_token = ctypes.c_int64  # never runs: the reader must not believe it

# typedef bool (*llama_progress_callback)(float progress, void * user_data);
llama_progress_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_float, ctypes.c_void_p)


class llama_token_data(ctypes.Structure):
    _fields_ = [
        ("id", llama_token),
        ("logit", ctypes.c_float),
        ("p", ctypes.c_float),
    ]


class llama_kv_value(ctypes.Union):
    _fields_ = [
        ("int_value", ctypes.c_int64),
        ("float_value", ctypes.c_double),
        ("bool_value", ctypes.c_bool),
    ]


class llama_kv_override(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_char * 128),
        ("tag", ctypes.c_int),
        ("value", llama_kv_value),
    ]


class llama_params(ctypes.Structure):
    _fields_ = [
        ("n_ctx", ctypes.c_uint32),
        ("progress", llama_progress_callback),
        ("data", llama_token_data),  # nested by value
        ("grid", (ctypes.c_int16 * 3) * 2),
        ("tokens", llama_token_p),
        ("flag", ctypes.c_bool),
        ("long_value", ctypes.c_long),
    ]


class llama_packed(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32), ("c", ctypes.c_uint16)]


class llama_bits(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint32, 3), ("y", ctypes.c_uint32, 30), ("z", ctypes.c_uint8)]


class llama_params_ext(llama_params):
    _fields_ = [("extra", ctypes.c_double)]


class llama_sampler_i(ctypes.Structure): ...  # fields assigned below (it points to itself)


llama_sampler_i_p = ctypes.POINTER(llama_sampler_i)
llama_sampler_i._fields_ = [
    ("name", ctypes.CFUNCTYPE(ctypes.c_char_p, llama_sampler_i_p)),
    ("ctx", ctypes.c_void_p),
]


@ctypes_function("llama_decode", [llama_context_p_ctypes, llama_params], ctypes.c_int32)
def llama_decode(ctx, params, /) -> int: ...


@ctypes_function(
    "llama_tokenize",
    [llama_context_p_ctypes, ctypes.c_char_p, ctypes.c_int32, llama_token_p, ctypes.c_bool],
    ctypes.c_int32,
)
def llama_tokenize(ctx, text, n, tokens, special, /) -> int: ...


@ctypes_function("llama_backend_free", [], None)
def llama_backend_free() -> None: ...


@ctypes_function("llama_get_logits", [llama_context_p_ctypes], ctypes.POINTER(ctypes.c_float))
def llama_get_logits(ctx, /): ...


@ctypes_function("llama_disabled", [], None, enabled=False)
def llama_disabled() -> None: ...


@ctypes_function(name="llama_n_ctx", argtypes=[llama_context_p_ctypes], restype=ctypes.c_uint32)
def llama_n_ctx(ctx, /) -> int: ...


@ctypes_function("llama_set_progress", [llama_context_p_ctypes, llama_progress_callback], None)
def llama_set_progress(ctx, callback, /) -> None: ...


# A platform test: the reader takes the target's branch, as Python on that platform would.
if sys.platform == "win32":
    llama_handle_t = ctypes.c_uint32
elif sys.platform.startswith("linux") and os.name != "nt":
    llama_handle_t = ctypes.c_uint16
else:
    llama_handle_t = ctypes.c_uint64


class llama_handle_holder(ctypes.Structure):
    _fields_ = [("handle", llama_handle_t)]
