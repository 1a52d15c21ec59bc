"""A consumer manifest: the part of the llama API one binding relies on, checked against a release.

    manifest: 1
    from: b6089                     # informative: the release it was written against
    functions:
      llama_n_vocab: int32_t (const struct llama_vocab *)
      llama_free: {returns: void, params: [struct llama_context *]}
    structs:
      llama_context_params:         # the fields the binding sets, optionally with what it assumes
        size: 120
        fields: {n_ctx: {offset: 0, type: uint32_t}, n_batch: {offset: 4, type: uint32_t}}
    enums:
      llama_pooling_type: {LLAMA_POOLING_TYPE_NONE: 0}

A diff between two releases lists everything; a manifest narrows it to what breaks *this*
binding. Types written by hand are compared by meaning, not text: `const struct llama_vocab*`
matches the header's `const struct llama_vocab *`, and `int32_t` matches `llama_token`.

One module past 400 lines on purpose: it is the manifest format end to end (schema and its error
messages, reading, writing, generating from a header, checking against one), and the reader and
the checker share the spelling of a function (`_function_spec`); split, the format would be
described in two places.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.abi.diff import Shape, normalize, shape, spell
from harness.abi.model import Api, CType, Function, Struct
from harness.config import yamlfile
from harness.errors import ConfigError

__all__ = [
    "SCHEMA",
    "Verdict",
    "check",
    "dump",
    "generate",
    "load",
    "parse",
    "prototype",
    "render_verdict",
]

FORMAT = 1
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TYPE = {"type": "string", "minLength": 1}
_FIELD = {
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "offset": {"type": "integer", "minimum": 0},
                "type": _TYPE,
                "size": {"type": "integer", "minimum": 0},
            },
        },
    ]
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["manifest"],
    "properties": {
        "manifest": {"const": FORMAT},
        "from": {"type": "string"},
        "target": {"type": "string"},
        "functions": {
            "type": "object",
            "propertyNames": {"pattern": _IDENT},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},  # checked by _function_spec, which says why
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["returns", "params"],
                        "properties": {
                            "returns": _TYPE,
                            "params": {"type": "array", "items": _TYPE},
                            "variadic": {"type": "boolean"},
                        },
                    },
                ]
            },
        },
        "structs": {
            "type": "object",
            "propertyNames": {"pattern": _IDENT},
            "additionalProperties": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "size": {"type": "integer", "minimum": 0},
                            "fields": {
                                "anyOf": [
                                    {"type": "array", "items": {"type": "string"}},
                                    {"type": "object", "additionalProperties": _FIELD},
                                ]
                            },
                        },
                    },
                ]
            },
        },
        "enums": {
            "type": "object",
            "propertyNames": {"pattern": _IDENT},
            "additionalProperties": {
                "anyOf": [
                    {"type": "null"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "object", "additionalProperties": {"type": ["integer", "null"]}},
                ]
            },
        },
    },
}


def _help(path: Sequence[Any]) -> str:
    """What is allowed at a place where the schema offers alternatives."""
    top, depth = (str(path[0]) if path else ""), len(path)
    if top == "functions" and depth == 2:
        return 'a prototype string "ret (type, type, ...)" or {returns: T, params: [T, ...]}'
    if top == "structs" and depth == 2:
        return "{size: N, fields: ...} or nothing"
    if top == "structs" and depth == 3:
        return "{name: {offset: N, type: T, size: N}, ...} or [name, ...]"
    if top == "structs" and depth == 4:
        return "{offset: N, type: T, size: N} (each key optional) or nothing"
    if top == "enums" and depth == 2:
        return "{CONSTANT: value, ...}, [CONSTANT, ...] or nothing"
    return ""


# -- reading and writing ----------------------------------------------------------------------
def _where(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "null": "nothing",
}


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else repr(value)


def _pick(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Of alternatives (`anyOf`), the one the author evidently meant: the branch of the value's
    own type (a mapping with a misspelt key is a mapping that went wrong, not a bad string)."""
    while err.validator == "anyOf" and err.context:
        meant = [e for e in err.context if e.validator != "type" or e.relative_path]
        best = jsonschema.exceptions.best_match(meant) if meant else None
        if best is None:
            break
        err = best
    return err


