"""safe_extract against real archives: every era's layout, and one malicious archive per class."""

from __future__ import annotations

import functools
import gzip
import io
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cache import extract
from harness.cache.extract import Limits, archive_type, safe_extract
from harness.errors import UnsafeArchive
from tests.archives import (
    Entry,
    fake_binary,
    make_archive_for,
    make_targz_symlinks,
    make_win_flat_zip,
    make_zip_buildbin,
    write_targz,
    write_zip,
)

TAG = "b8095"


def _snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    """Every path under root (links not followed), with whether it is a link and its size."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            seen[os.path.relpath(path, root)] = (stat.S_ISLNK(st.st_mode), st.st_size)
    return seen


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- good archives, one per era ---------------------------------------------------------------


def test_zip_buildbin_era(tmp_path: Path) -> None:
    archive = make_zip_buildbin(tmp_path / f"llama-{TAG}-bin-ubuntu-x64.zip", TAG)
    out = safe_extract(archive, tmp_path / "out")
    assert out == tmp_path / "out"
    binary = out / "build" / "bin"
    for name in ("libllama.so", "libggml.so", "libggml-base.so", "llama-cli"):
        assert (binary / name).read_bytes() == fake_binary(name, TAG)
    assert _mode(binary / "llama-cli") == 0o755
    assert _mode(binary / "LICENSE") == 0o644
    assert os.access(binary / "llama-cli", os.X_OK)


def test_zip_buildbin_takes_given_libs(tmp_path: Path) -> None:
    libs = {"libllama.so": b"real bytes"}
    out = safe_extract(make_zip_buildbin(tmp_path / "a.zip", TAG, libs), tmp_path / "out")
    assert (out / "build/bin/libllama.so").read_bytes() == b"real bytes"
    assert not (out / "build/bin/libggml.so").exists()


def test_targz_symlink_era_keeps_chains(tmp_path: Path) -> None:
    archive = make_targz_symlinks(tmp_path / f"llama-{TAG}-bin-ubuntu-x64.tar.gz", TAG, 8095)
    out = safe_extract(archive, tmp_path / "out")
    top = out / f"llama-{TAG}"
    for lib in ("libllama", "libggml", "libggml-base"):
        link = top / f"{lib}.so"
        real = top / f"{lib}.so.0.0.8095"
        assert link.is_symlink()
        assert os.readlink(link) == f"{lib}.so.0"  # kept relative, so the tree can move
        assert os.readlink(top / f"{lib}.so.0") == real.name
        assert os.path.realpath(link) == os.path.realpath(real)
        assert link.read_bytes() == fake_binary(real.name, TAG)
        assert _mode(real) == 0o755
    assert os.access(top / "llama-cli", os.X_OK)


def test_windows_flat_zip(tmp_path: Path) -> None:
    out = safe_extract(make_win_flat_zip(tmp_path / "w.zip", TAG), tmp_path / "out")
    names = {"llama.dll", "ggml.dll", "ggml-base.dll", "llama-cli.exe", "llama-server.exe"}
    assert {p.name for p in out.iterdir()} == names
    assert (out / "llama.dll").read_bytes() == fake_binary("llama.dll", TAG)
    assert _mode(out / "llama.dll") == 0o644  # no Unix mode in a Windows zip: plain file


def test_windows_backslash_separators(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "w.zip", [Entry("build\\bin\\llama.dll", b"dll")], unix=False)
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "build" / "bin" / "llama.dll").read_bytes() == b"dll"


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        (f"llama-{TAG}-bin-ubuntu-x64.tar.gz", f"llama-{TAG}/libllama.so"),
        (f"llama-{TAG}-bin-macos-arm64.zip", "build/bin/libllama.so"),
        (f"llama-{TAG}-bin-win-cpu-x64.zip", "llama.dll"),
    ],
    ids=["targz", "buildbin", "win"],
)
def test_make_archive_for_picks_the_era(tmp_path: Path, name: str, expect: str) -> None:
    archive = make_archive_for(name, tmp_path, TAG)
    assert archive == tmp_path / name
    assert (
        archive.read_bytes() == make_archive_for(name, tmp_path / "again" / name, TAG).read_bytes()
    )
    assert (safe_extract(archive, tmp_path / "out") / expect).exists()


def test_target_replaced_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "release"
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("old")
    safe_extract(make_targz_symlinks(tmp_path / "a.tar.gz", TAG), target)
    assert not (target / "stale.txt").exists()
    assert (target / f"llama-{TAG}" / "libllama.so").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["release"]  # no temp left over


def test_zip_symlinks_kept_inside(tmp_path: Path) -> None:
    """The macOS xcframework zip carries framework symlinks, some through a linked folder."""
    fw = "llama.framework"
    archive = write_zip(
        tmp_path / "xc.zip",
        [
            Entry(f"{fw}/Versions/A/Headers/llama.h", b"// header"),
            Entry(f"{fw}/Versions/Current", kind="symlink", link="A"),
            Entry(f"{fw}/Headers", kind="symlink", link="Versions/Current/Headers"),
        ],
    )
    out = safe_extract(archive, tmp_path / "out")
    assert (out / fw / "Headers").is_symlink()
    assert (out / fw / "Headers" / "llama.h").read_bytes() == b"// header"


def test_special_bits_dropped_exec_kept(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "a.zip", [Entry("su", b"x", 0o6755), Entry("st", b"x", 0o1777)])
    t = write_targz(tmp_path / "a.tar.gz", [Entry("su", b"x", 0o4755), Entry("d", kind="dir")])
    for archive in (z, t):
        out = safe_extract(archive, tmp_path / archive.name.replace(".", "-"))
        assert _mode(out / "su") == 0o755
    assert _mode(tmp_path / "a-zip" / "st") == 0o755


def test_tar_hardlink_inside_and_dot_prefix(tmp_path: Path) -> None:
    archive = write_targz(
        tmp_path / "a.tar.gz",
        [
            Entry("./", kind="dir", mode=0o755),
            Entry("./lib/libllama.so.0.0.1", b"lib", 0o755),
            Entry("./lib/libllama.so", kind="hardlink", link="./lib/libllama.so.0.0.1"),
        ],
    )
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "lib" / "libllama.so").read_bytes() == b"lib"


def test_without_tarfile_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python before 3.10.12 / 3.11.4 has no extraction filter: our own checks must hold alone."""
    monkeypatch.setattr(extract, "_HAS_TAR_FILTER", False)
    out = safe_extract(make_targz_symlinks(tmp_path / "a.tar.gz", TAG), tmp_path / "out")
    assert (out / f"llama-{TAG}" / "libllama.so").read_bytes()
    suid = write_targz(tmp_path / "s.tar.gz", [Entry("su", b"x", 0o4777)])
    assert _mode(safe_extract(suid, tmp_path / "s") / "su") == 0o755
    for build, _, match in TAR_ESCAPES:
        with pytest.raises(UnsafeArchive, match=match):
            safe_extract(build(tmp_path), tmp_path / "evil")
    assert not (tmp_path / "evil").exists()


