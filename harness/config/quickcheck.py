"""Shows an instance valid against a small subset of JSON Schema, without importing jsonschema.

Importing jsonschema costs ~45 ms, most of what a warm `download` of pinned releases may take,
and a matrix.yaml is valid almost every time it is read. `check` walks the same schema for the
keywords it knows and answers True (valid), False (invalid) or None (a keyword or a value it does
not know how to judge). Only True is taken as an answer; anything else goes to jsonschema, which
also words the error. So the schema stays the one source of the rules.
"""

from __future__ import annotations

import re
from typing import Any

_KNOWN = frozenset(
    {
        "$schema",
        "title",
        "description",
        "type",
        "enum",
        "pattern",
        "minLength",
        "minItems",
        "items",
        "properties",
        "additionalProperties",
        "required",
        "minProperties",
        "not",
    }
)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def valid(instance: Any, schema: dict[str, Any]) -> bool:
    return check(instance, schema) is True


def check(instance: Any, schema: Any) -> bool | None:
    if not isinstance(schema, dict) or not schema.keys() <= _KNOWN:
        return None
    if not _json(instance):
        return None  # a YAML date, a non-string key…: jsonschema's call
    if "type" in schema:
        kinds = _TYPES.get(schema["type"]) if isinstance(schema["type"], str) else None
        if kinds is None:
            return None
        if isinstance(instance, bool) and bool not in kinds:
            return False
        if not isinstance(instance, kinds):
            return False
    if "enum" in schema and not any(_same(instance, e) for e in schema["enum"]):
        return False
    if isinstance(instance, str):
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            return False
        if len(instance) < schema.get("minLength", 0):
            return False
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            return False
        if "items" in schema:
            verdicts = [check(item, schema["items"]) for item in instance]
            if False in verdicts or None in verdicts:
                return False if False in verdicts else None
    if isinstance(instance, dict):
        verdict = _object(instance, schema)
        if verdict is not True:
            return verdict
    if "not" in schema:
        inner = check(instance, schema["not"])
        if inner is not False:
            return None if inner is None else False
    return True


def _object(instance: dict[str, Any], schema: dict[str, Any]) -> bool | None:
    if any(key not in instance for key in schema.get("required", ())):
        return False
    if len(instance) < schema.get("minProperties", 0):
        return False
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        sub = props.get(key, extra)
        verdict = sub if isinstance(sub, bool) else check(value, sub)
        if verdict is not True:
            return verdict
    return True


def _json(value: Any) -> bool:
    """A value JSON can hold (containers are judged item by item as the walk goes down)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value)
    return value is None or isinstance(value, (str, int, float, bool, list))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b
