"""Static checks on real builds of every platform (node-llama-cpp's npm packages of b10361), and on
copies doctored with LIEF the way real builds go wrong. The cache is never modified: each doctored
case copies the lib folder to tmp_path first."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import lief
import pytest

from harness.abi.model import Api, CType, Function
from harness.static import CHECKS, StaticResult, check_tree, find_libdir
from harness.static.allow import classify
from tests.realbuilds import api_of, platform_tree

TAG = "b10361"
# npm platform → cell; linux-x64-cuda is a 140 MB download (its libggml-cuda.so is 156 MB).
CELLS = {
    "mac-arm64-metal": ("macos", "arm64", "metal"),
    "mac-x64": ("macos", "x64", "cpu"),
    "win-x64": ("windows", "x64", "cpu"),
    "win-arm64": ("windows", "arm64", "cpu"),
    "linux-arm64": ("linux", "arm64", "cpu"),
    "linux-x64": ("linux", "x64", "cpu"),
    "linux-x64-vulkan": ("linux", "x64", "vulkan"),
    "linux-x64-cuda": ("linux", "x64", "cuda"),
}


@pytest.fixture(scope="module")
def api() -> Api:
    got: Api = api_of(TAG)
    return got


def libdir_of(platform: str) -> Path:
    tree = platform_tree(TAG, *CELLS[platform])
    libdir = find_libdir(tree, CELLS[platform][0])
    assert libdir is not None
    return libdir


def copy_of(platform: str, tmp_path: Path) -> Path:
    """The platform's lib folder copied to tmp_path/<platform>/ (symlinks kept as symlinks)."""
    dest = tmp_path / platform
    shutil.copytree(libdir_of(platform), dest, symlinks=True)
    return dest


def check(tree: Path, platform: str, api: Api | None, glibc_max: str | None = None) -> StaticResult:
    return check_tree(tree, *CELLS[platform], api, glibc_max=glibc_max)


def failed(res: StaticResult) -> dict[str, str]:
    return {k: v["message"] for k, v in res.checks.items() if v["status"] == "fail"}


# --- real builds ---------------------------------------------------------------------------


@pytest.mark.parametrize("platform", list(CELLS))
def test_real_build_passes(platform: str, api: Api) -> None:
    os_, _arch, _variant = CELLS[platform]
    res = check(platform_tree(TAG, *CELLS[platform]), platform, api)
    assert res.ok, failed(res)
    assert list(res.checks) == list(CHECKS)
    status = {k: v["status"] for k, v in res.checks.items()}
    assert status["glibc"] == ("pass" if os_ == "linux" else "skip")
    assert status["macos_min"] == ("pass" if os_ == "macos" else "skip")
    assert res.facts["exports_checked"] == len([f for f in api.functions if f.startswith("llama_")])
    assert res.facts["cpu_variants"]
    if os_ == "linux":
        assert res.facts["glibc_max"] == "2.34"
    if os_ == "macos":
        assert res.facts["macos_min"] == "14.0"
    assert res.to_dict()["ok"] is True


def test_facts_of_real_builds(api: Api) -> None:
    cuda = check(platform_tree(TAG, *CELLS["linux-x64-cuda"]), "linux-x64-cuda", api)
    assert cuda.facts["external"]["libcudart.so.13"] == "runtime"
    assert cuda.facts["external"]["libcuda.so.1"] == "driver"
    vulkan = check(platform_tree(TAG, *CELLS["linux-x64-vulkan"]), "linux-x64-vulkan", api)
    assert vulkan.facts["external"]["libvulkan.so.1"] == "driver"
    arm = check(platform_tree(TAG, *CELLS["linux-arm64"]), "linux-arm64", api)
    assert "armv8.2_1" in arm.facts["cpu_variants"]
    win = check(platform_tree(TAG, *CELLS["win-arm64"]), "win-arm64", api)
    assert win.facts["cpu_variants"] == ["generic"]  # one ggml-cpu.dll
    assert win.facts["libraries"]["llama"].endswith("llama.b10361.dll")


def test_glibc_ceiling(api: Api) -> None:
    res = check(platform_tree(TAG, *CELLS["linux-x64"]), "linux-x64", None, glibc_max="2.31")
    assert failed(res).keys() == {"glibc"}
    assert "needs glibc ≥ 2.34" in res.checks["glibc"]["message"]
    assert "above the ceiling 2.31" in res.checks["glibc"]["message"]
    assert res.checks["exports"]["status"] == "skip"  # no api given


