"""The ABI stage on real llama.cpp headers (eight releases, b3889 → v0.5.0) and real libraries.

Headers come from node-llama-cpp's npm package (`llama/gitRelease.bundle`, a git bundle of the
tag), libraries from `@node-llama-cpp/linux-x64`; both are cached per machine under the user
cache folder (override: LLAMA_HARNESS_TEST_CACHE), so each package is downloaded once. Layouts
are checked against gcc's own `sizeof`/`offsetof`, and by-value struct returns against a real
libllama in a child process (one release per process: they all share the SONAME libggml-base.so).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import platformdirs
import pytest

from harness.abi import Api, Bindings, SymbolMissing, parse_headers
from harness.abi.headers import SOURCE_FILE, headers_from_bundle, headers_from_source_tarball
from harness.cache.extract import safe_extract
from harness.errors import HarnessError, SourceError
from tests.realbuilds import NPM_VERSIONS

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "abi"

# llama.cpp tag → the node-llama-cpp version that pins it (llama/llama.cpp.info.json)
RELEASES = NPM_VERSIONS
_OFFLINE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|network|offline", re.I
)
GCC = shutil.which("gcc") or shutil.which("cc")
HOST_LINUX_X64 = (
    sys.platform.startswith("linux")
    and ctypes.sizeof(ctypes.c_void_p) == 8
    and (os.uname().machine in ("x86_64", "amd64"))
)


# -- fetching and caching real releases ------------------------------------------------------
def _cache_root() -> Path:
    env = os.environ.get("LLAMA_HARNESS_TEST_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("llama-harness"))


_unreachable: list[str] = []  # once npm cannot reach the registry, skip the rest at once


def _npm_pack(spec: str, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: real release headers come from npm packages")
    if _unreachable:
        pytest.skip(_unreachable[0])
    done = subprocess.run(
        [npm, "pack", spec, "--pack-destination", str(into), "--loglevel=error"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        why = " ".join(done.stderr.split("\n")[:4])
        if _OFFLINE.search(done.stderr):
            _unreachable.append(f"npm registry unreachable ({spec}): {why[:300]}")
            pytest.skip(_unreachable[0])
        pytest.fail(f"npm pack {spec} failed: {why[:800]}")
    return into / done.stdout.strip().splitlines()[-1]


def _cached(kind: str, tag: str, build: Any) -> Path:
    """`build(tmp_dir, dest)` fills dest; dest appears whole (atomic rename) or not at all."""
    dest = _cache_root() / kind / tag
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(dest) + ".lock", timeout=1800):
        if not dest.is_dir():
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{tag}.") as tmp:
                build(Path(tmp), dest)
    return dest


def _headers(tmp: Path, dest: Path) -> None:
    tgz = _npm_pack(f"node-llama-cpp@{RELEASES[dest.name]}", tmp)
    bundle = tmp / "gitRelease.bundle"
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/llama/gitRelease.bundle")
        assert member is not None
        with bundle.open("wb") as out:
            shutil.copyfileobj(member, out)
    headers_from_bundle(bundle, dest)


def _libs(tmp: Path, dest: Path) -> None:
    tgz = _npm_pack(f"@node-llama-cpp/linux-x64@{RELEASES[dest.name]}", tmp)
    pkg = safe_extract(tgz, tmp / "pkg", kind="tar.gz")
    bins = pkg / "package" / "bins" / "linux-x64"
    for extra in bins.glob("*.node"):  # the Node addon: not ours to load
        extra.unlink()
    os.rename(bins, dest)


class Releases:
    """Each release's headers, parsed once per session."""

    def __init__(self) -> None:
        self._apis: dict[str, Api] = {}

    def headers(self, tag: str) -> Path:
        return _cached("test-headers", tag, _headers)

    def libs(self, tag: str) -> Path:
        return _cached("test-libs", tag, _libs)

    def api(self, tag: str) -> Api:
        if tag not in self._apis:
            self._apis[tag] = parse_headers(self.headers(tag))
        return self._apis[tag]


@pytest.fixture(scope="session")
def releases() -> Releases:
    return Releases()


