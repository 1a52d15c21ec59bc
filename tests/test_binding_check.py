"""The binding check: a binding of our own with one planted break of each kind, each caught,
against a real header (parsed by libclang) and a real library (built by gcc) of our own."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.abi import parse_headers
from harness.abi.model import Api
from harness.abi.release import release_api
from harness.binding import fetch, live, names, releases
from harness.binding.check import check, exports_of
from harness.binding.model import BindingDecl, FieldDecl, FunctionDecl, StructDecl, TypeRef
from harness.binding.read import read_binding
from harness.binding.releases import ReleaseAbi
from harness.config import matrix
from harness.errors import ConfigError, SourceError
from harness.load.loader import find_libdir
from harness.report import model as report_model
from tests import realbuilds

HEADER = """\
#include <stdint.h>
#include <stdbool.h>
#define LLAMA_API __attribute__((visibility("default")))
struct llama_model;
typedef int32_t llama_token;
enum llama_kind { LLAMA_KIND_A = 0, LLAMA_KIND_B = 2, LLAMA_KIND_COUNT = 3 };
struct llama_kv { char key[8]; union { int64_t i; double f; }; };
struct llama_params {
    uint32_t n_ctx;
    int32_t  n_threads;
    float    scale;
    void *   cb_data;
    bool     flag;
};
LLAMA_API struct llama_model * llama_load(const char * path, struct llama_params params);
LLAMA_API int32_t llama_count(const struct llama_model * model, uint32_t n);
LLAMA_API void    llama_free(struct llama_model * model);
LLAMA_API float   llama_scale(struct llama_model * model);
LLAMA_API int32_t llama_hidden(void);
"""
# Everything but llama_hidden: a header that promises more than the library exports.
SOURCE = """\
#include "llama.h"
struct llama_model * llama_load(const char * p, struct llama_params x)
{ (void)p; (void)x; return 0; }
int32_t llama_count(const struct llama_model * m, uint32_t n) { (void)m; return (int32_t)n; }
void llama_free(struct llama_model * m) { (void)m; }
float llama_scale(struct llama_model * m) { (void)m; return 1.0f; }
"""


def t(kind: str, size: int | None, signed: bool | None = None, **kw: object) -> TypeRef:
    spelling = str(kw.pop("spelling", f"{kind}{size or ''}"))
    return TypeRef(spelling, kind, size, size, signed, **kw)  # type: ignore[arg-type]


PTR, I32, U32, F32, BOOL = (
    t("pointer", 8),
    t("int", 4, True),
    t("int", 4, False),
    t("float", 4),
    t("bool", 1),
)
PARAMS = StructDecl(
    "llama_params",
    (
        FieldDecl("n_ctx", U32, 0),
        FieldDecl("n_threads", I32, 4),
        FieldDecl("scale", F32, 8),
        FieldDecl("cb_data", PTR, 16),
        FieldDecl("flag", BOOL, 24),
    ),
    32,
    "mine.py:10",
    "ctypes.Structure",
)


def fn(symbol: str, params: list[TypeRef] | None, result: TypeRef | None) -> FunctionDecl:
    return FunctionDecl(symbol, None if params is None else tuple(params), result, "mine.py:20")


def good() -> BindingDecl:
    d = BindingDecl("mine", "python-ctypes", "x86_64-linux")
    for f in (
        fn("llama_load", [PTR, t("struct", 32, struct="llama_params")], PTR),
        fn("llama_count", [PTR, U32], I32),
        fn("llama_free", [PTR], t("void", 0)),
        fn("llama_scale", [PTR], F32),
    ):
        d.functions[f.symbol] = f
    d.structs["llama_params"] = PARAMS
    d.constants["LLAMA_KIND_B"] = 2
    return d


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Api, set[str]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: the test library cannot be built")
    root = tmp_path_factory.mktemp("rel")
    (root / "llama.h").write_text(HEADER)
    (root / "llama.c").write_text(SOURCE)
    lib = root / "lib"
    lib.mkdir()
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-I",
            str(root),
            "-o",
            str(lib / "libllama.so"),
            str(root / "llama.c"),
        ],
        check=True,
    )
    return parse_headers(root), exports_of(lib)


def run(decl: BindingDecl, release: tuple[Api, set[str]]) -> tuple[list[str], list[str]]:
    api, exports = release
    v = check(decl, api, release="b1", structs={k: k for k in decl.structs}, exports=exports)
    assert v.verdict == ("breaks" if v.breaks else "compatible")
    return v.breaks, v.warnings


def test_the_faithful_binding_is_compatible(release: tuple[Api, set[str]]) -> None:
    api, exports = release
    assert "llama_count" in exports and "llama_hidden" not in exports
    v = check(good(), api, release="b1", structs={"llama_params": "llama_params"}, exports=exports)
    assert v.verdict == "compatible", v.breaks
    assert (v.functions_checked, v.structs_checked) == (4, 1)
    assert v.to_json()["breaks"] == [] and v.warnings == []


def _with_fn(f: FunctionDecl) -> BindingDecl:
    d = good()
    d.functions[f.symbol] = f
    return d


def _with_fields(*fields: FieldDecl, size: int = 32) -> BindingDecl:
    d = good()
    d.structs["llama_params"] = dataclasses.replace(PARAMS, fields=fields, size=size)
    return d


F = PARAMS.fields
PLANTED = {
    "missing function": (
        _with_fn(fn("llama_gone", [PTR], I32)),
        "llama_gone: not declared in b1's headers nor exported by its libraries (mine.py:20)",
    ),
    "missing export": (
        _with_fn(fn("llama_hidden", [], I32)),
        "llama_hidden: declared in b1's headers but not exported by its libraries (mine.py:20)",
    ),
    "argument count": (
        _with_fn(fn("llama_count", [PTR, U32, U32], I32)),
        "llama_count: binding passes 3 argument(s), b1 takes 2",
    ),
    "argument class": (
        _with_fn(fn("llama_count", [PTR, F32], I32)),
        "llama_count argument 2 (n): binding float4 (float 4 bytes), b1 uint32_t (unsigned int 4",
    ),
    "argument size": (
        _with_fn(fn("llama_count", [PTR, t("int", 8, False)], I32)),
        "llama_count argument 2 (n): binding int8 (unsigned int 8 bytes), b1 uint32_t",
    ),
    "return class": (
        _with_fn(fn("llama_scale", [PTR], I32)),
        "llama_scale return: binding int4 (signed int 4 bytes), b1 float (float 4 bytes)",
    ),
    "struct by value size": (
        _with_fn(fn("llama_load", [PTR, t("struct", 24, struct="llama_params")], PTR)),
        "llama_load argument 2 (params): binding struct24 (struct 24 bytes), b1 llama_params",
    ),
    "struct size": (_with_fields(*F, size=40), "llama_params: binding size 40, b1 size 32"),
    "field offset": (
        _with_fields(F[0], F[1], dataclasses.replace(F[2], offset=12), F[3], F[4]),
        "llama_params.scale: binding offset 12, b1 offset 8",
    ),
    "field class": (
        _with_fields(F[0], F[1], dataclasses.replace(F[2], type=I32), F[3], F[4]),
        "llama_params.scale: binding int4 (signed int 4 bytes), b1 float (float 4 bytes)",
    ),
    "extra field": (
        _with_fields(*F, FieldDecl("seed", U32, 28)),
        "llama_params.seed: in the binding (offset 28), not in b1 (llama_params, mine.py:10)",
    ),
}


@pytest.mark.parametrize("kind", PLANTED)
def test_each_planted_break_is_caught(kind: str, release: tuple[Api, set[str]]) -> None:
    decl, expected = PLANTED[kind]
    breaks, _ = run(decl, release)
    assert len(breaks) == 1, breaks
    assert breaks[0].startswith(expected), breaks[0]


def test_enum_value(release: tuple[Api, set[str]]) -> None:
    d = good()
    d.constants["LLAMA_KIND_B"] = 1
    d.constants["LLAMA_KIND_Z"] = 9  # no release has it: listed, not a break
    v = check(d, release[0], release="b1", structs={}, exports=release[1])
    assert v.breaks == ["LLAMA_KIND_B: binding 1, b1 2"]
    assert "constant LLAMA_KIND_Z" in v.unmapped


def test_missing_field(release: tuple[Api, set[str]]) -> None:
    """A field the binding lacks changes what it passes: here the struct shrinks with it."""
    breaks, _ = run(_with_fields(*F[:4], size=24), release)
    assert breaks == [
        "llama_params: binding size 24, b1 size 32 (mine.py:10)",
        "llama_params.flag: in b1 (offset 24, bool), missing from the binding "
        "(llama_params, mine.py:10)",
    ]


def test_renamed_and_tail_fields_are_warnings(release: tuple[Api, set[str]]) -> None:
    """Same bytes under another name, or a last field the binding's padding already holds:
    nothing is misread, but the maintainer should know."""
    renamed = dataclasses.replace(F[1], name="threads")
    breaks, warnings = run(_with_fields(F[0], renamed, F[2], F[3]), release)
    assert breaks == []
    assert warnings == [
        "llama_params.n_threads: the binding calls it threads (same offset and type)",
        "llama_params.flag: in b1 (offset 24, bool), missing from the binding "
        "(llama_params, mine.py:10): in the binding's padding, it cannot set it",
    ]


def test_a_count_sentinel_is_a_warning(release: tuple[Api, set[str]]) -> None:
    d = good()
    d.constants["LLAMA_KIND_COUNT"] = 2
    v = check(d, release[0], release="b1", structs={}, exports=release[1])
    assert v.breaks == []
    assert "LLAMA_KIND_COUNT: binding 2, b1 3 (a count, not a value any call takes)" in v.warnings


def test_a_named_union_matches_an_anonymous_one(release: tuple[Api, set[str]]) -> None:
    """llama-cpp-python names the union that llama.h leaves anonymous in llama_model_kv_override."""
    d = good()
    d.structs["llama_kv"] = StructDecl(
        "llama_kv",
        (
            FieldDecl("key", t("array", 8, count=8), 0),
            FieldDecl("value", t("struct", 8, struct="llama_kv_value"), 8),
        ),
        16,
        "mine.py:30",
    )
    assert run(d, release) == ([], [])
    d.structs["llama_kv"] = dataclasses.replace(
        d.structs["llama_kv"], fields=(d.structs["llama_kv"].fields[0], FieldDecl("value", I32, 8))
    )
    assert run(d, release)[0] == [
        "llama_kv.(anonymous union): binding int4 (signed int 4 bytes), b1 llama_kv._anon0 "
        "(struct 8 bytes) (as llama_kv.value)"
    ]


def test_signedness_is_a_warning(release: tuple[Api, set[str]]) -> None:
    breaks, warnings = run(_with_fn(fn("llama_count", [PTR, I32], I32)), release)
    assert breaks == []
    assert warnings == [
        "llama_count argument 2 (n): signedness differs: binding int4 (signed int 4 bytes), "
        "b1 uint32_t (unsigned int 4 bytes)"
    ]


def test_alike_classes_are_not_breaks(release: tuple[Api, set[str]]) -> None:
    """A uintptr for a pointer and a uint8 for a bool are what Go bindings write."""
    d = _with_fn(fn("llama_free", [t("int", 8, False, spelling="uintptr")], None))
    d.structs["llama_params"] = dataclasses.replace(
        PARAMS, fields=(*F[:4], dataclasses.replace(F[4], type=t("int", 1, False)))
    )
    assert run(d, release) == ([], [])


def test_unnamed_fields_are_checked_by_position(release: tuple[Api, set[str]]) -> None:
    """A libffi element list has no names: its third element is where C's third field is."""
    unnamed = tuple(dataclasses.replace(f, name="") for f in F)
    d = good()
    d.structs["ffiTypeParams"] = dataclasses.replace(
        PARAMS, name="ffiTypeParams", fields=(unnamed[0], unnamed[2], unnamed[1], *unnamed[3:])
    )
    api, exports = release
    v = check(
        d,
        api,
        release="b1",
        structs={"llama_params": "llama_params", "ffiTypeParams": "llama_params"},
        exports=exports,
    )
    assert v.breaks == [
        "llama_params field 2 (n_threads): binding offset 8, b1 offset 4 (as ffiTypeParams[1])",
        "llama_params field 2 (n_threads): binding float4 (float 4 bytes), b1 int32_t "
        "(signed int 4 bytes) (as ffiTypeParams[1])",
        "llama_params field 3 (scale): binding offset 4, b1 offset 8 (as ffiTypeParams[2])",
        "llama_params field 3 (scale): binding int4 (signed int 4 bytes), b1 float "
        "(float 4 bytes) (as ffiTypeParams[2])",
    ]


