"""The ABI of one release as plain data.

Kept apart from the parser so that a child process that loads a release can rebuild its ctypes
from JSON without importing libclang (the parent parses once, every cell reuses it), and so that
two releases can be diffed as data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Api", "CType", "Enum", "Field", "Function", "Param", "Struct"]

FORMAT = 1
KINDS = frozenset(
    {"void", "int", "uint", "float", "bool", "char", "pointer", "struct", "union", "enum"}
    | {"array", "funcptr", "opaque"}
)


@dataclass
class CType:
    """One C type, by layout rather than by spelling.

    `name`: for struct/union/enum/opaque the key into `Api.structs` / `Api.enums`; otherwise the
    typedef it was written with, if any (`llama_token`, `size_t`). Records are referenced by name,
    never inlined, so self-referencing structs (`llama_sampler` ↔ `llama_sampler_i`) stay finite.
    """

    kind: str
    size: int = 0
    align: int = 0
    name: str = ""
    spelling: str = ""  # as the header writes it, for reports and diffs
    const: bool = False
    pointee: CType | None = None  # pointer
    element: CType | None = None  # array
    count: int = 0  # array; 0 for a flexible array member
    returns: CType | None = None  # funcptr
    params: list[CType] = field(default_factory=list)  # funcptr
    variadic: bool = False  # funcptr

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "size": self.size, "align": self.align}
        for key in ("name", "spelling", "const", "count", "variadic"):
            if value := getattr(self, key):
                out[key] = value
        for key in ("pointee", "element", "returns"):
            if (sub := getattr(self, key)) is not None:
                out[key] = sub.to_dict()
        if self.params:
            out["params"] = [p.to_dict() for p in self.params]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CType:
        sub = {k: cls.from_dict(d[k]) for k in ("pointee", "element", "returns") if k in d}
        return cls(
            kind=d["kind"],
            size=d.get("size", 0),
            align=d.get("align", 0),
            name=d.get("name", ""),
            spelling=d.get("spelling", ""),
            const=d.get("const", False),
            count=d.get("count", 0),
            variadic=d.get("variadic", False),
            params=[cls.from_dict(p) for p in d.get("params", [])],
            **sub,
        )


@dataclass
class Param:
    name: str
    type: CType

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(d["name"], CType.from_dict(d["type"]))


@dataclass
class Function:
    name: str
    restype: CType
    params: list[Param] = field(default_factory=list)
    variadic: bool = False
    header: str = ""  # which of the release's headers declares it
    deprecated: bool = False  # marked DEPRECATED(...) in that header

    def prototype(self) -> str:
        """The declaration as C, for reports and API diffs."""
        args = [f"{p.type.spelling} {p.name}".rstrip() for p in self.params]
        if self.variadic:
            args.append("...")
        return f"{self.restype.spelling} {self.name}({', '.join(args) or 'void'})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "restype": self.restype.to_dict(),
            "params": [p.to_dict() for p in self.params],
        }
        for key in ("variadic", "header", "deprecated"):
            if value := getattr(self, key):
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Function:
        return cls(
            name=d["name"],
            restype=CType.from_dict(d["restype"]),
            params=[Param.from_dict(p) for p in d.get("params", [])],
            variadic=d.get("variadic", False),
            header=d.get("header", ""),
            deprecated=d.get("deprecated", False),
        )


@dataclass
class Field:
    """One member. A bitfield has `bits` > 0 and its exact place in `bit_offset` (from the start
    of the struct); an anonymous struct/union member gets a made-up name and `anonymous`."""

    name: str
    type: CType
    offset: int  # bytes
    bit_offset: int = 0
    bits: int = 0
    anonymous: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.to_dict(),
            "offset": self.offset,
        }
        if self.bits:
            out["bit_offset"], out["bits"] = self.bit_offset, self.bits
        if self.anonymous:
            out["anonymous"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Field:
        return cls(
            name=d["name"],
            type=CType.from_dict(d["type"]),
            offset=d["offset"],
            bit_offset=d.get("bit_offset", 0),
            bits=d.get("bits", 0),
            anonymous=d.get("anonymous", False),
        )


@dataclass
class Struct:
    """A struct or union; `kind` "opaque" for one the headers declare but never define.

    `c_name` is how C code names it (`struct llama_batch`, or the typedef of an untagged one);
    empty for an anonymous member record, which C cannot name."""

    name: str
    size: int
    align: int
    fields: list[Field] = field(default_factory=list)
    kind: str = "struct"
    c_name: str = ""
    header: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "size": self.size}
        out.update(align=self.align, c_name=self.c_name, header=self.header)
        out["fields"] = [f.to_dict() for f in self.fields]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Struct:
        return cls(
            name=d["name"],
            size=d["size"],
            align=d["align"],
            fields=[Field.from_dict(f) for f in d.get("fields", [])],
            kind=d.get("kind", "struct"),
            c_name=d.get("c_name", ""),
            header=d.get("header", ""),
        )


@dataclass
class Enum:
    name: str
    values: dict[str, int]
    size: int = 4
    signed: bool = True
    c_name: str = ""
    header: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "values": self.values,
            "size": self.size,
            "signed": self.signed,
            "c_name": self.c_name,
            "header": self.header,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Enum:
        return cls(
            name=d["name"],
            values=dict(d["values"]),
            size=d.get("size", 4),
            signed=d.get("signed", True),
            c_name=d.get("c_name", ""),
            header=d.get("header", ""),
        )


@dataclass
class Api:
    """Everything a binding needs from one release's headers, for one target triple."""

    functions: dict[str, Function]
    structs: dict[str, Struct]
    enums: dict[str, Enum]
    typedefs: dict[str, CType]
    target: str
    pointer_size: int = 8
    headers: list[str] = field(default_factory=list)

    def constant(self, name: str) -> int:
        """The value of an enum constant (`LLAMA_POOLING_TYPE_NONE`), whatever enum holds it."""
        for enum in self.enums.values():
            if name in enum.values:
                return enum.values[name]
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "target": self.target,
            "pointer_size": self.pointer_size,
            "headers": self.headers,
            "functions": {k: v.to_dict() for k, v in self.functions.items()},
            "structs": {k: v.to_dict() for k, v in self.structs.items()},
            "enums": {k: v.to_dict() for k, v in self.enums.items()},
            "typedefs": {k: v.to_dict() for k, v in self.typedefs.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Api:
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown Api format {d.get('format')!r} (expected {FORMAT})")
        return cls(
            functions={k: Function.from_dict(v) for k, v in d["functions"].items()},
            structs={k: Struct.from_dict(v) for k, v in d["structs"].items()},
            enums={k: Enum.from_dict(v) for k, v in d["enums"].items()},
            typedefs={k: CType.from_dict(v) for k, v in d["typedefs"].items()},
            target=d["target"],
            pointer_size=d.get("pointer_size", 8),
            headers=list(d.get("headers", [])),
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Api:
        return cls.from_dict(json.loads(text))
