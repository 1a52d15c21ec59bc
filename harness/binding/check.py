"""A binding's declarations against one release's ABI: what would crash or corrupt memory.

Types are compared by what the calling convention and the struct layout see (class and size),
never by spelling: `ctypes.c_int32`, Go `int32` and C `int32_t` are the same thing, a `uintptr`
where C has a pointer is too. A signedness difference is only a warning: the bits are the same,
the meaning of large values is not.

Each break is one line that says where, what the binding has and what the release has
("llama_context_params.n_ctx: binding offset 4, b6862 offset 0"), so a report can list them as
they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi.model import Api, CType, Field, Struct
from harness.binding.model import BindingDecl, FieldDecl, StructDecl, TypeRef
from harness.load.loader import library_paths
from harness.static.binary import parse

__all__ = ["BindingVerdict", "check", "exports_of"]

# C kinds (harness.abi.model.KINDS) → the binding's layout classes (harness.binding.model.CLASSES)
_CLASS = {
    "void": "void",
    "int": "int",
    "uint": "int",
    "char": "int",
    "enum": "int",
    "bool": "bool",
    "float": "float",
    "pointer": "pointer",
    "funcptr": "pointer",
    "array": "array",
    "struct": "struct",
    "union": "struct",
    "opaque": "unknown",
}
# Classes the hardware treats alike at equal size: a bool is a byte, a pointer a machine word.
_ALIKE = {frozenset({"int", "bool"}), frozenset({"int", "pointer"})}


@dataclass
class BindingVerdict:
    """One release's answer; `to_json` is the `binding-check --json` row."""

    release: str
    build: str
    breaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    functions_checked: int = 0
    structs_checked: int = 0
    unmapped: list[str] = field(default_factory=list)
    error: str = ""  # the release could not be checked at all (no headers): not a verdict

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        return "breaks" if self.breaks else "compatible"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "release": self.release,
            "build": self.build,
            "verdict": self.verdict,
            "breaks": self.breaks,
            "warnings": self.warnings,
            "functions_checked": self.functions_checked,
            "structs_checked": self.structs_checked,
            "unmapped": self.unmapped,
        }
        if self.error:
            out["error"] = self.error
        return out


def exports_of(libdir: Path, os_: str | None = None) -> set[str]:
    """Every C name libllama, libggml and libggml-base export (bindings bind all three);
    `os_` reads another platform's library names (default: this host's)."""
    names: set[str] = set()
    for _role, path in library_paths(libdir, os_).items():
        b = parse(path.resolve(), "", exports=True)
        if b.error:
            raise ValueError(f"{path.name}: {b.error}")
        names |= b.exports
    return names


@dataclass(frozen=True)
class _Shape:
    """A C type reduced to what a binding must agree with."""

    cls: str
    size: int
    signed: bool | None
    name: str  # struct name (by value), else the spelling
    count: int = 0  # arrays


def _shape(t: CType, api: Api, *, as_param: bool = False) -> _Shape:
    cls = _CLASS.get(t.kind, "unknown")
    if cls == "array" and as_param:  # an array parameter is a pointer in C
        return _Shape("pointer", api.pointer_size, None, t.spelling)
    signed: bool | None = {"int": True, "uint": False}.get(t.kind)
    name = t.name if cls == "struct" else (t.spelling or t.name or t.kind)
    return _Shape(cls, t.size, signed, name, t.count)


def _say(cls: str, size: int | None, signed: bool | None = None) -> str:
    if cls == "void":
        return "void"
    prefix = "" if cls != "int" or signed is None else ("signed " if signed else "unsigned ")
    return f"{prefix}{cls} {size if size is not None else '?'} bytes"