def test_zip_never_writes_more_than_declared(tmp_path: Path) -> None:
    """A header that under-declares, with a CRC forged to match: only the declared bytes land."""
    archive = _lying_zip(tmp_path, forge_crc=True)
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "zeros.bin").read_bytes() == b"\0" * 100


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.zip", "zip"), ("A.ZIP", "zip"), ("a.tar.gz", "tar.gz"), ("x/a.tgz", "tar.gz")],
)
def test_archive_type(name: str, kind: str) -> None:
    assert archive_type(name) == kind
    assert archive_type(Path(name)) == kind


@pytest.mark.parametrize("name", ["a.tar.xz", "a.7z", "a", "a.gz"])
def test_archive_type_unknown(name: str) -> None:
    with pytest.raises(UnsafeArchive, match="unsupported"):
        archive_type(name)


# --- the malicious corpus ---------------------------------------------------------------------

Build = Callable[[Path], Path]
_OK = Entry("ok.txt", b"fine")  # a good member first: refusal must come before any write


def _zip(*entries: Entry, unix: bool = True) -> Build:
    return lambda d: write_zip(d / "evil.zip", [_OK, *entries], unix=unix)


def _tar(*entries: Entry) -> Build:
    return lambda d: write_targz(d / "evil.tar.gz", [_OK, *entries])


def _outside(d: Path, name: str) -> str:
    """An absolute path inside the test folder, so a write there shows in the snapshot."""
    return str(d / name)