# -- gcc as the reference ----------------------------------------------------------------------
def _paths(api: Api, name: str, prefix: str = "", base: int = 0) -> Iterator[tuple[str, Any]]:
    """Every member C can name from the outer struct: (designator, (field, absolute offset)),
    through anonymous members and named members of unnamed record type."""
    for f in api.structs[name].fields:
        inner = api.structs.get(f.type.name) if f.type.kind in ("struct", "union") else None
        if f.anonymous and inner is not None:
            yield from _paths(api, inner.name, prefix, base + f.offset)
            continue
        yield prefix + f.name, (f, base + f.offset)
        if inner is not None and not inner.c_name:
            yield from _paths(api, inner.name, f"{prefix}{f.name}.", base + f.offset)


def _gcc_layout(api: Api, include: Path, header: str, tmp: Path) -> dict[str, Any]:
    """sizeof/_Alignof/offsetof of every nameable record, as gcc lays it out; bitfields by
    setting them to all ones and finding the bits that changed."""
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <string.h>",
        f'#include "{header}"',
        "static void bits(const char *s, const char *f, const unsigned char *p, size_t n) {",
        "    int first = -1, count = 0;",
        "    for (size_t i = 0; i < n * 8; i++) if (p[i / 8] >> (i % 8) & 1) {",
        "        if (first < 0) first = (int)i;",
        "        count++;",
        "    }",
        '    printf("%s\\t%s\\tbits\\t%d\\t%d\\n", s, f, first, count);',
        "}",
        "int main(void) {",
    ]
    for s in api.structs.values():
        if s.kind == "opaque" or not s.c_name:
            continue
        c = s.c_name
        lines.append(f'printf("{s.name}\\t\\tsize\\t%zu\\t%zu\\n", sizeof({c}), _Alignof({c}));')
        for path, (f, _) in _paths(api, s.name):
            if f.bits:
                lines.append(
                    f"{{ {c} v; memset(&v, 0, sizeof v); v.{path} = ~v.{path}; "
                    f'bits("{s.name}", "{path}", (const unsigned char *)&v, sizeof v); }}'
                )
            else:
                lines.append(
                    f'printf("{s.name}\\t{path}\\toff\\t%zu\\t0\\n", offsetof({c}, {path}));'
                )
    lines += ["return 0;", "}"]
    src, exe = tmp / "layout.c", tmp / "layout"
    src.write_text("\n".join(lines) + "\n")
    assert GCC is not None
    build = subprocess.run(
        [GCC, "-std=gnu11", "-w", f"-I{include}", "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    out: dict[str, Any] = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split(
        "\n"
    ):
        if line:
            s, path, what, a, b = line.split("\t")
            out[f"{s}.{path}" if path else s] = (what, int(a), int(b))
    return out


def _ctypes_bits(cls: Any, path: str) -> tuple[int, int]:
    obj = cls()
    *outer, last = path.split(".")
    target = obj
    for part in outer:
        target = getattr(target, part)
    setattr(target, last, True if isinstance(getattr(target, last), bool) else -1)
    raw = int.from_bytes(ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj)), "little")
    first = (raw & -raw).bit_length() - 1
    return first, bin(raw).count("1")


def _ctypes_offset(cls: Any, path: str) -> int:
    offset = 0
    for part in path.split("."):  # members of anonymous ones are the outer class's own
        offset += getattr(cls, part).offset
        cls = dict((f[0], f[1]) for f in cls._fields_).get(part)
    return offset


def _assert_layouts_match(api: Api, include: Path, header: str, tmp: Path, *, align: bool) -> int:
    """Api and the ctypes classes against gcc; returns how many records were compared."""
    gcc = _gcc_layout(api, include, header, tmp)
    bindings = Bindings(api)
    checked = 0
    for s in api.structs.values():
        if s.kind == "opaque" or not s.c_name:
            continue
        cls = bindings.struct(s.name)
        _, size, alignment = gcc[s.name]
        assert (s.size, s.align) == (size, alignment), f"{s.c_name}: parsed size/align"
        assert ctypes.sizeof(cls) == size, f"{s.c_name}: ctypes size"
        if align:
            assert ctypes.alignment(cls) == alignment, f"{s.c_name}: ctypes alignment"
        for path, (f, offset) in _paths(api, s.name):
            what, a, b = gcc[f"{s.name}.{path}"]
            if what == "bits":
                assert (f.bit_offset + 8 * (offset - f.offset), f.bits) == (a, b), (s.name, path)
                assert _ctypes_bits(cls, path) == (a, b), f"{s.c_name}.{path}: ctypes bits"
            else:
                assert offset == a, f"{s.c_name}.{path}: parsed offset {offset}, gcc {a}"
                assert _ctypes_offset(cls, path) == a, f"{s.c_name}.{path}: ctypes offset"
        checked += 1
    return checked


