"""What changed in the llama API between two releases, as data (`diff`) and as text (`render_text`).

Types are compared by shape, not by how the header happens to spell them: a typedef that names
the same type (`int32_t` → `llama_token`), a moved `const` or a re-numbered anonymous union is
not a change, while a pointer to another record (`llama_model *` → `llama_vocab *`), another
size, another enum or a by-value struct of another name is. Layout changes of a by-value struct
are reported once, under the struct, not at every function that passes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.abi.model import Api, CType, Enum, Function, Struct

__all__ = [
    "ApiDiff",
    "EnumChange",
    "FunctionChange",
    "Shape",
    "StructChange",
    "describe",
    "diff",
    "normalize",
    "render_text",
    "shape",
    "spell",
]

Shape = tuple[Any, ...]

_TOKEN = re.compile(r"[A-Za-z_]\w*|\.\.\.|\d+|\S")
_TAGS = frozenset({"struct", "union", "enum"})
_QUALIFIERS = frozenset({"const", "volatile", "restrict"})


def normalize(spelling: str) -> str:
    """One spelling per C type name: whitespace collapsed, `struct`/`union`/`enum` dropped,
    qualifiers sorted in front of what they qualify (`char const *` == `const char*`)."""
    tokens = [t for t in _TOKEN.findall(spelling) if t not in _TAGS]
    if any(t in "()[]:," for t in tokens):
        return " ".join(tokens)
    levels: list[list[str]] = [[]]
    for t in tokens:
        if t == "*":
            levels.append([])
        else:
            levels[-1].append(t)
    out = []
    for i, level in enumerate(levels):
        quals = sorted(t for t in level if t in _QUALIFIERS)
        words = [t for t in level if t not in _QUALIFIERS]
        out.append(" ".join([*quals, *words]) if i == 0 else " ".join(["*", *quals]))
    return " ".join(out)


def shape(t: CType) -> Shape:
    """What a binding must match: sizes, pointer depth, and the names of records and enums;
    never typedef names or qualifiers."""
    if t.kind in ("struct", "opaque"):  # a forward declaration that gains a body is the same
        return ("record", t.name)
    if t.kind in ("union", "enum"):
        return (t.kind, t.name)
    if t.kind == "pointer":
        return ("*", shape(t.pointee) if t.pointee else ("void", 0))
    if t.kind == "array":
        return ("[]", t.count, shape(t.element) if t.element else ("void", 0))
    if t.kind == "funcptr":
        ret = shape(t.returns) if t.returns else ("void", 0)
        return ("fn", ret, tuple(shape(p) for p in t.params), t.variadic)
    return (t.kind, t.size)


def spell(t: CType) -> str:
    """The header's spelling, tidied; a record C cannot name is shown by our name for it."""
    if t.kind in ("struct", "union") and "(anonymous" in t.spelling:
        return f"{t.kind} {t.name}"
    return " ".join(t.spelling.split()) or t.name or t.kind


def _type_change(old: CType, new: CType) -> str | None:
    if shape(old) == shape(new):
        return None
    a, b = spell(old), spell(new)
    if normalize(a) == normalize(b):  # same name, other type (a typedef changed under it)
        a, b = f"{a} ({describe(shape(old))})", f"{b} ({describe(shape(new))})"
    return f"{a} → {b}"


def describe(s: Shape) -> str:
    """A shape in words, for when the spelling alone does not show the change."""
    if s[0] == "*":
        return f"pointer to {describe(s[1])}"
    if s[0] == "[]":
        return f"array of {s[1]} {describe(s[2])}"
    if s[0] == "fn":
        return f"function pointer ({', '.join(describe(p) for p in s[2])}) → {describe(s[1])}"
    if s[0] in ("record", "union", "enum"):
        return f"{'struct' if s[0] == 'record' else s[0]} {s[1]}"
    return "void" if s[0] == "void" else f"{s[1]}-byte {s[0]}"


@dataclass
class FunctionChange:
    name: str
    what: list[str]


@dataclass
class StructChange:
    name: str
    size: tuple[int, int] | None = None
    fields_added: list[str] = field(default_factory=list)
    fields_removed: list[str] = field(default_factory=list)
    fields_moved: list[tuple[str, int, int]] = field(default_factory=list)
    fields_retyped: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.size
            or self.fields_added
            or self.fields_removed
            or self.fields_moved
            or self.fields_retyped
        )


