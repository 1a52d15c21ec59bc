"""What a Python expression means without running it: ctypes' own names, int arithmetic,
platform tests, and the shape that tells a ctypes registration from any other call."""

from __future__ import annotations

import ast
import re

# ctypes' fundamental types → their C names (layout.c_scalars has the sizes per target).
CTYPES = {
    "c_bool": "bool",
    "c_char": "char",
    "c_wchar": "wchar_t",
    "c_byte": "signed char",
    "c_ubyte": "unsigned char",
    "c_short": "short",
    "c_ushort": "unsigned short",
    "c_int": "int",
    "c_uint": "unsigned int",
    "c_long": "long",
    "c_ulong": "unsigned long",
    "c_longlong": "long long",
    "c_ulonglong": "unsigned long long",
    "c_size_t": "size_t",
    "c_ssize_t": "ssize_t",
    "c_time_t": "time_t",
    "c_float": "float",
    "c_double": "double",
    "c_longdouble": "long double",
    "c_char_p": "pointer",
    "c_wchar_p": "pointer",
    "c_void_p": "pointer",
    "c_voidp": "pointer",  # an old alias of c_void_p
    "py_object": "pointer",
    "HRESULT": "long",
}
for bits in (8, 16, 32, 64):
    CTYPES[f"c_int{bits}"] = f"int{bits}_t"
    CTYPES[f"c_uint{bits}"] = f"uint{bits}_t"
RECORDS = {"Structure": False, "LittleEndianStructure": False, "BigEndianStructure": False}
RECORDS |= {"Union": True, "LittleEndianUnion": True, "BigEndianUnion": True}
FUNCTYPES = {"CFUNCTYPE", "WINFUNCTYPE", "PYFUNCTYPE"}
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def binop(op: ast.operator, left: int, right: int) -> int | None:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, (ast.FloorDiv, ast.Mod)) and right != 0:
        return left // right if isinstance(op, ast.FloorDiv) else left % right
    if isinstance(op, (ast.LShift, ast.RShift)) and 0 <= right <= 256:
        return left << right if isinstance(op, ast.LShift) else left >> right
    if isinstance(op, ast.BitOr):
        return left | right
    if isinstance(op, ast.BitAnd):
        return left & right
    if isinstance(op, ast.BitXor):
        return left ^ right
    return None


def on_target(test: ast.expr, target: str) -> bool | None:
    """Whether a platform test (`sys.platform == "win32"`, `os.name == "nt"`,
    `platform.system() == "Darwin"`, `sys.platform.startswith("linux")`) holds on the target;
    None for any other condition (both branches are then read, in order)."""
    os_name = target.rsplit("-", 1)[-1]
    facts = {
        "sys.platform": {"windows": "win32"}.get(os_name, os_name),
        "os.name": "nt" if os_name == "windows" else "posix",
        "platform.system()": {"linux": "Linux", "windows": "Windows", "darwin": "Darwin"}[os_name],
    }
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = on_target(test.operand, target)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [on_target(v, target) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        subject, other = ast.unparse(test.left), test.comparators[0]
        if subject in facts and isinstance(other, ast.Constant):
            if isinstance(test.ops[0], ast.Eq):
                return facts[subject] == other.value
            if isinstance(test.ops[0], ast.NotEq):
                return facts[subject] != other.value
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.args:
        subject, prefix = ast.unparse(test.func.value), test.args[0]
        if test.func.attr == "startswith" and subject in facts and isinstance(prefix, ast.Constant):
            return isinstance(prefix.value, str) and facts[subject].startswith(prefix.value)
    return None


def symbol_name(node: ast.expr) -> str | None:
    """A C identifier, or the first of a tuple of spellings (`("llama_x", "_Z7llama_xv")`)."""
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
        if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return None
        node = node.elts[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if IDENTIFIER.fullmatch(node.value) else None
    return None


def type_like(node: ast.expr) -> bool:
    """Could denote a ctypes type: None, a name, an attribute, a call, `T * n`; no literals."""
    if isinstance(node, ast.Constant):
        return node.value is None
    return isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.BinOp, ast.Subscript))


def is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"
