"""Read a Go binding (purego / libffi) from its source with tree-sitter, never building it.

What a Go binding declares about the C ABI sits in three places, all read here:
- struct types that mirror C structs, laid out by Go's rules (amd64 and arm64 agree);
- package-level function variables (`llamaDecode func(ctx LlamaContext, b LlamaBatch) int32`)
  and the C symbols they are registered under: `purego.RegisterLibFunc(&fn, lib, "sym")`, or a
  helper of the package's own (gollama.cpp's `trackRegister(&fn, "sym")`). Helpers are followed
  through their bodies, so what matters is which of their parameters reach a registrar's
  function and symbol arguments (see `registration.py`);
- libffi descriptors (`ffi.Type{Type: ffi.Struct, Elements: ...}`), which describe structs to
  libffi by C rules, whatever the Go struct next to them says (see `goffi.py`).

Go-only structs (a loader's state) are left out: a struct is kept when a registered function's
signature reaches it, when it has an ffi descriptor, or when its name starts like the C API's
(`Llama...`, `Ggml...`). `uintptr` counts as a pointer: Go bindings use it for handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.binding.goffi import ffi_structs, is_ffi_type
from harness.binding.gotree import Node, parser, text, walk
from harness.binding.layout import go_struct, normalize_target
from harness.binding.model import BindingDecl, FunctionDecl, StructDecl, TypeRef
from harness.binding.registration import Registrations, symbol_text
from harness.errors import BindingUnreadable

_GO_BASIC: dict[str, tuple[str, int, bool | None]] = {
    "bool": ("bool", 1, None),
    "int8": ("int", 1, True),
    "uint8": ("int", 1, False),
    "byte": ("int", 1, False),
    "int16": ("int", 2, True),
    "uint16": ("int", 2, False),
    "int32": ("int", 4, True),
    "rune": ("int", 4, True),
    "uint32": ("int", 4, False),
    "int64": ("int", 8, True),
    "uint64": ("int", 8, False),
    "int": ("int", 8, True),
    "uint": ("int", 8, False),
    "uintptr": ("pointer", 8, None),
    "float32": ("float", 4, None),
    "float64": ("float", 8, None),
}
# Go values with no C counterpart: (size, align) in Go's own memory layout.
_GO_ONLY = {"string": (16, 8), "slice": (24, 8), "interface": (16, 8), "complex64": (8, 4)}
_GO_ONLY |= {"complex128": (16, 8), "map": (8, 8), "chan": (8, 8), "func": (8, 8)}
_PREFIXES = ("llama", "ggml")


@dataclass
class _Package:
    target: str
    decl: BindingDecl
    types: dict[str, tuple[Node, str]] = field(default_factory=dict)  # name → (type node, rel)
    consts: list[tuple[str, Node, int]] = field(default_factory=list)  # name, expr, iota
    strings: dict[str, str] = field(default_factory=dict)  # string constants
    funcvars: dict[str, tuple[Node, str]] = field(default_factory=dict)  # name → (func type, where)
    fields: set[str] = field(default_factory=set)  # funcvars that are struct fields
    ffi: dict[str, tuple[Node, str]] = field(default_factory=dict)  # name → (value, where)
    resolving: set[str] = field(default_factory=set)
    layouts: dict[str, TypeRef] = field(default_factory=dict)  # Go struct → its TypeRef
    reached: set[str] = field(default_factory=set)  # Go structs a signature reaches

    # ---- declarations ------------------------------------------------------------------------

    def collect(self, root: Node, rel: str) -> None:
        for decl in root.named_children:
            if decl.type == "type_declaration":
                for spec in decl.named_children:
                    if spec.type in ("type_spec", "type_alias"):
                        name, typ = (
                            spec.child_by_field_name("name"),
                            spec.child_by_field_name("type"),
                        )
                        if name is not None and typ is not None:
                            self.types[text(name)] = (typ, _where(rel, spec))
                            self.func_fields(typ, rel)
            elif decl.type == "const_declaration":
                self.const_block(decl)
            elif decl.type == "var_declaration":
                for spec in walk(decl):
                    if spec.type == "var_spec":
                        self.var_spec(spec, rel)

    def func_fields(self, typ: Node, rel: str) -> None:
        """Function-typed struct fields: `purego.RegisterLibFunc(&lib.Decode, h, "...")`."""
        if typ.type != "struct_type":
            return
        for fd in walk(typ):
            ftype = fd.child_by_field_name("type") if fd.type == "field_declaration" else None
            if ftype is not None and ftype.type == "function_type":
                for name in fd.children_by_field_name("name"):
                    self.funcvars.setdefault(text(name), (ftype, _where(rel, fd)))
                    self.fields.add(text(name))

    def const_block(self, decl: Node) -> None:
        """Constants with Go's rules: `iota` counts specs; a bare spec repeats the last list."""
        last: list[Node] = []
        for iota, spec in enumerate(c for c in decl.named_children if c.type == "const_spec"):
            value = spec.child_by_field_name("value")
            if value is not None:
                last = list(value.named_children)
            for i, name in enumerate(spec.children_by_field_name("name")):
                if i < len(last):
                    self.consts.append((text(name), last[i], iota))

    def var_spec(self, spec: Node, rel: str) -> None:
        names = spec.children_by_field_name("name")
        typ = spec.child_by_field_name("type")
        value = spec.child_by_field_name("value")
        values = list(value.named_children) if value is not None else []
        for i, name in enumerate(names):
            if typ is not None and typ.type == "function_type":
                self.funcvars[text(name)] = (typ, _where(rel, spec))
            elif i < len(values) and is_ffi_type(values[i]):
                self.ffi[text(name)] = (values[i], _where(rel, spec))

    # ---- constants ---------------------------------------------------------------------------

    def constants(self) -> None:
        values: dict[str, int] = {}
        todo = list(self.consts)
        while todo:  # package-level constants may use ones declared further down
            left = []
            for name, expr, iota in todo:
                number = self.integer(expr, iota, values)
                if number is not None:
                    values[name] = number
                else:
                    left.append((name, expr, iota))
                    literal = symbol_text(expr, {})
                    if literal is not None:
                        self.strings[name] = literal
            if len(left) == len(todo):
                break
            todo = left
        self.decl.constants.update({k: v for k, v in values.items() if k != "_"})

    def integer(self, node: Node, iota: int, env: dict[str, int]) -> int | None:
        kind = node.type
        if kind == "int_literal":
            return _go_int(text(node))
        if kind == "rune_literal":
            body = text(node)[1:-1]
            return ord(body) if len(body) == 1 else None
        if kind == "iota":
            return iota
        if kind == "identifier":
            return env.get(text(node))
        if kind == "parenthesized_expression" and node.named_child_count == 1:
            return self.integer(node.named_children[0], iota, env)
        if kind == "call_expression":  # a conversion: uint32(1 << 31)
            fn, args = node.child_by_field_name("function"), node.child_by_field_name("arguments")
            one = args is not None and args.named_child_count == 1
            if one and (text(fn) in _GO_BASIC or text(fn) in self.types):
                return self.integer(args.named_children[0], iota, env)
            return None
        if kind == "unary_expression":
            operand = node.child_by_field_name("operand")
            value = None if operand is None else self.integer(operand, iota, env)
            op = text(node.child_by_field_name("operator"))
            if value is None:
                return None
            return {"-": -value, "+": value, "^": ~value}.get(op)
        if kind == "binary_expression":
            left = self.integer(node.child_by_field_name("left"), iota, env)
            right = self.integer(node.child_by_field_name("right"), iota, env)
            if left is None or right is None:
                return None
            return _go_binop(text(node.child_by_field_name("operator")), left, right)
        return None

    # ---- types -------------------------------------------------------------------------------

    def type_ref(self, node: Node, param: bool = False) -> TypeRef:
        """A Go type as the ABI sees it; `param`: purego's conversions for call arguments."""
        spelling = text(node)
        kind = node.type
        if kind == "parenthesized_type" and node.named_child_count == 1:
            return self.type_ref(node.named_children[0], param)
        if kind in ("pointer_type", "function_type") or spelling == "unsafe.Pointer":
            return TypeRef(spelling, "pointer", 8, 8)
        if kind == "type_identifier":
            return self.named(spelling, param)
        if kind == "array_type":
            element = self.type_ref(node.child_by_field_name("element"))
            length = node.child_by_field_name("length")
            count = None if length is None else self.integer(length, 0, self.decl.constants)
            size = None if element.size is None or count is None else element.size * count
            struct = element.struct if element.kind in ("struct", "array") else None
            return TypeRef(spelling, "array", size, element.align, element.signed, struct, count)
        if kind == "struct_type":
            _, size, align = go_struct(self.members(node))
            return TypeRef(spelling, "struct", size, align)
        go_only = {"slice_type": "slice", "interface_type": "interface", "map_type": "map"}
        go_only |= {"channel_type": "chan"}
        if kind in go_only:
            size, align = _GO_ONLY[go_only[kind]]
            return TypeRef(spelling, "unknown", size, align)
        return TypeRef(spelling, "unknown", None)

    def named(self, name: str, param: bool) -> TypeRef:
        if name in _GO_BASIC:
            kind, size, signed = _GO_BASIC[name]
            return TypeRef(name, kind, size, size, signed)
        if name == "string" and param:  # purego passes a Go string as a C `char *`
            return TypeRef(name, "pointer", 8, 8)
        if name in _GO_ONLY:
            size, align = _GO_ONLY[name]
            return TypeRef(name, "unknown", size, align)
        if name not in self.types or name in self.resolving:
            return TypeRef(name, "unknown", None)
        node, _ = self.types[name]
        if node.type == "struct_type":
            return self.struct(name)
        self.resolving.add(name)
        try:
            under = self.type_ref(node, param)
        finally:
            self.resolving.discard(name)
        return TypeRef(
            name, under.kind, under.size, under.align, under.signed, under.struct, under.count
        )

    def members(self, struct_type: Node) -> list[tuple[str, TypeRef]]:
        out: list[tuple[str, TypeRef]] = []
        for fd in walk(struct_type):
            if fd.type != "field_declaration":
                continue
            typ = fd.child_by_field_name("type")
            if typ is None:
                continue
            ref = self.type_ref(typ)
            names = fd.children_by_field_name("name") or [typ]  # embedded: named by its type
            out.extend((text(n).lstrip("*"), ref) for n in names)
        return out

    def struct(self, name: str) -> TypeRef:
        if name in self.layouts:
            return self.layouts[name]
        node, where = self.types[name]
        self.resolving.add(name)
        try:
            fields, size, align = go_struct(self.members(node))
        finally:
            self.resolving.discard(name)
        ref = TypeRef(name, "struct", size, align, struct=name)
        self.layouts[name] = ref
        self.decl.structs[name] = StructDecl(name, fields, size, where, "go struct")
        return ref

    def reach(self, node: Node) -> None:
        """Note the struct types a signature names, by value or through pointers."""
        for ident in walk(node):
            name = text(ident)
            if ident.type == "type_identifier" and name in self.types:
                self.reached.add(name)

    def keep(self) -> None:
        """Drop Go-only structs; keep what the C API could mean, and what those embed."""
        ffi = [f.lower() for f in self.ffi]
        todo = [
            s
            for s, (node, _) in self.types.items()
            if node.type == "struct_type"
            and (
                s in self.reached
                or s.lower().startswith(_PREFIXES)
                or any(f.endswith(s.lower()) for f in ffi)
            )
        ]
        kept: set[str] = set()
        while todo:
            name = todo.pop()
            if name in kept:
                continue
            if self.types[name][0].type != "struct_type":
                continue
            kept.add(name)
            self.struct(name)
            todo.extend(f.type.struct for f in self.decl.structs[name].fields if f.type.struct)
        for name in [s for s, d in self.decl.structs.items() if d.origin == "go struct"]:
            if name not in kept:
                del self.decl.structs[name]

    # ---- functions and ffi descriptors -------------------------------------------------------

    def functions(self, registered: dict[str, list[str]]) -> None:
        for var, (func_type, where) in self.funcvars.items():
            symbols = registered.get(var)
            if not symbols:
                if var not in self.fields:  # a struct's callback field is no C function
                    self.decl.problems.append(f"{where}: {var} is declared but never registered")
                continue
            params: list[TypeRef] = []
            variadic = False
            plist = func_type.child_by_field_name("parameters")
            for pd in plist.named_children if plist is not None else []:
                typ = pd.child_by_field_name("type")
                if typ is None:
                    continue
                if pd.type == "variadic_parameter_declaration":
                    variadic = True
                    continue
                ref = self.type_ref(typ, param=True)
                self.reach(typ)
                params.extend([ref] * max(1, len(pd.children_by_field_name("name"))))
            result = self.result(func_type.child_by_field_name("result"), where, var)
            for symbol in symbols:
                self.decl.functions[symbol] = FunctionDecl(
                    symbol, tuple(params), result, where, variadic
                )

    def result(self, node: Node | None, where: str, var: str) -> TypeRef:
        if node is None:
            return TypeRef("", "void", 0)
        if node.type == "parameter_list":
            types = [pd.child_by_field_name("type") for pd in node.named_children]
            if len(types) != 1 or types[0] is None:
                self.decl.problems.append(f"{where}: {var} returns {text(node)}: not one C value")
                return TypeRef(text(node), "unknown", None)
            node = types[0]
        self.reach(node)
        return self.type_ref(node, param=True)