# --- doctored copies -----------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["mac-arm64-metal", "win-x64", "linux-arm64"])
def test_header_declares_a_function_the_library_lacks(platform: str, api: Api) -> None:
    more = Api.from_dict(api.to_dict())
    more.functions["llama_does_not_exist"] = Function("llama_does_not_exist", CType("void"))
    res = check(platform_tree(TAG, *CELLS[platform]), platform, more)
    assert failed(res).keys() == {"exports"}
    assert res.checks["exports"]["message"].startswith("1 missing from ")
    assert res.checks["exports"]["message"].endswith(": llama_does_not_exist")
    assert res.facts["exports_missing"] == ["llama_does_not_exist"]


def test_export_renamed_in_the_binary(tmp_path: Path, api: Api) -> None:
    tree = copy_of("linux-arm64", tmp_path)
    lib = lief.ELF.parse(str(tree / "libllama.b10361.so"))
    assert lib is not None
    sym = lib.get_dynamic_symbol("llama_backend_init")
    assert sym is not None
    sym.name = "llama_backend_inix"
    lib.write(str(tree / "libllama.b10361.so"))
    res = check(tree, "linux-arm64", api)
    assert failed(res) == {"exports": "1 missing from libllama.b10361.so: llama_backend_init"}


@pytest.mark.parametrize(
    ("platform", "donor", "victim", "found"),
    [
        ("linux-arm64", "linux-x64", "libllama.b10361.so", "x64"),
        ("mac-arm64-metal", "mac-x64", "libllama.metal.b10361.dylib", "x64"),
        ("win-arm64", "win-x64", "llama.b10361.dll", "x64"),
        ("mac-x64", "mac-arm64-metal", "libggml-base.dylib", "arm64"),
    ],
)
def test_wrong_arch_binary(
    platform: str, donor: str, victim: str, found: str, tmp_path: Path
) -> None:
    tree = copy_of(platform, tmp_path)
    donor_dir = libdir_of(donor)
    source = donor_dir / victim if (donor_dir / victim).exists() else _same_role(donor_dir, victim)
    shutil.copyfile(source, tree / victim)
    res = check(tree, platform, None)
    want = CELLS[platform][1]
    assert "architecture" in failed(res)
    msg = res.checks["architecture"]["message"]
    assert msg.startswith(f"1 of {res.facts['binaries']} binaries hold no {want} code: ")
    assert msg.endswith(f"{victim} ({found})")


def _same_role(folder: Path, name: str) -> Path:
    """The donor's file for the role `name` plays (libllama.metal.b10361.dylib ↔ libllama.…)."""
    stem = name.split(".")[0]
    return next(p for p in sorted(folder.iterdir()) if p.name.split(".")[0] == stem)


def test_wrong_format_binary(tmp_path: Path) -> None:
    tree = copy_of("linux-arm64", tmp_path)
    shutil.copyfile(libdir_of("win-arm64") / "ggml-base.dll", tree / "stray.dll")
    res = check(tree, "linux-arm64", None)
    assert res.checks["architecture"]["message"].endswith("stray.dll (PE, expected ELF)")


def _universal(*slices: bytes) -> bytes:
    """A Mach-O universal ("fat") binary of thin slices, as lipo writes it."""
    align = 14  # 16 KiB, what lipo uses for arm64
    head = struct.pack(">II", 0xCAFEBABE, len(slices))
    offset, body, table = 1 << align, b"", b""
    for s in slices:
        cputype, subtype = struct.unpack("<iI", s[4:12])
        table += struct.pack(">iIIII", cputype, subtype, offset + len(body), len(s), align)
        body += s + b"\0" * (-len(s) % (1 << align))
    return head + table + b"\0" * ((1 << align) - len(head) - len(table)) + body


def test_universal_binary(tmp_path: Path, api: Api) -> None:
    tree = copy_of("mac-arm64-metal", tmp_path)
    name = "libllama.metal.b10361.dylib"
    arm = (tree / name).read_bytes()
    x64 = _same_role(libdir_of("mac-x64"), name).read_bytes()
    (tree / name).write_bytes(_universal(x64, arm))
    res = check(tree, "mac-arm64-metal", api)
    assert res.ok, failed(res)  # exports read from the arm64 slice
    (tree / name).write_bytes(_universal(x64))
    res = check(tree, "mac-arm64-metal", None)
    assert res.checks["architecture"]["message"].endswith(f"{name} (x64)")