@dataclass
class EnumChange:
    name: str
    added: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    changed: list[tuple[str, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass
class ApiDiff:
    functions_added: list[str] = field(default_factory=list)
    functions_removed: list[str] = field(default_factory=list)
    functions_changed: list[FunctionChange] = field(default_factory=list)
    structs_added: list[str] = field(default_factory=list)
    structs_removed: list[str] = field(default_factory=list)
    structs_changed: list[StructChange] = field(default_factory=list)
    enums_added: list[str] = field(default_factory=list)
    enums_removed: list[str] = field(default_factory=list)
    enums_changed: list[EnumChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)

    def function(self, name: str) -> FunctionChange | None:
        return next((c for c in self.functions_changed if c.name == name), None)

    def struct(self, name: str) -> StructChange | None:
        return next((c for c in self.structs_changed if c.name == name), None)

    def enum(self, name: str) -> EnumChange | None:
        return next((c for c in self.enums_changed if c.name == name), None)

    def summary(self) -> str:
        """One line, e.g. `+12 −3 functions, 5 changed; 2 structs changed`."""
        parts = [
            _count(
                "functions", self.functions_added, self.functions_removed, self.functions_changed
            ),
            _count("structs", self.structs_added, self.structs_removed, self.structs_changed),
            _count("enums", self.enums_added, self.enums_removed, self.enums_changed),
        ]
        return "; ".join(p for p in parts if p) or "no changes"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: tuples become objects with named members."""
        return {
            "functions_added": list(self.functions_added),
            "functions_removed": list(self.functions_removed),
            "functions_changed": [asdict(c) for c in self.functions_changed],
            "structs_added": list(self.structs_added),
            "structs_removed": list(self.structs_removed),
            "structs_changed": [_struct_json(c) for c in self.structs_changed],
            "enums_added": list(self.enums_added),
            "enums_removed": list(self.enums_removed),
            "enums_changed": [
                {
                    "name": c.name,
                    "added": dict(c.added),
                    "removed": dict(c.removed),
                    "changed": [{"name": n, "old": a, "new": b} for n, a, b in c.changed],
                }
                for c in self.enums_changed
            ],
            "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ApiDiff:
        return cls(
            functions_added=list(d["functions_added"]),
            functions_removed=list(d["functions_removed"]),
            functions_changed=[
                FunctionChange(c["name"], list(c["what"])) for c in d["functions_changed"]
            ],
            structs_added=list(d["structs_added"]),
            structs_removed=list(d["structs_removed"]),
            structs_changed=[
                StructChange(
                    c["name"],
                    (c["size"]["old"], c["size"]["new"]) if c["size"] else None,
                    list(c["fields_added"]),
                    list(c["fields_removed"]),
                    [(m["field"], m["old"], m["new"]) for m in c["fields_moved"]],
                    [(m["field"], m["old"], m["new"]) for m in c["fields_retyped"]],
                )
                for c in d["structs_changed"]
            ],
            enums_added=list(d["enums_added"]),
            enums_removed=list(d["enums_removed"]),
            enums_changed=[
                EnumChange(
                    c["name"],
                    dict(c["added"]),
                    dict(c["removed"]),
                    [(m["name"], m["old"], m["new"]) for m in c["changed"]],
                )
                for c in d["enums_changed"]
            ],
        )


def _struct_json(c: StructChange) -> dict[str, Any]:
    return {
        "name": c.name,
        "size": {"old": c.size[0], "new": c.size[1]} if c.size else None,
        "fields_added": list(c.fields_added),
        "fields_removed": list(c.fields_removed),
        "fields_moved": [{"field": f, "old": a, "new": b} for f, a, b in c.fields_moved],
        "fields_retyped": [{"field": f, "old": a, "new": b} for f, a, b in c.fields_retyped],
    }


def _count(
    noun: str, added: Sequence[object], removed: Sequence[object], changed: Sequence[object]
) -> str:
    counts = " ".join(
        s for s in (f"+{len(added)}" if added else "", f"−{len(removed)}" if removed else "") if s
    )
    if counts and changed:
        return f"{counts} {noun}, {len(changed)} changed"
    if counts:
        return f"{counts} {noun}"
    return f"{len(changed)} {noun} changed" if changed else ""


# -- the diff ---------------------------------------------------------------------------------
def _select(names: Iterable[str], prefixes: Sequence[str]) -> set[str]:
    return {n for n in names if n.startswith(tuple(prefixes))}


def _named(*functions: Function) -> bool:
    """Every parameter has a name, and no name twice: then names can pair them up."""
    return all(
        all(p.name for p in f.params) and len({p.name for p in f.params}) == len(f.params)
        for f in functions
    )


def diff_function(old: Function, new: Function) -> list[str]:
    """What a caller of `old` would now get wrong (and whether it became deprecated)."""
    what: list[str] = []
    if change := _type_change(old.restype, new.restype):
        what.append(f"return type {change}")
    if len(old.params) == len(new.params) or not _named(old, new):
        if len(old.params) != len(new.params):
            what.append(f"parameter count {len(old.params)} → {len(new.params)}")
        for i, (a, b) in enumerate(zip(old.params, new.params, strict=False), start=1):
            if change := _type_change(a.type, b.type):
                label = f" `{a.name}`" if a.name else ""
                what.append(f"parameter {i}{label}: {change}")
    else:  # some inserted or dropped: by position every later one would look retyped
        what.append(f"parameter count {len(old.params)} → {len(new.params)}")
        before = {p.name: (i, p) for i, p in enumerate(old.params, start=1)}
        after = {p.name: (i, p) for i, p in enumerate(new.params, start=1)}
        for name, (i, p) in before.items():
            if name not in after:
                what.append(f"parameter {i} `{name}` removed")
            elif change := _type_change(p.type, after[name][1].type):
                what.append(f"parameter {i} `{name}`: {change}")
        what += [f"parameter {i} `{n}` added" for n, (i, _) in after.items() if n not in before]
    if old.variadic != new.variadic:
        what.append("now variadic" if new.variadic else "no longer variadic")
    if new.deprecated and not old.deprecated:
        what.append("deprecated")
    elif old.deprecated and not new.deprecated:
        what.append("no longer deprecated")
    return what


def diff_struct(old: Struct, new: Struct) -> StructChange:
    change = StructChange(old.name)
    if old.size != new.size:
        change.size = (old.size, new.size)
    before = {f.name: f for f in old.fields}
    after = {f.name: f for f in new.fields}
    change.fields_added = [f.name for f in new.fields if f.name not in before]
    change.fields_removed = [f.name for f in old.fields if f.name not in after]
    for f in old.fields:
        g = after.get(f.name)
        if g is None:
            continue
        if (f.offset, f.bit_offset, f.bits) != (g.offset, g.bit_offset, g.bits):
            change.fields_moved.append((f.name, f.offset, g.offset))
        if shape(f.type) != shape(g.type):
            change.fields_retyped.append((f.name, spell(f.type), spell(g.type)))
    return change


def diff_enum(old: Enum, new: Enum) -> EnumChange:
    return EnumChange(
        old.name,
        added={k: v for k, v in new.values.items() if k not in old.values},
        removed={k: v for k, v in old.values.items() if k not in new.values},
        changed=[
            (k, v, new.values[k])
            for k, v in old.values.items()
            if k in new.values and new.values[k] != v
        ],
    )


def diff(old: Api, new: Api, *, prefixes: Sequence[str] = ("llama_",)) -> ApiDiff:
    """Functions, structs and enums whose names start with one of `prefixes` (the llama API by
    default: ggml's is large and a binding of libllama rarely touches it)."""
    out = ApiDiff()
    a, b = _select(old.functions, prefixes), _select(new.functions, prefixes)
    out.functions_added, out.functions_removed = sorted(b - a), sorted(a - b)
    for name in sorted(a & b):
        if what := diff_function(old.functions[name], new.functions[name]):
            out.functions_changed.append(FunctionChange(name, what))
    a, b = _select(old.structs, prefixes), _select(new.structs, prefixes)
    out.structs_added, out.structs_removed = sorted(b - a), sorted(a - b)
    for name in sorted(a & b):
        if s := diff_struct(old.structs[name], new.structs[name]):
            out.structs_changed.append(s)
    a, b = _select(old.enums, prefixes), _select(new.enums, prefixes)
    out.enums_added, out.enums_removed = sorted(b - a), sorted(a - b)
    for name in sorted(a & b):
        if e := diff_enum(old.enums[name], new.enums[name]):
            out.enums_changed.append(e)
    return out


# -- text -------------------------------------------------------------------------------------
def _names(title: str, sign: str, names: Sequence[str]) -> list[str]:
    return [f"{title} ({len(names)}):", *(f"  {sign} {n}" for n in names)] if names else []


def render_text(d: ApiDiff, old_tag: str, new_tag: str) -> str:
    """For people: removals and changes (what breaks a binding) before additions."""
    lines = [f"API {old_tag} → {new_tag}: {d.summary()}"]
    groups: list[list[str]] = [
        _names("Functions removed", "−", d.functions_removed),
        [f"Functions changed ({len(d.functions_changed)}):"] if d.functions_changed else [],
        _names("Functions added", "+", d.functions_added),
        _names("Structs removed", "−", d.structs_removed),
        [f"Structs changed ({len(d.structs_changed)}):"] if d.structs_changed else [],
        _names("Structs added", "+", d.structs_added),
        _names("Enums removed", "−", d.enums_removed),
        [f"Enums changed ({len(d.enums_changed)}):"] if d.enums_changed else [],
        _names("Enums added", "+", d.enums_added),
    ]
    for c in d.functions_changed:
        groups[1] += [f"  {c.name}", *(f"      {w}" for w in c.what)]
    for s in d.structs_changed:
        groups[4].append(f"  {s.name}")
        if s.size:
            groups[4].append(f"      size {s.size[0]} → {s.size[1]}")
        groups[4] += [f"      − {f}" for f in s.fields_removed]
        groups[4] += [f"      + {f}" for f in s.fields_added]
        groups[4] += [f"      {f}: offset {a} → {b}" for f, a, b in s.fields_moved]
        groups[4] += [f"      {f}: type {a} → {b}" for f, a, b in s.fields_retyped]
    for e in d.enums_changed:
        groups[7].append(f"  {e.name}")
        groups[7] += [f"      − {k} = {v}" for k, v in e.removed.items()]
        groups[7] += [f"      + {k} = {v}" for k, v in e.added.items()]
        groups[7] += [f"      {k}: {a} → {b}" for k, a, b in e.changed]
    for g in groups:
        if g:
            lines += ["", *g]
    return "\n".join(lines) + "\n"