def _describe(err: jsonschema.ValidationError) -> str:
    v, path = err.validator, list(err.absolute_path)
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    if v == "anyOf" and (expected := _help(path)):
        return f"expected {expected}"
    if v == "const":
        return f"unknown manifest format {err.instance!r} (this version reads {FORMAT})"
    if v == "required":
        return err.message.replace("is a required property", "is required")
    if v == "type":
        wanted = err.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        expected = " or ".join(_JSON_TYPES.get(t, f"a {t}") for t in wanted)
        return f"expected {expected}, got {_kind(err.instance)}"
    if v == "pattern" and isinstance(err.instance, str):
        return f"{err.instance!r} is not a C name"
    return err.message


def _function_spec(value: Any) -> tuple[str, list[str], bool]:
    """(return type, parameter types, variadic) from either spelling of a function."""
    if isinstance(value, dict):
        return value["returns"], list(value["params"]), bool(value.get("variadic", False))
    text = str(value).strip()
    depth, start = 0, -1
    for i, ch in enumerate(text):  # the outermost (...) that ends the string
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
    if depth or start < 0 or not text.endswith(")"):
        raise ValueError("expected 'return_type (param_type, ...)'")
    returns, inner = text[:start].strip(), text[start + 1 : -1]
    if not returns:
        raise ValueError("no return type before '('")
    params, depth, cur = [], 0, ""
    for ch in inner:
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            params.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        params.append(cur.strip())
    if params in ([], ["void"]):
        return returns, [], False
    if "" in params:
        raise ValueError("an empty parameter type")
    variadic = params[-1] == "..."
    return returns, params[:-1] if variadic else params, variadic


def parse(data: Any, source: str = "manifest") -> dict[str, Any]:
    """Validate an already-read manifest; `source` names it in the one-line error."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty (it needs at least 'manifest: {FORMAT}')")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        assert best is not None
        err = _pick(best)
        raise ConfigError(f"{source}: {_where(list(err.absolute_path))}: {_describe(err)}")
    for name, value in (data.get("functions") or {}).items():
        try:
            _function_spec(value)
        except ValueError as err:
            raise ConfigError(f"{source}: functions.{name}: {err}, got {value!r}") from err
    return dict(data)


def load(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    return parse(yamlfile.read(path, "manifest"), str(path))


class _Flow(dict):
    """A mapping written on one line (`{offset: 0, type: uint32_t}`)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def _flowed(manifest: dict[str, Any]) -> dict[str, Any]:
    out = dict(manifest)
    if structs := out.get("structs"):
        out["structs"] = {
            name: value
            if not isinstance(value, dict) or not isinstance(value.get("fields"), dict)
            else {
                **value,
                "fields": {
                    k: _Flow(v) if isinstance(v, dict) else v for k, v in value["fields"].items()
                },
            }
            for name, value in structs.items()
        }
    return out


def dump(manifest: dict[str, Any]) -> str:
    """YAML a person can edit: one line per function, per field and per enum constant."""
    head = "# llama-harness API manifest: what this binding relies on (see docs/api-diff.md)\n"
    body = yaml.dump(
        _flowed(manifest),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,  # a prototype stays on its line
    )
    return head + body


# -- generating -------------------------------------------------------------------------------
def prototype(f: Function) -> str:
    """`ret (type, ...)`: the manifest's spelling of a function, without parameter names."""
    params = [spell(p.type) for p in f.params] + (["..."] if f.variadic else [])
    return f"{spell(f.restype)} ({', '.join(params) or 'void'})"


def _field_entry(s: Struct, name: str, tag: str) -> dict[str, Any]:
    try:
        f = s.field(name)
    except KeyError as err:
        raise ConfigError(f"{tag}: {s.name} has no field {name!r}") from err
    entry: dict[str, Any] = {"offset": f.offset}
    if not f.anonymous:  # an anonymous member's spelling carries a line number
        entry["type"] = spell(f.type)
    return entry


def _by_value(t: CType, api: Api) -> list[str]:
    return [t.name] if t.kind in ("struct", "union") and t.name in api.structs else []


