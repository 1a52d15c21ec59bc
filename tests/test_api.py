"""The Python API (the Go library's download / cache / load surface) against the fake GitHub."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness
from harness import LibraryDownloader, clean_library_cache
from harness.errors import AssetNotFound, ReleaseNotFound
from harness.sources.assets import host_platform
from tests.conftest import NEW, OLD
from tests.fakegithub import FakeGitHub


@pytest.fixture
def dl(gh: FakeGitHub, tmp_path: Path) -> LibraryDownloader:
    return LibraryDownloader(tmp_path / "cache", api_url=gh.api_url)


def test_public_surface() -> None:
    assert harness.__all__ == [
        "LibraryDownloader", "__version__", "clean_library_cache", "load_library"]
    assert harness.LibraryDownloader is LibraryDownloader


def test_releases_and_latest(dl: LibraryDownloader) -> None:
    assert [r.tag for r in dl.list_releases()] == ["v0.5.0", NEW, OLD]
    assert [r.tag for r in dl.list_releases(limit=1)] == ["v0.5.0"]
    assert dl.get_latest_release().build == NEW
    assert dl.get_release(OLD).build == OLD
    with pytest.raises(ReleaseNotFound):
        dl.get_release("b1")


def test_pattern_and_match_per_era(dl: LibraryDownloader) -> None:
    pat = dl.platform_asset_pattern("linux", "x64", "cpu")
    assert pat.fullmatch(f"llama-{OLD}-bin-ubuntu-x64.zip")
    assert pat.fullmatch(f"llama-{NEW}-bin-ubuntu-x64.tar.gz")
    assert not pat.fullmatch(f"llama-{NEW}-bin-ubuntu-vulkan-x64.tar.gz")
    old, new = dl.get_release(OLD), dl.get_release(NEW)
    assert dl.match_asset(old, "windows", "x64", "cuda-12.4").name.endswith("cuda-12.4-x64.zip")
    assert dl.match_asset(new, "macos", "arm64").name == f"llama-{NEW}-bin-macos-arm64.tar.gz"
    with pytest.raises(AssetNotFound, match=r"no asset for windows/x64/cuda-12\.4"):
        dl.match_asset(new, "windows", "x64", "cuda-12.4")
    if host_platform() == ("linux", "x64"):
        assert dl.platform_asset_pattern().fullmatch(f"llama-{NEW}-bin-ubuntu-x64.tar.gz")


def test_download_then_clean(dl: LibraryDownloader, gh: FakeGitHub) -> None:
    res = dl.download(NEW, "windows", "x64", "cpu")
    assert res.stored and Path(res.stored.path, "llama.dll").is_file()
    assert res.stored.verify == "verified" and not res.stored.cached
    again = dl.download("v0.5.0", "windows", "x64", "cpu")
    assert again.stored and again.stored.cached and again.build == NEW
    assert sum(gh.asset_hits.values()) == 2  # the asset once, nightly-tag.txt once
    assert clean_library_cache(dl.cache.root, NEW) == [dl.cache.root / "releases" / NEW]
    assert clean_library_cache(dl.cache.root) == [dl.cache.root / "releases"]
    assert not (dl.cache.root / "releases").exists()
    assert clean_library_cache(dl.cache.root) == []


def test_download_raises_harness_errors(dl: LibraryDownloader) -> None:
    with pytest.raises(AssetNotFound):
        dl.download(NEW, "windows", "arm64", "cpu")


def test_cache_dir_default_is_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from harness.cache.store import default_root

    assert default_root() == Path(platformdirs.user_cache_dir("llama-harness")).resolve()
    monkeypatch.setenv("LLAMA_HARNESS_CACHE", "/tmp/x-cache")
    assert default_root() == Path("/tmp/x-cache")
    assert default_root("/tmp/y") == Path("/tmp/y")
