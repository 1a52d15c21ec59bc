"""How long reading a binding takes (`binding-check` reads it once per run, then checks it against
every release): gollama.cpp, and llama-cpp-python 0.3.36 from its sdist archive (read in place,
only up to llama_cpp/llama_cpp.py) against the same file unpacked."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from benchmarks.conftest import RATIOS
from harness.binding.read import read_binding
from tests.sdists import llama_cpp_python

ROOT = Path(__file__).resolve().parent.parent
GOLLAMA = (
    next(
        (p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()),
        ROOT.parent / "shared",
    )
    / "bindings"
    / "gollama.cpp"
)

RATIOS.append(
    (
        "llama-cpp-python 0.3.36: sdist archive / unpacked folder",
        "test_read_llama_cpp_python_sdist_archive",
        "test_read_llama_cpp_python_unpacked",
        "< 10: reading in place stays cheap",
    )
)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sdist")
    with tarfile.open(llama_cpp_python("0.3.36")) as tf:
        for member in tf:
            if member.name.endswith(("/PKG-INFO", "/llama_cpp/llama_cpp.py")):
                member.name = member.name.split("/", 1)[1]
                tf.extract(member, folder, filter="data")
    return folder


def test_read_gollama(benchmark) -> None:
    if not GOLLAMA.is_dir():
        pytest.skip(f"gollama.cpp sources not found at {GOLLAMA}")
    decl = benchmark(read_binding, GOLLAMA)
    assert len(decl.functions) > 100


def test_read_llama_cpp_python_sdist_archive(benchmark) -> None:
    decl = benchmark(read_binding, llama_cpp_python("0.3.36"))
    assert "llama_batch_ext_init" in decl.functions


def test_read_llama_cpp_python_unpacked(benchmark, unpacked: Path) -> None:
    decl = benchmark(read_binding, unpacked)
    assert "llama_batch_ext_init" in decl.functions
