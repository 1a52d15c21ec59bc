"""Static checks of one cell's extracted build, for any platform, from any host.

Only the host's own cells can be loaded, but every cell can be read: a Windows or macOS build
that lacks a function the header declares, holds an x64 DLL in an arm64 package, or needs a
library no user has, is caught on a Linux runner. Each check is one named result; a non-host
cell passes or fails on these alone. Facts (glibc floor, macOS floor, CPU variants, what must
come from outside the tree) are reported whatever the outcome.
"""

from __future__ import annotations

import json
import os as _os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi.model import Api
from harness.static import names
from harness.static.allow import classify
from harness.static.binary import Binary, binary_format, cell_arch, parse
from harness.static.names import find_libdir

__all__ = ["CHECKS", "StaticResult", "check_tree", "find_libdir"]

CHECKS = (
    "libraries_present",
    "exports",
    "architecture",
    "dependencies",
    "symlinks",
    "glibc",
    "macos_min",
    "cpu_variants",
)
_FORMAT = {"linux": "ELF", "android": "ELF", "macos": "MachO", "windows": "PE"}
_ROLES = ("llama", "ggml", "ggml-base")
_VERSION = re.compile(r"(GLIBC|GLIBCXX)_(\d+(?:\.\d+)*)")


@dataclass
class StaticResult:
    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No check failed (skips are fine: a check that cannot apply to the platform)."""
        return all(c["status"] != "fail" for c in self.checks.values())

    def set(self, name: str, status: str, message: str) -> None:
        self.checks[name] = {"status": status, "message": message}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks, "facts": self.facts}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _short(items: Iterable[str], limit: int = 8) -> str:
    items = list(items)
    more = f", … ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _dotted(v: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in (v[:2] if len(v) > 2 and v[2] == 0 else v))


class _Tree:
    """One walk of the tree: the file names a dependency may resolve to, and bad symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.names: set[str] = set()
        self.links = 0
        self.bad: list[str] = []
        for folder, dirs, files in _os.walk(self.root):
            for name in sorted(files + dirs):
                path = Path(folder, name)
                if path.is_symlink():
                    self.links += 1
                    self._link(path)
                real = self.inside(path)
                if name in files and real is not None and real.is_file():
                    self.names.add(name)

    def inside(self, path: Path) -> Path | None:
        """`path` resolved, when it lands on an existing file or folder inside the tree."""
        real = Path(_os.path.realpath(path))
        ok = real.exists() and (real == self.root or self.root in real.parents)
        return real if ok else None

    def _link(self, path: Path) -> None:
        rel = path.relative_to(self.root).as_posix()
        target = _os.readlink(path)
        real = Path(_os.path.realpath(path))
        if not real.exists():
            self.bad.append(f"{rel} → {target} (dangling)")
        elif not (real == self.root or self.root in real.parents):
            self.bad.append(f"{rel} → {target} (escapes the tree)")


def check_tree(
    tree: Path,
    os: str,
    arch: str,
    variant: str,
    api: Api | None,
    *,
    glibc_max: str | None = None,
    allow: Iterable[str] = (),
) -> StaticResult:
    """Run every named check on the extracted build in `tree` for the cell (os, arch, variant).

    `api`: the release's parsed headers (None skips `exports`). `glibc_max`: fail a Linux build
    that needs a newer glibc (e.g. "2.31"); None only reports it. `allow`: extra globs of outside
    libraries to accept (e.g. "libcurl.so.*" for the executables of some GitHub builds).
    """
    start = time.perf_counter()
    res = StaticResult()
    walk = _Tree(tree)
    libdir = find_libdir(walk.root, os)
    res.facts["libdir"] = libdir.relative_to(walk.root).as_posix() if libdir else None
    roles, listed = _roles(walk, libdir, os)
    binaries: dict[Path, Binary] = {}
    parse_start = time.perf_counter()
    for real in listed:
        binaries[real] = parse(real, arch, exports=real == roles.get("llama"))
    res.facts["binaries"] = len(binaries)
    res.facts["parse_s"] = round(time.perf_counter() - parse_start, 3)

    _libraries_present(res, walk, libdir, roles, binaries, os)
    _exports(res, roles.get("llama"), binaries, api)
    _architecture(res, libdir, binaries, os, arch)
    _dependencies(res, libdir, binaries, walk, os, variant, tuple(allow))
    _symlinks(res, walk)
    _glibc(res, binaries, os, glibc_max)
    _macos_min(res, binaries, os)
    _cpu_variants(res, libdir)
    res.facts["check_s"] = round(time.perf_counter() - start, 3)
    return res


