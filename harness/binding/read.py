"""`read_binding`: one entry point for any binding source, choosing the reader by what it holds.

A source is a file (`.py`, `.go`), a folder (an unpacked sdist, a Go package, a folder of ctypes
modules) or an sdist archive (`.tar.gz`, `.zip`), read in place without unpacking. Nothing
in it is imported or run. Whatever cannot be read is a `BindingUnreadable` (exit 2) with one
line saying why.
"""

from __future__ import annotations

import ast
import re
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from harness.binding import golang, pyctypes
from harness.binding.model import BindingDecl
from harness.errors import BindingUnreadable

# llama-cpp-python's layout; its llava/mtmd modules bind other libraries, not libllama.
_SDIST_MODULE = "llama_cpp/llama_cpp.py"
_MAX_FILE = 32 * 1024 * 1024  # a binding's source file; more is not a binding


def read_binding(source: Path, target: str | None = None) -> BindingDecl:
    """What the binding at `source` declares, laid out for `target` (default x86_64-linux)."""
    if not source.exists():
        raise BindingUnreadable(f"{source}: no such file or folder")
    try:
        decl = _read(source, target)
    except OSError as err:
        raise BindingUnreadable(f"{source}: cannot read the binding: {err}") from err
    if not decl.functions and not decl.structs:
        raise BindingUnreadable(f"{source}: no binding found (no registered function, no struct)")
    return decl


def _read(source: Path, target: str | None) -> BindingDecl:
    if source.is_dir():
        return _read_folder(source, target)
    name = source.name
    if name.endswith((".tar.gz", ".tgz", ".zip")):
        return _read_sdist(source, target)
    if name.endswith(".py"):
        # llama_cpp/llama_cpp.py inside an unpacked sdist: named after the sdist
        label = _sdist_name(source.parent.parent) if name == "llama_cpp.py" else None
        rel = _SDIST_MODULE if label else name
        return pyctypes.read_sources([(rel, _text(source, rel))], label or source.stem, target)
    if name.endswith(".go"):
        return golang.read_package([(name, _bytes(source))], source.stem, target)
    raise BindingUnreadable(
        f"{source}: not a binding source (expected a .py or .go file, a folder or an sdist)"
    )


def _read_folder(root: Path, target: str | None) -> BindingDecl:
    for module in (root / _SDIST_MODULE, root / "llama_cpp.py"):
        if module.is_file():
            rel = module.relative_to(root).as_posix()
            name = _sdist_name(root) or root.resolve().name
            return pyctypes.read_sources([(rel, _text(module, rel))], name, target)
    go_files = sorted(p for p in root.glob("*.go") if not p.name.endswith("_test.go"))
    if go_files:
        files = [(p.name, _bytes(p)) for p in go_files]
        return golang.read_package(files, _go_name(root), target)
    modules = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "test" in rel.split("/")[0]:
            continue
        text = _text(path, rel)
        if "ctypes" in text:
            modules.append((rel, text))
    if modules:
        return pyctypes.read_sources(modules, root.name, target)
    raise BindingUnreadable(
        f"{root}: no binding found (no {_SDIST_MODULE}, no .go files, no .py file using ctypes)"
    )


def _read_sdist(archive: Path, target: str | None) -> BindingDecl:
    """llama_cpp/llama_cpp.py straight from the archive, nothing unpacked.

    A tarball is read only up to that module (PKG-INFO, often last, would mean decompressing
    all 40-80 MB): the name then comes from the top folder, `llama_cpp_python-0.3.16/`.
    """
    wanted: dict[str, bytes] = {}
    top = ""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    key = _wanted(info.filename)
                    if key and info.file_size <= _MAX_FILE and key not in wanted:
                        wanted[key] = zf.read(info)
                        top = info.filename.strip("/").split("/")[0]
        else:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    key = _wanted(member.name)
                    if key and member.isfile() and member.size <= _MAX_FILE and key not in wanted:
                        handle = tf.extractfile(member)
                        if handle is not None:
                            wanted[key] = handle.read()
                            top = member.name.strip("/").split("/")[0]
                    if "module" in wanted:
                        break
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        detail = (str(err).splitlines() or [type(err).__name__])[0].rstrip(":")
        raise BindingUnreadable(f"{archive}: not a readable sdist archive: {detail}") from err
    if "module" not in wanted:
        raise BindingUnreadable(f"{archive}: no binding found (no {_SDIST_MODULE} in the sdist)")
    name = _pkg_info_name(wanted.get("PKG-INFO", b"")) or _folder_name(top) or archive.name
    text = _decode(wanted["module"], _SDIST_MODULE)
    return pyctypes.read_sources([(_SDIST_MODULE, text)], name, target)


def _folder_name(top: str) -> str | None:
    """`llama-cpp-python 0.3.16` from an sdist's top folder `llama_cpp_python-0.3.16`."""
    dist, sep, version = top.rpartition("-")
    if not sep or not dist or not version[:1].isdigit():
        return None
    return f"{re.sub(r'[-_.]+', '-', dist).lower()} {version}"


def _wanted(member: str) -> str | None:
    """Which of the two files an archive member is: top/PKG-INFO, top/llama_cpp/llama_cpp.py."""
    parts = member.strip("/").split("/")
    if len(parts) == 2 and parts[1] == "PKG-INFO":
        return "PKG-INFO"
    if len(parts) == 3 and "/".join(parts[1:]) == _SDIST_MODULE:
        return "module"
    return None


def _sdist_name(root: Path) -> str | None:
    """`llama-cpp-python 0.3.16` from PKG-INFO, else the package's `__version__`."""
    for folder in (root, root.parent):
        info = folder / "PKG-INFO"
        if info.is_file():
            name = _pkg_info_name(info.read_bytes())
            if name:
                return name
    init = root / "llama_cpp" / "__init__.py"
    if init.is_file():
        try:
            tree = ast.parse(init.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            return None
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
                names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
                if "__version__" in names and isinstance(stmt.value.value, str):
                    return f"llama-cpp-python {stmt.value.value}"
    return None


def _pkg_info_name(data: bytes) -> str | None:
    headers = HeaderParser().parsestr(data.decode("utf-8", "replace"))
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return f"{re.sub(r'[-_.]+', '-', name).lower()} {version}"


def _go_name(root: Path) -> str:
    """The module path's last element from go.mod, else the folder's name."""
    mod = root / "go.mod"
    if mod.is_file():
        match = re.search(r"^module\s+(\S+)", mod.read_text(errors="replace"), re.MULTILINE)
        if match:
            return match.group(1).rstrip("/").rsplit("/", 1)[-1]
    return root.resolve().name


def _bytes(path: Path) -> bytes:
    if path.stat().st_size > _MAX_FILE:
        raise BindingUnreadable(f"{path}: over {_MAX_FILE >> 20} MiB: not a binding source")
    return path.read_bytes()


def _text(path: Path, rel: str) -> str:
    return _decode(_bytes(path), rel)


def _decode(data: bytes, rel: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BindingUnreadable(f"{rel}: not UTF-8 text: {err.reason}") from err
