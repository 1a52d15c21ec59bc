"""A release's headers come from its source archive, asked of the source that serves the release
through the `Source` protocol (`source_archive`): GitHub's `tarball_url`, a mirror's
`<tag>/source.tar.gz`; npm has none and says so (its headers come from a git bundle instead)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.abi.release import api_for_release
from harness.errors import SourceError
from harness.library import LibraryDownloader
from harness.sources.base import Release
from harness.sources.npm import NpmSource
from tests.conftest import NEW
from tests.fakegithub import FakeGitHub
from tests.test_automation import _source_tarball
from tests.test_sources import write_mirror


def test_a_mirror_folder_gives_the_release_headers(gh: FakeGitHub, tmp_path: Path) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    (mirror / NEW / "source.tar.gz").write_bytes(_source_tarball())
    dl = LibraryDownloader(tmp_path / "c", sources=("mirror",), mirror=str(mirror))
    build, api = api_for_release(dl, NEW)
    assert build == NEW
    assert "llama_print_system_info" in api.functions
    assert (tmp_path / "c" / "headers" / NEW / "include" / "llama.h").is_file()


def test_a_mirror_without_the_archive_is_a_source_error(gh: FakeGitHub, tmp_path: Path) -> None:
    mirror = write_mirror(gh, tmp_path / "mirror")
    dl = LibraryDownloader(tmp_path / "c", sources=("mirror",), mirror=str(mirror))
    rel = dl.get_release(NEW)
    with pytest.raises(SourceError):
        dl.source_named("mirror").source_archive(rel, tmp_path / "source.tar.gz")


def test_github_without_a_tarball_url_and_npm_say_they_have_none(tmp_path: Path) -> None:
    rel = Release(NEW, NEW, NEW, None, True)
    gh = LibraryDownloader(tmp_path / "c", api_url="http://127.0.0.1:9", sources=("github",))
    with pytest.raises(SourceError, match="github has no source archive for " + NEW):
        gh.source.source_archive(rel, tmp_path / "x.tar.gz")
    with pytest.raises(SourceError, match="npm has no source archive"):
        NpmSource(tmp_path / "npm").source_archive(rel, tmp_path / "y.tar.gz")
