from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.config import matrix
from harness.config.matrix import Cell
from harness.errors import ConfigError
from tests.conftest import ROOT, one_error_line


def test_default_matrix_is_valid() -> None:
    m = matrix.load(ROOT / "matrix.yaml")
    assert m.releases and m.platforms
    assert all(c.os in matrix.OSES for c in m.cells())


def test_cells_expand_exclude_and_filter(matrix_file: Path) -> None:
    m = matrix.load(matrix_file)
    cells = m.cells()
    assert Cell("b7000", "windows", "x64", "cuda-12.4") in cells
    assert Cell("b8095", "windows", "x64", "cuda-12.4") not in cells  # excluded
    assert Cell("b8095", "macos", "arm64", "metal") in cells  # `variant:` form
    assert len(cells) == 2 * 4 - 1
    only = matrix.filter_cells(cells, os=["windows"], variant=["cpu"])
    assert only == [Cell("b7000", "windows", "x64", "cpu"), Cell("b8095", "windows", "x64", "cpu")]


def test_platform_without_variant_gets_default() -> None:
    m = matrix.parse(
        {
            "releases": ["b1"],
            "platforms": [{"os": "macos", "arch": "arm64"}, {"os": "linux", "arch": "arm64"}],
        }
    )
    assert [c.variant for c in m.cells()] == ["metal", "cpu"]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_shards_partition_every_cell_exactly_once(n: int) -> None:
    m = matrix.parse(
        {
            "releases": [f"b{i}" for i in range(1, 8)],
            "platforms": [
                {"os": "linux", "arch": "x64", "variants": ["cpu", "vulkan"]},
                {"os": "windows", "arch": "arm64"},
            ],
        }
    )
    cells = m.cells()
    shards = [matrix.shard(cells, k, n) for k in range(1, n + 1)]
    flat = [c for s in shards for c in s]
    assert sorted(flat) == sorted(cells)
    assert len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # deterministic, and independent of the order the matrix lists things in
    assert shards == [matrix.shard(list(reversed(cells)), k, n) for k in range(1, n + 1)]


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1-2", "2"])
def test_bad_shard(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        matrix.parse_shard(text)


BAD = {
    "unknown-top-key": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64}]\nfoo: 1\n",
        "top level: unknown key 'foo'",
    ),
    "unknown-os": (
        "releases: [b1]\nplatforms: [{os: linx, arch: x64}]\n",
        "platforms[0].os: 'linx' is not allowed (allowed: linux, macos",
    ),
    "unknown-arch": (
        "releases: [b1]\nplatforms: [{os: linux, arch: amd64}]\n",
        "platforms[0].arch: 'amd64' is not allowed (allowed: x64, arm64",
    ),
    "unknown-variant": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64, variants: [cpu, gpu]}]\n",
        "platforms[0].variants[1]: 'gpu' is not allowed (allowed: cpu, metal",
    ),
    "bad-release": ("releases: [b1, 1.2]\nplatforms: [{os: linux, arch: x64}]\n", "releases[1]"),
    "bad-release-name": (
        "releases: [b1, main]\nplatforms: [{os: linux, arch: x64}]\n",
        "releases[1]: 'main' is not allowed (allowed: b<N>, v<semver> or latest)",
    ),
    "empty-releases": (
        "releases: []\nplatforms: [{os: linux, arch: x64}]\n",
        "releases: must not be empty",
    ),
    "no-releases": ("platforms: [{os: linux, arch: x64}]\n", "'releases' is required"),
    "malformed-yaml": ("releases: [b1\nplatforms: {\n", "malformed YAML"),
    "tab-yaml": ("releases:\n\t- b1\n", "malformed YAML"),
    "not-a-mapping": ("- b1\n- b2\n", "top level: expected object"),
    "empty-file": ("", "the file is empty"),
    "unknown-platform-key": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64, gpu: 1}]\n",
        "platforms[0]: unknown key 'gpu'",
    ),
    "variant-and-variants": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64, variant: cpu, variants: [cpu]}]\n",
        "not both",
    ),
    "bad-verify": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64}]\nverify: maybe\n",
        "verify: 'maybe' is not allowed (allowed: required, if-available, off)",
    ),
    "bad-source": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64}]\nsources: [gitlab]\n",
        "sources[0]: 'gitlab' is not allowed",
    ),
    "bad-exclude": (
        "releases: [b1]\nplatforms: [{os: linux, arch: x64}]\nexclude: [{osx: mac}]\n",
        "exclude[0]: unknown key 'osx'",
    ),
    "bad-repo": ("repo: nonsense\nreleases: [b1]\nplatforms: [{os: linux, arch: x64}]\n", "repo"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_matrix_gives_exit_2_and_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    code = cli.main(["--matrix", str(path), "--cache-dir", str(tmp_path / "c"), "download"])
    out, err = capsys.readouterr()
    assert code == 2
    line = one_error_line(err)
    assert str(path) in line
    assert expected in line, line
    assert out == ""
    assert not (tmp_path / "c").exists()  # nothing touched


def test_missing_matrix_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--matrix", str(tmp_path / "nope.yaml"), "download"])
    assert code == 2
    assert "matrix file not found" in one_error_line(capsys.readouterr().err)


def test_yaml_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("releases:\n  - b1\nplatforms: [\n")
    with pytest.raises(ConfigError, match=r"m\.yaml:\d+:\d+: malformed YAML"):
        matrix.load(p)
