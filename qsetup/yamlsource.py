"""Read YAML while remembering where each value came from.

Validation errors must name ``FILE:LINE:COL``; plain ``yaml.safe_load`` forgets
positions, so this composes the node tree and records a position per path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class YamlDocument:
    """Parsed data plus the position of every value and every mapping key."""

    path: Path
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, path: PathKey, *, key: bool = False) -> Position:
        """Return the best known position for a field path.

        Walks up to the nearest ancestor that has a recorded position, so a
        missing field points at the mapping that should hold it.
        """
        probe = tuple(path)
        if key and probe in self.keys:
            return self.keys[probe]
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))


class YamlSourceError(Exception):
    """The text is not YAML we can read; carries a position and a readable reason."""

    def __init__(self, position: Position, message: str) -> None:
        self.position = position
        self.message = message
        super().__init__(message)


def _mark(mark: Any) -> Position:
    if mark is None:
        return Position(1, 1)
    return Position(int(mark.line) + 1, int(mark.column) + 1)


def _explain(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "invalid YAML"
    if "\\t" in problem or "'\\t'" in problem or "tab" in problem:
        return "a tab character; YAML indentation must use spaces"
    if exc.context:
        return f"invalid YAML: {problem} ({exc.context})"
    return f"invalid YAML: {problem}"


def parse_yaml(path: Path, text: str) -> YamlDocument:
    """Parse one YAML document, recording positions; raise YamlSourceError when unreadable."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise YamlSourceError(_mark(exc.problem_mark or exc.context_mark), _explain(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSourceError(Position(1, 1), f"invalid YAML: {exc}") from None
    doc = YamlDocument(path=path, data=None)
    if node is None:
        return doc
    constructor = yaml.SafeLoader("")
    doc.data = _build(node, (), doc, constructor)
    return doc


def _build(node: yaml.Node, path: PathKey, doc: YamlDocument, ctor: yaml.SafeLoader) -> Any:
    doc.values[path] = _mark(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        try:
            ctor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise YamlSourceError(_mark(exc.problem_mark), _explain(exc)) from None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, ctor)
            if isinstance(key, list | dict) or key is None:
                raise YamlSourceError(_mark(key_node.start_mark), "a mapping key must be a string")
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise YamlSourceError(
                    _mark(key_node.start_mark), f"key '{key}' appears twice in the same mapping"
                )
            doc.keys[(*path, key)] = _mark(key_node.start_mark)
            result[key] = _build(value_node, (*path, key), doc, ctor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, ctor) for i, item in enumerate(node.value)]
    return _scalar(node, ctor)


def _scalar(node: yaml.Node, ctor: yaml.SafeLoader) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return [] if isinstance(node, yaml.SequenceNode) else {}
    try:
        return ctor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise YamlSourceError(_mark(exc.problem_mark or node.start_mark), _explain(exc)) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML can fail on odd scalars (e.g. out-of-range timestamps).
        raise YamlSourceError(_mark(node.start_mark), f"unreadable value ({exc})") from None


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; raise YamlSourceError-style problems as OSError subclasses."""
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise UnicodeDecodeError("utf-8", raw, 0, 1, "binary content (NUL byte)")
    return raw.decode("utf-8")
