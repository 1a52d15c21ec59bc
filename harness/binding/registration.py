"""Which C symbol each Go function variable is registered under, helpers followed.

A registrar is a function with a function-pointer argument and a symbol argument:
`purego.RegisterLibFunc(&fn, lib, "sym")` is the root. A package's own function (declared, a
method, or a closure bound to a name such as gollama.cpp's `trackRegister`) becomes a registrar
when its body hands two of its parameters to a registrar's pointer and symbol positions; this
repeats until nothing new is learnt. A helper that hands over two fields of one value
(`registerLibFunc(fn.FunctionPtr, lib, fn.Name)` over a slice of records) makes every literal of
such a record (`{FunctionPtr: &llamaX, Name: "llama_x"}`) a registration.

Functions the package calls but does not define (gollama.cpp's `registerLibFunc` lives in
per-OS files) are taken to be registrars when their name says so: `...RegisterLibFunc` keeps
purego's argument order; another `...register...` name learns its positions from a call that
passes `&someFunctionVariable` and a string literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.binding.gotree import Node, text, walk

_ROOTS = {"purego.RegisterLibFunc": (0, 2), "purego.RegisterFunc": (0, 1)}
_CONVERSIONS = {"unsafe.Pointer", "uintptr", "interface{}", "any"}
_LOOKUP = re.compile(r"(?i)dlsym|procaddress|getsymbol|findsymbol")


def symbol_text(node: Node, strings: dict[str, str]) -> str | None:
    """The string a symbol argument holds: a literal, a string constant, or `Dlsym(h, "x")`."""
    kind = node.type
    if kind in ("interpreted_string_literal", "raw_string_literal"):
        return text(node)[1:-1]
    if kind == "identifier":
        return strings.get(text(node))
    if kind == "parenthesized_expression" and node.named_child_count == 1:
        return symbol_text(node.named_children[0], strings)
    if kind == "call_expression" and _LOOKUP.search(text(node.child_by_field_name("function"))):
        args = node.child_by_field_name("arguments")
        found = [symbol_text(a, strings) for a in (args.named_children if args else [])]
        return next((s for s in reversed(found) if s is not None), None)
    return None


def _strip(node: Node) -> Node:
    """The value inside parentheses and pointer conversions: `unsafe.Pointer(&fn)` → `&fn`."""
    while True:
        if node.type == "parenthesized_expression" and node.named_child_count == 1:
            node = node.named_children[0]
        elif node.type == "call_expression":
            fn, args = node.child_by_field_name("function"), node.child_by_field_name("arguments")
            if text(fn) not in _CONVERSIONS or args is None or args.named_child_count != 1:
                return node
            node = args.named_children[0]
        else:
            return node


def _address_of(node: Node) -> str | None:
    """`x` for `&x` (or `&pkg.x`)."""
    node = _strip(node)
    if node.type != "unary_expression" or text(node.child_by_field_name("operator")) != "&":
        return None
    operand = node.child_by_field_name("operand")
    if operand.type == "identifier":
        return text(operand)
    if operand.type == "selector_expression":
        return text(operand.child_by_field_name("field"))
    return None


def _args(call: Node) -> list[Node]:
    args = call.child_by_field_name("arguments")
    return list(args.named_children) if args is not None else []


@dataclass
class _Helper:
    name: str
    params: list[str]
    body: Node


@dataclass
class Registrations:
    funcvars: set[str]
    strings: dict[str, str]
    types: dict[str, tuple[Node, str]]
    registrars: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(_ROOTS))
    record_fields: set[tuple[str, str]] = field(default_factory=set)
    symbols: dict[str, list[str]] = field(default_factory=dict)  # function variable → symbols
    problems: list[str] = field(default_factory=list)
    helpers: list[_Helper] = field(default_factory=list)
    calls: list[tuple[Node, str]] = field(default_factory=list)  # (call, rel)
    literals: list[tuple[Node, str]] = field(default_factory=list)

    def learn(self, root: Node, rel: str) -> None:
        """Collect one file's helpers, calls and composite literals."""
        for node in walk(root):
            if node.type in ("function_declaration", "method_declaration"):
                self._helper(node.child_by_field_name("name"), node)
            elif node.type in ("short_var_declaration", "assignment_statement", "var_spec"):
                left = node.child_by_field_name("left") or node.child_by_field_name("name")
                right = node.child_by_field_name("right") or node.child_by_field_name("value")
                if left is None or right is None:
                    continue
                names = left.named_children if left.type == "expression_list" else [left]
                for name, value in zip(names, right.named_children, strict=False):
                    if value.type == "func_literal" and name.type == "identifier":
                        self._helper(name, value)
            elif node.type == "call_expression":
                self.calls.append((node, rel))
            elif node.type == "literal_value":
                self.literals.append((node, rel))

    def _helper(self, name: Node | None, func: Node) -> None:
        plist, body = func.child_by_field_name("parameters"), func.child_by_field_name("body")
        if name is None or plist is None or body is None:
            return
        params: list[str] = []
        for pd in plist.named_children:
            names = pd.children_by_field_name("name")
            params.extend(text(n) for n in names) if names else params.append("_")
        self.helpers.append(_Helper(text(name), params, body))

    def registrar(self, call: Node) -> tuple[int, int] | None:
        callee = text(call.child_by_field_name("function"))
        short = callee.rsplit(".", 1)[-1]
        return self.registrars.get(callee) or self.registrars.get(short)

    def resolve(self) -> None:
        self._undefined()
        changed = True
        while changed:  # helpers of helpers
            changed = False
            for helper in self.helpers:
                if helper.name not in self.registrars and self._follow(helper):
                    changed = True
        for call, rel in self.calls:
            positions = self.registrar(call)
            args = _args(call)
            if positions is None or max(positions) >= len(args):
                continue
            var = _address_of(args[positions[0]])
            if var is None:
                continue  # a helper's own body passing its parameters on
            self._register(var, symbol_text(args[positions[1]], self.strings), call, rel)
        self._records()

    def _undefined(self) -> None:
        defined = {h.name for h in self.helpers}
        for call, _ in self.calls:
            callee = text(call.child_by_field_name("function"))
            short = callee.rsplit(".", 1)[-1]
            if short in defined or self.registrar(call) or "regist" not in short.lower():
                continue
            if short.lower().endswith("registerlibfunc"):
                self.registrars[short] = (0, 2)
                continue
            args = _args(call)
            pointers = [i for i, a in enumerate(args) if _address_of(a) in self.funcvars]
            names = [i for i, a in enumerate(args) if symbol_text(a, self.strings) is not None]
            if len(pointers) == 1 and len(names) == 1:
                self.registrars[short] = (pointers[0], names[0])

    def _follow(self, helper: _Helper) -> bool:
        for node in walk(helper.body):
            if node.type != "call_expression" or (positions := self.registrar(node)) is None:
                continue
            args = _args(node)
            if max(positions) >= len(args):
                continue
            ptr, sym = _strip(args[positions[0]]), _strip(args[positions[1]])
            names = (text(ptr), text(sym))
            if ptr.type == sym.type == "identifier" and set(names) <= set(helper.params):
                self.registrars[helper.name] = (
                    helper.params.index(names[0]),
                    helper.params.index(names[1]),
                )
                return True
            if ptr.type == "selector_expression" and sym.type == "selector_expression":
                operands = {text(n.child_by_field_name("operand")) for n in (ptr, sym)}
                if len(operands) == 1:
                    self.record_fields.add(
                        (
                            text(ptr.child_by_field_name("field")),
                            text(sym.child_by_field_name("field")),
                        )
                    )
        return False

    def _records(self) -> None:
        """Registrations written as records handed to a registering helper."""
        if not self.record_fields:
            return
        orders = []  # (pointer index, symbol index, field count) of struct types with both
        for node, _ in self.types.values():
            if node.type != "struct_type":
                continue
            fields = [
                text(n)
                for fd in walk(node)
                if fd.type == "field_declaration"
                for n in fd.children_by_field_name("name")
            ]
            for ptr, sym in self.record_fields:
                if ptr in fields and sym in fields:
                    orders.append((fields.index(ptr), fields.index(sym), len(fields)))
        for literal, rel in self.literals:
            items = [c for c in literal.named_children if c.type != "comment"]
            keyed = {
                text(item.child_by_field_name("key")): item.child_by_field_name("value")
                for item in items
                if item.type == "keyed_element"
            }
            for ptr, sym in self.record_fields:
                if ptr in keyed and sym in keyed:
                    self._literal(keyed[ptr], keyed[sym], literal, rel)
            if keyed:
                continue
            for ptr_i, sym_i, count in orders:
                if len(items) == count:
                    self._literal(items[ptr_i], items[sym_i], literal, rel)

    def _literal(self, ptr: Node, sym: Node, literal: Node, rel: str) -> None:
        ptr = ptr.named_children[0] if ptr.type == "literal_element" else ptr
        sym = sym.named_children[0] if sym.type == "literal_element" else sym
        var = _address_of(ptr)
        if var is not None:
            self._register(var, symbol_text(sym, self.strings), literal, rel)

    def _register(self, var: str, symbol: str | None, node: Node, rel: str) -> None:
        where = f"{rel}:{node.start_point[0] + 1}"
        if var not in self.funcvars:
            self.problems.append(
                f"{where}: registers {var}: no package-level function variable or field"
            )
        elif symbol is None:
            self.problems.append(f"{where}: registers {var} under a symbol it cannot read")
        elif symbol not in self.symbols.setdefault(var, []):
            self.symbols[var].append(symbol)