def generate(
    api: Api,
    functions: Sequence[str],
    structs: Sequence[str] | None = None,
    *,
    tag: str,
    enums: Sequence[str] = (),
) -> dict[str, Any]:
    """A manifest of `functions` as `api` declares them. `structs`: names, or
    `name:field1,field2` for only the fields the binding sets; by default the structs the
    functions take or return by value, with all their fields. `enums`: names, all values."""
    out: dict[str, Any] = {"manifest": FORMAT, "from": tag, "target": api.target}
    missing = [n for n in functions if n not in api.functions]
    if missing:
        raise ConfigError(f"{tag} declares no function {', '.join(missing)}")
    chosen = [api.functions[n] for n in dict.fromkeys(functions)]
    out["functions"] = {f.name: prototype(f) for f in chosen}
    if structs is None:
        structs = [
            name
            for f in chosen
            for t in [f.restype, *(p.type for p in f.params)]
            for name in _by_value(t, api)
        ]
    wanted: dict[str, list[str] | None] = {}
    for spec in structs:
        name, _, names = spec.partition(":")
        name = name.strip()
        if name not in api.structs or api.structs[name].kind == "opaque":
            raise ConfigError(f"{tag} defines no struct {name}")
        fields = [n.strip() for n in names.split(",") if n.strip()] if names else None
        if fields is None or wanted.get(name, []) is None:
            wanted[name] = None
        else:
            wanted[name] = list(dict.fromkeys([*(wanted.get(name) or []), *fields]))
    if wanted:
        out["structs"] = {}
        for name, fields in wanted.items():
            s = api.structs[name]
            picked = fields if fields is not None else [f.name for f in s.fields]
            entry = {n: _field_entry(s, n, tag) for n in picked}
            out["structs"][name] = {"size": s.size, "fields": entry}
    if enums:
        unknown = [n for n in enums if n not in api.enums]
        if unknown:
            raise ConfigError(f"{tag} declares no enum {', '.join(unknown)}")
        out["enums"] = {n: dict(api.enums[n].values) for n in enums}
    return out


# -- checking ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    compatible: bool
    breaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # deprecations: not broken yet

    def to_json(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "breaks": list(self.breaks),
            "warnings": list(self.warnings),
        }


