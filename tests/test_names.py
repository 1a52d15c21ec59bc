"""One table of library names (`harness.static.names`): the static checks and the loader read a
tree the same way, for every platform's naming and every era's layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.load import backends, loader
from harness.static import checks, names

NAMES = [
    "libllama.so",
    "libllama.so.0",
    "libllama.so.0.0.6000",
    "libllama.b10361.so",
    "libllama.vulkan.b10361.so",
    "libllama.metal.b10361.dylib",
    "libllama.0.dylib",
    "llama.dll",
    "LLAMA.B10361.DLL",
]
NOT_LLAMA = ["libllama-common.so", "libggml-cpu.so", "llama-cli", "libllama.so.txt", "llama.h"]


@pytest.mark.parametrize("name", NAMES)
def test_every_packagers_libllama_is_llama(name: str) -> None:
    assert names.role_pattern("llama").fullmatch(name)


@pytest.mark.parametrize("name", NOT_LLAMA)
def test_lookalikes_are_not_llama(name: str) -> None:
    assert not names.role_pattern("llama").fullmatch(name)


def test_roles_in_load_order_and_the_link_before_its_target() -> None:
    files = ["libggml.so.0", "libggml.so", "libggml-base.so", "libggml-cpu-haswell.so"]
    files += ["libllama.so.0.0.6000", "libllama.so", "libllama-common.so", "libggml-vulkan.so"]
    got = names.role_files(files, "linux")
    assert list(got) == ["ggml-base", "ggml", "llama"]
    assert got == {"ggml-base": "libggml-base.so", "ggml": "libggml.so", "llama": "libllama.so"}
    assert names.role_files(["llama.dll"], "linux") == {}  # another platform's naming


def test_cpu_variants_and_backend_modules_have_one_name_each() -> None:
    assert names.cpu_variant_of("libggml-cpu-haswell.so") == "haswell"
    assert names.cpu_variant_of("ggml-cpu.dll") == names.GENERIC == "generic"
    assert names.cpu_variant_of("libggml-cuda.so") is None
    assert names.backend_module_of("libggml-vulkan.so") == "vulkan"
    assert names.backend_module_of("libggml-cpu-zen4.so") is None
    assert names.backend_module_of("libggml-base.so") is None
    assert names.is_core_ggml("libggml.so") and not names.is_core_ggml("libggml-base.so")


def _tree(root: Path, files: list[str]) -> Path:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("os_", "files", "libdir"),
    [
        ("linux", ["build/bin/libllama.so", "build/bin/libggml.so"], "build/bin"),
        ("linux", ["llama-b7000/libllama.so.0.0.7000", "llama-b7000/libggml.so"], "llama-b7000"),
        ("windows", ["llama.dll", "ggml.dll", "ggml-cpu.dll"], "."),
        (
            "macos",
            ["bins/mac-arm64-metal/libllama.metal.b1.dylib", "x/y/z/libllama.dylib"],
            "bins/mac-arm64-metal",
        ),
    ],
)
def test_static_checks_and_loader_find_the_same_libdir(
    tmp_path: Path, os_: str, files: list[str], libdir: str
) -> None:
    tree = _tree(tmp_path, files)
    assert checks.find_libdir(tree, os_) == tree / libdir
    assert loader.find_libdir(tree) == checks.find_libdir(tree, os_)
    found = backends.cpu_variants_in(loader.find_libdir(tree))
    assert found == (["generic"] if os_ == "windows" else [])
