"""The stages are layers (pyproject.toml's `[tool.importlinter]`, docs/architecture.md): a lower
stage never imports a higher one, and the loader never pulls in the downloader or LIEF."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def lint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if LINT_IMPORTS is None:
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_package_keeps_its_layers() -> None:
    got = lint()
    assert got.returncode == 0, got.stdout[-3000:]
    assert "pipeline stages are layers" in got.stdout and "KEPT" in got.stdout
    assert "the loader stays light" in got.stdout
    assert "the report renderings are independent" in got.stdout
    assert "0 broken" in got.stdout


def test_an_upward_import_would_be_caught(tmp_path: Path) -> None:
    """The contract reads the real import graph: with two layers swapped (errors above cli,
    which imports it), the same tool reports the break."""
    config = tmp_path / "swapped.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "harness"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "swapped"\ntype = "layers"\ncontainers = ["harness"]\n'
        'layers = ["errors", "cli"]\n'
    )
    got = lint(str(config))
    assert got.returncode != 0
    assert "harness.cli is not allowed to import harness.errors" in got.stdout
