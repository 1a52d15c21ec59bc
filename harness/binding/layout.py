"""Layout rules the readers share: targets, C scalar types per data model, struct layout.

A binding declares layouts in its own terms (ctypes, Go structs, libffi element lists); the ABI
check compares them with what clang computed from llama.h, so the readers must place fields by
the same rules. Only 64-bit targets: llama.cpp ships no 32-bit builds worth checking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.binding.model import FieldDecl, TypeRef
from harness.errors import ConfigError

DEFAULT_TARGET = "x86_64-linux"
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "aarch64": "aarch64"}
_ARCHES |= {"arm64": "aarch64"}
_OSES = (
    ("windows", "windows"),
    ("win32", "windows"),
    ("win", "windows"),
    ("msvc", "windows"),
    ("mingw", "windows"),
    ("darwin", "darwin"),
    ("apple", "darwin"),
    ("macos", "darwin"),
    ("mac", "darwin"),
    ("linux", "linux"),
)


def normalize_target(target: str | None) -> str:
    """`x86_64-linux` from any usual spelling: a clang triple, `linux-x64`, `amd64`, `arm64`."""
    if not target:
        return DEFAULT_TARGET
    parts = target.lower().replace("_", "-").replace("x86-64", "x86_64").split("-")
    arch = next((_ARCHES[p] for p in parts if p in _ARCHES), None)
    os_name = next((o for p in parts for key, o in _OSES if p == key), None)
    if arch is None:
        raise ConfigError(
            f"binding target {target!r}: unknown or unsupported architecture "
            "(64-bit only: x86_64 or aarch64, e.g. x86_64-linux)"
        )
    return f"{arch}-{os_name or 'linux'}"


def go_arch(target: str) -> str:
    """GOARCH of a normalized target; Go lays structs out alike on amd64 and arm64."""
    return "amd64" if target.startswith("x86_64") else "arm64"


@dataclass(frozen=True)
class Scalar:
    kind: str
    size: int
    signed: bool | None = None
    align: int | None = None  # when it differs from size

    def ref(self, spelling: str) -> TypeRef:
        return TypeRef(spelling, self.kind, self.size, self.align or self.size, signed=self.signed)


def c_scalars(target: str) -> dict[str, Scalar]:
    """C's scalar types on a target, by their C names (`long`, `wchar_t`, `int32_t`...)."""
    windows = target.endswith("windows")
    arm = target.startswith("aarch64")
    darwin = target.endswith("darwin")
    long_size = 4 if windows else 8
    long_double = Scalar("float", 8 if windows or (arm and darwin) else 16)
    char_signed = not (arm and not darwin and not windows)  # char is unsigned on aarch64 linux
    out = {
        "void": Scalar("void", 0),
        "bool": Scalar("bool", 1),
        "char": Scalar("int", 1, char_signed),
        "signed char": Scalar("int", 1, True),
        "unsigned char": Scalar("int", 1, False),
        "short": Scalar("int", 2, True),
        "unsigned short": Scalar("int", 2, False),
        "int": Scalar("int", 4, True),
        "unsigned int": Scalar("int", 4, False),
        "long": Scalar("int", long_size, True),
        "unsigned long": Scalar("int", long_size, False),
        "long long": Scalar("int", 8, True),
        "unsigned long long": Scalar("int", 8, False),
        "size_t": Scalar("int", 8, False),
        "ssize_t": Scalar("int", 8, True),
        "time_t": Scalar("int", 8, True),
        "wchar_t": Scalar("int", 2 if windows else 4, not (windows or arm)),
        "float": Scalar("float", 4),
        "double": Scalar("float", 8),
        "long double": long_double,
        "pointer": Scalar("pointer", 8),
    }
    for bits in (8, 16, 32, 64):
        out[f"int{bits}_t"] = Scalar("int", bits // 8, True)
        out[f"uint{bits}_t"] = Scalar("int", bits // 8, False)
    return out


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def c_struct(
    members: Iterable[tuple[str, TypeRef, int | None]], pack: int | None = None, union: bool = False
) -> tuple[tuple[FieldDecl, ...], int | None, int | None]:
    """Fields with C offsets (SysV/MSVC agree without bit-fields), the size and the alignment.

    `members` are (name, type, bit width or None). `pack` is ctypes' `_pack_` (MSVC
    `#pragma pack`): it caps every member's alignment. Once a member's size is unknown, the
    offsets after it are too. Bit-fields follow the GCC rule (a field never straddles a unit of
    its own type), which is what ctypes does on Linux and macOS.
    """
    fields: list[FieldDecl] = []
    bit = 0  # position in bits, so bit-fields can share units
    max_align = 1
    known = True
    size_of_union = 0
    for name, ref, width in members:
        align = ref.align or ref.size or 1
        if pack:
            align = min(align, pack)
        max_align = max(max_align, align)
        if not known or ref.size is None:
            known = False
            fields.append(FieldDecl(name, ref, None if not union else 0))
            continue
        if union:
            fields.append(FieldDecl(name, ref, 0))
            size_of_union = max(size_of_union, ref.size)
            continue
        if width is not None and ref.size:
            unit = ref.size * 8
            if width == 0:
                bit = _round_up(bit, unit)
                continue
            if bit // unit != (bit + width - 1) // unit:
                bit = _round_up(bit, unit)
            fields.append(FieldDecl(name, ref, bit // unit * ref.size))
            bit += width
            continue
        bit = _round_up(bit, align * 8)
        fields.append(FieldDecl(name, ref, bit // 8))
        bit += ref.size * 8
    if not known:
        return tuple(fields), None, max_align
    end = size_of_union if union else (bit + 7) // 8
    return tuple(fields), _round_up(end, max_align), max_align


def go_struct(
    members: Iterable[tuple[str, TypeRef]],
) -> tuple[tuple[FieldDecl, ...], int | None, int | None]:
    """Fields with Go offsets on amd64/arm64, the size and the alignment.

    Go places fields like C (natural alignment, no reordering); the one difference is that a
    zero-size final field gets a byte of padding, so that its address stays inside the struct.
    """
    fields: list[FieldDecl] = []
    offset: int | None = 0
    max_align = 1
    last_size: int | None = None
    for name, ref in members:
        align = ref.align or ref.size or 1
        max_align = max(max_align, align)
        if offset is None or ref.size is None:
            offset = None
            fields.append(FieldDecl(name, ref, None))
            continue
        offset = _round_up(offset, align)
        fields.append(FieldDecl(name, ref, offset))
        offset += ref.size
        last_size = ref.size
    if offset is None:
        return tuple(fields), None, max_align
    if last_size == 0 and offset > 0:
        offset += 1
    return tuple(fields), _round_up(offset, max_align), max_align