def _roles(walk: _Tree, libdir: Path | None, os: str) -> tuple[dict[str, Path], list[Path]]:
    """(role → real file) for libllama/libggml/libggml-base, and every binary in the lib folder,
    each real file once however many symlinks name it."""
    if libdir is None:
        return {}, []
    entries = sorted(libdir.iterdir())
    roles: dict[str, Path] = {}
    for role in _ROLES:
        pattern = names.role_pattern(role, os)
        for p in entries:
            real = walk.inside(p)
            if pattern.fullmatch(p.name) and real is not None and real.is_file():
                roles[role] = real
                break
    listed: dict[Path, None] = {}
    for p in entries:
        real = walk.inside(p)
        if real is not None and real.is_file() and binary_format(real):
            listed[real] = None
    return roles, list(listed)


def _libraries_present(
    res: StaticResult,
    walk: _Tree,
    libdir: Path | None,
    roles: dict[str, Path],
    binaries: dict[Path, Binary],
    os: str,
) -> None:
    ext = names.EXT.get(os, "so")
    if libdir is None:
        res.set("libraries_present", "fail", f"no libllama*.{ext} / llama*.{ext} in the tree")
        return
    # libggml-base exists from b4435 on; before that nothing links it and it is not required.
    base = names.role_pattern("ggml-base", os)
    users = sorted(
        b.path.name
        for b in binaries.values()
        if any(base.fullmatch(n.rsplit("/", 1)[-1]) for n in b.needed)
    )
    required = ["llama", "ggml"] + (["ggml-base"] if users else [])
    missing = [
        f"ggml-base (needed by {_short(users, 3)})" if r == "ggml-base" else r
        for r in required
        if r not in roles
    ]
    res.facts["libraries"] = {r: p.relative_to(walk.root).as_posix() for r, p in roles.items()}
    where = res.facts["libdir"] or "."
    if missing:
        res.set("libraries_present", "fail", f"missing in {where}: lib{', lib'.join(missing)}")
        return
    found = ", ".join(roles[r].name for r in _ROLES if r in roles)
    note = "" if users else " (no libggml-base needed: pre-b4435 layout)"
    res.set("libraries_present", "pass", f"{found} in {where}{note}")


def _exports(
    res: StaticResult, llama: Path | None, binaries: dict[Path, Binary], api: Api | None
) -> None:
    if api is None:
        res.set("exports", "skip", "no header API for this release")
        return
    if llama is None:
        res.set("exports", "skip", "no libllama to read (see libraries_present)")
        return
    lib = binaries.get(llama)
    if lib is None:  # there, but not an ELF, Mach-O or PE file
        res.set("exports", "fail", f"{llama.name}: not a shared library this platform can load")
        return
    if lib.error:
        res.set("exports", "fail", f"{llama.name}: {lib.error}")
        return
    wanted = sorted(n for n in api.functions if n.startswith("llama_"))
    missing = [n for n in wanted if n not in lib.exports]
    res.facts["exports_checked"] = len(wanted)
    res.facts["exports_missing"] = missing
    if missing:
        msg = f"{len(missing)} missing from {llama.name}: {_short(missing)}"
        res.set("exports", "fail", msg)
    else:
        res.set("exports", "pass", f"{llama.name} exports all {len(wanted)} llama_* functions")


def _architecture(
    res: StaticResult, libdir: Path | None, binaries: dict[Path, Binary], os: str, arch: str
) -> None:
    if libdir is None or not binaries:
        res.set("architecture", "skip", "no binaries to read (see libraries_present)")
        return
    want, fmt = cell_arch(arch), _FORMAT.get(os)
    bad = []
    for b in binaries.values():
        if b.error:
            bad.append(f"{b.path.name} ({b.error})")
        elif fmt and b.format != fmt:
            bad.append(f"{b.path.name} ({b.format}, expected {fmt})")
        elif want not in b.machines:
            bad.append(f"{b.path.name} ({'+'.join(b.machines)})")
    if bad:
        msg = f"{len(bad)} of {len(binaries)} binaries hold no {want} code: {_short(bad)}"
        res.set("architecture", "fail", msg)
    else:
        res.set("architecture", "pass", f"all {len(binaries)} binaries are {fmt} {want}")