@functools.cache
def _zeros_zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        info = zipfile.ZipInfo("zeros.bin", (2025, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as out:
            block = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                out.write(block)
    return buf.getvalue()


def _zip_bomb(d: Path) -> Path:
    path = d / "bomb.zip"
    path.write_bytes(_zeros_zip(50 << 20))  # 50 MB of zeros, deflated to ~50 kB
    return path


def _tar_bomb(d: Path) -> Path:
    return write_targz(d / "bomb.tar.gz", [Entry("zeros.bin", b"\0" * (8 << 20))])


def _lying_zip(d: Path, forge_crc: bool = False) -> Path:
    """1 MB of zeros whose headers both declare 100 bytes (so the ratio looks harmless)."""
    data = bytearray(_zeros_zip(1 << 20))
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 100)
    struct.pack_into("<I", data, central + 24, 100)
    if forge_crc:
        crc = zlib.crc32(b"\0" * 100)
        struct.pack_into("<I", data, local + 14, crc)
        struct.pack_into("<I", data, central + 16, crc)
    path = d / "lying.zip"
    path.write_bytes(bytes(data))
    return path


def _truncated(build: Build) -> Build:
    def cut(d: Path) -> Path:
        path = build(d)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return cut


def _garbage(name: str) -> Build:
    def write(d: Path) -> Path:
        (d / name).write_bytes(b"this is not an archive\n" * 20)
        return d / name

    return write


def _bad_crc(d: Path) -> Path:
    path = write_zip(d / "crc.zip", [Entry("data.bin", bytes(range(256)) * 4)])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 14, 0xDEADBEEF)
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 16, 0xDEADBEEF)
    path.write_bytes(bytes(data))
    return path


def _bad_tar_header(d: Path) -> Path:
    """A valid gzip stream around a tar whose second header is garbage."""
    path = write_targz(d / "hdr.tar.gz", [Entry("a", b"1"), Entry("b", b"2"), Entry("c", b"3")])
    data = bytearray(gzip.decompress(path.read_bytes()))
    second = data.find(b"b\0")
    data[second : second + 100] = b"\xff" * 100
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
    return path


def _many(writer: Callable[[Path, list[Entry]], Path], name: str) -> Build:
    return lambda d: writer(d / name, [Entry(f"f{i}", b"x") for i in range(11)])


def _link(name: str, target: str) -> Entry:
    return Entry(name, kind="symlink", link=target)