_BUILTIN = {  # C's own type names (not in any header), for types written by hand
    "void": ("void", 0),
    "bool": ("bool", 1),
    "_Bool": ("bool", 1),
    "char": ("char", 1),
    "signed char": ("int", 1),
    "unsigned char": ("uint", 1),
    "short": ("int", 2),
    "unsigned short": ("uint", 2),
    "int": ("int", 4),
    "signed": ("int", 4),
    "unsigned": ("uint", 4),
    "unsigned int": ("uint", 4),
    "long long": ("int", 8),
    "unsigned long long": ("uint", 8),
    "float": ("float", 4),
    "double": ("float", 8),
    **{f"int{n}_t": ("int", n // 8) for n in (8, 16, 32, 64)},
    **{f"uint{n}_t": ("uint", n // 8) for n in (8, 16, 32, 64)},
}


class _Resolver:
    """Turns a type written as text into the shape `apidiff.shape` gives the header's type,
    using the release's own typedefs, records and enums (plus C's builtin names)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        word = api.pointer_size
        windows = "windows" in api.target or "msvc" in api.target
        self.names: dict[str, Shape] = {
            **_BUILTIN,
            "long": ("int", 4 if windows else word),
            "unsigned long": ("uint", 4 if windows else word),
            "size_t": ("uint", word),
            "ssize_t": ("int", word),
            "intptr_t": ("int", word),
            "uintptr_t": ("uint", word),
        }
        self._seen: set[int] = set()
        for f in api.functions.values():
            for t in (f.restype, *(p.type for p in f.params)):
                self._harvest(t)
        for s in api.structs.values():
            for fld in s.fields:
                self._harvest(fld.type)

    def _harvest(self, t: CType | None) -> None:
        """Every typedef name the headers use (`int32_t`, `size_t`), with what it stands for."""
        while t is not None and id(t) not in self._seen:
            self._seen.add(id(t))
            if t.name and t.kind in ("int", "uint", "float", "bool", "char", "void"):
                self.names.setdefault(t.name, shape(t))
            t = t.pointee or t.element

    def resolve(self, text: str) -> Shape | None:
        norm = normalize(text)
        m = re.fullmatch(r"(.*?)\s*\[ (\d+) \]", norm)
        if m:
            inner = self.resolve(m.group(1))
            return None if inner is None else ("[]", int(m.group(2)), inner)
        if any(ch in norm for ch in "()[]:,"):
            return None
        stars = norm.count("*")
        base = " ".join(w for w in norm.split() if w not in ("*", "const", "volatile", "restrict"))
        found: Shape | None
        if base in self.api.typedefs:
            found = shape(self.api.typedefs[base])
        elif base in self.api.structs:
            s = self.api.structs[base]
            found = ("union" if s.kind == "union" else "record", base)
        elif base in self.api.enums:
            found = ("enum", base)
        else:
            found = self.names.get(base)
        if found is None:
            return None
        for _ in range(stars):
            found = ("*", found)
        return found

    def same(self, written: str, t: CType) -> bool:
        if normalize(written) == normalize(t.spelling) or normalize(written) == normalize(spell(t)):
            return True
        resolved = self.resolve(written)
        return resolved is not None and resolved == shape(t)


def _check_function(
    name: str, value: Any, f: Function, types: _Resolver, breaks: list[str]
) -> None:
    returns, params, variadic = _function_spec(value)
    if not types.same(returns, f.restype):
        breaks.append(f"{name}: return type {returns} → {spell(f.restype)}")
    if len(params) != len(f.params):
        breaks.append(f"{name}: parameter count {len(params)} → {len(f.params)}")
    for i, (written, p) in enumerate(zip(params, f.params, strict=False), start=1):
        if not types.same(written, p.type):
            breaks.append(f"{name}: parameter {i} {written} → {spell(p.type)}")
    if variadic != f.variadic:
        breaks.append(f"{name}: {'now' if f.variadic else 'no longer'} variadic")


def _check_struct(name: str, value: Any, s: Struct, types: _Resolver, breaks: list[str]) -> None:
    value = value or {}
    if "size" in value and value["size"] != s.size:
        breaks.append(f"{name}: size {value['size']} → {s.size}")
    fields = value.get("fields") or {}
    if isinstance(fields, list):
        fields = dict.fromkeys(fields)
    have = {f.name: f for f in s.fields}
    for fname, want in fields.items():
        f = have.get(fname)
        if f is None:
            breaks.append(f"{name}.{fname}: removed")
            continue
        want = want or {}
        if "offset" in want and want["offset"] != f.offset:
            breaks.append(f"{name}.{fname}: offset {want['offset']} → {f.offset}")
        if "type" in want and not types.same(want["type"], f.type):
            breaks.append(f"{name}.{fname}: type {want['type']} → {spell(f.type)}")
        if "size" in want and want["size"] != f.type.size:
            breaks.append(f"{name}.{fname}: size {want['size']} → {f.type.size}")


def check(manifest: dict[str, Any], api: Api) -> Verdict:
    """Does `api` still offer what the manifest relies on? One line per break, in manifest
    order; deprecations are warnings (they still work, but not for long)."""
    breaks: list[str] = []
    warnings: list[str] = []
    types = _Resolver(api)
    if manifest.get("target") and manifest["target"] != api.target:
        warnings.append(f"written for {manifest['target']}, checked against {api.target}")
    for name, value in (manifest.get("functions") or {}).items():
        f = api.functions.get(name)
        if f is None:
            breaks.append(f"{name}: not declared")
            continue
        _check_function(name, value, f, types, breaks)
        if f.deprecated:
            warnings.append(f"{name}: deprecated")
    for name, value in (manifest.get("structs") or {}).items():
        s = api.structs.get(name)
        if s is None:
            breaks.append(f"{name}: not declared")
        elif s.kind == "opaque" and (value or {}).get("fields"):
            breaks.append(f"{name}: no longer defined (opaque)")
        else:
            _check_struct(name, value, s, types, breaks)
    for name, value in (manifest.get("enums") or {}).items():
        e = api.enums.get(name)
        if e is None:
            breaks.append(f"{name}: not declared")
            continue
        wanted = dict.fromkeys(value) if isinstance(value, list) else dict(value or {})
        for const, number in wanted.items():
            if const not in e.values:
                breaks.append(f"{name}.{const}: removed")
            elif number is not None and e.values[const] != number:
                breaks.append(f"{name}.{const}: value {number} → {e.values[const]}")
    return Verdict(not breaks, breaks, warnings)


def render_verdict(verdict: Verdict, manifest_name: str, tag: str) -> str:
    """For people: one headline, then each break and warning on its own line."""
    if verdict.compatible:
        head = f"{manifest_name}: compatible with {tag}"
    else:
        head = f"{manifest_name}: {len(verdict.breaks)} break(s) on {tag}"
    lines = [head, *(f"  ✗ {b}" for b in verdict.breaks)]
    lines += [f"  ! {w}" for w in verdict.warnings]
    return "\n".join(lines) + "\n"