def _where(rel: str, node: Node) -> str:
    return f"{rel}:{node.start_point[0] + 1}"


def _go_int(literal: str) -> int | None:
    digits = literal.replace("_", "")
    try:
        if len(digits) > 1 and digits[0] == "0" and digits.isdigit():
            return int(digits, 8)  # legacy octal: 0755
        return int(digits, 0)
    except ValueError:
        return None


def _go_binop(op: str, left: int, right: int) -> int | None:
    if op in ("/", "%"):
        if right == 0:
            return None
        quotient = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
        return quotient if op == "/" else left - quotient * right
    if op in ("<<", ">>"):
        if not 0 <= right <= 256:
            return None
        return left << right if op == "<<" else left >> right
    table = {"+": left + right, "-": left - right, "*": left * right, "|": left | right}
    table |= {"&": left & right, "^": left ^ right, "&^": left & ~right}
    return table.get(op)


def read_package(
    files: list[tuple[str, bytes]], name: str, target: str | None = None
) -> BindingDecl:
    """A Go package's declarations, from its files (path relative to the binding, bytes)."""
    decl = BindingDecl(name, "go", normalize_target(target))
    package = _Package(decl.target, decl)
    trees = []
    for rel, source in files:
        tree = parser().parse(source)
        if tree.root_node.has_error:
            bad = next(n for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing)
            raise BindingUnreadable(f"{rel}:{bad.start_point[0] + 1}: not valid Go")
        trees.append((rel, tree.root_node))
        package.collect(tree.root_node, rel)
    package.constants()
    registrations = Registrations(set(package.funcvars), package.strings, package.types)
    for rel, root in trees:
        registrations.learn(root, rel)
    registrations.resolve()
    decl.problems.extend(registrations.problems)
    package.functions(registrations.symbols)
    ffi_structs(package.ffi, decl)
    package.keep()
    return decl
