"""libffi struct descriptors in a Go binding: `ffi.Type{Type: ffi.Struct, Elements: ...}`.

jupiterrider/ffi (and libffi under it) lays such a struct out by C rules, element by element, so
a descriptor is a second statement of a struct's layout, independent of the Go struct beside it:
gollama.cpp's `ffiTypeLlamaContextParams` is what crosses the ABI on Linux, by value. Elements
are named by their trailing one-word comment (`&ffi.TypeUint32, // n_ctx`) when they have one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.binding.gotree import Node, text, walk
from harness.binding.layout import c_scalars, c_struct
from harness.binding.model import BindingDecl, StructDecl, TypeRef

_FFI_SCALARS = {
    "TypeVoid": "void",
    "TypeUint8": "uint8_t",
    "TypeSint8": "int8_t",
    "TypeUint16": "uint16_t",
    "TypeSint16": "int16_t",
    "TypeUint32": "uint32_t",
    "TypeSint32": "int32_t",
    "TypeUint64": "uint64_t",
    "TypeSint64": "int64_t",
    "TypeFloat": "float",
    "TypeDouble": "double",
    "TypeLongdouble": "long double",
    "TypePointer": "pointer",
    "TypeUchar": "unsigned char",
    "TypeSchar": "signed char",
    "TypeUshort": "unsigned short",
    "TypeSshort": "short",
    "TypeUint": "unsigned int",
    "TypeSint": "int",
    "TypeUlong": "unsigned long",
    "TypeSlong": "long",
}


def ffi_structs(descriptors: dict[str, tuple[Node, str]], decl: BindingDecl) -> None:
    """Each descriptor (name → (value, where)) as a StructDecl of origin "ffi.Type"."""
    scalars = c_scalars(decl.target)
    done: dict[str, TypeRef] = {}

    def build(name: str, trail: tuple[str, ...]) -> TypeRef:
        if name in done:
            return done[name]
        value, where = descriptors[name]
        members: list[tuple[str, TypeRef, int | None]] = []
        for i, (element, label) in enumerate(ffi_elements(value)):
            spelling = text(element)
            target = spelling.lstrip("&")
            short = target.rsplit(".", 1)[-1]
            if target in descriptors and target not in trail:
                ref = build(target, (*trail, name))
                ref = TypeRef(spelling, "struct", ref.size, ref.align, struct=target)
            elif "." in target and short in _FFI_SCALARS:
                ref = scalars[_FFI_SCALARS[short]].ref(spelling)
            else:
                decl.problems.append(f"{where}: {name}: unknown ffi element {spelling}")
                ref = TypeRef(spelling, "unknown", None)
            members.append((label or f"elements[{i}]", ref, None))
        fields, size, align = c_struct(members)
        decl.structs[name] = StructDecl(name, fields, size, where, "ffi.Type")
        done[name] = TypeRef(name, "struct", size, align, struct=name)
        return done[name]

    for name in descriptors:
        build(name, ())


def is_ffi_type(node: Node) -> bool:
    """`ffi.Type{...}` or `ffi.NewType(...)`, whatever the package is imported as."""
    if node.type == "composite_literal":
        typ = node.child_by_field_name("type")
        return typ is not None and typ.type == "qualified_type" and text(typ).endswith(".Type")
    if node.type == "call_expression":
        return text(node.child_by_field_name("function")).endswith(".NewType")
    return False


def ffi_elements(value: Node) -> Iterator[tuple[Node, str | None]]:
    """Each element of a descriptor (up to the terminating nil), with its comment's word."""
    if value.type == "call_expression":
        args = value.child_by_field_name("arguments")
        items = list(args.children) if args is not None else []
    else:
        elements = None
        for node in walk(value):
            if node.type == "keyed_element" and text(node).startswith("Elements"):
                elements = node
                break
        if elements is None:
            return
        body = next((n for n in walk(elements) if n.type == "literal_value"), None)
        items = list(body.children) if body is not None else []
    pending: Node | None = None
    for item in items:
        if item.type == "comment" and pending is not None:
            if item.start_point[0] == pending.start_point[0]:
                word = text(item).lstrip("/").strip()
                yield pending, word if re.fullmatch(r"[A-Za-z_]\w*", word) else None
                pending = None
            continue
        if item.type in ("(", ")", "{", "}", ",", "comment"):
            continue
        if pending is not None:
            yield pending, None
            pending = None
        element = item.named_children[0] if item.type == "literal_element" else item
        if element.type == "nil":
            return
        pending = element
    if pending is not None:
        yield pending, None