# -- real releases -----------------------------------------------------------------------------
@pytest.mark.parametrize("tag", RELEASES)
def test_headers_from_bundle_are_flat_and_complete(releases: Releases, tag: str) -> None:
    include = releases.headers(tag)
    names = {p.name for p in include.iterdir()}
    assert {"llama.h", "ggml.h", "ggml-backend.h", SOURCE_FILE} <= names
    for header in include.glob("*.h"):  # every in-repo include resolves inside the folder
        for inc in re.findall(r'^\s*#\s*include\s*"([^"]+)"', header.read_text(), re.M):
            assert (include / inc).is_file(), f"{header.name} includes {inc}"
    meta = json.loads((include / SOURCE_FILE).read_text())
    assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"]) and meta["files"]["llama.h"].endswith(
        "llama.h"
    )


@pytest.mark.skipif(GCC is None, reason="needs gcc as the layout reference")
@pytest.mark.parametrize("tag", RELEASES)
def test_every_layout_matches_gcc(releases: Releases, tag: str, tmp_path: Path) -> None:
    api = releases.api(tag)
    assert api.pointer_size == ctypes.sizeof(ctypes.c_void_p)
    checked = _assert_layouts_match(api, releases.headers(tag), "llama.h", tmp_path, align=True)
    assert checked >= 25  # llama_*_params, llama_batch, ggml_tensor, ggml_init_params ...


@pytest.mark.parametrize("tag", RELEASES)
def test_json_round_trip_and_own_libc_headers(releases: Releases, tag: str) -> None:
    api = releases.api(tag)
    assert Api.from_json(api.to_json()) == api
    # Our minimal libc headers (used for foreign targets) give the same ABI as the system's.
    shimmed = parse_headers(releases.headers(tag), system_headers=False)
    assert shimmed.to_dict() == api.to_dict()


def _fn(api: Api, name: str) -> list[str]:
    return [p.type.spelling for p in api.functions[name].params]


def test_known_api_changes(releases: Releases) -> None:
    a = {tag: releases.api(tag) for tag in RELEASES}
    # the vocab split (b4753): same names, a different first argument
    for tag, api in a.items():
        want = "model" if tag in ("b3889", "b4435") else "vocab"
        for fn in ("llama_tokenize", "llama_token_to_piece", "llama_n_vocab"):
            assert _fn(api, fn)[0] == f"const struct llama_{want} *", (tag, fn)
        assert ("llama_model_get_vocab" in api.functions) == (want == "vocab")
    # llama_batch_get_one lost pos_0 and seq_id at b4435 (not b4753), with llama_batch's
    # all_pos_0/all_pos_1/all_seq_id
    assert len(_fn(a["b3889"], "llama_batch_get_one")) == 4
    assert all(len(_fn(a[t], "llama_batch_get_one")) == 2 for t in RELEASES if t != "b3889")
    assert a["b3889"].structs["llama_batch"].size == 72
    assert {a[t].structs["llama_batch"].size for t in RELEASES if t != "b3889"} == {56}
    # the KV cache API became the memory API at b5640
    for tag, api in a.items():
        old = tag in ("b3889", "b4435", "b4753")
        assert ("llama_kv_cache_clear" in api.functions) == old, tag
        assert ("llama_memory_clear" in api.functions) == (not old), tag
    assert _fn(a["b5640"], "llama_memory_clear") == ["llama_memory_t", "bool"]
    assert a["b5640"].functions["llama_kv_self_clear"].deprecated
    # same size, another order
    old, new = a["b3889"].structs["llama_model_params"], a["b4753"].structs["llama_model_params"]
    assert old.size == new.size == 64
    assert old.field("n_gpu_layers").offset == 0 and new.field("n_gpu_layers").offset == 8
    assert new.fields[0].name == "devices" and "rpc_servers" not in [f.name for f in new.fields]
    old, new = (
        a["b4753"].structs["llama_context_params"],
        a["b5640"].structs["llama_context_params"],
    )
    assert old.size == new.size == 120
    assert (old.field("abort_callback").offset, new.field("abort_callback").offset) == (104, 96)
    assert (old.field("embeddings").offset, new.field("embeddings").offset) == (97, 112)
    assert "logits_all" not in [f.name for f in new.fields]
    # flash attention: a bool until b5640, an enum (auto by default) from b6673
    assert a["b5640"].structs["llama_context_params"].field("flash_attn").type.kind == "bool"
    assert a["b6673"].structs["llama_context_params"].field("flash_attn_type").type.kind == "enum"
    # use_mmap/use_mlock gave way to an enum load_mode at b10361
    assert "use_mmap" in [f.name for f in a["b8095"].structs["llama_model_params"].fields]
    assert a["b10361"].structs["llama_model_params"].field("load_mode").type.kind == "enum"
    # the backend registry, and the sampler API, across the range
    assert "ggml_backend_load_all_from_path" not in a["b3889"].functions
    assert all(
        "ggml_backend_load_all_from_path" in a[t].functions for t in RELEASES if t != "b3889"
    )
    assert all("llama_sampler_chain_init" in api.functions for api in a.values())
    log_cb = {api.typedefs["ggml_log_callback"].to_dict().__repr__() for api in a.values()}
    assert len(log_cb) == 1  # void (*)(enum ggml_log_level, const char *, void *) throughout