def test_bad_symlinks(tmp_path: Path) -> None:
    tree = copy_of("linux-arm64", tmp_path)
    os.symlink("libllama.so.0", tree / "libllama.so")  # the chain's next link is missing
    os.symlink("../outside.so", tree / "libescape.so")
    (tmp_path / "outside.so").write_bytes(b"x")
    res = check(tree, "linux-arm64", None)
    assert failed(res) == {
        "symlinks": "2 bad: libescape.so → ../outside.so (escapes the tree), "
        "libllama.so → libllama.so.0 (dangling)"
    }


def test_symlink_chain_resolves(tmp_path: Path) -> None:
    tree = copy_of("linux-arm64", tmp_path)
    plain = check(tree, "linux-arm64", None).facts["binaries"]
    os.symlink("libllama.b10361.so", tree / "libllama.so.0")
    os.symlink("libllama.so.0", tree / "libllama.so")
    res = check(tree, "linux-arm64", None)
    assert res.ok, failed(res)
    assert res.checks["symlinks"]["message"] == "2 symlinks, all inside the tree"
    assert res.facts["binaries"] == plain  # each real file parsed once


@pytest.mark.parametrize(
    ("platform", "victim", "extra"),
    [
        ("linux-arm64", "libggml.b10361.so", "libnotthere.so"),
        ("mac-arm64-metal", "libggml.metal.b10361.dylib", "@rpath/libnotthere.dylib"),
        ("mac-x64", "libggml.b10361.dylib", "/opt/homebrew/opt/libomp/lib/libomp.dylib"),
        ("win-x64", "ggml.b10361.dll", "notthere.dll"),
    ],
)
def test_unknown_dependency(platform: str, victim: str, extra: str, tmp_path: Path) -> None:
    tree = copy_of(platform, tmp_path)
    path = str(tree / victim)
    if platform.startswith("linux"):
        elf = lief.ELF.parse(path)
        assert elf is not None
        elf.add_library(extra)
        elf.write(path)
    elif platform.startswith("mac"):
        fat = lief.MachO.parse(path)
        assert fat is not None
        macho = fat.at(0)
        assert macho is not None
        macho.add_library(extra)
        macho.write(path)
    else:
        pe = lief.PE.parse(path)
        assert pe is not None
        pe.add_import(extra).add_entry("foo")
        config = lief.PE.Builder.config_t()
        config.imports = True
        pe.write(path, config)
    res = check(tree, platform, None)
    assert failed(res) == {"dependencies": f"unresolved: {extra} (needed by {victim})"}


def test_missing_ggml_base(tmp_path: Path) -> None:
    tree = copy_of("win-x64", tmp_path)
    (tree / "ggml-base.dll").unlink()
    res = check(tree, "win-x64", None)
    problems = failed(res)
    assert problems["libraries_present"].startswith("missing in .: libggml-base (needed by ")
    assert problems["dependencies"].startswith("unresolved: ggml-base.dll (needed by ")


# --- without npm ---------------------------------------------------------------------------


def test_no_libllama(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing here")
    res = check_tree(tmp_path, "macos", "arm64", "metal", None)
    assert res.checks["libraries_present"] == {
        "status": "fail",
        "message": "no libllama*.dylib / llama*.dylib in the tree",
    }
    assert res.checks["architecture"]["status"] == "skip"
    assert not res.ok


def test_allowlists() -> None:
    assert classify("libcudart.so.12", "linux", "cuda") == "runtime"
    assert classify("libcudart.so.12", "linux", "vulkan") is None  # only CUDA builds may need it
    assert classify("cublas64_12.dll", "windows", "cuda-12.4") == "runtime"
    assert classify("KERNEL32.dll", "windows", "cpu") == "system"
    assert classify("vulkan-1.dll", "windows", "vulkan") == "driver"
    assert classify("/System/Library/Frameworks/Metal.framework/Metal", "macos", "metal")
    assert classify("/opt/homebrew/lib/libomp.dylib", "macos", "metal") is None
    assert classify("libcurl.so.4", "linux", "cpu") is None
    assert classify("libcurl.so.4", "linux", "cpu", ["libcurl.so.*"]) == "allowed"


def test_a_junk_libllama_fails_exports_instead_of_crashing(tmp_path: Path) -> None:
    lib = tmp_path / "build" / "bin"
    lib.mkdir(parents=True)
    for name in ("libllama.so", "libggml.so", "libggml-base.so"):
        (lib / name).write_bytes(b"not a shared library at all\n" * 8)
    api = Api(
        functions={},
        structs={},
        enums={},
        typedefs={},
        target="x86_64-unknown-linux-gnu",
        pointer_size=8,
        headers=[],
    )
    res = check_tree(tmp_path, "linux", "x64", "cpu", api)
    assert not res.ok
    assert res.checks["exports"]["status"] == "fail"
