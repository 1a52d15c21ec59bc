"""The npm source against a loopback registry configured through a real `.npmrc` (npm's own CLI
reads it): auth honoured, the index reads only the front of each package, a package is
downloaded once into our cache and never into npm's, `assets` shows sizes and sha512 digests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.errors import DigestMismatch
from harness.sources.npm import NpmSource
from harness.sources.npmregistry import NpmConfig
from tests.conftest import one_error_line
from tests.fakenpm import FakeNpm

PAYLOAD = 4_000_000
TOKEN = "s3cret-token"


@pytest.fixture
def npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (the npm source reads its settings through it)")
    with FakeNpm(token=TOKEN, rate_bps=16_000_000) as reg:
        reg.add("3.1.0", "b4000", {"linux-x64": PAYLOAD, "win-x64": 100_000})
        reg.add("3.2.0", "b5000", {"linux-x64": PAYLOAD, "win-x64": 100_000})
        reg.add("3.3.0", "b5000", {"linux-x64": PAYLOAD, "win-x64": 100_000})
        reg.add("3.4.0", "b6000", {"linux-x64": PAYLOAD})
        rc = tmp_path / "npmrc"
        host = reg.url.removeprefix("http:")
        rc.write_text(f"registry={reg.url}\n{host}:_authToken=${{FAKE_NPM_TOKEN}}\n")
        monkeypatch.setenv("FAKE_NPM_TOKEN", TOKEN)  # .npmrc's ${VAR} form, as CI writes it
        monkeypatch.setenv("NPM_CONFIG_USERCONFIG", str(rc))
        monkeypatch.setenv("NPM_CONFIG_CACHE", str(tmp_path / "npm-cache"))
        yield reg


def _run(capsys, cache: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main(["--cache-dir", str(cache), "--source", "npm", *args])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_index_reads_only_the_front_of_each_package(npm: FakeNpm, tmp_path: Path, capsys) -> None:
    code, out, err = _run(capsys, tmp_path / "c", "npm-index", "--refresh")
    assert code == 0, err
    assert out.split() == ["3.1.0", "b4000", "3.2.0", "b5000", "3.3.0", "b5000", "3.4.0", "b6000"]
    for version in ("3.1.0", "3.2.0", "3.3.0", "3.4.0"):
        size = len(npm.packages[("linux-x64", version)].data)
        assert npm.sent[f"linux-x64-{version}.tgz"] < size / 4, npm.sent  # stopped early
    assert set(npm.auth) == {f"Bearer {TOKEN}"}  # every request carried the .npmrc token
    assert "npm-index 4/4" in err  # progress, one line per version, in a log


def test_download_once_verified_and_not_in_npms_cache(npm: FakeNpm, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "c"
    args = ("download", "b5000", "--os", "linux", "--arch", "x64", "--variant", "cpu")
    code, out, err = _run(capsys, cache, "--json", *args)
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["asset"] == "node-llama-cpp-linux-x64-3.3.0.tgz"  # the newest carrying b5000
    assert row["verify"] == "verified" and row["digest"].startswith("sha512:")
    stored = Path(row["archive"]).read_bytes()
    assert stored == npm.packages[("linux-x64", "3.3.0")].data
    # downloaded once, straight to us (the index's probe of the same package read its front only)
    assert npm.sent["linux-x64-3.3.0.tgz"] < 1.25 * len(stored), npm.sent
    npm_cache = tmp_path / "npm-cache"
    assert not [p for p in npm_cache.rglob("*") if p.is_file() and p.stat().st_size > PAYLOAD / 2]
    before = sum(npm.hits.values())
    code, out, err = _run(capsys, cache, "--json", *args)
    assert code == 0 and json.loads(out)[0]["cached"] is True
    assert sum(npm.hits.values()) == before  # warm: no request at all


def test_assets_show_size_and_sha512(npm: FakeNpm, tmp_path: Path, capsys) -> None:
    code, out, err = _run(capsys, tmp_path / "c", "--json", "assets", "b5000")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    linux = rows["node-llama-cpp-linux-x64-3.3.0.tgz"]
    assert linux["size"] == len(npm.packages[("linux-x64", "3.3.0")].data)
    assert linux["digest"].startswith("sha512:") and len(linux["digest"]) == 7 + 128


def test_wrong_token_is_one_line_exit_3(npm: FakeNpm, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_NPM_TOKEN", "wrong")
    code, _, err = _run(capsys, tmp_path / "c", "download", "b5000", "--os", "linux")
    assert code == 3
    assert "HTTP 401" in one_error_line(err)


def test_credentials_only_for_their_registry_path() -> None:
    cfg = NpmConfig(auth={"//reg.example/npm/": {"_authToken": "t"}})
    assert cfg.headers_for("https://reg.example/npm/@s%2fp") == {"Authorization": "Bearer t"}
    assert cfg.headers_for("https://reg.example/other/p") == {}
    assert cfg.headers_for("https://cdn.example/npm/p.tgz") == {}


def test_pack_is_verified_and_skips_npms_cache(npm: FakeNpm, tmp_path: Path) -> None:
    """What `run` uses for node-llama-cpp's header bundles: the registry's tarball, checked."""
    src = NpmSource(tmp_path / "c")
    got = src.pack("@node-llama-cpp/win-x64@3.2.0", tmp_path)
    assert got.name == "node-llama-cpp-win-x64-3.2.0.tgz"
    assert got.read_bytes() == npm.packages[("win-x64", "3.2.0")].data
    assert not (tmp_path / "npm-cache" / "_cacache").exists()
    # a tarball that does not match the integrity the registry published: refused, not kept
    doc = src.registry.packument("@node-llama-cpp/win-x64")
    doc["versions"]["3.1.0"]["dist"]["integrity"] = "sha512-" + "A" * 86 + "=="
    with pytest.raises(DigestMismatch):
        src.pack("@node-llama-cpp/win-x64@3.1.0", tmp_path)
    assert not list(tmp_path.glob("*3.1.0.tgz"))


def test_an_oversized_package_document_is_refused(
    npm: FakeNpm, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The registry is as untrusted as GitHub: its answers are capped like the API's (exit 3, one
    line), not read whole into memory."""
    from harness.sources import limits

    monkeypatch.setattr(limits, "LIMITS", limits.Limits(api_bytes=1 << 20))
    npm.pad = 3 << 20
    code, _, err = _run(capsys, tmp_path / "c", "assets", "b5000")
    assert code == 3
    assert "larger than" in one_error_line(err) or "limit" in one_error_line(err)
