"""A hostile or careless matrix.yaml: exit 2, one line naming the file and place, never a hang.

The memory case runs the real CLI in a child process under an address-space limit, so a regression
(expanding the aliases) dies there instead of taking the test machine with it.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.config import matrix, yamlfile
from harness.errors import ConfigError
from tests.conftest import ROOT, one_error_line

PLATFORM = "platforms:\n  - {os: linux, arch: x64}\n"


def _bomb(levels: int = 9, where: str = "releases") -> str:
    """The 'billion laughs': each level is nine aliases of the one before (9**9 leaves)."""
    lines = ["_x0: &x0 [" + ", ".join(["b1"] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"_x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]")
    doc = "\n".join(lines)
    if where == "releases":
        return f"{doc}\nreleases: *x{levels - 1}\n{PLATFORM}"
    return f"{doc}\nreleases: [b1]\nplatforms:\n  - {{os: *x{levels - 1}, arch: x64}}\n"


def _limit_memory() -> None:  # runs in the child before exec
    one_gib = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (2 * one_gib, 2 * one_gib))


@pytest.mark.parametrize("where", ["releases", "os"])
def test_alias_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path, where: str) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(_bomb(where=where))
    assert path.stat().st_size < 1024
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--matrix",
            str(path),
            "--cache-dir",
            str(tmp_path / "c"),
            "download",
        ],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert str(path) in line and "aliases expand" in line


def test_aliases_within_the_budget_still_work_and_messages_stay_short(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &p {os: linux, arch: x64}\n")
    assert yamlfile.read(ok, "matrix") == {"base": {"os": "linux", "arch": "x64"}}
    # 9**4 = 6,561 bad release names through aliases: within the budget, so the schema sees
    # them, and the error line shows a short excerpt, not the whole list
    path = tmp_path / "matrix.yaml"
    path.write_text(_bomb(levels=4).replace("b1", "nope"))
    with pytest.raises(ConfigError) as info:
        matrix.load(path)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400, text


def _run(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "matrix.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    code = cli.main(["--matrix", str(path), "--cache-dir", str(tmp_path / "c"), "download"])
    err = capsys.readouterr().err
    assert code == 2, err
    line = one_error_line(err)
    assert str(path) in line
    return line


def test_fifty_thousand_deep_nesting_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(tmp_path, "releases: " + "[" * 50_000 + "]" * 50_000 + "\n" + PLATFORM, capsys)
    assert "nested deeper than" in line


@pytest.mark.parametrize(
    ("key", "kind"),
    [("1", "int"), ("~", "null"), ("2024-01-01", "timestamp"), ("yes", "bool"), ("[a]", "seq")],
)
def test_non_string_keys_are_refused_with_their_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, kind: str
) -> None:
    line = _run(tmp_path, f"releases: [b1]\n{PLATFORM}{key}: x\n", capsys)
    assert f":4:1: refused YAML: keys must be text, not {kind}" in line


def test_non_string_key_inside_a_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(tmp_path, "releases: [b1]\nplatforms:\n  - {os: linux, arch: x64, 3: x}\n", capsys)
    assert ":3:28:" in line and "not int" in line


def test_a_nul_byte_is_one_line_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(tmp_path, b"releases: [b1]\nplat\0forms: []\n", capsys)
    assert ":2:5:" in line and "U+0000" in line


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"releases: [b1]\n{PLATFORM}releases: [b2]\n", ":4:1:"),
        ("releases: [b1]\nplatforms:\n  - {os: linux, arch: x64, os: macos}\n", ":3:28:"),
    ],
)
def test_duplicate_keys_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    line = _run(tmp_path, text, capsys)
    assert where in line and "duplicate key" in line


def test_a_key_that_refers_to_itself_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(tmp_path, f"releases: &r [b1, *r]\n{PLATFORM}", capsys)
    assert "refers to itself" in line


def test_merge_keys_may_override(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(
        "releases: [b1]\n_base: &b {os: linux, arch: x64}\nplatforms:\n  - {<<: *b, arch: arm64}\n"
    )
    data = yamlfile.read(path, "matrix")
    assert data["platforms"] == [{"os": "linux", "arch": "arm64"}]
