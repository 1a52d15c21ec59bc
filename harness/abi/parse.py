"""Parse a release's llama.h with libclang into an `Api`.

libclang is the compiler's own view of the header for a given target: sizes, alignments, field
offsets and bitfields come from clang's record layout, not from rules of our own, which is what
keeps a same-size reordering of `llama_context_params` from going unnoticed. Only what the
release's headers declare is kept (llama_*, ggml_*, gguf_* functions; their records, enums and
typedefs); libc records such as FILE are seen only as opaque pointees.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.abi import sysinc
from harness.abi.model import Api, CType, Enum, Field, Function, Param, Struct
from harness.errors import HarnessError, SourceError

if TYPE_CHECKING:
    from clang import cindex

__all__ = ["FUNCTION_PREFIXES", "parse_headers"]

log = logging.getLogger(__name__)

FUNCTION_PREFIXES = ("llama_", "ggml_", "gguf_")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_ELABORATED = re.compile(r"^(?:const |volatile )*")
_BOOL = re.compile(r"\b_Bool\b")
_ANON_AT = re.compile(r"\((?:anonymous|unnamed)(?: (?:struct|union|enum))? at [^)]*?([^/\\)]+)\)")
_SIGNED = {"SCHAR", "SHORT", "INT", "LONG", "LONGLONG", "INT128", "WCHAR"}
_UNSIGNED = {"UCHAR", "USHORT", "UINT", "ULONG", "ULONGLONG", "UINT128", "CHAR16", "CHAR32"}
_ARRAYS = ("CONSTANTARRAY", "INCOMPLETEARRAY", "VARIABLEARRAY", "DEPENDENTSIZEDARRAY")
_FUNCTIONS = ("FUNCTIONPROTO", "FUNCTIONNOPROTO")
_COMPOUND = {"POINTER", "RECORD", "ENUM", *_ARRAYS, *_FUNCTIONS}
_SCALARS = {
    "VOID": "void",
    "BOOL": "bool",
    "CHAR_S": "char",
    "CHAR_U": "char",
    **dict.fromkeys(_SIGNED, "int"),
    **dict.fromkeys(_UNSIGNED, "uint"),
    **dict.fromkeys(("FLOAT", "DOUBLE", "LONGDOUBLE", "HALF", "FLOAT16", "FLOAT128"), "float"),
}


def _spell(spelling: str) -> str:
    """C as a reader writes it: `bool` (a macro for _Bool), no build-machine paths."""
    spelling = _BOOL.sub("bool", spelling)
    return _ANON_AT.sub(r"(anonymous \1)", spelling) if "(" in spelling else spelling


def _cindex() -> Any:
    """Imported here, not at module level: a child that only rebuilds ctypes never needs it."""
    try:
        from clang import cindex
    except ImportError as err:
        raise HarnessError("parsing llama.h needs libclang: pip install libclang") from err
    return cindex


@functools.lru_cache(maxsize=1)
def _index() -> cindex.Index:
    try:
        return _cindex().Index.create()
    except Exception as err:  # LibclangError or OSError, depending on what is missing
        raise HarnessError(f"cannot load libclang: {err}") from err


class _CXString(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("private_flags", ctypes.c_uint)]


def _target_info(tu: cindex.TranslationUnit) -> tuple[str, int] | None:
    """The triple and pointer width clang actually used; the Python bindings do not expose them."""
    try:
        lib = ctypes.CDLL(_cindex().conf.lib._name)  # our own handle: argtypes stay ours
        lib.clang_getTranslationUnitTargetInfo.argtypes = [ctypes.c_void_p]
        lib.clang_getTranslationUnitTargetInfo.restype = ctypes.c_void_p
        lib.clang_TargetInfo_getTriple.argtypes = [ctypes.c_void_p]
        lib.clang_TargetInfo_getTriple.restype = _CXString
        lib.clang_TargetInfo_getPointerWidth.argtypes = [ctypes.c_void_p]
        lib.clang_TargetInfo_getPointerWidth.restype = ctypes.c_int
        lib.clang_TargetInfo_dispose.argtypes = [ctypes.c_void_p]
        lib.clang_getCString.argtypes = [_CXString]
        lib.clang_getCString.restype = ctypes.c_char_p
        lib.clang_disposeString.argtypes = [_CXString]
        info = lib.clang_getTranslationUnitTargetInfo(tu.obj)
        try:
            cx = lib.clang_TargetInfo_getTriple(info)
            triple = (lib.clang_getCString(cx) or b"").decode()
            lib.clang_disposeString(cx)
            width = lib.clang_TargetInfo_getPointerWidth(info)
        finally:
            lib.clang_TargetInfo_dispose(info)
        return (triple, width // 8) if triple and width > 0 else None
    except (AttributeError, OSError, ValueError) as err:
        log.debug("libclang target info unavailable: %s", err)
        return None


class _Walker:
    """Turns clang cursors and types into the model, naming every record it meets."""

    def __init__(self, ci: Any, root: Path) -> None:
        self.ci, self.tk = ci, ci.TypeKind
        self.root = str(root) + os.sep
        self.structs: dict[str, Struct] = {}
        self.enums: dict[str, Enum] = {}
        self.aliases: dict[str, str] = {}  # USR of an untagged record/enum → its typedef name
        self.names: dict[str, str] = {}  # USR → the key we gave it
        self.pointer_size = 0
        self.memo: dict[tuple[str, bool], CType] = {}
        self.files: dict[str, str | None] = {}  # clang's file name → release header, or None

    def header_of(self, cursor: Any) -> str | None:
        """The release header a cursor is declared in, or None for libc and friends."""
        f = cursor.location.file
        if f is None:
            return None
        name = f.name
        if name not in self.files:
            path = os.path.realpath(name)
            inside = path.startswith(self.root)
            self.files[name] = path[len(self.root) :].replace(os.sep, "/") if inside else None
        return self.files[name]

    def c_name(self, decl: Any) -> str:
        """How C names a record or enum: `struct tag`, the typedef of an untagged one, or ""
        for one C cannot name (an anonymous member, `struct { ... } point;`)."""
        spelled = _ELABORATED.sub("", decl.type.spelling)
        if "(" not in spelled and spelled:
            return spelled
        return self.aliases.get(decl.get_usr(), "")

    def key_of(self, decl: Any, fallback: str) -> str:
        usr = decl.get_usr() or f"{decl.location.file}:{decl.location.offset}"
        if usr not in self.names:
            c_name = self.c_name(decl)
            self.names[usr] = c_name.split()[-1] if c_name else fallback
        return self.names[usr]

    # -- types ------------------------------------------------------------------------------
    def ctype(self, t: Any, via_pointer: bool = False) -> CType:
        # In C a type's spelling names it uniquely within one translation unit (untagged
        # records spell their location), and the headers repeat a few hundred types thousands
        # of times: the memo halves the parse time. The CTypes are shared, never mutated.
        key = (t.spelling, via_pointer)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = self._ctype(t, via_pointer)
        return hit

    def _ctype(self, t: Any, via_pointer: bool) -> CType:
        spelling, const, name = _spell(t.spelling), t.is_const_qualified(), ""
        while t.kind in (self.tk.ELABORATED, self.tk.TYPEDEF):
            if t.kind == self.tk.TYPEDEF:
                name = name or t.get_typedef_name() or t.get_declaration().spelling
                t = t.get_declaration().underlying_typedef_type
            else:
                t = t.get_named_type()
        kind = t.kind.name
        if kind not in _SCALARS and kind not in _COMPOUND:
            t = t.get_canonical()  # attributed, parenthesised ...: the layout is the canonical's
            kind = t.kind.name
        size, align = max(t.get_size(), 0), max(t.get_align(), 0)
        base = {"size": size, "align": align, "spelling": spelling, "const": const, "name": name}
        if kind in _SCALARS:
            return CType(kind=_SCALARS[kind], **base)
        if kind == "POINTER":
            self.pointer_size = self.pointer_size or size
            pointee = t.get_pointee()
            if pointee.get_canonical().kind.name in _FUNCTIONS:
                return self.funcptr(pointee, base)
            return CType(kind="pointer", pointee=self.ctype(pointee, via_pointer=True), **base)
        if kind in _FUNCTIONS:  # a parameter of function type decays
            ptr = {**base, "size": self.pointer_size or 8, "align": self.pointer_size or 8}
            return self.funcptr(t, ptr)
        if kind in _ARRAYS:
            count = max(t.element_count, 0) if kind == "CONSTANTARRAY" else 0
            element = self.ctype(t.element_type, via_pointer)
            return CType(kind="array", element=element, count=count, **base)
        if kind == "ENUM":
            base["name"] = self.enum(t.get_declaration())
            return CType(kind="enum", **base)
        if kind == "RECORD":
            key, rkind = self.record(t.get_declaration(), via_pointer)
            if rkind == "opaque":  # a libc record seen through a pointer: its size is not ours
                base.update(size=0, align=0)
            return CType(kind=rkind, **{**base, "name": key})
        log.debug("unsupported C type %s (%s): kept as opaque", spelling, kind)
        return CType(kind="opaque", **base)

    def funcptr(self, fn: Any, base: dict[str, Any]) -> CType:
        while fn.kind in (self.tk.ELABORATED, self.tk.TYPEDEF):
            fn = fn.get_canonical()
        proto = fn.kind == self.tk.FUNCTIONPROTO
        return CType(
            kind="funcptr",
            returns=self.ctype(fn.get_result()),
            params=[self.ctype(a) for a in fn.argument_types()] if proto else [],
            variadic=bool(proto and fn.is_function_variadic()),
            **base,
        )

    # -- declarations -----------------------------------------------------------------------
    def record(self, decl: Any, via_pointer: bool = False) -> tuple[str, str]:
        """Register a struct/union; returns its key and CType kind."""
        definition = decl.get_definition()
        d = definition or decl
        key = self.key_of(d, f"anon@{self.header_of(d)}:{d.location.line}")
        header = self.header_of(d)
        if definition is None or (header is None and via_pointer):
            if header is not None and key not in self.structs:
                self.structs[key] = Struct(key, 0, 0, kind="opaque", c_name=f"struct {key}")
            return key, "opaque"
        if key in self.structs:
            return key, self.structs[key].kind
        tag = "union" if d.kind == self.ci.CursorKind.UNION_DECL else "struct"
        c_name = self.c_name(d)
        rec = Struct(key, d.type.get_size(), d.type.get_align(), [], tag, c_name, header or "")
        self.structs[key] = rec  # before the fields: a member may point back at it
        anon = 0
        for f in d.type.get_fields():
            name = f.spelling
            anonymous = not _IDENT.fullmatch(name or "")  # clang spells these "(anonymous at"
            if anonymous:
                name, anon = f"_anon{anon}", anon + 1
            inner = f.type.get_canonical()
            while inner.kind == self.tk.CONSTANTARRAY:
                inner = inner.element_type.get_canonical()
            inner_decl = inner.get_declaration()
            if inner.kind == self.tk.RECORD and not self.c_name(inner_decl):
                self.key_of(inner_decl, f"{key}.{name}")  # `struct { ... } point;` → key.point
            bit = f.get_field_offsetof()
            width = f.get_bitfield_width() if f.is_bitfield() else 0
            rec.fields.append(
                Field(name, self.ctype(f.type), bit // 8, bit if width else 0, width, anonymous)
            )
        return key, tag

    def enum(self, decl: Any) -> str:
        d = decl.get_definition() or decl
        consts = [c for c in d.get_children() if c.kind == self.ci.CursorKind.ENUM_CONSTANT_DECL]
        key = self.key_of(d, f"anon:{consts[0].spelling}" if consts else "anon")
        if key not in self.enums:
            signed = d.enum_type.get_canonical().kind.name not in _UNSIGNED
            self.enums[key] = Enum(
                name=key,
                values={c.spelling: c.enum_value for c in consts},
                size=max(d.type.get_size(), 0),
                signed=signed,
                c_name=self.c_name(d),
                header=self.header_of(d) or "",
            )
        return key

    def function(self, c: Any, header: str) -> Function:
        fn_type = c.type
        variadic = fn_type.kind == self.tk.FUNCTIONPROTO and fn_type.is_function_variadic()
        return Function(
            name=c.spelling,
            restype=self.ctype(c.result_type),
            params=[Param(a.spelling, self.ctype(a.type)) for a in c.get_arguments()],
            variadic=bool(variadic),
            header=header,
            deprecated=c.availability == self.ci.AvailabilityKind.DEPRECATED,
        )


def _parse_tu(path: Path, include_dir: Path, target: str | None, system: bool) -> Any:
    args = ["-x", "c", "-std=gnu11", f"-I{include_dir}"]
    if target:
        args.append(f"--target={target}")
    unsaved: list[tuple[str, str]] = []
    cc_dir = sysinc.compiler_include_dir()
    if system and cc_dir is not None:
        args += ["-isystem", str(cc_dir)]
    else:
        args += ["-nostdinc", "-isystem", sysinc.SHIM_DIR]
        unsaved = sysinc.shim_files()
    ci = _cindex()
    opts = ci.TranslationUnit.PARSE_SKIP_FUNCTION_BODIES
    try:
        return _index().parse(str(path), args=args, unsaved_files=unsaved, options=opts)
    except ci.TranslationUnitLoadError as err:
        raise HarnessError(f"{path}: libclang could not parse it ({err})") from err


def _errors(tu: Any) -> list[Any]:
    return [d for d in tu.diagnostics if d.severity >= 3]  # Diagnostic.Error, Fatal


def parse_headers(
    include_dir: Path,
    header: str = "llama.h",
    *,
    target: str | None = None,
    system_headers: bool | None = None,
) -> Api:
    """Parse `include_dir/header` for `target` (a clang triple; default: this host).

    `system_headers`: None picks the system compiler's headers for the host and our own minimal
    ones otherwise (or when the system's are not found); True/False forces one.
    """
    include_dir = Path(include_dir).resolve()
    path = include_dir / header
    if not path.is_file():
        raise SourceError(f"no {header} found in {include_dir}")
    started = time.perf_counter()
    foreign = target is not None and target != sysinc.host_triple()
    system = (not foreign) if system_headers is None else system_headers
    tu = _parse_tu(path, include_dir, target, system)
    errors = _errors(tu)
    if errors and system and system_headers is None:
        log.debug("%s: retrying with our own libc headers after: %s", path, errors[0])
        tu = _parse_tu(path, include_dir, target, False)
        errors = _errors(tu)
    if errors:
        raise HarnessError(f"{path}: {errors[0]}")

    ci = _cindex()
    w = _Walker(ci, include_dir)
    K = ci.CursorKind
    top = [(c, w.header_of(c)) for c in tu.cursor.get_children()]
    top = [(c, h) for c, h in top if h is not None]
    for c, _ in top:  # untagged records and enums are known by their typedef
        if c.kind == K.TYPEDEF_DECL:
            under = c.underlying_typedef_type.get_canonical()
            if under.kind in (ci.TypeKind.RECORD, ci.TypeKind.ENUM):
                decl = under.get_declaration()
                if "(" in decl.type.spelling or decl.type.spelling == c.spelling:
                    w.aliases.setdefault(decl.get_usr(), c.spelling)
    functions: dict[str, Function] = {}
    typedefs: dict[str, CType] = {}
    for c, h in top:
        if c.kind in (K.STRUCT_DECL, K.UNION_DECL):
            w.record(c)
        elif c.kind == K.ENUM_DECL:
            w.enum(c)
        elif c.kind == K.TYPEDEF_DECL:
            typedefs.setdefault(c.spelling, w.ctype(c.type))
        elif c.kind == K.FUNCTION_DECL and c.spelling.startswith(FUNCTION_PREFIXES):
            functions.setdefault(c.spelling, w.function(c, h or ""))
    info = _target_info(tu)
    triple = info[0] if info else (target or sysinc.host_triple())
    pointer_size = info[1] if info else (w.pointer_size or 8)
    headers = sorted({h for _, h in top if h})
    log.debug(
        "%s (%s): %d functions, %d records, %d enums in %.0f ms",
        path,
        triple,
        len(functions),
        len(w.structs),
        len(w.enums),
        (time.perf_counter() - started) * 1000,
    )
    return Api(functions, w.structs, w.enums, typedefs, triple, pointer_size, headers)
