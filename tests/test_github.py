"""The GitHub source against the loopback fake: pagination, ETags, limits, resolution, token."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.errors import RateLimited, ReleaseNotFound, SourceError
from harness.sources.github import GitHubSource
from tests.conftest import NEW, OLD, one_error_line
from tests.fakegithub import FakeGitHub


def source(gh: FakeGitHub, tmp_path: Path, token: str | None = None) -> GitHubSource:
    return GitHubSource(tmp_path / "cache", gh.api_url, token=token)


def test_pagination_follows_link_and_skips_drafts(tmp_path: Path) -> None:
    with FakeGitHub() as gh:
        for i in range(1, 231):
            gh.add_release(f"b{i}", {}, draft=(i == 230))
        rels = source(gh, tmp_path).list_releases()
        assert [r.tag for r in rels] == [f"b{i}" for i in range(229, 0, -1)]
        pages = gh.api_hits[f"/repos/{gh.repo}/releases"]
        assert pages == 3  # 230 at 100 per page


def test_limit_stops_paging(tmp_path: Path) -> None:
    with FakeGitHub() as gh:
        for i in range(1, 251):
            gh.add_release(f"b{i}", {})
        assert len(source(gh, tmp_path).list_releases(limit=5)) == 5
        assert gh.api_hits[f"/repos/{gh.repo}/releases"] == 1


def test_etag_304_is_free_and_reuses_body(gh: FakeGitHub, tmp_path: Path) -> None:
    first = source(gh, tmp_path).list_releases()
    spent = gh.rate_limit - gh.remaining
    again = source(gh, tmp_path).list_releases()  # a new process would do the same
    assert [r.tag for r in again] == [r.tag for r in first]
    assert gh.api_304 >= 1
    assert gh.rate_limit - gh.remaining == spent
    assert any("If-None-Match" in h for h in gh.api_headers)


def test_rate_limit_is_exit_3_with_reset_and_token_hint(harness, gh: FakeGitHub) -> None:
    gh.remaining = 0
    gh.reset_at = int(time.time()) + 1800
    r = harness("releases")
    assert r.code == 3
    line = one_error_line(r.err)
    assert "rate limit exhausted" in line
    assert "resets at" in line and "UTC" in line
    assert "GITHUB_TOKEN" in line


def test_secondary_rate_limit_429(tmp_path: Path, gh: FakeGitHub) -> None:
    gh.faults.api_errors, gh.faults.api_status, gh.faults.retry_after = 1, 429, "60"
    with pytest.raises(RateLimited, match="retry after 60"):
        source(gh, tmp_path).get_release(NEW)


def test_server_errors_are_retried(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.faults.api_errors = 2
    assert source(gh, tmp_path).get_release(NEW).build == NEW


def test_persistent_server_error_is_exit_3(harness, gh: FakeGitHub) -> None:
    gh.faults.api_errors = 100
    r = harness("assets", NEW)
    assert r.code == 3
    assert "HTTP 500" in one_error_line(r.err)


def test_unreachable_api_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    code = cli.main(["--api-url", "http://127.0.0.1:9", "--cache-dir", str(tmp_path), "releases"])
    assert code == 3
    assert "cannot reach the GitHub API" in one_error_line(capsys.readouterr().err)


def test_offline_falls_back_to_cached_answer(gh: FakeGitHub, tmp_path: Path) -> None:
    src = source(gh, tmp_path)
    assert src.get_release(NEW).build == NEW
    gh.stop()
    assert source(gh, tmp_path).get_release(NEW).build == NEW


def test_unknown_release_names_tag_and_repo(harness) -> None:
    r = harness("assets", "b999999")
    assert r.code == 3
    line = one_error_line(r.err)
    assert "'b999999'" in line and "ggml-org/llama.cpp" in line


def test_draft_is_not_found(gh: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(ReleaseNotFound):
        source(gh, tmp_path).get_release("b8100")


def test_v_tag_and_latest_resolve_to_the_build(gh: FakeGitHub, tmp_path: Path) -> None:
    src = source(gh, tmp_path)
    v = src.get_release("v0.5.0")
    assert (v.tag, v.build) == ("v0.5.0", NEW)
    assert any(a.name.endswith("ubuntu-x64.tar.gz") for a in v.assets)
    latest = src.get_release("latest")  # /releases/latest is the v* (b<N> are prereleases)
    assert (latest.tag, latest.build) == ("v0.5.0", NEW)


def test_latest_without_any_full_release(tmp_path: Path) -> None:
    with FakeGitHub() as gh:
        gh.add_release("b1", {"llama-b1-bin-ubuntu-x64.zip": b"x"}, prerelease=True)
        gh.add_release("b2", {"llama-b2-bin-ubuntu-x64.zip": b"x"}, prerelease=True)
        assert source(gh, tmp_path).get_release("latest").build == "b2"


def test_releases_json_shape(harness) -> None:
    r = harness("--json", "releases")
    assert r.code == 0
    rows = json.loads(r.out)
    assert [x["tag"] for x in rows] == ["v0.5.0", NEW, OLD]
    assert rows[0] == {
        "tag": "v0.5.0",
        "build": NEW,
        "name": "v0.5.0",
        "published_at": "2026-02-02T00:00:00Z",
        "prerelease": False,
        "assets": 1,
    }
    assert rows[1]["prerelease"] is True and rows[1]["build"] == NEW


def test_assets_json_lists_cells_and_unmatched(harness) -> None:
    r = harness("--json", "assets", OLD)
    assert r.code == 0
    rows = {x["name"]: x for x in json.loads(r.out)}
    assert rows[f"llama-{OLD}-bin-win-cuda-12.4-x64.zip"]["variant"] == "cuda-12.4"
    assert rows["cudart-llama-bin-win-cuda-12.4-x64.zip"]["kind"] == "companion"
    un = rows[f"llama-{OLD}-xcframework.zip"]
    assert (un["kind"], un["os"], un["arch"], un["variant"]) == ("unmatched", None, None, None)
    assert rows[f"llama-{OLD}-bin-ubuntu-x64.zip"]["digest"] is None
    assert set(rows[f"llama-{OLD}-bin-ubuntu-x64.zip"]) == {
        "name",
        "size",
        "digest",
        "os",
        "arch",
        "variant",
        "kind",
    }
    text = harness("assets", "v0.5.0")
    assert "unmatched" in text.out and f"build {NEW}" in text.out


def test_api_error_without_cache_is_source_error(tmp_path: Path) -> None:
    with FakeGitHub(repo="someone/else") as gh, pytest.raises(SourceError, match="not found"):
        source(gh, tmp_path).list_releases()


@pytest.mark.parametrize("body", [{"message": "ok"}, [{"no_tag": 1}], ["x"], 42])
def test_malformed_api_answers_are_exit_3(harness, gh: FakeGitHub, body: object) -> None:
    gh.faults.release_body = body
    r = harness("releases")
    assert r.code == 3
    assert "unexpected" in one_error_line(r.err)


def test_odd_tags_are_quoted_not_followed(harness, gh: FakeGitHub) -> None:
    r = harness("assets", "../../../../releases")
    assert r.code == 3
    assert "not found" in one_error_line(r.err)
    assert f"/repos/{gh.repo}/releases/tags/../../../../releases" in gh.api_hits  # sent as one tag
