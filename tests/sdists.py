"""Real llama-cpp-python sdists for tests, fetched with pip as users would and kept in the test
cache (they are 40-80 MB each, so each machine downloads each version once). Tests that need
one skip, with the reason, when PyPI cannot be reached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import platformdirs
import pytest
from filelock import FileLock

SDISTS = Path(platformdirs.user_cache_dir("llama-harness")) / "test-cache" / "sdists"
# One version per era: 2024 (0.2.56 March, 0.2.90 August), 2025 (0.3.9 May, 0.3.16 August),
# 2026 (0.3.36, the one issue 13 found failing to import against current releases).
LLAMA_CPP_PYTHON = ["0.2.56", "0.2.90", "0.3.9", "0.3.16", "0.3.36"]


def llama_cpp_python(version: str) -> Path:
    """The cached sdist of llama-cpp-python `version`, downloading it on first use."""
    name = f"llama_cpp_python-{version}.tar.gz"
    path = SDISTS / name
    if path.is_file():
        return path
    SDISTS.mkdir(parents=True, exist_ok=True)
    with FileLock(str(SDISTS / ".lock")):
        if path.is_file():
            return path
        tmp = Path(tempfile.mkdtemp(dir=SDISTS, prefix=".download-"))
        try:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            cmd += ["--quiet", "--retries", "1", "--timeout", "30"]  # offline: skip soon
            cmd += ["-d", str(tmp), f"llama-cpp-python=={version}"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except subprocess.TimeoutExpired:
                pytest.skip(f"pip download llama-cpp-python=={version} timed out")
            got = tmp / name
            if done.returncode != 0 or not got.is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.skip(f"cannot fetch llama-cpp-python=={version} from PyPI: {last}")
            os.replace(got, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
