"""The tiny model and the NumPy reference, proven against real llama.cpp builds.

The reference is only worth something if real releases agree with it, so the last tests load the
node-llama-cpp linux-x64 builds of eight releases (b3889 … v0.5.0), each in its own process
(tests/llama_probe.py), and compare tokens, greedy output and logits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import pytest
from filelock import FileLock

from harness.errors import ConfigError
from harness.suites.fixtures import model, reference
from harness.suites.fixtures.model import PROMPT, ensure_model, write_tiny_model
from tests.realbuilds import NPM_VERSIONS

TINY_SHA256 = "ad97487c3f7137ba9aad6b26f7cb3a89c71be8028ce3134f1b475e54ad552e95"
PROMPT_IDS = [1, 332, 337]  # <s> ▁Hello ▁world
GREEDY = [228, 225, 186, 303, 144, 378, 335, 264, 162, 235, 25, 343, 370, 52, 400, 403]
N_GEN = 16
LOGIT_TOL = 1e-2  # releases differ by <= 7e-3 among themselves (f16 KV cache, flash attention)
MIN_MARGIN = 0.3  # top-1 vs top-2 logit, every greedy step: far above LOGIT_TOL
EDGE_TEXT = "Hello llamas, héllo 🦙 wörld!\n42  end"  # merges, byte fallback, double space

# node-llama-cpp version → the llama.cpp release its @node-llama-cpp/linux-x64 build carries
RELEASES = NPM_VERSIONS
PROBE = Path(__file__).with_name("llama_probe.py")
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
                  "ENETUNREACH", "EHOSTUNREACH", "ENOTCACHED", "network", "offline")  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model(tmp_path_factory.mktemp("cache"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the model file ---------------------------------------------------------------------------


def test_write_is_deterministic(tmp_path: Path) -> None:
    a, b = write_tiny_model(tmp_path / "a.gguf"), write_tiny_model(tmp_path / "b.gguf")
    assert a.read_bytes() == b.read_bytes()
    assert sha256(a) == TINY_SHA256, "model bytes changed: bump CONTENT_VERSION and the pins"


def test_ensure_model_caches(tmp_path: Path) -> None:
    path = ensure_model(tmp_path)
    assert path == tmp_path / "models" / f"tiny-{model.CONTENT_VERSION}.gguf"
    before = path.stat().st_mtime_ns
    assert ensure_model(tmp_path, "tiny") == path
    assert path.stat().st_mtime_ns == before  # reused, not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_ensure_model_concurrent_processes(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        paths = set(pool.map(ensure_model, [tmp_path] * 8))
    assert len(paths) == 1
    path = paths.pop()
    assert sha256(path) == TINY_SHA256
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_ensure_model_user_path(tmp_path: Path, tiny: Path) -> None:
    mine = shutil.copy(tiny, tmp_path / "mine.gguf")
    assert ensure_model(tmp_path, str(mine)) == Path(mine).resolve()
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not a model")
    cases = {
        str(tmp_path / "missing.gguf"): "no such file",
        str(tmp_path): "no such file",
        str(tmp_path / "fake.gguf"): "not a GGUF file",
    }
    for spec, why in cases.items():
        with pytest.raises(ConfigError) as info:
            ensure_model(tmp_path, spec)
        message = str(info.value)
        assert why in message and spec in message and "\n" not in message


# --- the reference ----------------------------------------------------------------------------


def test_tokenize_prompt(tiny: Path) -> None:
    pieces = model.vocab()[0]
    assert len(pieces) == 420
    assert reference.tokenize(tiny, PROMPT) == PROMPT_IDS
    assert [pieces[i] for i in PROMPT_IDS] == ["<s>", "▁Hello", "▁world"]
    assert reference.tokenize(tiny, PROMPT, add_bos=False) == PROMPT_IDS[1:]
    assert reference.tokenize(tiny, "") == [1]


def test_tokenize_merges_and_byte_fallback(tiny: Path) -> None:
    pieces = model.vocab()[0]
    ids = reference.tokenize(tiny, "hello llamas é", add_bos=False)
    byte = 3  # <0x00> follows the three specials
    assert [pieces[i] for i in ids[:3]] == ["▁hello", "▁llama", "s"]
    assert ids[3:] == [pieces.index("▁"), byte + 0xC3, byte + 0xA9]


@pytest.mark.parametrize("text", [PROMPT, "", " two  spaces ", EDGE_TEXT, "Zürich\t∑ 🦙"])
def test_detokenize_round_trip(tiny: Path, text: str) -> None:
    assert reference.detokenize(tiny, reference.tokenize(tiny, text)) == text


def test_greedy_is_pinned_and_stable(tiny: Path) -> None:
    assert reference.greedy(tiny, PROMPT_IDS, N_GEN) == GREEDY
    logits = reference.forward(tiny, PROMPT_IDS + GREEDY)
    assert logits.shape == (len(PROMPT_IDS) + N_GEN, 420) and logits.dtype == np.float64
    steps = np.sort(logits[len(PROMPT_IDS) - 1 : -1], axis=1)
    assert (steps[:, -1] - steps[:, -2]).min() > MIN_MARGIN


def test_forward_is_causal(tiny: Path) -> None:
    full = reference.forward(tiny, PROMPT_IDS + GREEDY)
    np.testing.assert_allclose(reference.forward(tiny, PROMPT_IDS), full[: len(PROMPT_IDS)])


# --- real llama.cpp builds --------------------------------------------------------------------

host_ok = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")
needs_host = pytest.mark.skipif(not host_ok, reason="the npm builds tested here are linux-x64")


def builds_root() -> Path:
    return Path(platformdirs.user_cache_dir("llama-harness")) / "test-builds"


def release_libdir(tag: str) -> Path:
    """bins/linux-x64/ of the release's node-llama-cpp package, cached across runs.

    Extracted into a process-unique folder and renamed into place, so a folder that exists is
    complete; the lock only spares parallel workers a duplicate download.
    """
    root = builds_root()
    target = root / tag
    if target.is_dir():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not found: cannot fetch llama.cpp builds")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{tag}.lock")):
        if target.is_dir():
            return target
        work = root / f".{tag}.{os.getpid()}.{uuid.uuid4().hex[:8]}.incomplete"
        work.mkdir()
        try:
            spec = f"@node-llama-cpp/linux-x64@{RELEASES[tag]}"
            cmd = [npm, "pack", spec, "--json", "--pack-destination", str(work)]
            try:
                done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=180)
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm registry unreachable: npm pack {spec} timed out")
            if done.returncode != 0:
                why = npm_error(done.stderr)
                if any(word in done.stderr for word in NETWORK_ERRORS):
                    pytest.skip(f"npm registry unreachable: {why}")
                pytest.fail(f"npm pack {spec} failed: {why}")
            tgz = work / json.loads(done.stdout)[0]["filename"]
            lib = work / "lib"
            lib.mkdir()
            prefix = "package/bins/linux-x64/"
            with tarfile.open(tgz) as tar:  # flat folder: plain files directly under prefix only
                for member in tar.getmembers():
                    name = member.name.removeprefix(prefix)
                    if member.isfile() and member.name.startswith(prefix) and "/" not in name:
                        src = tar.extractfile(member)
                        assert src is not None
                        (lib / name).write_bytes(src.read())
            os.replace(lib, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def npm_error(stderr: str) -> str:
    """npm's error code and its first explanatory line, e.g. 'ECONNREFUSED: FetchError: ...'."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines()]
    code = next((x.split()[1] for x in lines if x.startswith("code ") and len(x.split()) > 1), "")
    skip = ("code ", "errno ", "syscall ", "at ", "A complete log", "{", "}")
    text = next((x for x in lines if x and not x.startswith(skip)), "(no message)")
    return f"{code}: {text}" if code else text