@pytest.mark.slow
@pytest.mark.skipif(not HOST_LINUX_X64, reason="the npm builds used here are linux-x64")
@pytest.mark.parametrize("tag", RELEASES)
def test_bind_real_library_in_child(releases: Releases, tag: str, tmp_path: Path) -> None:
    api_json = tmp_path / "api.json"
    api_json.write_text(releases.api(tag).to_json())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(DATA / "bind_child.py"), str(api_json), str(releases.libs(tag))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert not got["clang_imported"]  # the child rebuilt everything from JSON
    assert got["libraries"][-1].startswith("libllama")
    assert ("libggml-base.so" in got["libraries"]) == (tag != "b3889")
    assert got["backends_loaded"] == (tag != "b3889")
    assert got["unsupported"] == {}
    assert got["model_type"] == "llama_model_params"
    model, context = got["model"], got["context"]
    assert model["n_gpu_layers"] in (-1, 0, 999)
    assert model["split_mode"] == "LLAMA_SPLIT_MODE_LAYER" and not model["vocab_only"]
    if "use_mmap" in model:
        assert model["use_mmap"] is True and model["use_mlock"] is False
    else:
        assert model["load_mode"].startswith("LLAMA_LOAD_MODE_")
    assert context["n_ctx"] > 0 and context["n_batch"] > 0 and context["n_ubatch"] > 0
    assert context["n_seq_max"] == 1 and context["offload_kqv"] is True
    assert context["type_k"] == context["type_v"] == "GGML_TYPE_F16"
    assert "AVX" in got["system_info"] or "NEON" in got["system_info"]
    if got["missing"]:  # ggml-cpu.h functions live in the libggml-cpu-* backend from b4435 on
        assert got["missing_call"] and "not exported" in got["missing_call"]


# -- targets, synthetic headers, errors --------------------------------------------------------
def test_other_targets_have_their_own_layout(releases: Releases) -> None:
    include = releases.headers("b4753")
    i686 = parse_headers(include, target="i686-linux-gnu")
    assert i686.pointer_size == 4 and i686.target.startswith("i686")
    assert i686.structs["llama_batch"].size == 28
    arm = parse_headers(include, target="aarch64-apple-darwin")
    assert arm.pointer_size == 8 and "apple" in arm.target
    assert arm.structs["llama_context_params"].size == 120
    win = parse_headers(include, target="x86_64-pc-windows-msvc")
    assert win.pointer_size == 8 and "windows" in win.target
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        with pytest.raises(HarnessError, match="parse the headers for the host"):
            Bindings(i686)


