"""Child process of tests/test_abi.py: load one release, bind it from an Api given as JSON.

One release per process: every release has the SONAME libggml-base.so, so a second one in the
same process would bind to the first one's ggml. Prints one JSON object on stdout.
usage: python bind_child.py API_JSON LIBDIR
"""

from __future__ import annotations

import ctypes
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from harness.abi import Api, Bindings, SymbolMissing

# libggml.so or libggml.<tag>.so, never the libggml-cpu-<arch>.so backends
_MAIN = re.compile(r"lib(ggml-base|ggml|llama)(\.[^-/]+)?\.so$")


def libraries(libdir: Path) -> list[Path]:
    found = {m.group(1): p for p in libdir.iterdir() if (m := _MAIN.fullmatch(p.name))}
    return [found[k] for k in ("ggml-base", "ggml", "llama") if k in found]


def sane(bindings: Bindings, struct: str, value: Any) -> dict[str, Any]:
    """Every field read through the parsed layout: bools are 0/1 bytes, enums hold declared
    values, floats are finite. A wrong layout reads padding or pointer bytes and fails."""
    api = bindings.api
    raw = ctypes.string_at(ctypes.addressof(value), ctypes.sizeof(value))
    out: dict[str, Any] = {}
    for f in api.structs[struct].fields:
        got = getattr(value, f.name)
        kind = f.type.kind
        if kind == "bool":
            assert raw[f.offset] in (0, 1), (struct, f.name, raw[f.offset])
        elif kind == "enum":
            enum = api.enums[f.type.name]
            assert got in enum.values.values(), (struct, f.name, got)
            got = next(k for k, v in enum.values.items() if v == got)
        elif kind == "float":
            assert math.isfinite(got), (struct, f.name, got)
        elif kind in ("pointer", "funcptr"):
            got = bool(ctypes.cast(got, ctypes.c_void_p).value)
        elif kind not in ("int", "uint"):
            continue
        out[f.name] = got
    return out


def main() -> None:
    api = Api.from_json(Path(sys.argv[1]).read_text())
    libdir = Path(sys.argv[2]).resolve()
    libs = [ctypes.CDLL(str(p), mode=ctypes.RTLD_GLOBAL) for p in libraries(libdir)]
    bindings = Bindings(api)
    fns = bindings.bind(libs[-1])  # dlsym on libllama also finds what its ggml exports

    quiet = bindings.type("ggml_log_callback")(lambda level, text, data: None)
    fns.llama_log_set(quiet, None)
    loaded_backends = "ggml_backend_load_all_from_path" in fns
    if loaded_backends:
        fns.ggml_backend_load_all_from_path(str(libdir).encode())
    fns.llama_backend_init()

    missing_call = None
    if fns.missing:
        try:
            getattr(fns, fns.missing[0])()
        except SymbolMissing as err:
            missing_call = str(err)

    model = fns.llama_model_default_params()
    context = fns.llama_context_default_params()
    result = {
        "libraries": [p.name for p in libraries(libdir)],
        "clang_imported": "clang" in sys.modules,
        "backends_loaded": loaded_backends,
        "bound": len(dir(fns)),
        "missing": fns.missing,
        "missing_call": missing_call,
        "unsupported": fns.unsupported,
        "model": sane(bindings, "llama_model_params", model),
        "context": sane(bindings, "llama_context_params", context),
        "model_type": type(model).__name__,
        "system_info": fns.llama_print_system_info().decode(),
    }
    fns.llama_backend_free()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