@functools.cache
def probe(tag: str, model_path: Path, text: str, n_gen: int) -> dict[str, Any]:
    """Run the probe for one release in its own process (releases share ggml's SONAME)."""
    libdir = release_libdir(tag)
    cmd = [sys.executable, str(PROBE), str(libdir), str(model_path), text, str(n_gen)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"rc {done.returncode}"
        pytest.fail(f"{tag}: probe failed ({how}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request: pytest.FixtureRequest, tiny: Path) -> tuple[str, dict[str, Any]]:
    if not host_ok:
        pytest.skip("the npm builds tested here are linux-x64")
    tag: str = request.param
    return tag, probe(tag, tiny, PROMPT, N_GEN)


def test_release_tokenizes_like_reference(release: tuple[str, dict[str, Any]], tiny: Path) -> None:
    tag, out = release
    assert out["n_vocab"] == 420
    assert out["tokens"] == reference.tokenize(tiny, PROMPT) == PROMPT_IDS
    edge = probe(tag, tiny, EDGE_TEXT, 0)
    assert edge["tokens"] == reference.tokenize(tiny, EDGE_TEXT)


def test_release_greedy_matches_reference(release: tuple[str, dict[str, Any]], tiny: Path) -> None:
    _, out = release
    assert out["generated"] == reference.greedy(tiny, PROMPT_IDS, N_GEN) == GREEDY
    text = bytes.fromhex(out["text_hex"]).decode("utf-8", errors="replace")
    assert text.removeprefix(" ") == reference.detokenize(tiny, GREEDY)


def test_release_logits_match_reference(release: tuple[str, dict[str, Any]], tiny: Path) -> None:
    tag, out = release
    want = reference.forward(tiny, PROMPT_IDS + GREEDY)[len(PROMPT_IDS) - 1 : -1]
    got = np.asarray(out["logits"], dtype=np.float64)
    assert got.shape == want.shape
    first, every = np.abs(got[0] - want[0]).max(), np.abs(got - want).max()
    print(f"{tag}: max |logit - reference| first row {first:.2e}, all {N_GEN} steps {every:.2e}")
    assert first < LOGIT_TOL and every < LOGIT_TOL


@needs_host
def test_releases_agree_with_each_other(tiny: Path) -> None:
    outs = {tag: probe(tag, tiny, PROMPT, N_GEN) for tag in sorted(RELEASES)}
    first = next(iter(outs.values()))
    for tag, out in outs.items():
        assert out["tokens"] == first["tokens"] and out["generated"] == first["generated"], tag
        diff = np.abs(np.asarray(out["logits"]) - np.asarray(first["logits"])).max()
        assert diff < LOGIT_TOL, f"{tag} vs {sorted(RELEASES)[0]}: {diff:.2e}"
