"""One shared library or executable, reduced to the facts the static checks need.

LIEF parses ELF, Mach-O and PE alike, so one host checks every platform's build. Parsing is the
slow part, so each file is parsed once, with the parser told to skip what no check reads
(relocations, resources, signatures, dyld bindings), and only the facts are kept: the LIEF
objects of a 150 MB CUDA backend are not held past `parse()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lief

__all__ = ["Binary", "binary_format", "cell_arch", "parse"]

lief.logging.disable()  # LIEF warns on stderr about harmless oddities; failures come back as None

_MAGIC = {
    b"\x7fELF": "ELF",
    b"MZ": "PE",
    b"\xfe\xed\xfa\xce": "MachO",
    b"\xce\xfa\xed\xfe": "MachO",
    b"\xfe\xed\xfa\xcf": "MachO",
    b"\xcf\xfa\xed\xfe": "MachO",
    b"\xca\xfe\xba\xbe": "MachO",  # universal ("fat"): one slice per arch
    b"\xbe\xba\xfe\xca": "MachO",
}
# Machine codes in the harness's arch vocabulary (harness.sources.assets).
_MACHINES = {
    "ELF": {
        "X86_64": "x64",
        "AARCH64": "arm64",
        "I386": "x86",
        "ARM": "arm",
        "S390": "s390x",
        "RISCV": "riscv64",
        "PPC64": "ppc64le",
        "LOONGARCH": "loongarch64",
    },
    "MachO": {"X86_64": "x64", "ARM64": "arm64", "X86": "x86", "ARM": "arm"},
    "PE": {"AMD64": "x64", "ARM64": "arm64", "I386": "x86", "ARMNT": "arm", "ARM": "arm"},
}
_ARCH_ALIASES = {
    "x86_64": "x64",
    "amd64": "x64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armv7": "arm",
    "armhf": "arm",
    "i686": "x86",
    "i386": "x86",
}
_MACHO_LOADS = {
    lief.MachO.LoadCommand.TYPE.LOAD_DYLIB,
    lief.MachO.LoadCommand.TYPE.REEXPORT_DYLIB,
    lief.MachO.LoadCommand.TYPE.LOAD_UPWARD_DYLIB,
    lief.MachO.LoadCommand.TYPE.LAZY_LOAD_DYLIB,
}


def cell_arch(arch: str) -> str:
    """A cell's arch in the vocabulary `Binary.machines` uses (`armv7l` → arm)."""
    return _ARCH_ALIASES.get(arch, arch)


def binary_format(path: Path) -> str | None:
    """The format ("ELF", "MachO", "PE") by magic number; None for anything else (.lib
    archives, JSON, Metal sources), so executables without an extension are found too."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return _MAGIC.get(head) or _MAGIC.get(head[:2])


@dataclass
class Binary:
    path: Path
    format: str  # "ELF" | "MachO" | "PE"
    machines: list[str] = field(default_factory=list)  # every slice of a universal binary
    needed: list[str] = field(default_factory=list)  # DT_NEEDED / LC_LOAD_DYLIB / imports
    weak: list[str] = field(default_factory=list)  # LC_LOAD_WEAK_DYLIB: may be absent
    exports: set[str] = field(default_factory=set)  # C names (Mach-O's leading _ dropped)
    versions: set[str] = field(default_factory=set)  # ELF version needs: GLIBC_2.34, ...
    macos_min: tuple[int, ...] | None = None
    error: str = ""  # LIEF could not parse it


def _text(name: str | bytes) -> str:
    """LIEF hands back bytes for a name that is not UTF-8."""
    return name if isinstance(name, str) else name.decode("utf-8", "backslashreplace")


def _name(enum: object) -> str:
    return str(enum).rsplit(".", 1)[-1]


def _machine(fmt: str, raw: object) -> str:
    name = _name(raw)
    return _MACHINES[fmt].get(name, name.lower())


def parse(path: Path, arch: str, exports: bool = False) -> Binary:
    """The facts of one file. `exports` only where a check reads them (libllama): a PE's export
    table of C++ symbols runs to 20k names. For a universal Mach-O, the slice for `arch` (or the
    first) gives the dependencies and exports; `machines` lists every slice."""
    fmt = binary_format(path)
    if fmt is None:
        return Binary(path, "unknown", error="not an ELF, Mach-O or PE file")
    out = Binary(path, fmt)
    if fmt == "ELF":
        _elf(path, out, exports)
    elif fmt == "PE":
        _pe(path, out, exports)
    else:
        _macho(path, out, cell_arch(arch), exports)
    return out


def _elf(path: Path, out: Binary, exports: bool) -> None:
    cfg = lief.ELF.ParserConfig()
    cfg.parse_relocations = False
    cfg.parse_symtab_symbols = False
    cfg.parse_notes = False
    cfg.parse_overlay = False
    cfg.parse_dyn_symbols = exports
    b = lief.ELF.parse(str(path), cfg)
    if b is None:
        out.error = "LIEF cannot parse it as ELF"
        return
    out.machines = [_machine("ELF", b.header.machine_type)]
    out.needed = [_text(n) for n in b.libraries]
    out.versions = {
        _text(aux.name)
        for req in b.symbols_version_requirement
        for aux in req.get_auxiliary_symbols()
    }
    if exports:
        out.exports = {_text(s.name) for s in b.dynamic_symbols if s.exported}


def _pe(path: Path, out: Binary, exports: bool) -> None:
    cfg = lief.PE.ParserConfig()
    cfg.parse_signature = False
    cfg.parse_rsrc = False
    cfg.parse_reloc = False
    cfg.parse_exceptions = False
    cfg.parse_exports = exports
    b = lief.PE.parse(str(path), cfg)
    if b is None:
        out.error = "LIEF cannot parse it as PE"
        return
    out.machines = [_machine("PE", b.header.machine)]
    # Delay-loaded DLLs fail at first call instead of at load time: still dependencies.
    out.needed = [_text(i.name) for i in b.imports] + [_text(i.name) for i in b.delay_imports]
    if exports and (table := b.get_export()) is not None:
        out.exports = {_text(e.name) for e in table.entries if e.name}


def _macho(path: Path, out: Binary, arch: str, exports: bool) -> None:
    cfg = lief.MachO.ParserConfig()
    cfg.parse_dyld_exports = exports
    cfg.parse_dyld_bindings = False
    cfg.parse_dyld_rebases = False
    fat = lief.MachO.parse(str(path), cfg)
    if fat is None or fat.size == 0:
        out.error = "LIEF cannot parse it as Mach-O"
        return
    slices = [s for s in (fat.at(i) for i in range(fat.size)) if s is not None]
    if not slices:
        out.error = "LIEF cannot parse its slices"
        return
    out.machines = [_machine("MachO", s.header.cpu_type) for s in slices]
    b = next((s for s, m in zip(slices, out.machines, strict=True) if m == arch), slices[0])
    for lib in b.libraries:
        if lib.command == lief.MachO.LoadCommand.TYPE.LOAD_WEAK_DYLIB:
            out.weak.append(_text(lib.name))
        elif lib.command in _MACHO_LOADS:  # not LC_ID_DYLIB, the library's own name
            out.needed.append(_text(lib.name))
    if (build := b.build_version) is not None:
        out.macos_min = tuple(build.minos)
    elif (vmin := b.version_min) is not None:
        out.macos_min = tuple(vmin.version)
    if exports:
        names = (_text(s.name) for s in b.exported_symbols)
        out.exports = {n[1:] if n.startswith("_") else n for n in names}