def test_without_a_build_only_the_headers_decide(release: tuple[Api, set[str]]) -> None:
    v = check(_with_fn(fn("llama_hidden", [], I32)), release[0], release="b1", exports=None)
    assert v.verdict == "compatible"
    assert "exports not checked: no b1 build at hand" in v.warnings


# -- fetching a requirement's sdist ------------------------------------------------------------

BACKEND = '''\
"""A build backend with no requirements, so pip can prepare metadata offline."""
import os

META = "Metadata-Version: 2.1\\nName: mybinding\\nVersion: {v}\\n"


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name = "mybinding-{v}.dist-info"
    os.makedirs(os.path.join(metadata_directory, name))
    with open(os.path.join(metadata_directory, name, "METADATA"), "w") as f:
        f.write(META)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("never built: only its sources are read")
'''

CTYPES_BINDING = """\
import ctypes

class llama_params(ctypes.Structure):
    _fields_ = [
        ("n_ctx", ctypes.c_uint32),
        ("n_threads", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("cb_data", ctypes.c_void_p),
        ("flag", ctypes.c_bool),
    ]

_lib = ctypes.CDLL("libllama.so")
_lib.llama_count.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
_lib.llama_count.restype = ctypes.c_int32
_lib.llama_scale.argtypes = [ctypes.c_void_p]
_lib.llama_scale.restype = ctypes.c_float
"""