class _Checker:
    def __init__(
        self,
        decl: BindingDecl,
        api: Api,
        release: str,
        structs: Mapping[str, str],
        exports: set[str] | None,
    ) -> None:
        self.decl, self.api, self.rel = decl, api, release
        self.structs = dict(structs)  # binding struct key → C struct name
        # the binding's own struct name → C name, for by-value arguments and nested fields
        self.c_of = {decl.structs[k].name: c for k, c in self.structs.items() if k in decl.structs}
        self.exports = exports
        self.renames: dict[str, str] = {}
        self.out = BindingVerdict(release, "")

    # -- types --------------------------------------------------------------------------------
    def _type(self, where: str, b: TypeRef, c: _Shape, breaks: list[str], alias: str = "") -> None:
        """Compare one binding type with one C type; breaks go to `breaks`, doubts to warnings.
        `alias` (the binding's own name for it) ends each line."""
        breaks = _Suffixed(breaks, alias)
        if b.kind == "unknown" or (b.size is None and b.kind != "void"):
            self.out.warnings.append(
                f"{where}: binding type {b.spelling!r} not understood; {self.rel} has "
                f"{_say(c.cls, c.size, c.signed)}, not checked"
            )
            return
        ours = f"binding {b.spelling} ({_say(b.kind, b.size, b.signed)})"
        theirs = f"{self.rel} {c.name} ({_say(c.cls, c.size, c.signed)})"
        if b.kind != c.cls and frozenset({b.kind, c.cls}) not in _ALIKE:
            if c.cls == "void" or b.kind == "void":
                breaks.append(f"{where}: {ours}, {theirs}")
                return
            if c.cls == "unknown":
                self.out.warnings.append(f"{where}: {self.rel} type {c.name} is opaque")
                return
            breaks.append(f"{where}: {ours}, {theirs}")
            return
        if b.kind == "void":
            return
        if b.size != c.size:
            breaks.append(f"{where}: {ours}, {theirs}")
            return
        if b.kind == "struct" and b.struct in self.c_of and c.cls == "struct":
            mapped = self.c_of[b.struct]
            record = self.api.structs.get(c.name)
            if mapped != c.name and (record is None or record.c_name):  # C can name it
                breaks.append(f"{where}: binding struct {b.struct} ({mapped}), {self.rel} {c.name}")
        if b.kind == "array" and b.count is not None and c.count and b.count != c.count:
            breaks.append(f"{where}: binding {b.count} elements, {self.rel} {c.count}")
        if b.kind == c.cls == "int" and None not in (b.signed, c.signed) and b.signed != c.signed:
            self.out.warnings.append(f"{where}: signedness differs: {ours}, {theirs}")

    # -- functions ----------------------------------------------------------------------------
    def functions(self) -> None:
        for symbol, fn in sorted(self.decl.functions.items()):
            self.out.functions_checked += 1
            c_symbol = self.renames.get(symbol, symbol)  # --names `functions:`
            c = self.api.functions.get(c_symbol)
            exported = None if self.exports is None else c_symbol in self.exports
            if c is None:
                if exported:
                    self.out.warnings.append(
                        f"{symbol}: exported, but not declared in {self.rel}'s public headers: "
                        "its arguments are not checked"
                    )
                else:
                    gone = "nor exported by its libraries" if exported is False else ""
                    self.out.breaks.append(
                        f"{symbol}: not declared in {self.rel}'s headers {gone}".rstrip()
                        + f" ({fn.where})"
                    )
                continue
            if exported is False:
                self.out.breaks.append(
                    f"{symbol}: declared in {self.rel}'s headers but not exported by its "
                    f"libraries ({fn.where})"
                )
            if fn.result is not None:
                self._result(symbol, fn.result, _shape(c.restype, self.api))
            if fn.params is None:
                continue
            if len(fn.params) != len(c.params) and not (
                c.variadic and len(fn.params) > len(c.params)
            ):
                self.out.breaks.append(
                    f"{symbol}: binding passes {len(fn.params)} argument(s), {self.rel} takes "
                    f"{len(c.params)}: {c.prototype()} ({fn.where})"
                )
                continue
            for i, (b, p) in enumerate(zip(fn.params, c.params, strict=False)):
                where = f"{symbol} argument {i + 1} ({p.name or '?'})"
                self._type(where, b, _shape(p.type, self.api, as_param=True), self.out.breaks)

    def _result(self, symbol: str, b: TypeRef, c: _Shape) -> None:
        where = f"{symbol} return"
        if b.kind == "void" and c.cls != "void":  # ignoring a result is harmless
            self.out.warnings.append(f"{where}: binding ignores {self.rel}'s {c.name}")
            return
        self._type(where, b, c, self.out.breaks)

    # -- structs ------------------------------------------------------------------------------
    def structs_(self) -> None:
        for key, c_name in sorted(self.structs.items()):
            b = self.decl.structs.get(key)
            s = self.api.structs.get(c_name)
            if b is None:
                continue
            self.out.structs_checked += 1
            if s is None or s.kind == "opaque":
                what = "opaque" if s is not None else "not declared"
                self.out.breaks.append(f"{c_name}: {what} in {self.rel}'s headers ({b.where})")
                continue
            alias = "" if b.name == c_name else f" (as {b.name})"
            if b.size is not None and b.size != s.size:
                self.out.breaks.append(
                    f"{c_name}: binding size {b.size}, {self.rel} size {s.size}{alias} ({b.where})"
                )
            named = [f for f in b.fields if _named(f)]
            if b.fields and len(named) * 2 >= len(b.fields):
                self._by_name(c_name, b, s)
            else:
                self._by_position(c_name, b, s)

    def _by_name(self, c_name: str, b: StructDecl, s: Struct) -> None:
        theirs = {_norm(f.name): f for f in s.fields if not f.anonymous}
        anonymous = {f.offset: f for f in s.fields if f.anonymous}
        extra: list[FieldDecl] = []
        seen: set[str] = set()
        before = len(self.out.breaks)
        for bf in b.fields:
            if not _named(bf):
                continue
            key = _norm(bf.name)
            cf = theirs.get(key)
            if cf is None and bf.offset is not None:  # a named union C leaves unnamed
                cf = anonymous.get(bf.offset)
            if cf is None:
                extra.append(bf)
                continue
            seen.add(key)
            here = f"{c_name}.{f'(anonymous {cf.type.kind})' if cf.anonymous else cf.name}"
            alias = "" if (b.name, bf.name) == (c_name, cf.name) else f" (as {b.name}.{bf.name})"
            self._field(here, alias, bf, cf)
        missing = [cf for key, cf in theirs.items() if key not in seen]
        # Only where everything else lines up is a stray name harmless: in a shifted struct a
        # field that lands on another's offset is the bug itself (gollama's FlashAttn).
        clean = len(self.out.breaks) == before and (b.size is None or b.size == s.size)
        for bf in extra:
            # a field C renamed keeps its place: the same bytes, only the name differs
            cf = next((m for m in missing if m.offset == bf.offset and self._alike(bf, m)), None)
            if cf is not None and clean:
                missing.remove(cf)
                self.out.warnings.append(
                    f"{c_name}.{cf.name}: the binding calls it {bf.name} (same offset and type)"
                )
                continue
            self.out.breaks.append(
                f"{c_name}.{bf.name}: in the binding (offset {_off(bf.offset)}), not in "
                f"{self.rel} ({b.name}, {b.where})"
            )
        spans = [
            (f.offset, f.offset + (f.type.size or 1)) for f in b.fields if f.offset is not None
        ]
        for cf in missing:
            line = (
                f"{c_name}.{cf.name}: in {self.rel} (offset {cf.offset}, "
                f"{cf.type.spelling or cf.type.kind}), missing from the binding "
                f"({b.name}, {b.where})"
            )
            top = cf.offset + max(cf.type.size, 1)
            if clean and not any(a < top and cf.offset < z for a, z in spans):
                # it sits in the binding's padding: the bytes pass through untouched
                self.out.warnings.append(f"{line}: in the binding's padding, it cannot set it")
            else:
                self.out.breaks.append(line)

    def _alike(self, bf: FieldDecl, cf: Field) -> bool:
        probe: list[str] = []
        before = len(self.out.warnings)
        self._type("", bf.type, _shape(cf.type, self.api), probe)
        del self.out.warnings[before:]
        return not probe

    def _field(self, here: str, alias: str, bf: FieldDecl, cf: Field) -> None:
        if bf.offset is not None and not cf.bits and bf.offset != cf.offset:
            self.out.breaks.append(
                f"{here}: binding offset {bf.offset}, {self.rel} offset {cf.offset}{alias}"
            )
        self._type(here, bf.type, _shape(cf.type, self.api), self.out.breaks, alias)

    def _by_position(self, c_name: str, b: StructDecl, s: Struct) -> None:
        """For declarations without field names (libffi element lists): field i against field i."""
        fields = [f for f in s.fields if not f.anonymous]
        for i, bf in enumerate(b.fields):
            if i >= len(fields):
                self.out.breaks.append(
                    f"{c_name} field {i + 1}: in the binding ({bf.type.spelling}), {self.rel} "
                    f"has only {len(fields)} fields ({b.name}, {b.where})"
                )
                continue
            cf = fields[i]
            self._field(f"{c_name} field {i + 1} ({cf.name})", f" (as {b.name}[{i}])", bf, cf)
        for i, cf in enumerate(fields[len(b.fields) :], start=len(b.fields)):
            self.out.breaks.append(
                f"{c_name} field {i + 1} ({cf.name}): in {self.rel} (offset {cf.offset}), "
                f"missing from the binding ({b.name}, {b.where})"
            )

    # -- constants ----------------------------------------------------------------------------
    def constants(self) -> None:
        for name, value in sorted(self.decl.constants.items()):
            try:
                theirs = self.api.constant(name)
            except KeyError:
                self.out.unmapped.append(f"constant {name}")
                continue
            if theirs == value:
                continue
            line = f"{name}: binding {value}, {self.rel} {theirs}"
            if name.endswith("_COUNT"):  # a sentinel that sizes tables, never passed to a call
                self.out.warnings.append(f"{line} (a count, not a value any call takes)")
            else:
                self.out.breaks.append(line)


