"""Load one llama.cpp release into this process through ctypes, the way every release accepts.

Every release has the SONAME `libggml-base.so`: a second release in the same process binds to the
first one's ggml or fails. So: one release per process. The harness itself loads each release in a
child process (`harness.suites.child`); `harness.load_library()` (in `library`) is for a user
who wants one release in their own process.

Order matters: ggml-base, ggml, llama are preloaded by absolute path with RTLD_GLOBAL (b3889's
RUNPATH points at its build machine; npm builds rename the libraries `libllama.<tag>.so`), the log
callback is installed before backends load (so their chatter is captured, not printed), then
`ggml_backend_load_all_from_path(libdir)` (required from b4435 on: without it model load segfaults).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi import Api, Bindings, Functions
from harness.errors import HarnessError
from harness.static import names


def _host_os() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


class LoadFailed(HarnessError):
    pass


def find_libdir(tree: Path) -> Path:
    """The folder that holds libllama, wherever an era's archive put it (build/bin/, llama-<tag>/,
    bins/<platform>/, or flat), in any OS's naming."""
    libdir = names.find_libdir(tree)
    if libdir is None:
        raise LoadFailed(f"no libllama in {tree}")
    return libdir


def library_paths(libdir: Path, os_: str | None = None) -> dict[str, Path]:
    """ggml-base (absent before b4435), ggml, llama, in load order, by their plain names.
    `os_` (linux, macos, windows) reads another platform's naming; default: this host's."""
    files = {p.name: p for p in libdir.iterdir()}
    out = {role: files[n] for role, n in names.role_files(list(files), os_ or _host_os()).items()}
    if "llama" not in out:
        raise LoadFailed(f"no libllama in {libdir}")
    return out


LogSink = Callable[[int, str], None]
ROLES = ("ggml-base", "ggml", "llama")  # load order


@dataclass
class Loaded:
    """A release loaded into this process."""

    libdir: Path
    fns: Functions
    bindings: Bindings
    handles: list[ctypes.CDLL]
    backends: str  # how backends were loaded
    _keep: list[Any] = field(default_factory=list, repr=False)  # callbacks ctypes must not free


