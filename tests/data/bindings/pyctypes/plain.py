"""A small ctypes binding in the plain style (`lib.fn.argtypes = ...`), for the reader's tests.
Never imported: it loads a library that does not exist."""

import ctypes as ct
from ctypes import POINTER, Structure, c_int32, c_size_t
from ctypes import c_void_p as voidp

_lib = ct.CDLL("libllama-that-is-not-there.so")

llama_token = c_int32


class llama_batch(Structure):
    _fields_ = [
        ("n_tokens", c_int32),
        ("token", POINTER(llama_token)),
        ("pos", POINTER(c_int32)),
    ]


_lib.llama_batch_init.argtypes = [c_int32, c_int32, c_int32]
_lib.llama_batch_init.restype = llama_batch

_lib.llama_batch_free.argtypes = [llama_batch]
_lib.llama_batch_free.restype = None

# no restype: ctypes assumes C int, which truncates a pointer
_lib.llama_init_from_model.argtypes = [voidp, voidp]

llama_vocab_n_tokens = _lib.llama_vocab_n_tokens
llama_vocab_n_tokens.argtypes = (voidp,)
llama_vocab_n_tokens.restype = c_int32

getattr(_lib, "llama_max_devices").restype = c_size_t  # noqa: B009 - the form under test
_lib["llama_time_us"].restype = ct.c_int64

LLAMA_SESSION_VERSION = 9

# prototype style: a CFUNCTYPE called with (symbol, library)
llama_n_vocab = ct.CFUNCTYPE(c_int32, voidp)(("llama_n_vocab", _lib))
_bool_of_ctx = ct.CFUNCTYPE(ct.c_bool, voidp)
llama_model_has_encoder = _bool_of_ctx(("llama_model_has_encoder", _lib))
