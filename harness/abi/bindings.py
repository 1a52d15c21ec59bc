"""ctypes types and function prototypes built at run time from a parsed `Api`.

Every record is laid out from the parsed offsets and then checked against them: ctypes' own
layout rules are only trusted where they agree with clang's, padding is inserted where they lag,
and a record ctypes cannot express (packed, odd bitfields) is reported instead of silently
misread. Records are built on first use, so one unusual ggml struct never stops llama_* from
binding. A function the header declares but the library does not export is recorded, never an
import-time failure: releases add and drop symbols all the time.
"""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

from harness.abi.model import Api, CType, Field, Struct
from harness.errors import HarnessError

__all__ = ["Bindings", "Functions", "SymbolMissing"]

log = logging.getLogger(__name__)

_INTS: dict[tuple[int, bool], Any] = {
    (1, True): ctypes.c_int8,
    (2, True): ctypes.c_int16,
    (4, True): ctypes.c_int32,
    (8, True): ctypes.c_int64,
    (1, False): ctypes.c_uint8,
    (2, False): ctypes.c_uint16,
    (4, False): ctypes.c_uint32,
    (8, False): ctypes.c_uint64,
}
_FLOATS: dict[int, Any] = {4: ctypes.c_float, 8: ctypes.c_double}
_FLOATS.setdefault(ctypes.sizeof(ctypes.c_longdouble), ctypes.c_longdouble)


