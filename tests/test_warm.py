"""A warm `download` of pinned b<N> releases makes no request at all (tokenless CI pays for every
304); `latest`/`v*` still ask; a kept release that lacks an asset is asked for again."""

from __future__ import annotations

import hashlib

from tests.conftest import NEW, archives_for
from tests.fakegithub import FakeAsset, FakeGitHub


def _requests(gh: FakeGitHub) -> int:
    return sum(gh.api_hits.values()) + sum(gh.asset_hits.values())


def test_warm_pinned_download_makes_zero_requests(harness, gh: FakeGitHub, matrix_file) -> None:
    cold = harness("--matrix", str(matrix_file), "download")
    assert cold.code == 0, cold.err
    before, before_304 = _requests(gh), gh.api_304
    warm = harness("--matrix", str(matrix_file), "download")
    assert warm.code == 0, warm.err
    assert _requests(gh) == before and gh.api_304 == before_304  # not even a 304
    assert warm.out == cold.out.replace("downloaded from github", "cached")


def test_latest_and_v_tags_still_ask(harness, gh: FakeGitHub) -> None:
    for tag in ("latest", "v0.5.0"):
        assert harness("download", tag, "--os", "linux", "--variant", "cpu").code == 0
        before = sum(gh.api_hits.values())
        again = harness("download", tag, "--os", "linux", "--variant", "cpu")
        assert again.code == 0, again.err
        assert sum(gh.api_hits.values()) > before  # a new release may have been published


def test_kept_release_missing_an_asset_is_asked_again(harness, gh: FakeGitHub, tmp_path) -> None:
    """Kept while CI was still uploading: the missing cell asks once more, and finds it."""
    rel = next(r for r in gh.releases if r.tag == NEW)
    late = f"llama-{NEW}-bin-win-cuda-12.4-x64.zip"
    assert harness("download", NEW, "--os", "linux", "--variant", "cpu").code == 0
    data = archives_for(NEW, [late], tmp_path / "late")[late]
    rel.assets.append(FakeAsset(late, data, f"sha256:{hashlib.sha256(data).hexdigest()}"))
    m = tmp_path / "m.yaml"
    m.write_text(f"releases: [{NEW}]\nplatforms: [{{os: windows, arch: x64, variant: cuda-12.4}}]")
    path = f"/repos/{gh.repo}/releases/tags/{NEW}"
    assert gh.api_hits[path] == 1
    r = harness("--matrix", str(m), "download")
    assert r.code == 0, r.err
    assert gh.api_hits[path] == 2


def test_warm_long_matrix_lists_nothing(tmp_path, capsys) -> None:
    """More pinned releases than prefetch() lists at once (BULK_RELEASES): the cold run lists
    them 100 a call and keeps each; the warm run needs no listing, and makes no request."""
    from harness import cli
    from harness.sources.github import BULK_RELEASES

    tags = [f"b{2000 + i}" for i in range(BULK_RELEASES + 5)]
    with FakeGitHub() as gh:
        for tag in tags:
            name = f"llama-{tag}-bin-ubuntu-x64.tar.gz"
            gh.add_release(tag, archives_for(tag, [name], tmp_path / "a" / tag))
        m = tmp_path / "matrix.yaml"
        m.write_text(f"releases: [{', '.join(tags)}]\nplatforms:\n  - {{os: linux, arch: x64}}\n")
        args = ["--api-url", gh.api_url, "--cache-dir", str(tmp_path / "c"), "--matrix", str(m)]
        assert cli.main([*args, "download"]) == 0, capsys.readouterr().err
        assert gh.api_hits[f"/repos/{gh.repo}/releases"] == 1
        assert sum(v for k, v in gh.api_hits.items() if "/releases/tags/" in k) == 0
        before = _requests(gh)
        assert cli.main([*args, "download"]) == 0, capsys.readouterr().err
        assert _requests(gh) == before


def test_warm_pinned_download_imports_no_http_stack(harness, gh: FakeGitHub, matrix_file) -> None:
    """Nothing a warm run needs imports requests (~45 ms a start): not the limits checked up
    front, not a kept release's asset URLs (sources/limits.py holds both, apart from http.py)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    assert harness("--matrix", str(matrix_file), "download").code == 0
    probe = (
        "import sys\nfrom harness import cli\n"
        f"code = cli.main(['--api-url', {gh.api_url!r}, '--cache-dir', {str(harness.cache)!r}, "
        f"'--matrix', {str(matrix_file)!r}, 'download'])\n"
        "print(code, sorted(m for m in ('requests', 'urllib3', 'rich', 'jsonschema') "
        "if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert run.stdout.splitlines()[-1] == "0 []", run.stdout + run.stderr
