"""Read a Python ctypes binding from its source, never importing it.

Importing a binding loads its library (llama-cpp-python binds every symbol at import, so one
missing symbol fails the whole import), which is exactly what a static check must not depend
on. So the module's top level is walked in order, as Python would run it, and each type
expression is evaluated in a namespace of what the module defined so far: ctypes' own types,
aliases (`llama_token = ctypes.c_int32`), `Structure`/`Union` classes, `CFUNCTYPE` callbacks and
int constants. Anything else evaluates to "unknown" and is listed in `problems`.

Both registration styles in use are read: llama-cpp-python's decorator
(`@ctypes_function("llama_x", [argtypes], restype)`) and plain assignment
(`lib.llama_x.argtypes = [...]`; `.restype = ...`, whose absence means ctypes' default `c_int`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from harness.binding.layout import Scalar, c_scalars, c_struct, normalize_target
from harness.binding.model import BindingDecl, FunctionDecl, StructDecl, TypeRef
from harness.binding.pystatic import (
    CTYPES,
    FUNCTYPES,
    RECORDS,
    binop,
    is_type_checking,
    on_target,
    symbol_name,
    type_like,
)
from harness.errors import BindingUnreadable

_DEFAULT_RESTYPE = "ctypes.c_int (ctypes' default restype)"


@dataclass
class _Record:
    name: str
    union: bool
    line: int
    base: str | None = None  # a record it extends: its fields come first
    members: list[tuple[str, TypeRef, int | None]] | None = None
    pack: int | None = None


@dataclass
class _Pending:
    """What assignments said about one symbol so far (`argtypes` and `restype` come apart)."""

    where: str
    params: tuple[TypeRef, ...] | None = None
    result: TypeRef | None = None
    result_set: bool = False


@dataclass
class _Module:
    rel: str
    target: str
    decl: BindingDecl
    scalars: dict[str, Scalar] = field(default_factory=dict)
    ctypes_modules: set[str] = field(default_factory=set)  # names bound to the ctypes module
    ctypes_names: dict[str, str] = field(default_factory=dict)  # local name → ctypes name
    star: bool = False  # `from ctypes import *`
    types: dict[str, TypeRef] = field(default_factory=dict)
    records: dict[str, _Record] = field(default_factory=dict)
    ints: dict[str, int] = field(default_factory=dict)
    symbols: dict[str, str] = field(default_factory=dict)  # variable → symbol it holds
    prototypes: dict[str, ast.Call] = field(default_factory=dict)  # variable → CFUNCTYPE(...)
    pending: dict[str, _Pending] = field(default_factory=dict)

    def where(self, node: ast.AST) -> str:
        return f"{self.rel}:{getattr(node, 'lineno', 0)}"

    def problem(self, node: ast.AST, text: str) -> None:
        self.decl.problems.append(f"{self.where(node)}: {text}")

    # ---- names -------------------------------------------------------------------------------

    def ctypes_attr(self, node: ast.expr) -> str | None:
        """`c_int` for `ctypes.c_int`, `ct.c_int`, or a name imported from ctypes."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return node.attr if node.value.id in self.ctypes_modules else None
        if isinstance(node, ast.Name):
            if node.id in self.ctypes_names:
                return self.ctypes_names[node.id]
            if self.star and node.id not in self.types and node.id not in self.records:
                if node.id in CTYPES or node.id in RECORDS or node.id in FUNCTYPES:
                    return node.id
                if node.id == "POINTER":
                    return node.id
        return None

    # ---- evaluation --------------------------------------------------------------------------

    def integer(self, node: ast.expr) -> int | None:
        """An int constant expression, or None."""
        if isinstance(node, ast.Constant):
            value = node.value
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(node, ast.Name):
            return self.ints.get(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.integer(node.operand)
            if operand is None:
                return None
            ops = {ast.USub: -operand, ast.UAdd: operand, ast.Invert: ~operand}
            return ops.get(type(node.op))
        if isinstance(node, ast.BinOp):
            left, right = self.integer(node.left), self.integer(node.right)
            if left is None or right is None:
                return None
            return binop(node.op, left, right)
        return None

    def type_of(self, node: ast.expr) -> TypeRef:
        """What a type expression denotes; kind "unknown" (and a problem) when it cannot tell."""
        ref = self._type(node)
        if ref is None:
            spelling = ast.unparse(node)
            self.problem(node, f"cannot evaluate type `{spelling}`")
            return TypeRef(spelling, "unknown", None)
        return ref

    def _type(self, node: ast.expr) -> TypeRef | None:
        spelling = ast.unparse(node)
        if isinstance(node, ast.Constant) and node.value is None:
            return TypeRef("None", "void", 0)
        name = self.ctypes_attr(node)
        if name is not None:
            c_name = CTYPES.get(name)
            return None if c_name is None else self.scalars[c_name].ref(spelling)
        if isinstance(node, ast.Name):
            known = self.types.get(node.id)
            return None if known is None else _respell(known, spelling)
        if isinstance(node, ast.Call):
            func = self.ctypes_attr(node.func)
            if func == "POINTER" and len(node.args) == 1:
                self._type(node.args[0])  # only to note what it cannot read
                return TypeRef(spelling, "pointer", 8, 8)
            if func in FUNCTYPES:
                return TypeRef(spelling, "pointer", 8, 8)
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            element, count = self._type(node.left), self.integer(node.right)
            if element is None:  # `4 * c_int` works too
                element, count = self._type(node.right), self.integer(node.left)
            if element is None:
                return None
            return _array(spelling, element, count)
        return None

    # ---- statements --------------------------------------------------------------------------

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            try:
                self.statement(stmt)
            except RecursionError:  # a pathological expression: say so, keep reading
                self.problem(stmt, "expression too deeply nested")

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name == "ctypes":
                    self.ctypes_modules.add(alias.asname or "ctypes")
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "ctypes":
            for alias in stmt.names:
                if alias.name == "*":
                    self.star = True
                else:
                    self.ctypes_names[alias.asname or alias.name] = alias.name
        elif isinstance(stmt, ast.If):
            # TYPE_CHECKING blocks never run; a platform test runs the target's branch only
            taken = False if is_type_checking(stmt.test) else on_target(stmt.test, self.target)
            if taken is not False:
                self.run(stmt.body)
            if taken is not True:
                self.run(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            self.run(stmt.body)
            for handler in stmt.handlers:
                self.run(handler.body)
            self.run(stmt.orelse)
            self.run(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            self.run(stmt.body)
        elif isinstance(stmt, ast.ClassDef):
            self.class_def(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in stmt.decorator_list:
                self.decorator(deco)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                self.assign(target, stmt.value, stmt)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self.assign(stmt.target, stmt.value, stmt)

    def assign(self, target: ast.expr, value: ast.expr, stmt: ast.stmt) -> None:
        if isinstance(target, ast.Attribute):
            if target.attr in ("argtypes", "restype"):
                symbol = self.symbol_of(target.value)
                if symbol is not None:
                    self.function_attr(symbol, target.attr, value, stmt)
            elif target.attr in ("_fields_", "_pack_") and isinstance(target.value, ast.Name):
                record = self.records.get(target.value.id)
                if record is not None:
                    self.record_attr(record, target.attr, value)
            return
        if not isinstance(target, ast.Name):
            return
        name = target.id
        for table in (self.types, self.ints, self.symbols, self.prototypes):
            table.pop(name, None)
        if self.prototype_call(value, stmt):
            return
        if (number := self.integer(value)) is not None:
            self.ints[name] = number
            if not name.startswith("_"):
                self.decl.constants[name] = number
            return
        self.decl.constants.pop(name, None)
        if (symbol := self.symbol_of(value)) is not None:
            self.symbols[name] = symbol
        elif (ref := self._type(value)) is not None:
            self.types[name] = ref
            if isinstance(value, ast.Call) and self.ctypes_attr(value.func) in FUNCTYPES:
                self.prototypes[name] = value

    def symbol_of(self, node: ast.expr) -> str | None:
        """The C symbol a `lib.llama_x` / `lib["llama_x"]` / `getattr(lib, "llama_x")` names."""
        if isinstance(node, ast.Name):
            return self.symbols.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in self.ctypes_modules or node.value.id in self.types:
                return None
            return node.attr if not node.attr.startswith("__") else None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return node.slice.value if isinstance(node.slice.value, str) else None
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr":
            arg = node.args[1] if len(node.args) == 2 else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return arg.value
        return None

    def prototype_call(self, value: ast.expr, stmt: ast.stmt) -> bool:
        """`CFUNCTYPE(restype, *argtypes)(("llama_x", lib))`, or a prototype variable called so."""
        if not (isinstance(value, ast.Call) and value.args):
            return False
        spec, proto = value.args[0], value.func
        if isinstance(proto, ast.Name):
            proto = self.prototypes.get(proto.id, proto)
        is_proto = isinstance(proto, ast.Call) and self.ctypes_attr(proto.func) in FUNCTYPES
        if not (is_proto and isinstance(spec, ast.Tuple) and spec.elts):
            return False
        first = spec.elts[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return False
        assert isinstance(proto, ast.Call)
        types = [self.type_of(arg) for arg in proto.args]
        result = types[0] if types else TypeRef("None", "void", 0)
        self.decl.functions[first.value] = FunctionDecl(
            first.value, tuple(types[1:]), result, self.where(stmt)
        )
        return True

    def function_attr(self, symbol: str, attr: str, value: ast.expr, stmt: ast.stmt) -> None:
        pending = self.pending.setdefault(symbol, _Pending(self.where(stmt)))
        if attr == "restype":
            pending.result, pending.result_set = self.type_of(value), True
        elif isinstance(value, (ast.List, ast.Tuple)):
            pending.params = tuple(self.type_of(arg) for arg in value.elts)
        elif not (isinstance(value, ast.Constant) and value.value is None):
            self.problem(stmt, f"{symbol}.argtypes is not a literal list")

    def decorator(self, deco: ast.expr) -> None:
        """`@ctypes_function("llama_x", [argtypes], restype)`, whatever the helper's name."""
        if not isinstance(deco, ast.Call):
            return
        args = {k.arg: k.value for k in deco.keywords if k.arg}
        for key, node in zip(("name", "argtypes", "restype"), deco.args[:3], strict=False):
            args[key] = node
        name, argtypes, restype = args.get("name"), args.get("argtypes"), args.get("restype")
        if name is None or argtypes is None or restype is None:
            return
        enabled = args.get("enabled")
        if isinstance(enabled, ast.Constant) and enabled.value is False:
            return
        symbol = symbol_name(name)
        listed = isinstance(argtypes, (ast.List, ast.Tuple))
        elements = argtypes.elts if isinstance(argtypes, (ast.List, ast.Tuple)) else []
        # the shape tells a registration from any other decorator with three arguments
        if symbol is None or not type_like(restype) or not all(map(type_like, elements)):
            return
        if not listed and not isinstance(argtypes, ast.Name):
            return
        if not listed:
            self.problem(deco, f"{symbol}: argtypes is not a literal list")
        params = tuple(self.type_of(arg) for arg in elements) if listed else None
        self.decl.functions[symbol] = FunctionDecl(
            symbol, params, self.type_of(restype), self.where(deco)
        )

    def class_def(self, node: ast.ClassDef) -> None:
        base_record: _Record | None = None
        union: bool | None = None
        for base in node.bases:
            kind = self.ctypes_attr(base)
            if kind in RECORDS:
                union = RECORDS[kind]
            elif isinstance(base, ast.Name) and base.id in self.records:
                base_record = self.records[base.id]
                union = base_record.union
        for table in (self.types, self.ints, self.symbols):
            table.pop(node.name, None)
        if union is None:
            return
        record = _Record(node.name, union, node.lineno, base_record.name if base_record else None)
        self.records[node.name] = record
        self.types[node.name] = TypeRef(node.name, "struct", None, None, struct=node.name)
        for stmt in node.body:
            pairs = [(t, stmt.value) for t in stmt.targets] if isinstance(stmt, ast.Assign) else []
            if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                pairs = [(stmt.target, stmt.value)]
            for target, value in pairs:
                if isinstance(target, ast.Name) and target.id in ("_fields_", "_pack_"):
                    self.record_attr(record, target.id, value)
        if record.members is None and base_record is not None and base_record.members is not None:
            self.finish(record, [])

    def record_attr(self, record: _Record, attr: str, value: ast.expr) -> None:
        if attr == "_pack_":
            record.pack = self.integer(value)
            return
        if not isinstance(value, (ast.List, ast.Tuple)):
            self.problem(value, f"{record.name}._fields_ is not a literal list")
            return
        members: list[tuple[str, TypeRef, int | None]] = []
        for item in value.elts:
            if not (isinstance(item, ast.Tuple) and len(item.elts) in (2, 3)):
                self.problem(item, f"{record.name}: a _fields_ entry is not (name, type)")
                continue
            first = item.elts[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                self.problem(item, f"{record.name}: a field name is not a string")
                continue
            width = self.integer(item.elts[2]) if len(item.elts) == 3 else None
            members.append((first.value, self.type_of(item.elts[1]), width))
        self.finish(record, members)

    def finish(self, record: _Record, own: list[tuple[str, TypeRef, int | None]]) -> None:
        """Lay the record out and make its name usable by value in later declarations."""
        members = list(own)
        if record.base is not None:
            base = self.records.get(record.base)
            members = list(base.members or []) + members if base else members
        record.members = members
        fields, size, align = c_struct(members, record.pack, record.union)
        origin = "ctypes.Union" if record.union else "ctypes.Structure"
        self.decl.structs[record.name] = StructDecl(
            record.name, fields, size, f"{self.rel}:{record.line}", origin
        )
        self.types[record.name] = TypeRef(record.name, "struct", size, align, struct=record.name)

    # ---- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        for symbol, pending in self.pending.items():
            result = pending.result
            if not pending.result_set:
                result = self.scalars["int"].ref(_DEFAULT_RESTYPE)
            self.decl.functions[symbol] = FunctionDecl(
                symbol, pending.params, result, pending.where
            )
        # A struct used by value before its `_fields_` were assigned: take its final layout.
        for symbol, fn in list(self.decl.functions.items()):
            params = tuple(self.settle(p) for p in fn.params) if fn.params is not None else None
            result = self.settle(fn.result) if fn.result is not None else None
            if params != fn.params or result != fn.result:
                self.decl.functions[symbol] = FunctionDecl(
                    fn.symbol, params, result, fn.where, fn.variadic
                )

    def settle(self, ref: TypeRef) -> TypeRef:
        if ref.kind == "struct" and ref.size is None and ref.struct in self.decl.structs:
            final = self.types.get(ref.struct)
            if final is not None and final.size is not None:
                return _respell(final, ref.spelling)
        return ref


def _respell(ref: TypeRef, spelling: str) -> TypeRef:
    return TypeRef(spelling, ref.kind, ref.size, ref.align, ref.signed, ref.struct, ref.count)


def _array(spelling: str, element: TypeRef, count: int | None) -> TypeRef:
    size = None if element.size is None or count is None else element.size * count
    struct = element.struct if element.kind in ("struct", "array") else None
    return TypeRef(spelling, "array", size, element.align, element.signed, struct, count)


def read_source(text: str, rel: str, decl: BindingDecl) -> None:
    """Add what one module declares to `decl` (its `target` gives the layout rules)."""
    try:
        tree = ast.parse(text, filename=rel)
    except SyntaxError as err:
        raise BindingUnreadable(f"{rel}:{err.lineno}: not valid Python: {err.msg}") from err
    except ValueError as err:  # null bytes
        raise BindingUnreadable(f"{rel}: not valid Python: {err}") from err
    module = _Module(rel, decl.target, decl, c_scalars(decl.target))
    module.run(tree.body)
    module.close()


def read_sources(
    sources: list[tuple[str, str]], name: str, target: str | None = None
) -> BindingDecl:
    """A binding made of these modules (relative path, text), each read on its own."""
    decl = BindingDecl(name, "python-ctypes", normalize_target(target))
    for rel, text in sources:
        read_source(text, rel, decl)
    return decl
