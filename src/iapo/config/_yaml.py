"""A safe YAML reader for configs: duplicate keys are errors, and a document is bounded.

PyYAML's ``safe_load`` lets a later duplicate key silently win, and expands nothing itself but
hands back a graph in which aliases share nodes: a 1 KB "billion laughs" config becomes gigabytes
as soon as anything walks it (validation, hashing, JSON). Here the composed node graph is
measured before anything is constructed: at most :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_NODES` nodes counting every alias as the copy it stands for.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_DEPTH", "MAX_NODES", "YAMLLimitError", "load_yaml"]

#: The deepest nesting a config may have (real configs nest 4 or 5 levels).
MAX_DEPTH = 64
#: The most nodes a config may expand to, aliases counted as copies (real configs: a few hundred).
MAX_NODES = 100_000


class YAMLLimitError(ValueError):
    """A YAML document that breaks a rule of :func:`load_yaml`; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.field = field


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and nesting deeper than MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YAMLLimitError(
                    f"nested more than {MAX_DEPTH} levels deep: flatten it", mark.line + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise YAMLLimitError(
                    f"duplicate key {key!r}: a key may appear once per mapping; keep one",
                    key_node.start_mark.line + 1,
                    str(key),
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> int:
    """Nodes in the document with every alias expanded (computed once per shared node)."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size or (not done and id(node) in open_):
            if not done and id(node) in open_:
                raise YAMLLimitError("an alias refers to itself: write the value out")
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > MAX_NODES:
                return size[id(node)]
        else:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def load_yaml(text: str) -> Any:
    """The data of a one-document YAML ``text`` (safe types only). Raises ``yaml.YAMLError`` for
    malformed YAML and :class:`YAMLLimitError` for duplicate keys, too deep nesting, or a
    document that expands (through aliases) to more than MAX_NODES nodes."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise YAMLLimitError(
                f"expands to more than {MAX_NODES:,} values (through anchors and aliases): "
                "write the values out or use fewer aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