def write_sdist(folder: Path, version: str, binding: str = CTYPES_BINDING) -> Path:
    """A real sdist (tar.gz of mybinding-<v>/) with a pyproject and an in-tree backend."""
    top = f"mybinding-{version}"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n\n[project]\nname = "mybinding"\n'
        f'version = "{version}"\n',
        "backend.py": BACKEND.replace("{v}", version),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: mybinding\nVersion: {version}\n",
        "mybinding/__init__.py": "",
        "mybinding/llama_cpp.py": binding,
    }
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only a folder of our sdists (its own config and network are left out)."""
    index = tmp_path / "index"
    index.mkdir()
    write_sdist(index, "1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return index


def test_a_requirement_is_fetched_once_as_its_sdist(tmp_path: Path, local_index: Path) -> None:
    root = tmp_path / "cache"
    name, tree = fetch.fetch(root, "mybinding==1.0")
    assert name == "mybinding 1.0"
    assert (tree / "mybinding" / "llama_cpp.py").read_text() == CTYPES_BINDING
    assert tree.is_relative_to(root / "bindings")
    shutil.rmtree(local_index)  # cached: pip is not asked again
    assert fetch.fetch(root, "mybinding==1.0") == (name, tree)
    assert not [p for p in (root / "bindings").iterdir() if p.name.startswith(".pip-")]


def test_requirement_or_path() -> None:
    assert fetch.requirement("llama-cpp-python==0.3.16") is not None
    assert fetch.pinned(fetch.requirement("llama-cpp-python==0.3.16")) == "0.3.16"  # type: ignore[arg-type]
    assert fetch.pinned(fetch.requirement("llama-cpp-python>=0.3")) is None  # type: ignore[arg-type]
    assert fetch.requirement("./bindings/x.py") is None
    assert fetch.requirement("not a requirement!") is None


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unfetchable_source_exits_3(tmp_path: Path, local_index: Path) -> None:
    done = cli("binding-check", "mybinding==9.9", "b1", cache=tmp_path / "c")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("llama-harness: error: mybinding==9.9: no source distribution")
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "c" / "bindings" / "mybinding-9.9").exists()


def test_unreadable_source_exits_2(tmp_path: Path) -> None:
    done = cli("binding-check", str(tmp_path / "nope.py"), "b1", cache=tmp_path / "c")
    assert done.returncode == 2, done.stderr
    assert "no such file or folder" in done.stderr and len(done.stderr.splitlines()) == 1
    bad = tmp_path / "bad.py"
    bad.write_text("def (:\n")
    done = cli("binding-check", str(bad), "b1", cache=tmp_path / "c")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    done = cli("binding-check", str(bad), "b1", "--live", cache=tmp_path / "c")
    assert done.returncode == 2 and "--live needs an installable Python binding" in done.stderr


# -- the range search ----------------------------------------------------------------------------

BROKEN_HEADER = HEADER.replace("    uint32_t n_ctx;\n", "    uint32_t seed;\n    uint32_t n_ctx;\n")


def test_scan_finds_the_edges_of_the_compatible_range(tmp_path: Path) -> None:
    """20 releases, compatible from the 6th to the 13th: the search names exactly those edges
    without checking all twenty."""
    apis = {}
    for kind, text in (("ok", HEADER), ("bad", BROKEN_HEADER)):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "llama.h").write_text(text)
        apis[kind] = parse_headers(tmp_path / kind)
    points = [f"b{100 + i}" for i in range(20)]
    asked: list[str] = []

    def abi_of(tag: str) -> ReleaseAbi:
        asked.append(tag)
        ok = 105 <= int(tag[1:]) <= 112
        return ReleaseAbi(tag, tag, apis["ok" if ok else "bad"], None)

    found = releases.scan(good(), points, abi_of)
    assert found.ranges() == [(5, 12)]
    assert len(asked) == len(set(asked)) < 20
    [line] = found.summary()
    assert line.startswith(
        "mine: b105 … b112 (b104 breaks); first break b113: llama_params.n_ctx: binding offset 0, "
        "b113 offset 4 "
    )
    assert line.endswith(f"(checked {len(asked)} of 20 releases)")


# -- real bindings nobody here wrote, against real releases --------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# ../shared/bindings beside the checkout (LLAMA_HARNESS_BINDINGS elsewhere, e.g. a worktree)
BINDINGS = Path(os.environ.get("LLAMA_HARNESS_BINDINGS") or ROOT.parent / "shared" / "bindings")


def gollama() -> Path:
    path = BINDINGS / "gollama.cpp"
    if not (path / "gollama.go").is_file():
        pytest.skip(f"{path} is absent: the gollama.cpp sources come from ../shared/bindings")
    return path


def real_release(tag: str) -> ReleaseAbi:
    """A real release: its own headers, the exports of its npm linux-x64 build."""
    res = realbuilds.provision([tag])[tag]
    assert res.stored and res.build
    api = release_api(realbuilds.downloader(), res)
    exports = exports_of(find_libdir(Path(res.stored.path)))
    return ReleaseAbi(tag, res.build, api, exports, "linux x64 cpu (npm)")


def requirement_tree(spec: str) -> Path:
    try:
        return fetch.fetch(realbuilds.CACHE, spec)[1]
    except SourceError as err:
        pytest.skip(f"PyPI unreachable: {err}")


@pytest.mark.parametrize("tag", ["b6845", "b7324", "b8390"])
def test_gollama_context_params_misplaced(tag: str) -> None:
    """gollama.cpp (pinned b6862) still has `seed` first and `logits` near the end of its
    LlamaContextParams and its libffi descriptor: 120 bytes like b6845's struct, every field
    after the first misplaced."""
    v = releases.check_release(read_binding(gollama()), real_release(tag))
    assert v.verdict == "breaks"
    breaks = set(v.breaks)
    for how in ("LlamaContextParams.NCtx", "ffiTypeLlamaContextParams.n_ctx"):
        assert f"llama_context_params.n_ctx: binding offset 4, {tag} offset 0 (as {how})" in breaks
    assert (
        f"llama_context_params.Seed: in the binding (offset 0), not in {tag} "
        "(LlamaContextParams, gollama.go:288)" in breaks
    )
    assert any(b.startswith("llama_context_params.flash_attn_type: in ") for b in breaks)
    # the descriptor's argument order bug, and ggml_op values from before GGML_OP_ADD1
    assert f"GGML_OP_SUB: binding 3, {tag} 6" in breaks
    assert any(b.startswith("llama_sampler_init_mirostat_v2 argument 1 (seed)") for b in breaks)
    if tag != "b8390":  # the same 120 bytes: a size check alone says nothing
        assert not [b for b in breaks if b.startswith("llama_context_params: binding size")]


@pytest.mark.parametrize("tag", ["b8390", "b10361", "v0.5.0"])
def test_llama_cpp_python_0_3_36_names_what_import_needs(tag: str) -> None:
    """`from llama_cpp import Llama` fails on these releases: the static check names why."""
    decl = read_binding(requirement_tree("llama-cpp-python==0.3.36"))
    v = releases.check_release(decl, real_release(tag))
    missing = {b.split(":")[0] for b in v.breaks if "nor exported by its libraries" in b}
    assert "llama_batch_ext_init" in missing
    # v0.5.0 declares and exports llama_version; the two older ones lack it
    assert ("llama_version" in missing) == (tag != "v0.5.0")


def test_llama_cpp_python_live_agrees_with_the_static_check(tmp_path: Path) -> None:
    """0.3.16 installed without its native part (~35 s on first use, then cached in the test
    cache): compatible with b6133 by the static check, and its own Llama API gives the
    reference's greedy tokens there; on b6301 both name llama_get_kv_self."""
    realbuilds.need_linux_x64_and_npm()
    requirement_tree("llama-cpp-python==0.3.16")
    realbuilds.provision(["b6133", "b6301"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--cache-dir",
            str(realbuilds.CACHE),
            "--source",
            "npm",
            "--json",
            "binding-check",
            "llama-cpp-python==0.3.16",
            "b6133",
            "b6301",
            "--live",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode == 3 and ": install failed" in done.stderr:
        pytest.skip(f"cannot install llama-cpp-python here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    ok, broken = json.loads(done.stdout)
    assert ok["verdict"] == "compatible" and ok["live"]["what"] == "pass", ok
    assert ok["live"]["tokens"] == ok["live"]["expected"]
    assert broken["verdict"] == "breaks"
    assert any(b.startswith("llama_get_kv_self: not declared") for b in broken["breaks"])
    live = broken["live"]
    assert (live["what"], live["detail"], live["stage"]) == (
        "missing symbol",
        "llama_get_kv_self",
        "import",
    )


# -- matrix.yaml `binding:` ----------------------------------------------------------------------


def test_matrix_binding_is_relative_to_the_matrix_or_a_requirement(tmp_path: Path) -> None:
    (tmp_path / "go").mkdir()
    base = {"releases": ["b1"], "platforms": [{"os": "linux", "arch": "x64"}]}
    here = matrix.parse({**base, "binding": "go"}, path=tmp_path / "matrix.yaml")
    assert here.binding == str((tmp_path / "go").resolve())
    pip = matrix.parse({**base, "binding": "llama-cpp-python==0.3.16"}, path=tmp_path / "m.yaml")
    assert pip.binding == "llama-cpp-python==0.3.16"
    with pytest.raises(ConfigError, match="binding"):
        matrix.parse({**base, "binding": ""}, path=tmp_path / "m.yaml")


PLANTED_CTYPES = """\
import ctypes

_lib = ctypes.CDLL("libllama.so")
# b6673: struct llama_batch llama_batch_get_one(llama_token * tokens, int32_t n_tokens)
_lib.llama_batch_get_one.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]
_lib.llama_n_vocab.argtypes = [ctypes.c_void_p]
_lib.llama_n_vocab.restype = ctypes.c_int32
"""


def test_run_adds_a_binding_check_and_a_report_section(tmp_path: Path) -> None:
    """`binding:` in matrix.yaml: every cell gets a `binding` check (the passing build fails on
    the planted argument count) and report.md a "Your binding" section."""
    realbuilds.provision(["b6673"])
    (tmp_path / "mine.py").write_text(PLANTED_CTYPES)
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b6673]\n"
        "platforms:\n  - {os: linux, arch: x64, variant: cpu}\nbinding: mine.py\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--cache-dir",
            str(realbuilds.CACHE),
            "--matrix",
            str(tmp_path / "matrix.yaml"),
            "run",
            "--suite",
            "conformance",
            "--no-cpu-variants",
            "--workers",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    report_model.validate(rep)
    [cell] = rep["cells"]
    assert cell["status"] == "fail"
    assert cell["checks"]["binding"]["status"] == "fail"
    [verdict] = rep["binding"]["releases"]
    assert any(
        b.startswith("llama_batch_get_one: binding passes 3 argument(s), b6673 takes 2")
        for b in verdict["breaks"]
    ), verdict["breaks"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Your binding" in md and "❌ **b6673**: breaks" in md


def test_names_file_maps_what_the_convention_cannot(
    tmp_path: Path, release: tuple[Api, set[str]]
) -> None:
    d = good()
    d.functions["count_things"] = dataclasses.replace(
        d.functions.pop("llama_count"), symbol="count_things"
    )
    d.structs["Knobs"] = dataclasses.replace(d.structs.pop("llama_params"), name="Knobs")
    d.structs["Loader"] = StructDecl("Loader", (), 8, "mine.py:40")
    api, exports = release
    plain = releases.check_release(d, ReleaseAbi("b1", "b1", api, exports))
    assert plain.breaks[0].startswith("count_things: not declared in b1's headers")
    assert plain.unmapped == ["Knobs", "Loader"]
    (tmp_path / "names.yaml").write_text(
        "structs: {Knobs: llama_params, Loader: null}\nfunctions: {count_things: llama_count}\n"
    )
    overrides = names.load_overrides(tmp_path / "names.yaml")
    v = releases.check_release(d, ReleaseAbi("b1", "b1", api, exports), overrides)
    assert (v.verdict, v.unmapped, v.structs_checked) == ("compatible", [], 1)


# -- --live: how a failing child is named -------------------------------------------------------

CRASHING_GGML = """\
#include <signal.h>
void ggml_backend_load_all_from_path(const char * dir) { (void)dir; raise(SIGSEGV); }
"""


def _lib(folder: Path, name: str, source: str) -> None:
    c = folder / f"{name}.c"
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / name), str(c)], check=True)
    c.unlink()


@pytest.mark.parametrize("crash", [True, False])
def test_live_names_a_crash_and_an_exception(tmp_path: Path, crash: bool) -> None:
    """A real child: a libggml whose backend loader segfaults is a crash named SIGSEGV in the
    `backends` stage; a Python without the binding fails `import`, named by its exception."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    _lib(libdir, "libllama.b1.so", "int llama_x(void) { return 0; }\n")
    _lib(libdir, "libggml.b1.so", CRASHING_GGML if crash else "int ggml_x(void) { return 0; }\n")
    got = live.run_one(Path(sys.executable), libdir, tmp_path / "m.gguf", "Hi", [1, 2], "b1")
    assert not got.ok
    if crash:
        assert (got.what, got.detail, got.stage) == ("crash", "SIGSEGV", "backends")
    else:
        assert (got.what, got.stage) == ("exception", "import")
        assert got.detail == "ModuleNotFoundError: No module named 'llama_cpp'"
    assert got.line().startswith(f"{got.what} during {got.stage}")
