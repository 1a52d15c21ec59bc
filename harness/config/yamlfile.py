"""Reading a user's YAML file (matrix.yaml, a consumer manifest): one clear line on any error.

A matrix.yaml may come from a pull request, so the loader is PyYAML's safe loader with limits
(docs/security.md): aliases may not expand the document by more than ALIAS_BUDGET nodes (a
"billion laughs" file is a few hundred bytes), nesting stops at MAX_DEPTH (PyYAML composes
recursively), mapping keys must be strings and unique (PyYAML silently keeps the last duplicate).
Each of these is a ConfigError naming the file, line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.errors import ConfigError

ALIAS_BUDGET = 10_000  # nodes that aliases may add to a document once expanded
MAX_DEPTH = 64  # nested collections; matrix.yaml needs 4
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) → its size once aliases expand
        self._expanded = 0
        self._open: set[str] = set()  # anchors whose node is still being composed

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if event.anchor in self._open:
                raise _Refused(
                    None, None, f"alias *{event.anchor} refers to itself", event.start_mark
                )
            if node is not None:
                self._expanded += _size(node, self._sizes)
                if self._expanded > ALIAS_BUDGET:
                    raise _Refused(
                        None,
                        None,
                        f"aliases expand to more than {ALIAS_BUDGET:,} nodes",
                        event.start_mark,
                    )
            return super().compose_node(parent, index)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor:
            self._open.add(anchor)
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor:
                self._open.discard(anchor)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):  # PyYAML raises its own error for anything else
            seen: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:  # `<<: *base`: checked where `base` was built
                    continue
                if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                    kind = key_node.tag.rsplit(":", 1)[-1]
                    raise _Refused(
                        None,
                        None,
                        f"keys must be text, not {kind} {_short(key_node.value)} (quote it)",
                        key_node.start_mark,
                    )
                if key_node.value in seen:
                    raise _Refused(
                        None, None, f"duplicate key {_short(key_node.value)}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _size(node: Node, sizes: dict[int, int]) -> int:
    """Nodes in `node` with every alias expanded; memoised, so a bomb costs its real size."""
    if id(node) in sizes:
        return sizes[id(node)]
    n = 1
    if isinstance(node, SequenceNode):
        n += sum(_size(child, sizes) for child in node.value)
    elif isinstance(node, MappingNode):
        n += sum(_size(k, sizes) + _size(v, sizes) for k, v in node.value)
    sizes[id(node)] = n
    return n


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(text: object) -> str:
    return " ".join(str(text).split())


def read(path: Path, what: str, hint: str = "") -> Any:
    """The parsed document; ConfigError naming the file (and line:column) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: {what} file not found{hint}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the {what} file: {_line(err)}") from err
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.reader.ReaderError as err:  # a NUL or other control character
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: malformed YAML: control character "
            f"U+{int(err.character):04X} is not allowed"
        ) from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "malformed"
        kind = "refused YAML" if isinstance(err, _Refused) else "malformed YAML"
        raise ConfigError(f"{path}{where}: {kind}: {_line(problem)}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {_line(err)}") from err
    except RecursionError as err:  # pragma: no cover - MAX_DEPTH stops this first
        raise ConfigError(f"{path}: nested too deeply") from err
    finally:
        if loader is not None:
            loader.dispose()