def c_function(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any | None:
    """A fresh prototype bound to `name` in lib (None when not exported): it never changes the
    restype/argtypes others set on lib's own attribute of that name."""
    try:
        return ctypes.CFUNCTYPE(restype, *argtypes)((name, lib))
    except AttributeError:
        return None


def cpu_libraries(libdir: Path) -> dict[str, Path]:
    """{variant: path} of the CPU backend libraries shipped in libdir."""
    out = {}
    for p in sorted(Path(libdir).iterdir()):
        v = names.cpu_variant_of(p.name)
        if v and p.is_file():
            out[v] = p
    return out


def backend_modules(libdir: Path) -> list[Path]:
    """The non-CPU backend modules (libggml-cuda.so, ggml-vulkan.dll, ...) in libdir."""
    return [p for p in sorted(Path(libdir).iterdir()) if names.backend_module_of(p.name)]


def force_cpu_variant(
    ggml: ctypes.CDLL, libdir: Path, variant: str, *, other_backends: bool = True
) -> list[str]:
    """Load one CPU variant (and, by default, every non-CPU backend module) into this process
    instead of `ggml_backend_load_all_from_path`; returns the file names registered.

    `ggml` is the release's libggml, already loaded (after libggml-base). Raises LoadFailed when
    the release has no such variant, or ggml refuses it (score 0 on this CPU).
    """
    libs = cpu_libraries(libdir)
    if variant not in libs:
        raise LoadFailed(f"no libggml-cpu-{variant} in {libdir}; it ships {sorted(libs)}")
    # ggml_backend_reg_t ggml_backend_load(const char * path);
    load_one = c_function(ggml, "ggml_backend_load", ctypes.c_void_p, ctypes.c_char_p)
    if load_one is None:
        raise LoadFailed(f"{libdir}: libggml has no ggml_backend_load (before b4435)")
    done = []
    for mod in backend_modules(libdir) if other_backends else []:
        if load_one(os.fsencode(mod)):
            done.append(mod.name)
    if not load_one(os.fsencode(libs[variant])):
        raise LoadFailed(
            f"ggml refused {libs[variant].name}: this CPU cannot run it (score 0) or it failed "
            "to load"
        )
    return [*done, libs[variant].name]


def preload(libdir: Path, roles: tuple[str, ...] = ROLES) -> dict[str, ctypes.CDLL]:
    """dlopen the release's libraries by absolute path, in load order, RTLD_GLOBAL."""
    paths = library_paths(libdir)
    handles = {}
    for role in roles:
        if role in paths:
            try:
                handles[role] = ctypes.CDLL(str(paths[role]), mode=ctypes.RTLD_GLOBAL)
            except OSError as err:
                raise LoadFailed(f"cannot load {paths[role].name}: {err}") from err
    return handles


def load_backends(ggml: ctypes.CDLL, libdir: Path, cpu_variant: str | None = None) -> str:
    """Register ggml's backends the way this release wants; returns how (for the report):
    one forced CPU variant, `load_all_from_path(libdir)` (b4435 on: without it model load
    segfaults), `load_all`, or `linked` (backends built into libggml, b3889)."""
    if cpu_variant:
        force_cpu_variant(ggml, libdir, cpu_variant)
        return f"ggml_backend_load(cpu-{cpu_variant})"
    # void ggml_backend_load_all_from_path(const char * dir_path);
    load_all_from = c_function(ggml, "ggml_backend_load_all_from_path", None, ctypes.c_char_p)
    if load_all_from is not None:
        load_all_from(os.fsencode(libdir))
        return "load_all_from_path"
    load_all = c_function(ggml, "ggml_backend_load_all", None)  # void ggml_backend_load_all(void);
    if load_all is not None:
        load_all()
        return "load_all"
    return "linked"


_LogCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _sink(log: LogSink | None) -> Callable[[int, bytes | None, Any], None]:
    def on_log(level: int, text: bytes | None, _user: Any) -> None:
        if log and text:
            log(level, text.decode("utf-8", "replace"))

    return on_log


def load_ggml(
    libdir: Path, log: LogSink | None = None, cpu_variant: str | None = None
) -> tuple[ctypes.CDLL, str, list[Any]]:
    """ggml alone (no libllama, no header needed): preload ggml-base and ggml, send ggml's log
    to `log`, load the backends. Returns (libggml, how backends loaded, callbacks to keep)."""
    handles = preload(libdir, ("ggml-base", "ggml"))
    ggml = handles.get("ggml") or handles["ggml-base"]
    keep: list[Any] = []
    # void ggml_log_set(ggml_log_callback log_callback, void * user_data);
    log_set = c_function(ggml, "ggml_log_set", None, _LogCallback, ctypes.c_void_p)
    if log_set is not None:
        keep.append(_LogCallback(_sink(log)))
        log_set(keep[-1], None)
    return ggml, load_backends(ggml, libdir, cpu_variant), keep


def load(
    libdir: Path, api: Api, log: LogSink | None = None, cpu_variant: str | None = None
) -> Loaded:
    """The release with its ABI bound: preload, log callback before the backends load (so their
    chatter is captured, not printed), backends, `llama_backend_init`. `cpu_variant` (e.g.
    "haswell") loads that one ggml CPU backend instead of letting ggml pick the best
    (GGML_BACKEND_PATH does not force it: load_all still loads the best first)."""
    keep: list[Any] = []
    if sys.platform == "win32":  # pragma: no cover - Windows: the DLLs' own dependencies
        keep.append(os.add_dll_directory(str(libdir)))  # type: ignore[attr-defined]
    by_role = preload(libdir)
    handles = list(by_role.values())
    bindings = Bindings(api)
    fns = bindings.bind(by_role["llama"])
    if "llama_log_set" in fns:
        callback = fns.llama_log_set.argtypes[0](_sink(log))
        keep.append(callback)
        fns.llama_log_set(callback, None)
    ggml = by_role.get("ggml") or by_role["llama"]
    backends = load_backends(ggml, libdir, cpu_variant)
    if "llama_backend_init" in fns:
        args = [False] if fns.llama_backend_init.argtypes else []  # b<2xxx took `numa`
        fns.llama_backend_init(*args)
    return Loaded(libdir, fns, bindings, handles, backends, keep)
