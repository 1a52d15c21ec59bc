"""A release's ABI, from that release's own llama.h: parsed with libclang, bound with ctypes.

Never a hand-kept table per era: `llama_model_params` and `llama_context_params` change layout
every few months, sometimes at the same size with a new field order, and only the release's own
header says which. The parent parses once (`parse_headers`, libclang) and hands the `Api` as JSON
to the child process that loads the release; the child builds ctypes from it (`Bindings`) without
importing libclang.
"""

from __future__ import annotations

from harness.abi.bindings import Bindings, Functions, SymbolMissing
from harness.abi.model import Api, CType, Enum, Field, Function, Param, Struct
from harness.abi.parse import parse_headers  # imports libclang only when called

__all__ = [
    "Api",
    "Bindings",
    "CType",
    "Enum",
    "Field",
    "Function",
    "Functions",
    "Param",
    "Struct",
    "SymbolMissing",
    "parse_headers",
]
