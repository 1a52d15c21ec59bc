"""Load one llama.cpp release into this process through ctypes, the way every release accepts.

Every release has the SONAME `libggml-base.so`: a second release in the same process binds to the
first one's ggml or fails. So: one release per process. The harness itself loads each release in a
child process (`harness.suites.child`); `load_library()` is for a user who wants one release in
their own process.

Order matters: ggml-base, ggml, llama are preloaded by absolute path with RTLD_GLOBAL (b3889's
RUNPATH points at its build machine; npm builds rename the libraries `libllama.<tag>.so`), the log
callback is installed before backends load (so their chatter is captured, not printed), then
`ggml_backend_load_all_from_path(libdir)` (required from b4435 on: without it model load segfaults).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi import Api, Bindings, Functions
from harness.errors import HarnessError

# The three libraries by role, per OS. Names vary by era and packager: libllama.so (GitHub),
# libllama.b10361.so / libllama.vulkan.b10361.so (npm), libllama.metal.b10361.dylib,
# llama.dll / llama.b10361.dll; never libllama-common.* or the ggml-<backend> plugins.
_EXT = {"linux": r"\.so", "android": r"\.so", "macos": r"(\.[0-9]+)*\.dylib", "windows": r"\.dll"}
_PREFIX = {"windows": "(lib)?"}


def _names(os_: str) -> dict[str, str]:
    ext, pre = _EXT.get(os_, r"\.so"), _PREFIX.get(os_, "lib")
    return {
        "ggml-base": rf"{pre}ggml-base{ext}",
        "ggml": rf"{pre}ggml(\.[A-Za-z0-9_.]+)?{ext}",
        "llama": rf"{pre}llama(\.[A-Za-z0-9_.]+)?{ext}",
    }


def _host_os() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


_LLAMA_ANYWHERE = re.compile(r"^(lib)?llama(\.[^-].*)?\.(so|dylib|dll)$")


class LoadFailed(HarnessError):
    pass


def find_libdir(tree: Path) -> Path:
    """The folder that holds libllama, wherever an era's archive put it (build/bin/, llama-<tag>/,
    bins/<platform>/, or flat)."""
    hits = sorted(p.parent for p in tree.rglob("*") if _LLAMA_ANYWHERE.match(p.name))
    if not hits:
        raise LoadFailed(f"no libllama in {tree}")
    return min(hits, key=lambda p: len(p.parts))


def library_paths(libdir: Path, os_: str | None = None) -> dict[str, Path]:
    """ggml-base (absent before b4435), ggml, llama, in load order, by their plain names.
    `os_` (linux, macos, windows) reads another platform's naming; default: this host's."""
    names = {p.name: p for p in libdir.iterdir()}
    out: dict[str, Path] = {}
    for role, pattern in _names(os_ or _host_os()).items():
        found = sorted(n for n in names if re.fullmatch(pattern, n))
        if found:
            out[role] = names[found[0]]
    if "llama" not in out:
        raise LoadFailed(f"no libllama in {libdir}")
    return out


LogSink = Callable[[int, str], None]


@dataclass
class Loaded:
    """A release loaded into this process."""

    libdir: Path
    fns: Functions
    bindings: Bindings
    handles: list[ctypes.CDLL]
    backends: str  # how backends were loaded
    _keep: list[Any] = field(default_factory=list, repr=False)  # callbacks ctypes must not free


def load(
    libdir: Path, api: Api, log: LogSink | None = None, cpu_variant: str | None = None
) -> Loaded:
    """`cpu_variant` (e.g. "haswell") loads that one ggml CPU backend instead of letting ggml
    pick the best (GGML_BACKEND_PATH does not force it: load_all still loads the best first)."""
    paths = library_paths(libdir)
    keep: list[Any] = []
    if sys.platform == "win32":  # pragma: no cover - Windows: the DLLs' own dependencies
        keep.append(os.add_dll_directory(str(libdir)))  # type: ignore[attr-defined]
    handles = []
    for role in ("ggml-base", "ggml", "llama"):
        if role in paths:
            try:
                handles.append(ctypes.CDLL(str(paths[role]), mode=ctypes.RTLD_GLOBAL))
            except OSError as err:
                raise LoadFailed(f"cannot load {paths[role].name}: {err}") from err
    bindings = Bindings(api)
    fns = bindings.bind(handles[-1])
    if "llama_log_set" in fns:
        cb_type = fns.llama_log_set.argtypes[0]

        def on_log(level: int, text: bytes | None, _user: Any) -> None:
            if log and text:
                log(level, text.decode("utf-8", "replace"))

        callback = cb_type(on_log)
        keep.append(callback)
        fns.llama_log_set(callback, None)
    backends = "linked"
    if cpu_variant:
        from harness.load.backends import force_cpu_variant

        ggml = handles[-2] if len(handles) > 1 else handles[-1]
        force_cpu_variant(ggml, libdir, cpu_variant)
        backends = f"ggml_backend_load(cpu-{cpu_variant})"
    elif "ggml_backend_load_all_from_path" in fns:
        fns.ggml_backend_load_all_from_path(str(libdir).encode())
        backends = "load_all_from_path"
    elif "ggml_backend_load_all" in fns:
        fns.ggml_backend_load_all()
        backends = "load_all"
    if "llama_backend_init" in fns:
        args = [False] if fns.llama_backend_init.argtypes else []  # b<2xxx took `numa`
        fns.llama_backend_init(*args)
    return Loaded(libdir, fns, bindings, handles, backends, keep)


_LOADED: dict[str, Loaded] = {}


def load_library(
    version: str = "latest",
    *,
    cache_dir: str | Path | None = None,
    sources: tuple[str, ...] = ("github", "npm"),
    log: LogSink | None = None,
) -> Loaded:
    """Provision this machine's build of `version` and load it into THIS process.

    One release per process: every release shares the SONAME libggml-base.so, so a second,
    different release raises LoadFailed (run it in a child process instead). Loading the same
    release again returns the same object.
    """
    from harness.abi.release import release_api
    from harness.cache.store import check_before_load
    from harness.library import LibraryDownloader

    dl = LibraryDownloader(cache_dir, sources=sources)
    result = dl.download(version)
    assert result.stored
    libdir = find_libdir(Path(result.stored.path))
    check_before_load(Path(result.stored.path), libdir)  # the tree is as it was extracted
    key = str(libdir)
    if key in _LOADED:
        return _LOADED[key]
    if _LOADED:
        other = next(iter(_LOADED))
        raise LoadFailed(
            f"{other} is already loaded in this process; llama.cpp releases share the SONAME "
            "libggml-base.so, so load another release in a child process"
        )
    api = release_api(dl, result)
    _LOADED[key] = loaded = load(libdir, api, log)
    return loaded
