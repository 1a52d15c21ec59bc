"""Map a binding's names to llama.h's: by convention, with a small YAML file for the rest.

Bindings rename C structs in their language's style: llama-cpp-python keeps
`llama_context_params`, gollama.cpp writes `LlamaContextParams` (and `ffiTypeLlamaContextParams`
for its libffi descriptor), others drop the prefix (`ContextParams`). The convention covers those;
a file like

    structs: {GoDeviceProps: ggml_backend_dev_props, LibraryLoader: null}
    functions: {llama_batch_ext_init: llama_batch_init}

covers the rest (`null`: not a C struct; don't list it as unmapped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.binding.model import BindingDecl
from harness.config import yamlfile
from harness.errors import ConfigError

# Prefixes that mark a libffi type descriptor rather than the struct itself.
_DESCRIPTOR = re.compile(r"^(?:ffi_?type_?|ffiType|FfiType|ffi_)", re.IGNORECASE)
_WORDS = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class Overrides:
    """Names the convention gets wrong; None as a struct's value: not a C struct."""

    structs: dict[str, str | None] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)


def snake_case(name: str) -> str:
    """`llama_context_params` for `LlamaContextParams`; `n_ctx` for `NCtx`; `kv` for `KV`."""
    return _WORDS.sub("_", name).lower()


def c_name_candidates(name: str, prefix: str = "llama_") -> list[str]:
    """The C names a binding's struct name may stand for, most likely first."""
    bare = _DESCRIPTOR.sub("", name) if _DESCRIPTOR.match(name) and name != "ffi" else name
    out: list[str] = []
    for base in dict.fromkeys((bare, snake_case(bare))):
        out.append(base)
        if prefix and not base.startswith(prefix):
            out.append(prefix + base)
    return list(dict.fromkeys(c for c in out if c))


def field_name_candidates(name: str) -> list[str]:
    """The C field names a binding's field name may stand for (`NCtx` → `n_ctx`)."""
    return list(dict.fromkeys((name, snake_case(name), name.lower())))


def load_overrides(path: Path) -> Overrides:
    """The override file; ConfigError naming the file on any mistake in it."""
    doc = yamlfile.read(path, "binding names")
    if doc is None:
        return Overrides()
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: binding names: expected a mapping with structs/functions")
    unknown = set(doc) - {"structs", "functions"}
    if unknown:
        raise ConfigError(
            f"{path}: binding names: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            "(expected structs, functions)"
        )
    structs = _mapping(path, doc, "structs", allow_null=True)
    functions = _mapping(path, doc, "functions", allow_null=False)
    return Overrides(structs, {k: v for k, v in functions.items() if v is not None})


def _mapping(
    path: Path, doc: dict[object, object], key: str, allow_null: bool
) -> dict[str, str | None]:
    section = doc.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: binding names: {key} must map binding names to C names")
    out: dict[str, str | None] = {}
    for name, c_name in section.items():
        if not isinstance(name, str) or not (
            isinstance(c_name, str) or (c_name is None and allow_null)
        ):
            raise ConfigError(f"{path}: binding names: {key}: {name!r}: {c_name!r} is not a C name")
        out[name] = c_name
    return out


def map_structs(
    decl: BindingDecl, known: set[str], overrides: Overrides | None = None
) -> tuple[dict[str, str], list[str]]:
    """Each binding struct key → the C struct it mirrors, and the keys that map to none.

    An override is taken as written, even to a name this release lacks (the check then says
    the struct is missing); the convention only maps to names in `known`.
    """
    overrides = overrides or Overrides()
    mapped: dict[str, str] = {}
    unmapped: list[str] = []
    for key in decl.structs:
        if key in overrides.structs:
            target = overrides.structs[key]
            if target is not None:
                mapped[key] = target
            continue
        found = next((c for c in c_name_candidates(key) if c in known), None)
        if found is None:
            unmapped.append(key)
        else:
            mapped[key] = found
    return mapped, sorted(unmapped)


def map_function(symbol: str, overrides: Overrides | None = None) -> str:
    """The C symbol a binding's function stands for (readers already give C symbols)."""
    return (overrides or Overrides()).functions.get(symbol, symbol)