class SymbolMissing(HarnessError):
    """The release's header declares the function but its library does not export it."""


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class Functions:
    """A release's functions, bound to one loaded library: `fns.llama_backend_init()`."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        bound: dict[str, Any],
        missing: dict[str, str],
        unsupported: dict[str, str],
    ) -> None:
        self.lib = lib
        self.missing = sorted(missing)  # declared in the headers, not exported by the library
        self._missing = missing  # name → the header that declares it
        self.unsupported = unsupported  # declared and exported, but a type ctypes cannot express
        self._bound = bound

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        bound = self.__dict__.get("_bound", {})
        if name in bound:
            return bound[name]
        if name in self.__dict__.get("_missing", {}):
            lib = Path(self.lib._name or "the library").name
            msg = f"{name}: declared in {self._missing[name]}, not exported by {lib}"
            return self._stub(SymbolMissing(msg))
        if name in self.__dict__.get("unsupported", {}):
            return self._stub(HarnessError(f"{name}: {self.unsupported[name]}"))
        raise AttributeError(f"{name}: not declared in this release's headers")

    @staticmethod
    def _stub(err: HarnessError) -> Callable[..., NoReturn]:
        def call(*_args: Any, **_kwargs: Any) -> NoReturn:
            raise err

        return call

    def __contains__(self, name: object) -> bool:
        """Bound and callable (declared, exported and expressible)."""
        return name in self._bound

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._bound})


class Bindings:
    """ctypes for one release's `Api`; only for the host's own target."""

    def __init__(self, api: Api) -> None:
        host_ptr = ctypes.sizeof(ctypes.c_void_p)
        if api.pointer_size != host_ptr:
            raise HarnessError(
                f"this Api was parsed for {api.target} ({api.pointer_size}-byte pointers); "
                f"this Python has {host_ptr}-byte pointers: parse the headers for the host"
            )
        self.api = api
        self.errors: dict[str, str] = {}  # record → why ctypes cannot lay it out
        self._classes: dict[str, Any] = {}
        self._done: set[str] = set()
        self._pending: list[str] = []
        self._funcptrs: dict[str, Any] = {}
        self._nullables: dict[Any, Any] = {}
        self._packed_records: set[str] = set()  # records that are, or hold, packed ones

    # -- public -----------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Declared in this release's headers (function, record, enum, typedef or constant)?"""
        api = self.api
        if name in api.functions or name in api.structs or name in api.enums:
            return True
        return name in api.typedefs or any(name in e.values for e in api.enums.values())

    def struct(self, name: str) -> type[ctypes.Structure]:
        """The record as a ctypes class (a `ctypes.Union` subclass for a union)."""
        if name not in self.api.structs:
            raise HarnessError(f"{name}: no such struct or union in this release's headers")
        try:
            return cast("type[ctypes.Structure]", self._complete(name))
        finally:
            self._drain()

    def type(self, name: str) -> Any:
        """The ctypes type of a typedef or record name (`ggml_log_callback`, `llama_token`)."""
        if name in self.api.typedefs:
            try:
                return self._value(self.api.typedefs[name])
            finally:
                self._drain()
        return self.struct(name)

    def value(self, name: str) -> int:
        """An enum constant, from whichever enum declares it."""
        try:
            return self.api.constant(name)
        except KeyError:
            raise HarnessError(f"{name}: no such enum constant in this release's headers") from None

    def bind(self, lib: ctypes.CDLL) -> Functions:
        bound: dict[str, Any] = {}
        missing: dict[str, str] = {}
        unsupported: dict[str, str] = {}
        for name, fn in self.api.functions.items():
            try:
                ptr = lib[name]  # a fresh object: argtypes set here are ours alone
            except AttributeError:
                missing[name] = fn.header or "the headers"
                continue
            try:
                ptr.restype = self._value(fn.restype)
                ptr.argtypes = [self._value(p.type) for p in fn.params]
            except (HarnessError, TypeError) as err:
                unsupported[name] = str(err)
                continue
            bound[name] = ptr
        self._drain()
        if missing:
            log.debug("%d declared functions not exported: %s", len(missing), ", ".join(missing))
        return Functions(lib, bound, missing, unsupported)

    # -- types ------------------------------------------------------------------------------
    def _value(self, t: CType) -> Any:
        """The type of a parameter or return value: void is None, arrays decay."""
        if t.kind == "void":
            return None
        if t.kind == "array" and t.element is not None:
            return self._pointer(t.element)
        if t.kind == "funcptr":
            return self._nullable(self._funcptr(t))
        ct = self._member(t)
        if t.kind in ("struct", "union") and t.name in self._packed_records:
            # libffi knows nothing of packing: it would classify the record by its natural
            # layout and pass or return the wrong registers.
            raise HarnessError(f"{t.spelling}: a packed record cannot pass by value through ctypes")
        return ct

    def _nullable(self, proto: Any) -> Any:
        """A callback parameter that also takes None, as C takes NULL (`llama_log_set(NULL,
        NULL)` restores the default logger)."""
        if proto is ctypes.c_void_p:
            return proto
        if proto not in self._nullables:

            def from_param(cls: Any, obj: Any) -> Any:
                return None if obj is None else proto.from_param(obj)

            attrs = {
                "_flags_": proto._flags_,
                "_argtypes_": proto._argtypes_,
                "_restype_": proto._restype_,
                "from_param": classmethod(from_param),
                "__module__": __name__,
            }
            self._nullables[proto] = type(proto.__name__, (proto,), attrs)
        return self._nullables[proto]

    def _member(self, t: CType) -> Any:
        """The type of a value held by value (a field, an array element)."""
        k = t.kind
        if k in ("int", "uint", "enum"):
            signed = k == "int" or (k == "enum" and self._enum_signed(t.name))
            if (t.size, signed) in _INTS:
                return _INTS[(t.size, signed)]
        elif k == "char":
            return ctypes.c_char
        elif k == "bool":
            return ctypes.c_bool if t.size == 1 else _INTS[(t.size, False)]
        elif k == "float" and t.size in _FLOATS:
            return _FLOATS[t.size]
        elif k == "pointer" and t.pointee is not None:
            return self._pointer(t.pointee)
        elif k == "funcptr":
            return self._funcptr(t)
        elif k in ("struct", "union"):
            return self._complete(t.name)
        elif k == "array" and t.element is not None:
            return self._member(t.element) * t.count
        raise HarnessError(f"cannot hold {t.spelling or k} ({k}, {t.size} bytes) by value")

    def _enum_signed(self, name: str) -> bool:
        enum = self.api.enums.get(name)
        return enum.signed if enum is not None else True

    def _pointer(self, p: CType) -> Any:
        k = p.kind
        if k in ("void", "opaque"):
            return ctypes.c_void_p
        if k == "char":
            return ctypes.c_char_p  # accepts bytes and create_string_buffer() alike
        if k in ("struct", "union"):
            rec = self.api.structs.get(p.name)
            if rec is None or rec.kind == "opaque":
                return ctypes.c_void_p
            return ctypes.POINTER(self._shell(rec))
        if k == "pointer" and p.pointee is not None:
            return ctypes.POINTER(self._pointer(p.pointee))
        try:
            return ctypes.POINTER(self._member(p))
        except HarnessError:
            return ctypes.c_void_p  # a pointer to something we cannot name is still a pointer

    def _funcptr(self, t: CType) -> Any:
        key = json.dumps(
            [t.returns.to_dict() if t.returns else None, [p.to_dict() for p in t.params]]
        )
        if key not in self._funcptrs:
            proto: Any
            try:
                restype = self._value(t.returns) if t.returns else None
                proto = ctypes.CFUNCTYPE(restype, *(self._value(p) for p in t.params))
            except (HarnessError, TypeError) as err:
                log.debug("function pointer %s kept as void *: %s", t.spelling, err)
                proto = ctypes.c_void_p
            self._funcptrs[key] = proto
        return self._funcptrs[key]

    # -- records ----------------------------------------------------------------------------
    def _shell(self, rec: Struct) -> Any:
        """The class, possibly still without fields: enough for a pointer to it."""
        cls = self._classes.get(rec.name)
        if cls is None:
            base = ctypes.Union if rec.kind == "union" else ctypes.Structure
            cls = type(rec.name.replace(".", "_"), (base,), {"__module__": __name__})
            self._classes[rec.name] = cls
            self._pending.append(rec.name)
        return cls

    def _drain(self) -> None:
        """Complete every record reached through a pointer, so a pointee is never left empty."""
        while self._pending:
            name = self._pending.pop()
            if name not in self._done and name not in self.errors:
                try:
                    self._complete(name)
                except HarnessError as err:
                    log.debug("%s", err)

    def _complete(self, name: str) -> Any:
        rec = self.api.structs.get(name)
        if rec is None or rec.kind == "opaque":
            raise HarnessError(f"{name}: opaque in this release's headers, no layout")
        if name in self.errors:
            raise HarnessError(self.errors[name])
        cls = self._shell(rec)
        if name in self._done:
            return cls
        try:
            fields, anonymous, packed = self._layout(rec)
            attrs: dict[str, Any] = {"_pack_": 1} if packed else {}
            if anonymous:
                attrs["_anonymous_"] = anonymous
            # Checked on a throwaway class first: `_fields_` is final, and the shell may
            # already be a pointee elsewhere, so it only ever receives a verified layout.
            probe = type(cls.__name__, (cls.__bases__[0],), {**attrs, "_fields_": fields})
            self._check(rec, probe)
            for key, value in attrs.items():
                setattr(cls, key, value)
            cls._fields_ = fields
        except (HarnessError, TypeError, AttributeError) as err:
            self.errors[name] = f"{rec.c_name or name}: {err}"
            raise HarnessError(self.errors[name]) from err
        inner = {f.type.name for f in rec.fields if f.type.kind in ("struct", "union")}
        if packed or inner & self._packed_records:
            self._packed_records.add(name)
        self._done.add(name)
        return cls

    def _layout(self, rec: Struct) -> tuple[list[tuple[Any, ...]], list[str], bool]:
        members = [(f, self._member(f.type)) for f in rec.fields]
        laid = self._fields(rec, members, packed=False) or self._fields(rec, members, packed=True)
        if laid is None:
            raise HarnessError("members overlap: no ctypes layout matches")
        return laid

    def _fields(
        self, rec: Struct, members: list[tuple[Field, Any]], packed: bool
    ) -> tuple[list[tuple[Any, ...]], list[str], bool] | None:
        """Fields with explicit padding wherever ctypes would place a member before clang does;
        None when a member would land after its place (only `_pack_` can fix that)."""
        out: list[tuple[Any, ...]] = []
        anonymous = [f.name for f in rec.fields if f.anonymous]
        cur: int | None = 0  # end of the last member; unknown after bitfields
        for f, ct in members:
            if f.bits:
                out.append((f.name, ctypes.c_uint8 if ct is ctypes.c_bool else ct, f.bits))
                cur = None
                continue
            if rec.kind != "union" and cur is not None:
                align = 1 if packed else ctypes.alignment(ct)
                if f.offset % align or _align_up(cur, align) > f.offset:
                    return None
                if _align_up(cur, align) < f.offset:
                    out.append((f"_harness_pad{len(out)}", ctypes.c_uint8 * (f.offset - cur)))
            out.append((f.name, ct))
            cur = f.offset + ctypes.sizeof(ct) if rec.kind != "union" else 0
        union = rec.kind == "union"
        if union:
            cur = max((ctypes.sizeof(ct) for _, ct in members), default=0)
        if cur is not None:  # ctypes rounds the size up to the strictest member's alignment
            align = 1 if packed else max((ctypes.alignment(ct) for _, ct in members), default=1)
            if _align_up(cur, align) < rec.size:
                tail = rec.size if union else rec.size - cur
                out.append((f"_harness_pad{len(out)}", ctypes.c_uint8 * tail))
        return out, anonymous, packed

    @staticmethod
    def _check(rec: Struct, cls: Any) -> None:
        for f in rec.fields:
            got = getattr(cls, f.name).offset
            want = f.offset
            if f.bits:  # ctypes reports the storage unit's offset
                unit = ctypes.sizeof(dict((x[0], x[1]) for x in cls._fields_)[f.name])
                want = f.bit_offset // (8 * unit) * unit
            if got != want:
                raise HarnessError(f"ctypes puts {f.name} at offset {got}, the header at {want}")
        if ctypes.sizeof(cls) != rec.size:
            raise HarnessError(f"ctypes size {ctypes.sizeof(cls)}, the header's {rec.size}")
