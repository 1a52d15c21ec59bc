"""`inspect-host` and `download --host` through the CLI, on this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import run_harness
from tests.realbuilds import CACHE, provision


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_harness(*args, cwd=cwd, timeout=300)


def test_inspect_host_without_a_release(tmp_path: Path) -> None:
    """No release named and no matrix.yaml here: the host alone (tests/test_wording.py has the
    matrix's newest release)."""
    proc = cli("--json", "inspect-host", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["host"]["os"] in ("linux", "macos", "windows")
    assert "choice" not in data
    text = cli("inspect-host", cwd=tmp_path).stdout
    assert "CPU" in text and "Vulkan" in text and "CUDA" in text


def test_inspect_host_for_a_release_names_variant_and_cpu_backend(tmp_path: Path) -> None:
    provision(["b10361"])
    proc = cli("--cache-dir", str(CACHE), "--source", "npm", "--json", "inspect-host", "b10361")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"cpu", "vulkan"} <= set(data["variants"])
    choice = data["choice"]
    assert choice["variant"] in data["variants"]
    assert any(r.startswith("cuda") and "driver" in r for r in choice["reasons"])  # no GPU here
    assert data["cpu_backend"]["variant"] in data["cpu_backend"]["available"]


def test_download_host_takes_the_chosen_variant(tmp_path: Path) -> None:
    provision(["b10361"])
    proc = cli(
        "--cache-dir", str(CACHE), "--source", "npm", "--json", "download", "b10361", "--host"
    )
    assert proc.returncode == 0, proc.stderr
    want = json.loads(
        cli("--cache-dir", str(CACHE), "--source", "npm", "--json", "inspect-host", "b10361").stdout
    )["choice"]["variant"]
    assert [r["variant"] for r in json.loads(proc.stdout)] == [want]