class _Suffixed(list[str]):
    """A list that appends to another, each line with the same ending."""

    def __init__(self, target: list[str], suffix: str) -> None:
        super().__init__()
        self.target, self.suffix = target, suffix

    def append(self, line: str) -> None:
        self.target.append(line + self.suffix)


def _named(f: FieldDecl) -> bool:
    return bool(f.name) and f.name != "_" and not f.name.isdigit() and not f.name.startswith("#")


def _norm(name: str) -> str:
    """n_ctx, NCtx and nCtx are one name: bindings re-case C's fields to their language."""
    return name.replace("_", "").lower()


def _off(offset: int | None) -> str:
    return "?" if offset is None else str(offset)


def check(
    decl: BindingDecl,
    api: Api,
    *,
    release: str,
    build: str = "",
    structs: Mapping[str, str] | None = None,
    unmapped: list[str] | None = None,
    exports: set[str] | None = None,
    functions: Mapping[str, str] | None = None,
) -> BindingVerdict:
    """One release. `structs`: binding struct key → C struct name (from `names.map_structs`);
    `functions`: binding symbol → C symbol where they differ (`names.Overrides.functions`);
    `exports`: what the release's libraries export, None when no build was at hand (then only
    the headers decide)."""
    c = _Checker(decl, api, release, structs or {}, exports)
    c.renames = dict(functions or {})
    c.out.build = build or release
    c.out.unmapped.extend(unmapped or [])
    c.functions()
    c.structs_()
    c.constants()
    if exports is None:
        c.out.warnings.append(f"exports not checked: no {release} build at hand")
    c.out.warnings.extend(f"reader: {p}" for p in decl.problems)
    return c.out
