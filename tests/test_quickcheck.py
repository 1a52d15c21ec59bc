"""quickcheck never calls valid what jsonschema rejects, and does call the usual matrices valid
(so that a warm run skips importing jsonschema)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import jsonschema
import pytest

from harness.config import matrix, quickcheck

GOOD: dict[str, Any] = {
    "repo": "ggml-org/llama.cpp",
    "sources": ["github", "npm"],
    "verify": "if-available",
    "releases": ["b8095", "latest", "v0.5.0"],
    "platforms": [
        {"os": "linux", "arch": "x64", "variants": ["cpu", "vulkan"]},
        {"os": "macos", "arch": "arm64", "variant": "metal"},
        {"os": "windows", "arch": "x64"},
    ],
    "exclude": [{"release": "b8095", "os": "windows", "variant": "cuda-12.4"}],
    "model": "tiny",
}


def _set(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    *parents, last = path
    node = data
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


BAD = [
    _set(["releases"], KeyError),
    _set(["releases"], []),
    _set(["releases", 0], "8095"),
    _set(["releases", 0], 8095),
    _set(["releases", 0], True),
    _set(["verify"], "sometimes"),
    _set(["verify"], None),
    _set(["sources"], []),
    _set(["sources", 0], "gitlab"),
    _set(["repo"], "no-slash"),
    _set(["model"], ""),
    _set(["extra"], 1),
    _set(["platforms", 0, "os"], "beos"),
    _set(["platforms", 0, "arch"], 64),
    _set(["platforms", 0, "variant"], "cpu"),  # with variants: both given
    _set(["platforms", 0, "variants"], []),
    _set(["platforms", 0, "variants", 0], "Vulkan"),
    _set(["platforms", 1, "flavour"], "x"),
    _set(["platforms", 2], "linux/x64"),
    _set(["exclude", 0], {}),
    _set(["exclude", 0, "release"], "tip"),
    _set(["releases", 0], dt.date(2026, 1, 1)),
    {1: "x", **GOOD},
    [GOOD],
    None,
]


def _jsonschema_valid(data: Any) -> bool:
    return jsonschema.Draft202012Validator(matrix.SCHEMA).is_valid(data)


def test_usual_matrices_are_shown_valid() -> None:
    assert quickcheck.valid(GOOD, matrix.SCHEMA)
    minimal = {"releases": ["b1"], "platforms": [{"os": "linux", "arch": "x64"}]}
    assert quickcheck.valid(minimal, matrix.SCHEMA)


@pytest.mark.parametrize("data", BAD, ids=[str(i) for i in range(len(BAD))])
def test_never_valid_where_jsonschema_says_invalid(data: Any) -> None:
    assert not _jsonschema_valid(data)
    assert not quickcheck.valid(data, matrix.SCHEMA)


def test_unknown_keywords_are_left_to_jsonschema() -> None:
    assert quickcheck.check("x", {"format": "email"}) is None
    assert quickcheck.check(1.0, {"type": "integer"}) is False  # jsonschema decides: it is one
