"""What a binding declares (functions, structs, constants), read from its source, never run.

The readers (`pyctypes`, `golang`) fill these; `check` compares them with a release's ABI
(`harness.abi.model.Api`). Types are kept by layout class, as the ABI check needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Layout classes a check compares: the C calling convention cares about these, not spellings.
CLASSES = ("void", "int", "float", "bool", "pointer", "struct", "array", "unknown")


@dataclass(frozen=True)
class TypeRef:
    """A type as the binding spells it, with what the ABI check needs."""

    spelling: str  # as written: "ctypes.c_int32", "POINTER(llama_batch)", "uint32", "uintptr"
    kind: str  # one of CLASSES
    size: int | None  # bytes on the reader's target; None when unknown
    align: int | None = None
    signed: bool | None = None  # ints only
    struct: str | None = None  # kind "struct" (by value) or "array" of structs: the binding's name
    count: int | None = None  # kind "array": element count


@dataclass(frozen=True)
class FieldDecl:
    name: str
    type: TypeRef
    offset: int | None  # by the language's layout rules (ctypes: C rules and _pack_; Go: Go rules)


@dataclass(frozen=True)
class StructDecl:
    name: str  # as the binding names it: LlamaContextParams, llama_context_params
    fields: tuple[FieldDecl, ...]
    size: int | None
    where: str  # "path/file.py:123" (relative to the binding's root)
    origin: str = ""  # "ctypes.Structure", "go struct", "ffi.Type"


@dataclass(frozen=True)
class FunctionDecl:
    symbol: str  # the exported C symbol it binds: llama_decode
    params: tuple[TypeRef, ...] | None  # None: the binding does not say
    result: TypeRef | None  # None: the binding does not say; TypeRef(kind="void") for void
    where: str
    variadic: bool = False


@dataclass
class BindingDecl:
    name: str  # "llama-cpp-python 0.3.16", "gollama.cpp"
    language: str  # "python-ctypes" | "go"
    target: str  # layout rules used: "x86_64-linux", "aarch64-linux", ...
    functions: dict[str, FunctionDecl] = field(default_factory=dict)  # by symbol
    structs: dict[str, StructDecl] = field(default_factory=dict)  # by the binding's name + origin
    constants: dict[str, int] = field(default_factory=dict)  # enum-like constants it declares
    problems: list[str] = field(default_factory=list)  # what the reader could not understand