def _dependencies(
    res: StaticResult,
    libdir: Path | None,
    binaries: dict[Path, Binary],
    walk: _Tree,
    os: str,
    variant: str,
    allow: tuple[str, ...],
) -> None:
    if libdir is None or not binaries:
        res.set("dependencies", "skip", "no binaries to read (see libraries_present)")
        return
    fold = os == "windows"
    shipped = {n.lower() for n in walk.names} if fold else walk.names
    inside: set[str] = set()
    external: dict[str, str] = {}
    unresolved: dict[str, list[str]] = {}
    weak_missing: set[str] = set()

    def resolve(dep: str) -> str | None:
        """Where `dep` comes from: "tree", an allowlist kind, or None."""
        base = dep.rsplit("/", 1)[-1]
        # @rpath/, @loader_path/, @executable_path/ and bare names are looked up in the tree;
        # an absolute Mach-O path is loaded from exactly there, so only the system's count.
        if (not dep.startswith("/")) and (base.lower() if fold else base) in shipped:
            return "tree"
        return classify(dep if dep.startswith("/") else base, os, variant, allow)

    for b in binaries.values():
        for dep in b.needed:
            kind = resolve(dep)
            if kind == "tree":
                inside.add(dep)
            elif kind:
                external[dep] = kind
            else:
                unresolved.setdefault(dep, []).append(b.path.name)
        weak_missing.update(d for d in b.weak if resolve(d) is None)
    res.facts["external"] = dict(sorted(external.items()))
    if weak_missing:
        res.facts["weak_missing"] = sorted(weak_missing)
    if unresolved:
        items = [f"{d} (needed by {_short(sorted(u), 3)})" for d, u in sorted(unresolved.items())]
        res.set("dependencies", "fail", f"unresolved: {'; '.join(items)}")
        return
    kinds: dict[str, list[str]] = {}
    for dep, kind in sorted(external.items()):
        kinds.setdefault(kind, []).append(dep.rsplit("/", 1)[-1])
    outside = "; ".join(f"{k}: {_short(v, 4)}" for k, v in sorted(kinds.items()))
    res.set(
        "dependencies",
        "pass",
        f"{len(inside)} in the tree, {len(external)} outside"
        + (f" ({outside})" if outside else ""),
    )


def _symlinks(res: StaticResult, walk: _Tree) -> None:
    res.facts["symlinks"] = walk.links
    if walk.bad:
        res.set("symlinks", "fail", f"{len(walk.bad)} bad: {_short(walk.bad)}")
    elif walk.links:
        res.set("symlinks", "pass", f"{walk.links} symlinks, all inside the tree")
    else:
        res.set("symlinks", "pass", "no symlinks")


def _glibc(res: StaticResult, binaries: dict[Path, Binary], os: str, ceiling: str | None) -> None:
    if os != "linux":
        res.set("glibc", "skip", f"only Linux builds link glibc ({os})")
        return
    top: dict[str, tuple[tuple[int, ...], list[str]]] = {}
    for b in binaries.values():
        for v in b.versions:
            if m := _VERSION.fullmatch(v):
                lib, ver = m[1], _version(m[2])
                best = top.get(lib)
                if best is None or ver > best[0]:
                    top[lib] = (ver, [b.path.name])
                elif ver == best[0]:
                    best[1].append(b.path.name)
    glibc = top.get("GLIBC")
    res.facts["glibc_max"] = _dotted(glibc[0]) if glibc else None
    cxx = top.get("GLIBCXX")
    res.facts["glibcxx_max"] = _dotted(cxx[0]) if cxx else None
    if glibc is None:
        res.set("glibc", "pass", "no GLIBC symbol versions needed")
        return
    msg = f"needs glibc ≥ {_dotted(glibc[0])} ({_short(sorted(glibc[1]), 3)})"
    if ceiling and glibc[0] > _version(ceiling):
        res.set("glibc", "fail", f"{msg}, above the ceiling {ceiling}")
    else:
        res.set("glibc", "pass", msg)


def _macos_min(res: StaticResult, binaries: dict[Path, Binary], os: str) -> None:
    if os != "macos":
        res.set("macos_min", "skip", f"only Mach-O builds carry a minimum macOS ({os})")
        return
    found = {b.path.name: b.macos_min for b in binaries.values() if b.macos_min}
    if not found:
        res.facts["macos_min"] = None
        res.set("macos_min", "pass", "no LC_BUILD_VERSION / LC_VERSION_MIN_MACOSX found")
        return
    top = max(found.values())
    res.facts["macos_min"] = _dotted(top)
    by = sorted(n for n, v in found.items() if v == top)
    res.set("macos_min", "pass", f"needs macOS ≥ {_dotted(top)} ({_short(by, 3)})")


def _cpu_variants(res: StaticResult, libdir: Path | None) -> None:
    files = sorted(p.name for p in libdir.iterdir()) if libdir else []
    variants = [v for n in files if (v := names.cpu_variant_of(n))]
    res.facts["cpu_variants"] = variants
    if variants:
        res.set("cpu_variants", "pass", f"{len(variants)}: {', '.join(variants)}")
    else:
        res.set("cpu_variants", "pass", "none shipped apart (the CPU backend is in libggml)")
