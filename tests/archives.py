"""Build small, real archives shaped like each llama.cpp era's release assets (and broken ones).

Everything is deterministic (fixed mtimes, owners, gzip header), so the same call writes the same
bytes and a digest computed once stays valid. Contents are fake: a few hundred bytes of text, not
loadable libraries; pass real bytes through `libs` where a test needs them.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ZIP_DATE = (2025, 1, 1, 0, 0, 0)
TAR_MTIME = 1_735_689_600  # 2025-01-01T00:00:00Z


@dataclass(frozen=True)
class Entry:
    """One archive member. kind: file | dir | symlink | hardlink | chr | fifo."""

    name: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"
    link: str = ""


_ZIP_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "chr": stat.S_IFCHR,
    "fifo": stat.S_IFIFO,
}
_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def write_zip(path: Path, entries: Iterable[Entry], *, unix: bool = True) -> Path:
    """Names are stored exactly as given (backslashes, leading '/', '..' included).

    unix=False writes what a Windows tool writes: no Unix mode, only MS-DOS attributes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for e in entries:
            info = zipfile.ZipInfo(e.name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3 if unix else 0
            dos = 0x10 if e.kind == "dir" else 0x20
            mode = 0o777 if e.kind == "symlink" else e.mode
            info.external_attr = ((_ZIP_TYPES[e.kind] | mode) << 16 if unix else 0) | dos
            zf.writestr(info, e.link.encode() if e.kind == "symlink" else e.data)
    return path


def write_targz(path: Path, entries: Iterable[Entry]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TAR_TYPES[e.kind]
            info.mode = 0o777 if e.kind == "symlink" else e.mode
            info.mtime = TAR_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.linkname = e.link
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return path


def fake_binary(name: str, tag: str) -> bytes:
    """A few hundred bytes that name the file and release, so a mix-up shows in a diff."""
    line = f"fake {name} from llama.cpp {tag}\n".encode()
    return (line * (256 // len(line) + 1))[:256]


def _libs(names: Iterable[str], tag: str, libs: dict[str, bytes] | None) -> dict[str, bytes]:
    return dict(libs) if libs is not None else {n: fake_binary(n, tag) for n in names}


def make_zip_buildbin(path: Path, tag: str, libs: dict[str, bytes] | None = None) -> Path:
    """Linux/macOS assets until late 2025: a zip of `build/bin/`.

    `libs` (file name -> bytes) replaces the default libllama/libggml/libggml-base set; the
    executables and LICENSE are always added.
    """
    files = _libs(("libllama.so", "libggml.so", "libggml-base.so"), tag, libs)
    entries = [Entry("build/", kind="dir", mode=0o755), Entry("build/bin/", kind="dir", mode=0o755)]
    entries += [Entry(f"build/bin/{n}", data, 0o755) for n, data in files.items()]
    entries += [
        Entry(f"build/bin/{exe}", fake_binary(exe, tag), 0o755)
        for exe in ("llama-cli", "llama-server")
    ]
    entries.append(Entry("build/bin/LICENSE", f"MIT License ({tag})\n".encode()))
    return write_zip(path, entries)


def make_targz_symlinks(path: Path, tag: str, build: int = 8095) -> Path:
    """Linux/macOS assets from late 2025: `llama-<tag>/` with SONAME symlink chains,
    `libllama.so -> libllama.so.0 -> libllama.so.0.0.<build>` (likewise libggml, libggml-base)."""
    top = f"llama-{tag}"
    entries = [Entry(f"{top}/", kind="dir", mode=0o755)]
    for lib in ("libllama", "libggml", "libggml-base"):
        real = f"{lib}.so.0.0.{build}"
        entries += [
            Entry(f"{top}/{real}", fake_binary(real, tag), 0o755),
            Entry(f"{top}/{lib}.so.0", kind="symlink", link=real),
            Entry(f"{top}/{lib}.so", kind="symlink", link=f"{lib}.so.0"),
        ]
    entries += [
        Entry(f"{top}/{exe}", fake_binary(exe, tag), 0o755) for exe in ("llama-cli", "llama-server")
    ]
    entries.append(Entry(f"{top}/LICENSE", f"MIT License ({tag})\n".encode()))
    return write_targz(path, entries)


def make_win_flat_zip(path: Path, tag: str) -> Path:
    """Windows assets: a flat zip of DLLs and .exe files, written the way Windows tools do."""
    names = ("llama.dll", "ggml.dll", "ggml-base.dll", "llama-cli.exe", "llama-server.exe")
    return write_zip(path, [Entry(n, fake_binary(n, tag)) for n in names], unix=False)


def make_archive_for(name: str, path: Path, tag: str) -> Path:
    """The archive an asset called `name` would be. `path` is the file to write, or an existing
    folder to write `name` into."""
    if path.is_dir():
        path = path / name
    if name.endswith((".tar.gz", ".tgz")):
        return make_targz_symlinks(path, tag)
    if "win" in name:
        return make_win_flat_zip(path, tag)
    return make_zip_buildbin(path, tag)
