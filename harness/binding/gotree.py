"""tree-sitter's Go grammar, and the two node helpers the Go readers share."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

Node = Any  # tree_sitter.Node; the package ships no stubs mypy can use


@cache
def parser() -> Any:
    # Imported here: only reading a Go binding needs the grammar.
    import tree_sitter_go
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_go.language()))


def text(node: Node) -> str:
    return node.text.decode("utf-8", "replace")


def walk(node: Node) -> Iterator[Node]:
    """Every node under `node`, itself first, in source order (no recursion: files are deep)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))