@pytest.mark.skipif(GCC is None, reason="needs gcc as the layout reference")
def test_tricky_layouts_match_gcc(tmp_path: Path) -> None:
    api = parse_headers(DATA, "tricky.h")
    checked = _assert_layouts_match(api, DATA, "tricky.h", tmp_path, align=False)
    assert checked == 6
    assert set(api.functions) == {
        "llama_tricky_make",
        "llama_tricky_size",
        "llama_tricky_packed",
        "llama_tricky_not_exported",
    }
    assert api.functions["llama_tricky_make"].variadic
    nested = api.structs["tricky_nested"]
    assert [f.name for f in nested.fields if f.anonymous] == ["_anon0", "_anon1"]
    assert api.structs["tricky_nested.point"].c_name == ""
    assert api.structs["tricky_bf16"].c_name == "tricky_bf16"
    assert api.structs["tricky_opaque"].kind == "opaque"
    assert nested.field("log").type.pointee is not None
    assert nested.field("log").type.pointee.kind == "opaque"  # libc's FILE: not ours
    assert api.enums["tricky_small"].values == {"TRICKY_NEG": -2, "TRICKY_B": 7}
    assert api.enums["tricky_big"].signed is False
    assert api.constant("TRICKY_ANON_Y") == 2
    assert Api.from_json(api.to_json()) == api


