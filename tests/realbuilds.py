"""Real llama.cpp builds for tests, obtained the way users get them: through the harness's own
npm source, into a cache that outlives the test run (so CI downloads each package once per
machine). Tests that need them skip, with the reason, only when npm cannot be reached."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from harness.abi.release import headers_dir
from harness.config.matrix import Cell
from harness.errors import SourceError
from harness.library import LibraryDownloader
from harness.load.loader import find_libdir
from harness.provision import CellResult
from harness.sources.assets import host_platform
from tests.archives import Entry, write_targz, write_zip

CACHE = Path(platformdirs.user_cache_dir("llama-harness")) / "test-cache"
# One release per API era: b3889 (4-argument batch, llama_model* vocab), b4435 (backends as
# plugins), b4753 (llama_vocab*), b5640 (llama_memory_*), b6673 (flash attention auto),
# b8095, b10361 (load_mode), v0.5.0 (the first semver tag).
# llama.cpp release → the node-llama-cpp version whose packages carry it (learnt with
# `llama-harness npm-index --refresh`); tests that fetch packages directly use it.
NPM_VERSIONS = {
    "b3889": "3.1.1",
    "b4435": "3.4.0",
    "b4753": "3.6.0",
    "b5640": "3.10.0",
    "b6673": "3.14.0",
    "b8095": "3.16.0",
    "b10361": "3.20.0",
    "v0.5.0": "3.22.1",
}
ERAS = ["b3889", "b4435", "b4753", "b5640", "b6673", "b8095", "b10361", "v0.5.0"]


def need_linux_x64_and_npm() -> None:
    if host_platform() != ("linux", "x64"):
        pytest.skip("the real-build tests run on linux/x64")
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")


def downloader() -> LibraryDownloader:
    return LibraryDownloader(CACHE, sources=("npm",), jobs=4)


def provision(tags: list[str]) -> dict[str, CellResult]:
    need_linux_x64_and_npm()
    dl = downloader()
    try:
        results = dl.download_cells(
            [Cell(t, "linux", "x64", "cpu") for t in tags], raise_errors=False
        )
    except SourceError as err:
        pytest.skip(f"npm unreachable: {err}")
    for r in results:
        if r.error and "unreachable" in str(r.error):
            pytest.skip(f"npm unreachable: {r.error}")
        assert r.error is None, r.error
    return {r.cell.release: r for r in results}


def api_of(tag: str) -> Any:
    """The parsed ABI (`harness.abi.Api`) of a real release, from its own headers (npm bundle)."""
    from harness.abi.release import release_api

    return release_api(downloader(), provision([tag])[tag])


def platform_tree(tag: str, os: str, arch: str, variant: str) -> Path:
    """The extracted npm package of any platform (for static checks of non-host builds)."""
    need_linux_x64_and_npm()
    res = downloader().download_cells([Cell(tag, os, arch, variant)], raise_errors=False)[0]
    if res.error:
        pytest.skip(f"{tag} {os}/{arch}/{variant}: {res.error}")
    assert res.stored
    return Path(res.stored.path)


def era_archive(tag: str, res: CellResult, folder: Path) -> tuple[str, bytes]:
    """The npm build of `tag` repackaged as that era's GitHub asset: a zip with build/bin/ before
    late 2025, a tar.gz of llama-<tag>/ with libllama.so → .so.0 → .so.0.0.<N> chains after."""
    assert res.stored
    libdir = find_libdir(Path(res.stored.path))
    files = {
        p.name: p.read_bytes()
        for p in sorted(libdir.iterdir())
        if p.is_file() and p.suffix == ".so"
    }
    number = tag.lstrip("b")
    if int(number) < 7000:
        name = f"llama-{tag}-bin-ubuntu-x64.zip"
        entries = [Entry(f"build/bin/{n}", data, 0o755) for n, data in files.items()]
        return name, write_zip(folder / name, entries).read_bytes()
    entries = []
    for n, data in files.items():
        entries.append(Entry(f"llama-{tag}/{n}", data, 0o755))
        stem = n.split(".")[0]  # libllama.b8095.so → libllama
        if stem in ("libllama", "libggml", "libggml-base") and n != f"{stem}.so":
            # the era's chain, ending at the file npm ships (its SONAME is what others NEED)
            real = f"{stem}.so.0.0.{number}"
            entries += [
                Entry(f"llama-{tag}/{real}", kind="symlink", link=n),
                Entry(f"llama-{tag}/{stem}.so.0", kind="symlink", link=real),
                Entry(f"llama-{tag}/{stem}.so", kind="symlink", link=f"{stem}.so.0"),
            ]
    name = f"llama-{tag}-bin-ubuntu-x64.tar.gz"
    return name, write_targz(folder / name, entries).read_bytes()


def source_tarball(res: CellResult) -> bytes:
    """A GitHub-style source archive holding the release's headers where the repo keeps them."""
    include = headers_dir(downloader(), res)
    top = "ggml-org-llama.cpp-0123abc"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for h in sorted(include.glob("*.h")):
            where = "include" if h.name.startswith("llama") else "ggml/include"
            tar.add(h, arcname=f"{top}/{where}/{h.name}")
    return buf.getvalue()
