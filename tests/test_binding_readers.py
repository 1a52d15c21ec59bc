"""The binding readers on small bindings of our own (one construct each) and on real code nobody
here wrote: gollama.cpp (from ../shared/bindings) and five llama-cpp-python sdists (2024-2026).

Layouts are checked against an authority where one runs here: ctypes itself computes the
offsets of every Structure the Python reader reads (from our own binding, and from the
Structure definitions of each real sdist); Go's are worked out by hand below.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import io
import platform
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from harness.binding.golang import read_package
from harness.binding.layout import normalize_target
from harness.binding.model import BindingDecl, StructDecl
from harness.binding.names import (
    Overrides,
    c_name_candidates,
    field_name_candidates,
    load_overrides,
    map_structs,
    snake_case,
)
from harness.binding.pyctypes import read_sources
from harness.binding.read import read_binding
from harness.errors import EXIT_USAGE, BindingUnreadable, ConfigError
from tests.sdists import LLAMA_CPP_PYTHON, llama_cpp_python

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "bindings"
# shared/ sits beside the repository (CI copies it there), or beside the folder of worktrees.
GOLLAMA = (
    next(
        (p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()),
        ROOT.parent / "shared",
    )
    / "bindings"
    / "gollama.cpp"
)
LP64_HOST = platform.system() == "Linux" and platform.machine() in ("x86_64", "aarch64")


def layout(struct: StructDecl) -> list[tuple[str, int | None]]:
    return [(f.name, f.offset) for f in struct.fields]


def ctypes_layouts(namespace: dict[str, Any]) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """What ctypes itself says: size and offsets of each Structure/Union class in a namespace."""
    out = {}
    for name, value in namespace.items():
        if isinstance(value, type) and issubclass(value, (ctypes.Structure, ctypes.Union)):
            if "_fields_" not in value.__dict__:
                continue
            fields: list[tuple[str, int]] = []
            for klass in reversed(value.__mro__):  # a subclass's fields follow its base's
                for entry in klass.__dict__.get("_fields_", []):
                    fields.append((entry[0], getattr(value, entry[0]).offset))
            out[name] = (ctypes.sizeof(value), fields)
    return out


def structure_statements_only(text: str) -> dict[str, Any]:
    """Run a real binding's ctypes type definitions (no library, no functions) to get ctypes'
    own layouts; statements that need what is not run (the library) simply fail and are
    skipped."""
    namespace: dict[str, Any] = {"__name__": "binding_under_test"}
    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module not in ("ctypes", "typing"):
            continue
        if not isinstance(stmt, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.Assign)):
            continue
        try:
            exec(compile(ast.Module([stmt], []), "<binding>", "exec"), namespace)
        except Exception:
            continue
    return namespace


# ---- Python ctypes, our own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def decorated() -> BindingDecl:
    return read_binding(DATA / "pyctypes" / "decorated.py")


@pytest.mark.skipif(not LP64_HOST, reason="ctypes' own layouts are the host's: LP64 Linux here")
def test_ctypes_structs_match_ctypes_own_layout(decorated: BindingDecl) -> None:
    spec = importlib.util.spec_from_file_location("decorated", DATA / "pyctypes" / "decorated.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own test binding: it binds nothing
    truth = ctypes_layouts(vars(module))
    assert set(truth) == set(decorated.structs)
    for name, (size, offsets) in truth.items():
        assert decorated.structs[name].size == size, name
        assert layout(decorated.structs[name]) == offsets, name


def test_ctypes_constructs(decorated: BindingDecl) -> None:
    assert decorated.language == "python-ctypes" and decorated.target == "x86_64-linux"
    assert decorated.problems == []
    assert decorated.constants == {
        "LLAMA_VOCAB_TYPE_NONE": 0,
        "LLAMA_VOCAB_TYPE_SPM": 1,
        "LLAMA_VOCAB_TYPE_BPE": 2,
        "LLAMA_ROPE_TYPE_NONE": -1,
        "LLAMA_ROPE_TYPE_NEOX": 2,
        "LLAMA_DEFAULT_SEED": 0xFFFFFFFF,
    }
    # enabled=False binds nothing; the keyword form binds like the positional one
    assert sorted(decorated.functions) == [
        "llama_backend_free",
        "llama_decode",
        "llama_get_logits",
        "llama_n_ctx",
        "llama_set_progress",
        "llama_tokenize",
    ]
    decode = decorated.functions["llama_decode"]
    assert decode.params is not None and decode.result is not None
    assert [(p.kind, p.size) for p in decode.params] == [("pointer", 8), ("struct", 64)]
    assert decode.params[1].struct == "llama_params"
    assert (decode.result.kind, decode.result.size, decode.result.signed) == ("int", 4, True)
    assert decode.where == "decorated.py:104"
    tokenize = decorated.functions["llama_tokenize"].params
    assert tokenize is not None
    # llama_token is c_int32: the TYPE_CHECKING block that says c_int64 never runs
    assert [p.spelling for p in tokenize][3] == "llama_token_p"
    assert [p.kind for p in tokenize] == ["pointer", "pointer", "int", "pointer", "bool"]
    assert decorated.functions["llama_backend_free"].result.kind == "void"  # type: ignore[union-attr]
    callback = decorated.functions["llama_set_progress"].params
    assert callback is not None and callback[1].kind == "pointer"
    params = decorated.structs["llama_params"]
    assert params.origin == "ctypes.Structure" and params.where == "decorated.py:69"
    grid = params.fields[3].type
    assert (grid.kind, grid.count, grid.size) == ("array", 2, 12)
    assert decorated.structs["llama_kv_value"].origin == "ctypes.Union"
    assert decorated.structs["llama_kv_override"].fields[2].type.struct == "llama_kv_value"
    assert [f.name for f in decorated.structs["llama_params_ext"].fields][-2:] == [
        "long_value",
        "extra",
    ]


def test_ctypes_plain_assignment_style() -> None:
    decl = read_binding(DATA / "pyctypes" / "plain.py")
    assert decl.problems == []
    assert sorted(decl.functions) == [
        "llama_batch_free",
        "llama_batch_init",
        "llama_init_from_model",
        "llama_max_devices",
        "llama_model_has_encoder",
        "llama_n_vocab",
        "llama_time_us",
        "llama_vocab_n_tokens",
    ]
    init = decl.functions["llama_batch_init"]
    assert init.result is not None and (init.result.kind, init.result.size) == ("struct", 24)
    assert init.params is not None and [p.size for p in init.params] == [4, 4, 4]
    # argtypes without restype: ctypes' default c_int, which would truncate the pointer
    missing = decl.functions["llama_init_from_model"].result
    assert missing is not None and (missing.kind, missing.size) == ("int", 4)
    assert "default restype" in missing.spelling
    assert decl.functions["llama_batch_free"].result.kind == "void"  # type: ignore[union-attr]
    assert decl.functions["llama_max_devices"].params is None  # restype only
    assert decl.functions["llama_vocab_n_tokens"].params is not None  # through an alias
    assert decl.functions["llama_time_us"].result.size == 8  # type: ignore[union-attr]
    assert decl.constants == {"LLAMA_SESSION_VERSION": 9}
    # prototype style: CFUNCTYPE(restype, *argtypes)(("symbol", lib)), directly or by a name
    n_vocab, encoder = decl.functions["llama_n_vocab"], decl.functions["llama_model_has_encoder"]
    assert n_vocab.params is not None and [p.kind for p in n_vocab.params] == ["pointer"]
    assert n_vocab.result is not None and (n_vocab.result.kind, n_vocab.result.size) == ("int", 4)
    assert encoder.result is not None and encoder.result.kind == "bool"
    assert encoder.where == "plain.py:42"


def test_ctypes_windows_target_is_llp64() -> None:
    linux = read_binding(DATA / "pyctypes" / "decorated.py", "x86_64-unknown-linux-gnu")
    windows = read_binding(DATA / "pyctypes" / "decorated.py", "x86_64-pc-windows-msvc")
    assert windows.target == "x86_64-windows"
    assert linux.structs["llama_params"].size == 64
    assert windows.structs["llama_params"].fields[-1].type.size == 4  # c_long
    assert windows.structs["llama_params"].size == 56
    # `if sys.platform == "win32": ... elif sys.platform.startswith("linux") ...: ... else: ...`
    darwin = read_binding(DATA / "pyctypes" / "decorated.py", "arm64-apple-darwin")
    holder = "llama_handle_holder"
    assert [d.structs[holder].size for d in (linux, windows, darwin)] == [2, 4, 8]


def test_ctypes_unknown_types_are_problems_not_guesses() -> None:
    text = (
        "import ctypes\nfrom .other import llama_thing\n"
        "class s(ctypes.Structure):\n    _fields_ = [('a', ctypes.c_int8), ('b', llama_thing),"
        " ('c', ctypes.c_int8)]\n"
        "@ctypes_function('llama_f', [llama_thing, ctypes.c_int], None)\ndef f(): ...\n"
    )
    decl = read_sources([("mod.py", text)], "inline")
    assert decl.problems == [
        "mod.py:4: cannot evaluate type `llama_thing`",
        "mod.py:5: cannot evaluate type `llama_thing`",
    ]
    struct = decl.structs["s"]
    assert struct.size is None and layout(struct) == [("a", 0), ("b", None), ("c", None)]
    params = decl.functions["llama_f"].params
    assert params is not None and [p.kind for p in params] == ["unknown", "int"]


# ---- Go, our own -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> BindingDecl:
    return read_binding(DATA / "go" / "tiny")


def test_go_struct_layout_by_go_rules(tiny: BindingDecl) -> None:
    params = tiny.structs["LlamaParams"]
    assert params.origin == "go struct" and params.where == "binding.go:50"
    assert layout(params) == [
        ("Seed", 0),
        ("Flag", 4),
        ("Big", 8),  # int64 aligned to 8
        ("Weights", 16),
        ("Data", 32),  # LlamaTokenData by value: 12 bytes, 4-aligned
        ("Tokens", 48),
        ("Raw", 56),
        ("Handle", 64),
        ("Key", 72),  # [LLAMA_KEY_LEN]byte, the constant resolved
        ("Name", 80),  # a Go string: 16 bytes, no C counterpart
        ("Inner", 96),  # embedded, named by its type
        ("Small", 112),
        ("Other", 113),
        ("_", 120),
    ]
    assert params.size == 128  # the zero-size last field gets a byte, then 8-alignment
    kinds = {f.name: (f.type.kind, f.type.size) for f in params.fields}
    assert kinds["Handle"] == ("pointer", 8)  # uintptr: a handle
    assert kinds["Raw"] == ("pointer", 8)
    assert kinds["Name"] == ("unknown", 16)
    assert kinds["Key"] == ("array", 8)
    assert params.fields[0].type.signed is False and params.fields[2].type.signed is True
    # arm64 lays Go structs out the same way
    assert layout(read_binding(DATA / "go" / "tiny", "arm64").structs["LlamaParams"]) == layout(
        params
    )


def test_go_registrations_followed_through_helpers(tiny: BindingDecl) -> None:
    assert sorted(tiny.functions) == [
        "llama_backend_init",  # purego.RegisterLibFunc
        "llama_data_by_pointer",
        "llama_decode",  # its symbol a string constant
        "llama_get_logits",  # register(lib, name, fptr): arguments in its own order
        "llama_log_set",  # through unsafe.Pointer(&fn)
        "llama_model_desc",  # purego.RegisterFunc(&fn, purego.Dlsym(lib, "..."))
        "llama_n_vocab",  # a struct's function field: &lib.nVocab
        "llama_printf",
        "llama_split",
        "llama_tokenize",  # track := func(f, n) { register(libHandle, n, f) }
    ]
    decode = tiny.functions["llama_decode"]
    assert decode.where == "binding.go:68"
    assert decode.params is not None and decode.result is not None
    assert [(p.kind, p.size, p.struct) for p in decode.params] == [
        ("pointer", 8, None),
        ("struct", 128, "LlamaParams"),
    ]
    assert (decode.result.kind, decode.result.size, decode.result.signed) == ("int", 4, True)
    tokenize = tiny.functions["llama_tokenize"].params
    assert tokenize is not None
    assert [p.kind for p in tokenize] == ["pointer", "pointer", "pointer", "int", "bool"]
    assert tiny.functions["llama_backend_init"].result.kind == "void"  # type: ignore[union-attr]
    assert tiny.functions["llama_printf"].variadic
    log_set = tiny.functions["llama_log_set"].params
    assert log_set is not None and log_set[0].kind == "pointer"  # a Go func: purego callback
    assert tiny.problems == [
        "binding.go:110: registers local: no package-level function variable or field",
        "binding.go:74: llamaSplit returns (int32, error): not one C value",
        "binding.go:75: llamaNeverBound is declared but never registered",
        "ffi.go:30: ffiTypeOdd: unknown ffi element &ffi.TypeMystery",
    ]


def test_go_constants(tiny: BindingDecl) -> None:
    assert tiny.constants == {
        "LLAMA_VOCAB_TYPE_NONE": 0,  # iota, then the implicit repetition
        "LLAMA_VOCAB_TYPE_SPM": 1,
        "LLAMA_VOCAB_TYPE_BPE": 2,
        "LLAMA_DEFAULT_SEED": 0xFFFFFFFF,
        "LLAMA_TOKEN_NULL": -1,
        "LLAMA_SESSION_MAGIC": 0x6767736E,  # from a constant declared after it
        "LLAMA_FILE_MAGIC_GGSN": 0x6767736E,
        "LLAMA_FLAG_B": 8,
        "LLAMA_MASK": 15,
        "LLAMA_CHAR": 65,
        "LLAMA_KEY_LEN": 8,
    }


def test_go_structs_kept_are_the_c_ones(tiny: BindingDecl) -> None:
    assert {n: s.origin for n, s in tiny.structs.items()} == {
        "LlamaParams": "go struct",
        "LlamaTokenData": "go struct",
        "Inner": "go struct",  # embedded by value in LlamaParams
        "ffiTypeLlamaTokenData": "ffi.Type",
        "ffiTypeLlamaParams": "ffi.Type",
        "ffiTypePair": "ffi.Type",
        "ffiTypeOdd": "ffi.Type",
    }


def test_go_ffi_descriptors_by_c_rules() -> None:
    linux = read_binding(DATA / "go" / "tiny", "x86_64-linux").structs
    windows = read_binding(DATA / "go" / "tiny", "x86_64-windows").structs
    params = linux["ffiTypeLlamaParams"]
    assert params.where == "ffi.go:16"
    # names from each element's one-word comment; nested descriptors by value
    assert layout(params) == [
        ("seed", 0),
        ("flag", 4),
        ("big", 8),
        ("data", 16),
        ("elements[4]", 32),
        ("elements[5]", 40),
    ]
    assert params.fields[3].type.struct == "ffiTypeLlamaTokenData"
    assert params.size == 48
    assert layout(windows["ffiTypeLlamaParams"])[-2:] == [("elements[4]", 28), ("elements[5]", 32)]
    assert windows["ffiTypeLlamaParams"].size == 40  # ffi.TypeSlong: a 4-byte long
    assert layout(linux["ffiTypePair"]) == [("elements[0]", 0), ("elements[1]", 8)]  # NewType
    assert linux["ffiTypeOdd"].size is None


def test_go_registration_records_and_learnt_registrars() -> None:
    decl = read_binding(DATA / "go" / "records")
    assert decl.name == "records" and decl.problems == []
    assert sorted(decl.functions) == [
        "ggml_type_size",  # bindOptional → registerOptional (positions learnt from a call)
        "llama_free",  # keyed record
        "llama_n_ctx",  # keyed, in another order
        "llama_vocab_bos",  # positional record
        "llama_warmup",
    ]
    n_ctx = decl.functions["llama_n_ctx"]
    assert n_ctx.result is not None and (n_ctx.result.size, n_ctx.result.signed) == (4, False)


# ---- gollama.cpp, real -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gollama() -> BindingDecl:
    if not GOLLAMA.is_dir():
        pytest.skip(f"gollama.cpp sources not found at {GOLLAMA} (shared/ is not beside the repo)")
    return read_binding(GOLLAMA)


def test_gollama_context_params_as_issue_13_describes(gollama: BindingDecl) -> None:
    assert gollama.name == "gollama.cpp" and gollama.language == "go"
    params = gollama.structs["LlamaContextParams"]
    assert params.fields[0].name == "Seed" and params.fields[0].offset == 0
    assert (params.fields[0].type.spelling, params.fields[0].type.size) == ("uint32", 4)
    assert params.size == 120
    assert [f.name for f in params.fields][-5:] == [
        "Logits",
        "Embeddings",
        "Offload_kqv",
        "FlashAttn",
        "NoPerf",
    ]
    arm = read_binding(GOLLAMA, "aarch64-linux").structs["LlamaContextParams"]
    assert (layout(arm), arm.size) == (layout(params), 120)
    # its libffi descriptor says the same, field for field, by C rules
    ffi = gollama.structs["ffiTypeLlamaContextParams"]
    assert ffi.origin == "ffi.Type" and ffi.size == 120
    assert [f.name for f in ffi.fields][:2] == ["seed", "n_ctx"]
    assert [f.offset for f in ffi.fields] == [f.offset for f in params.fields]
    assert [f.type.size for f in ffi.fields] == [f.type.size for f in params.fields]
    for go_name, ffi_name in (("LlamaModelParams", 72), ("LlamaBatch", 56)):
        struct = gollama.structs[go_name]
        assert struct.size == ffi_name
        assert layout(gollama.structs["ffiType" + go_name])[-1][1] == struct.fields[-1].offset


def test_gollama_functions_through_track_register(gollama: BindingDecl) -> None:
    assert gollama.problems == []
    assert len(gollama.functions) == 152
    llama = [s for s in gollama.functions if s.startswith("llama_")]
    ggml = [s for s in gollama.functions if s.startswith("ggml_")]
    assert (len(llama), len(ggml)) == (79, 73)  # 79 trackRegister, 73 tryRegisterLibFunc
    init = gollama.functions["llama_backend_init"]  # trackRegister(&llamaBackendInit, "...")
    assert init.params == () and init.result is not None and init.result.kind == "void"
    decode = gollama.functions["llama_decode"]  # registered on darwin only: still declared
    assert decode.params is not None and decode.params[1].struct == "LlamaBatch"
    assert decode.params[1].size == 56
    size = gollama.functions["ggml_type_size"]  # tryRegisterLibFunc(&ggmlTypeSize, h, "...")
    assert size.result is not None and (size.result.size, size.result.signed) == (8, False)
    assert gollama.functions["llama_vocab_type"].where == "gollama.go:377"  # llamaModelVocabType


def test_gollama_constants_and_structs(gollama: BindingDecl) -> None:
    assert gollama.constants["LLAMA_DEFAULT_SEED"] == 0xFFFFFFFF
    assert gollama.constants["LLAMA_SESSION_MAGIC"] == 0x6767736E
    assert gollama.constants["LLAMA_FTYPE_MOSTLY_Q4_K_M"] == 15
    assert gollama.constants["LLAMA_TOKEN_ATTR_SINGLE_WORD"] == 1 << 8
    assert gollama.constants["GGML_TYPE_BF16"] == 30
    assert "Version" not in gollama.constants  # a string
    assert "FunctionRegistration" not in gollama.structs  # Go-only
    props = gollama.structs["GgmlBackendDevProps"]  # Go strings where C has `const char *`
    assert [(f.name, f.type.kind, f.type.size) for f in props.fields][:2] == [
        ("Name", "unknown", 16),
        ("Description", "unknown", 16),
    ]


# ---- llama-cpp-python, real ------------------------------------------------------------------


@pytest.fixture(scope="module", params=LLAMA_CPP_PYTHON)
def sdist(request: pytest.FixtureRequest) -> tuple[str, Path, BindingDecl]:
    path = llama_cpp_python(request.param)
    return request.param, path, read_binding(path)


def test_llama_cpp_python_sdist(sdist: tuple[str, Path, BindingDecl]) -> None:
    version, _, decl = sdist
    assert decl.name == f"llama-cpp-python {version}"
    assert decl.problems == []
    assert len(decl.functions) > 100 and len(decl.structs) > 10 and len(decl.constants) > 70
    newest = version == "0.3.36"
    # issue 13: 0.3.36 needs llama_version and llama_batch_ext_init, which releases lack
    assert ("llama_version" in decl.functions) is newest
    assert ("llama_batch_ext_init" in decl.functions) is newest
    params = decl.structs["llama_context_params"]
    # seed left llama_context_params in mid-2024; 0.2.x still has it first
    assert (params.fields[0].name == "seed") is version.startswith("0.2.")
    batch_get_one = decl.functions["llama_batch_get_one"].params
    assert batch_get_one is not None
    assert len(batch_get_one) == (4 if version.startswith("0.2.") else 2)
    version_fn = decl.functions.get("llama_version")
    if version_fn is not None:
        assert version_fn.result is not None and version_fn.result.kind == "pointer"


@pytest.mark.skipif(not LP64_HOST, reason="ctypes' own layouts are the host's: LP64 Linux here")
def test_llama_cpp_python_structs_match_ctypes(sdist: tuple[str, Path, BindingDecl]) -> None:
    _, path, decl = sdist
    with tarfile.open(path) as tf:
        member = next(m for m in tf if m.name.endswith("/llama_cpp/llama_cpp.py"))
        handle = tf.extractfile(member)
        assert handle is not None
        text = handle.read().decode()
    truth = ctypes_layouts(structure_statements_only(text))
    assert len(truth) >= 10
    for name, (size, offsets) in truth.items():
        assert decl.structs[name].size == size, name
        assert layout(decl.structs[name]) == offsets, name


def test_llama_cpp_python_unpacked_folder_reads_the_same(tmp_path: Path) -> None:
    path = llama_cpp_python("0.3.36")
    with tarfile.open(path) as tf:
        for member in tf:
            if member.name.endswith(("/PKG-INFO", "/llama_cpp/llama_cpp.py")):
                member.name = "/".join(member.name.split("/")[1:])
                tf.extract(member, tmp_path, filter="data")
    folder, archive = read_binding(tmp_path), read_binding(path)
    assert folder.name == archive.name == "llama-cpp-python 0.3.36"
    module = read_binding(tmp_path / "llama_cpp" / "llama_cpp.py")
    assert module.name == archive.name and module.structs == archive.structs
    assert folder.functions == archive.functions and folder.structs == archive.structs


# ---- read_binding: choosing, naming, refusing --------------------------------------------------


def fake_sdist(tmp_path: Path, module: str | None, zipped: bool = False) -> Path:
    info = b"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 9.9.9\n"
    files = {}  # PKG-INFO last, as in real sdists: the name then comes from the top folder
    if module is not None:
        files["llama_cpp_python-9.9.9/llama_cpp/llama_cpp.py"] = module.encode()
    files["llama_cpp_python-9.9.9/PKG-INFO"] = info
    if zipped:
        path = tmp_path / "llama_cpp_python-9.9.9.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    path = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tf.addfile(entry, io.BytesIO(data))
    return path


@pytest.mark.parametrize("zipped", [False, True])
def test_sdist_archives_are_read_in_place(tmp_path: Path, zipped: bool) -> None:
    module = (DATA / "pyctypes" / "decorated.py").read_text()
    decl = read_binding(fake_sdist(tmp_path, module, zipped))
    assert decl.name == "llama-cpp-python 9.9.9"
    assert decl.functions["llama_decode"].where == "llama_cpp/llama_cpp.py:104"
    assert list(tmp_path.iterdir()) == [next(tmp_path.iterdir())]  # nothing unpacked


def unreadable(source: Path) -> str:
    with pytest.raises(BindingUnreadable) as info:
        read_binding(source)
    assert isinstance(info.value, ConfigError) and info.value.exit_code == EXIT_USAGE
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unreadable_sources_say_why_in_one_line(tmp_path: Path) -> None:
    assert "no such file or folder" in unreadable(tmp_path / "missing")
    assert unreadable(DATA / "broken" / "bad.py").startswith("bad.py:3: not valid Python: ")
    assert unreadable(DATA / "broken" / "bad.go").startswith("bad.go:3: not valid Go")
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a binding source" in unreadable(tmp_path / "notes.txt")
    assert "no binding found" in unreadable(tmp_path)  # a folder of nothing
    (tmp_path / "util.py").write_text("import ctypes\nX = 'no bindings here'\n")
    assert "no binding found" in unreadable(tmp_path)
    assert "no llama_cpp/llama_cpp.py" in unreadable(fake_sdist(tmp_path, None))
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    assert "not a readable sdist" in unreadable(tmp_path / "junk.tar.gz")
    with pytest.raises(ConfigError, match="unsupported architecture"):
        read_binding(DATA / "go" / "tiny", "i686-linux")


def test_a_folder_of_ctypes_modules(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text((DATA / "pyctypes" / "plain.py").read_text())
    (tmp_path / "b.py").write_text("print('no ctypes here')\n")
    decl = read_binding(tmp_path)
    assert decl.name == tmp_path.name and "llama_batch_init" in decl.functions


def test_targets() -> None:
    assert normalize_target(None) == "x86_64-linux"
    assert normalize_target("x86_64-unknown-linux-gnu") == "x86_64-linux"
    assert normalize_target("linux-x64") == "x86_64-linux"
    assert normalize_target("aarch64-pc-windows-msvc") == "aarch64-windows"
    assert normalize_target("arm64-apple-darwin") == "aarch64-darwin"
    assert normalize_target("arm64") == "aarch64-linux"
    assert normalize_target("win-x64") == "x86_64-windows"


# ---- names -----------------------------------------------------------------------------------


def test_name_conventions() -> None:
    assert c_name_candidates("llama_context_params")[0] == "llama_context_params"
    assert "llama_context_params" in c_name_candidates("LlamaContextParams")
    assert "llama_context_params" in c_name_candidates("ContextParams")
    assert "llama_context_params" in c_name_candidates("ffiTypeLlamaContextParams")
    assert "llama_kv_cache" in c_name_candidates("LlamaKVCache")
    assert "ggml_backend_dev_props" in c_name_candidates("GgmlBackendDevProps")
    assert snake_case("NCtx") == "n_ctx" and snake_case("NUbatch") == "n_ubatch"
    assert "offload_kqv" in field_name_candidates("Offload_kqv")


def test_map_structs_with_overrides(tmp_path: Path) -> None:
    decl = read_binding(DATA / "go" / "tiny")
    known = {"llama_token_data", "llama_params", "llama_pair"}
    mapped, unmapped = map_structs(decl, known, None)
    assert mapped == {
        "LlamaParams": "llama_params",
        "LlamaTokenData": "llama_token_data",
        "ffiTypeLlamaParams": "llama_params",
        "ffiTypeLlamaTokenData": "llama_token_data",
        "ffiTypePair": "llama_pair",
    }
    assert unmapped == ["Inner", "ffiTypeOdd"]
    overrides_file = tmp_path / "names.yaml"
    overrides_file.write_text("structs:\n  Inner: llama_inner\n  ffiTypeOdd: null\n")
    overrides = load_overrides(overrides_file)
    assert overrides == Overrides({"Inner": "llama_inner", "ffiTypeOdd": None}, {})
    mapped, unmapped = map_structs(decl, known, overrides)
    assert mapped["Inner"] == "llama_inner" and "ffiTypeOdd" not in mapped and unmapped == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("structs: [a, b]\n", "structs must map"),
        ("colours: {}\n", "unknown key(s) colours"),
        ("functions: {llama_x: 3}\n", "is not a C name"),
        ("structs: {a: b\n", "malformed YAML"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_bad_override_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "names.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_overrides(path)


def test_read_package_directly() -> None:
    src = b"package p\nvar f func() int32\n"
    src += b"func init() { purego.RegisterLibFunc(&f, 0, `llama_f`) }\n"
    decl = read_package([("p.go", src)], "p")
    assert list(decl.functions) == ["llama_f"] and decl.functions["llama_f"].where == "p.go:2"


def test_other_three_argument_decorators_are_not_registrations() -> None:
    text = (
        "import ctypes\n"
        "@click.option('-e', '--except', 'except_')\ndef a(): ...\n"
        "@apply_over_batch(('nlower', 0), ('ab', 2), ('b', '1|2'))\ndef b(): ...\n"
        "@route('llama_x', [1, 2], 'text/plain')\ndef c(): ...\n"
        "@ctypes_function(('llama_y', '_Z7llama_yv'), [ctypes.c_int], ctypes.c_voidp)\n"
        "def d(): ...\n"
    )
    decl = read_sources([("mod.py", text)], "inline")
    assert list(decl.functions) == ["llama_y"] and decl.problems == []
    assert decl.functions["llama_y"].result.kind == "pointer"  # type: ignore[union-attr]