@pytest.mark.skipif(GCC is None, reason="needs gcc to build the test library")
def test_bind_calls_through_parsed_prototypes(tmp_path: Path) -> None:
    lib_path = tmp_path / "libtricky.so"
    build = subprocess.run(
        [GCC, "-shared", "-fPIC", f"-I{DATA}", "-o", str(lib_path), str(DATA / "tricky.c")],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a shared library here: {build.stderr[-300:]}")
    b = Bindings(parse_headers(DATA, "tricky.h"))
    fns = b.bind(ctypes.CDLL(str(lib_path)))
    assert fns.missing == ["llama_tricky_not_exported"]
    with pytest.raises(SymbolMissing, match=r"declared in tricky\.h, not exported"):
        fns.llama_tricky_not_exported()
    with pytest.raises(AttributeError):
        _ = fns.not_ours
    assert b.has("llama_tricky_not_exported") and b.has("TRICKY_B") and not b.has("not_ours")

    seen: list[tuple[int, bytes]] = []
    cb = b.type("tricky_cb")(lambda level, text, user: seen.append((level, text)))
    made = fns.llama_tricky_make(7, cb, ctypes.c_int(1))  # variadic: extras pass through
    assert seen == [(b.value("TRICKY_NEG"), b"made")]
    assert made.name == b"n=7" and made.bits[1].a == 5 and made.bits[1].b == 17
    assert (made.bits[1].c, made.bits[1].d, made.bits[1].e, made.bits[1].f) == (123456, 1, 1, 2**40)
    assert made.half.bits == 0x3C00 and made.d == 2.5 and (made.u, made.v) == (1.5, -2.0)
    assert (made.point.x, made.point.y) == (-3, 300) and made.which == 2
    size = fns.llama_tricky_size(ctypes.byref(made), b.value("TRICKY_BIG"))
    assert size == ctypes.sizeof(made) + 2
    # libffi cannot return a packed record: reported, never a crash
    assert "packed record" in fns.unsupported["llama_tricky_packed"]
    with pytest.raises(HarnessError, match="packed"):
        fns.llama_tricky_packed(1)
    assert "llama_tricky_packed" not in fns and "llama_tricky_make" in fns
    assert not fns.llama_tricky_make(1, None).cb  # NULL callbacks pass as None


@pytest.mark.skipif(GCC is None, reason="needs gcc to build the test library")
def test_layout_ctypes_cannot_express_is_reported(tmp_path: Path) -> None:
    """`b` sits inside the bitfield's storage unit (gcc: offset 1); ctypes before 3.14 puts it
    after the unit. Either the class matches gcc, or the record and its by-value users are
    reported: never a silently wrong layout."""
    (tmp_path / "llama.h").write_text(
        "#include <stdint.h>\n"
        "struct llama_odd { uint32_t a : 3; uint8_t b; };\n"
        "struct llama_odd llama_odd_get(void);\n"
        "uint8_t llama_odd_b(const struct llama_odd * p);\n"
    )
    (tmp_path / "odd.c").write_text(
        '#include "llama.h"\n'
        "struct llama_odd llama_odd_get(void) { struct llama_odd o = {5, 42}; return o; }\n"
        "uint8_t llama_odd_b(const struct llama_odd * p) { return p->b; }\n"
    )
    lib = tmp_path / "libodd.so"
    subprocess.run(
        [GCC, "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "odd.c")], check=True, cwd=tmp_path
    )
    api = parse_headers(tmp_path)
    assert api.structs["llama_odd"].field("b").offset == 1
    b = Bindings(api)
    fns = b.bind(ctypes.CDLL(str(lib)))
    try:
        cls = b.struct("llama_odd")
    except HarnessError as err:
        assert "offset" in str(err) and "llama_odd" in b.errors
        assert "llama_odd_get" in fns.unsupported and "llama_odd_get" not in fns
        assert "llama_odd_b" in fns  # by pointer it still binds
        return
    assert cls.b.offset == 1
    got = fns.llama_odd_get()
    assert (got.a, got.b) == (5, 42) and fns.llama_odd_b(ctypes.byref(got)) == 42


def test_parse_errors_are_harness_errors(tmp_path: Path) -> None:
    (tmp_path / "llama.h").write_text("struct llama_x { int a; }\nint llama_f(void) oops;\n")
    with pytest.raises(HarnessError, match=r"llama\.h:"):
        parse_headers(tmp_path)
    with pytest.raises(SourceError, match=r"no llama\.h found"):
        parse_headers(tmp_path / "nowhere")


# -- header extraction from synthetic sources --------------------------------------------------
_TREE = {
    "include/llama.h": '#include "ggml.h"\n#include "ggml-backend.h"\n#include <stdio.h>\n',
    "ggml/include/ggml.h": "#pragma once\n#include <stdint.h>\nstruct ggml_x { int a; };\n",
    "ggml/include/ggml-backend.h": '#include "ggml.h"\n#include "ggml-alloc.h"\n',
    "ggml/include/ggml-alloc.h": "struct ggml_alloc;\n",
    "ggml/include/ggml-unused.h": "#error not included by llama.h\n",
    "ggml/src/ggml.c": "int main(void) { return 0; }\n",
}


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
    }
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("layout", ["current", "old"])
def test_headers_from_bundle_follow_includes(tmp_path: Path, layout: str) -> None:
    files = dict(_TREE)
    if layout == "old":  # before ggml/include: headers beside the sources, llama.h at the top
        files = {
            "llama.h": files["include/llama.h"],
            "ggml/src/ggml.h": files["ggml/include/ggml.h"],
            "ggml/src/ggml-backend.h": files["ggml/include/ggml-backend.h"],
            "ggml/src/ggml-alloc.h": files["ggml/include/ggml-alloc.h"],
            "spm-headers/ggml.h": "#error a stale copy must lose to the shorter path\n",
            "ggml/src/ggml.c": files["ggml/src/ggml.c"],
        }
        files["spm-headers/stale/copy/ggml.h"] = files.pop("spm-headers/ggml.h")
    repo = tmp_path / "repo"
    _write_tree(repo, files)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "release")
    _git(repo, "tag", "b1")
    _git(repo, "bundle", "create", str(tmp_path / "r.bundle"), "HEAD", "--tags")
    dest = headers_from_bundle(tmp_path / "r.bundle", tmp_path / "inc")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["llama.h", "ggml.h", "ggml-backend.h", "ggml-alloc.h", SOURCE_FILE]
    )
    assert (dest / "ggml.h").read_text() == _TREE["ggml/include/ggml.h"]
    api = parse_headers(dest)  # the flat folder is enough to parse
    assert api.structs["ggml_x"].size == 4
    again = headers_from_bundle(tmp_path / "r.bundle", dest)  # replaces in place
    assert again == dest and not [p for p in tmp_path.iterdir() if p.name.startswith(".inc")]


def test_headers_from_source_tarball(tmp_path: Path) -> None:
    top = tmp_path / "src" / f"ggml-org-llama.cpp-{uuid.uuid4().hex[:7]}"
    _write_tree(top, _TREE)
    (top / "spm-headers").mkdir()
    os.symlink("../include/llama.h", top / "spm-headers" / "llama.h")
    tarball = tmp_path / "source"  # GitHub's tarball_url has no extension
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    dest = headers_from_source_tarball(tarball, tmp_path / "inc")
    assert sorted(p.name for p in dest.glob("*.h")) == [
        "ggml-alloc.h",
        "ggml-backend.h",
        "ggml.h",
        "llama.h",
    ]
    assert json.loads((dest / SOURCE_FILE).read_text())["files"]["ggml.h"] == "ggml/include/ggml.h"
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(top / "ggml", arcname="x/ggml")
    with pytest.raises(SourceError, match=r"no llama\.h found"):
        headers_from_source_tarball(empty, tmp_path / "inc2")
    assert not (tmp_path / "inc2").exists()
