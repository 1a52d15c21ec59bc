"""`binding-check --live`: the binding's own high-level API, installed, on a provisioned release.

A static check says what would break; this says what does. For a Python binding installable
from an sdist (llama-cpp-python), without building its native part:

    <cache>/bindings/<name>-<version>/venv/       one isolated venv per binding version
    <cache>/bindings/<name>-<version>/venv.json   written last: the install is complete

The release's library folder is adapted to the names the binding loads (a temp folder of
symlinks: libllama.so → npm's libllama.b10361.so, and every other file as it is), passed as
LLAMA_CPP_LIB_PATH, and the binding runs in a child process with a timeout: greedy tokens on the
harness's tiny model must equal the NumPy reference's. A missing symbol, an exception or a crash
is reported as such, with the stage it happened in.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from harness.binding import fetch
from harness.cache import atomic
from harness.errors import ConfigError, SourceError
from harness.load.loader import library_paths

log = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 1200.0
RUN_TIMEOUT_S = 120.0
N_PREDICT = 8
# The binding's native part is not built: it loads the release we give it.
BUILD_ENV = {"CMAKE_ARGS": "-DLLAMA_BUILD=OFF", "FORCE_CMAKE": "1"}
_PLAIN = {"llama": "libllama.so", "ggml": "libggml.so", "ggml-base": "libggml-base.so"}
_MISSING = re.compile(r"undefined symbol: (\w+)|function '(\w+)' not found|symbol (\w+) not found")

# Runs in the binding's venv. The backends are loaded from the folder first, as `run` does
# (npm builds keep the CPU backends as plugins); everything after that is the binding's own API.
CHILD = r"""
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
def stage(name):
    sys.stderr.write("STAGE " + name + "\n"); sys.stderr.flush()
stage("backends")
ggml = ctypes.CDLL(os.path.join(spec["libdir"], "libggml.so"), mode=ctypes.RTLD_GLOBAL)
if hasattr(ggml, "ggml_backend_load_all_from_path"):
    ggml.ggml_backend_load_all_from_path(spec["libdir"].encode())
stage("import")
from llama_cpp import Llama
stage("load")
llm = Llama(model_path=spec["model"], n_ctx=128, n_batch=32, n_threads=1, verbose=False)
stage("tokenize")
ids = llm.tokenize(spec["prompt"].encode(), add_bos=True)
stage("generate")
out = []
for tok in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
    out.append(int(tok))
    if len(out) >= spec["n"]:
        break
print(json.dumps({"prompt_ids": [int(i) for i in ids], "tokens": out}))
"""


@dataclass
class LiveResult:
    release: str
    ok: bool
    what: str  # "pass", "skipped", "missing symbol", "exception", "crash", "timeout", "mismatch"
    detail: str = ""
    stage: str = ""
    install_s: float | None = None  # when this call installed the venv
    tokens: list[int] | None = None
    expected: list[int] | None = None

    def line(self) -> str:
        where = f" during {self.stage}" if self.stage and not self.ok else ""
        return f"{self.what}{where}" + (f": {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        return out


def venv_for(root: Path, source: str) -> tuple[Path, float | None]:
    """(the venv's python, seconds the install took or None when cached): the binding from its
    cached sdist, its native part not built."""
    req = fetch.requirement(source)
    if req is None:
        raise ConfigError("--live needs an installable Python binding: a pip requirement")
    name, tree = fetch.fetch(root, source)
    entry = next(p for p in tree.parents if (p / fetch.MARKER).is_file())
    python = entry / "venv" / "bin" / "python"
    marker = entry / "venv.json"
    with filelock.FileLock(str(entry) + ".venv.lock"):
        if marker.is_file() and python.exists():
            return python, None
        sdist = next(
            p for p in entry.iterdir() if p.is_file() and p.name.endswith((".tar.gz", ".zip"))
        )
        tmp = entry / f".venv.{uuid.uuid4().hex[:8]}.tmp"
        started = time.perf_counter()
        try:
            _run([sys.executable, "-m", "venv", str(tmp)], f"{name}: venv", 120)
            env = {**os.environ, **BUILD_ENV}
            pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q"]
            _run(
                [*pip, "--disable-pip-version-check", str(sdist)],
                f"{name}: install",
                INSTALL_TIMEOUT_S,
                env,
            )
            shutil.rmtree(entry / "venv", ignore_errors=True)
            os.replace(tmp, entry / "venv")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        took = time.perf_counter() - started
        atomic.write_text(marker, json.dumps({"source": source, "install_s": round(took, 1)}))
        log.info("%s: installed in %.0f s (native part not built)", name, took)
        return python, took


def _run(cmd: list[str], what: str, timeout: float, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"{what}: took more than {timeout:.0f} s") from err
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise SourceError(f"{what} failed: {tail}")


def adapted_libdir(libdir: Path, dest: Path) -> Path:
    """A folder where the release's libraries have the plain names bindings load: every file of
    `libdir` linked as it is, plus libllama.so, libggml.so, libggml-base.so."""
    for p in libdir.iterdir():
        (dest / p.name).symlink_to(p.resolve())
    for role, path in library_paths(libdir).items():
        plain = dest / _PLAIN[role]
        if not plain.exists():
            plain.symlink_to(path.resolve())
    return dest


def run_one(
    python: Path, libdir: Path, model: Path, prompt: str, expected: list[int], release: str
) -> LiveResult:
    with tempfile.TemporaryDirectory(prefix="llama-harness-live-") as tmp:
        lib = adapted_libdir(libdir, Path(tmp))
        spec = {"libdir": str(lib), "model": str(model), "prompt": prompt, "n": len(expected)}
        env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib), "LD_LIBRARY_PATH": str(lib)}
        try:
            done = subprocess.run(
                [str(python), "-c", CHILD, json.dumps(spec)],
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                env=env,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired as err:
            stage = _stage(err.stderr if isinstance(err.stderr, str) else "")
            return LiveResult(release, False, "timeout", f"{RUN_TIMEOUT_S:.0f} s", stage)
    return judge(release, done.returncode, done.stdout, done.stderr, expected)


def _stage(stderr: str) -> str:
    stages = [ln[6:] for ln in stderr.splitlines() if ln.startswith("STAGE ")]
    return stages[-1] if stages else ""


def judge(release: str, rc: int, stdout: str, stderr: str, expected: list[int]) -> LiveResult:
    stage = _stage(stderr)
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return LiveResult(release, False, "crash", name, stage)
    if rc != 0:
        lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("STAGE ")]
        last = lines[-1] if lines else f"exit status {rc}"
        if m := _MISSING.search(stderr):
            symbol = next(g for g in m.groups() if g)
            return LiveResult(release, False, "missing symbol", symbol, stage)
        return LiveResult(release, False, "exception", last, stage)
    try:
        got = json.loads(stdout.strip().splitlines()[-1])["tokens"]
    except (ValueError, IndexError, KeyError):
        return LiveResult(release, False, "exception", "no result from the child", stage)
    if got != expected:
        return LiveResult(
            release,
            False,
            "mismatch",
            f"tokens {got}, reference {expected}",
            "generate",
            tokens=got,
            expected=expected,
        )
    return LiveResult(
        release,
        True,
        "pass",
        f"{len(got)} greedy tokens equal the reference",
        tokens=got,
        expected=expected,
    )