SMALL = Limits(max_members=10, max_total_bytes=1000)
TAR_ESCAPES = [
    (_tar(Entry("../evil", b"x")), None, r"\.\./evil.*leaves the archive"),
    (_tar(_link("sub/link", "../../evil")), None, "sub/link: symlink.*leaves the archive"),
    (_tar(Entry("hl", kind="hardlink", link="../../etc/passwd")), None, "leaves the archive"),
]
CORPUS = [
    pytest.param(_zip(Entry("../evil", b"x")), None, "leaves the archive", id="zip-dotdot"),
    pytest.param(_zip(Entry("a/../../evil", b"x")), None, "leaves", id="zip-dotdot-nested"),
    pytest.param(
        lambda d: _zip(Entry(_outside(d, "abs-evil"), b"x"))(d), None, "absolute", id="zip-abs"
    ),
    pytest.param(_zip(Entry("C:\\evil", b"x"), unix=False), None, "absolute", id="zip-drive"),
    pytest.param(_zip(Entry("\\evil", b"x"), unix=False), None, "absolute", id="zip-backslash-abs"),
    pytest.param(_zip(Entry("..\\evil", b"x"), unix=False), None, "leaves", id="zip-backslash-up"),
    pytest.param(_zip(_link("link", "/etc/passwd")), None, "absolute", id="zip-symlink-abs"),
    pytest.param(_zip(_link("sub/link", "../../x")), None, "leaves", id="zip-symlink-dotdot"),
    pytest.param(
        # each link looks inside on its own; together `out` is root/..
        _zip(Entry("a/", kind="dir"), _link("a/up", ".."), _link("a/out", "up/..")),
        None,
        "a/out: symlink.*leaves the archive",
        id="zip-symlink-chain-escape",
    ),
    pytest.param(
        _zip(_link("l1", "l2"), _link("l2", "/etc")), None, "absolute", id="zip-symlink-chain-abs"
    ),
    pytest.param(
        _zip(_link("link", "sub"), Entry("link/evil", b"x")),
        None,
        "written through symlink",
        id="zip-write-through-link",
    ),
    pytest.param(_zip(Entry("dev", mode=0o600, kind="chr")), None, "special", id="zip-chardev"),
    pytest.param(_zip_bomb, None, "zip bomb", id="zip-bomb-ratio"),
    pytest.param(_lying_zip, None, "corrupt", id="zip-lying-header"),
    pytest.param(_bad_crc, None, "data.bin: corrupt", id="zip-bad-crc"),
    pytest.param(_many(write_zip, "many.zip"), SMALL, "more than 10 members", id="zip-too-many"),
    pytest.param(
        _zip(Entry("big", b"\1" * 2000)), SMALL, "over 1000 bytes", id="zip-total-too-big"
    ),
    pytest.param(
        _truncated(lambda d: make_zip_buildbin(d / "t.zip", TAG)), None, "corrupt", id="zip-cut"
    ),
    pytest.param(_garbage("g.zip"), None, "corrupt", id="zip-garbage"),
    *(
        pytest.param(b, lim, m, id=f"tar-{i}")
        for i, (b, lim, m) in zip(
            ("dotdot", "symlink-escape", "hardlink-escape"), TAR_ESCAPES, strict=True
        )
    ),
    pytest.param(
        lambda d: _tar(Entry(_outside(d, "abs-evil"), b"x"))(d), None, "absolute", id="tar-abs"
    ),
    pytest.param(_tar(_link("link", "/etc/passwd")), None, "absolute", id="tar-symlink-abs"),
    pytest.param(
        _tar(Entry("hl", kind="hardlink", link="/etc/passwd")),
        None,
        "absolute",
        id="tar-hardlink-abs",
    ),
    pytest.param(
        _tar(Entry("hl", kind="hardlink", link="nowhere")),
        None,
        "hard link",
        id="tar-hardlink-unknown",
    ),
    pytest.param(_tar(Entry("dev", kind="chr")), None, "character device", id="tar-chardev"),
    pytest.param(_tar(Entry("pipe", kind="fifo")), None, "fifo", id="tar-fifo"),
    pytest.param(
        lambda d: _tar(_link("link", str(d)), Entry("link/evil", b"x"))(d),
        None,
        "absolute",
        id="tar-write-through-abs-link",
    ),
    pytest.param(
        _tar(Entry("sub/", kind="dir"), _link("Link", "sub"), Entry("link/evil", b"x")),
        None,
        "written through symlink",
        id="tar-write-through-link-casefold",
    ),
    pytest.param(_tar(_link("a", "b"), _link("b", "a")), None, "loop", id="tar-symlink-loop"),
    pytest.param(
        _tar(Entry("x", b"1"), _link("x", "ok.txt")), None, "twice", id="tar-file-then-link"
    ),
    pytest.param(_tar_bomb, None, "zip bomb", id="tar-bomb-ratio"),
    pytest.param(_many(write_targz, "many.tar.gz"), SMALL, "more than 10", id="tar-too-many"),
    pytest.param(
        _truncated(lambda d: make_targz_symlinks(d / "t.tar.gz", TAG)),
        None,
        "corrupt",
        id="tar-cut",
    ),
    pytest.param(_garbage("g.tar.gz"), None, "corrupt", id="tar-garbage"),
    pytest.param(_bad_tar_header, None, "corrupt tar header", id="tar-bad-header"),
]


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "replace"])
@pytest.mark.parametrize(("build", "limits", "match"), CORPUS)
def test_malicious_archive_refused(
    tmp_path: Path, build: Build, limits: Limits | None, match: str, existing: bool
) -> None:
    archive = build(tmp_path)
    target = tmp_path / "cache" / "release"
    target.parent.mkdir()
    if existing:
        target.mkdir()
        (target / "keep.txt").write_text("previous release")
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchive, match=match) as err:
        safe_extract(archive, target, limits=limits or Limits())
    assert str(err.value).startswith(f"{archive.name}: ")
    assert _snapshot(tmp_path) == before  # nothing written anywhere, no temp folder left
    if existing:
        assert (target / "keep.txt").read_text() == "previous release"


def test_kind_overrides_the_name(tmp_path: Path) -> None:
    archive = make_win_flat_zip(tmp_path / "download.bin", TAG)
    assert (safe_extract(archive, tmp_path / "out", kind="zip") / "llama.dll").exists()
    with pytest.raises(UnsafeArchive, match="unsupported archive type 'rar'"):
        safe_extract(archive, tmp_path / "out2", kind="rar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download.bin", "out"]
