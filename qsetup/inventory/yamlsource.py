"""Read YAML while remembering where each value came from.

Validation errors must name ``FILE:LINE:COL``; plain ``yaml.safe_load`` forgets
positions, so this composes the node tree and records a position per path.
"""

from __future__ import annotations

import errno
import re
import unicodedata
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
    odd_numbers: dict[PathKey, str] = field(default_factory=dict)
    """Numbers YAML 1.1 reads other than they look (0755 is 493, 1:30 is 90), as written."""

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


def printable(text: str) -> str:
    """Escape line breaks and other control characters, so a problem stays on one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def bad_character(text: str, *, show: bool = True) -> str | None:
    """Describe the first character that cannot travel as text (NUL, surrogate, control).

    YAML's double-quoted escapes (backslash 0, backslash ud800, backslash n) put characters
    into values that the raw file may not hold; none of them belongs in a name, path, URL
    or environment file. Returns None when the text is clean; ``show=False`` leaves the
    character out (for secrets).
    """
    if text.isprintable():
        return None
    for ch in text:
        if ch == "\0":
            return "a NUL character"
        category = unicodedata.category(ch)
        shown = f" ({repr(ch)[1:-1]})" if show else ""
        if category == "Cs":
            return f"a lone surrogate{shown}, which is not text"
        if category in ("Cc", "Zl", "Zp"):
            return f"a control character{shown}"
        code = ord(ch)
        if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            # systemd drops an environment line holding one ("invalid UTF-8")
            return f"a Unicode noncharacter{shown}"
    return None


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
    if "another document" in problem:
        return "more than one YAML document; keep one (remove the extra '---' line)"
    context = exc.context or ""
    start, mark = exc.context_mark, exc.problem_mark
    if context and start is not None and mark is not None and start.line != mark.line:
        context = f"{context} started at line {start.line + 1}"
    detail = f"{problem} ({context})" if context else problem
    return f"invalid YAML: {detail}; check quotes, brackets and indentation there"


# Aliases let a few lines expand into millions of values ("billion laughs"), and a
# recursive alias never ends; both are refused rather than built.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def _tag_name(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    short = "!!" + tag.removeprefix(prefix) if tag.startswith(prefix) else tag
    return printable(short if len(short) <= 40 else short[:37] + "...")


class _UntaggedLoader(yaml.SafeLoader):
    """SafeLoader that refuses explicit tags (``!!binary``, ``!!python/...``, ``!x``).

    A tag changes what a value becomes (bytes, a set, a float from text), so the
    inventory and secrets keep to plain YAML: strings, numbers, booleans, lists, maps.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        tag = getattr(event, "tag", None)
        if tag is not None and not isinstance(event, yaml.AliasEvent):
            raise YamlSourceError(
                _mark(event.start_mark),
                f"the YAML tag '{_tag_name(tag)}' is not allowed; remove it and write a plain "
                "value (put text in quotes)",
            )
        return super().compose_node(parent, index)


def parse_yaml(path: Path, text: str) -> YamlDocument:
    """Parse one YAML document, recording positions; raise YamlSourceError when unreadable."""
    try:
        node = yaml.compose(text, Loader=_UntaggedLoader)
    except yaml.MarkedYAMLError as exc:
        raise YamlSourceError(_mark(exc.problem_mark or exc.context_mark), _explain(exc)) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        where = Position(before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlSourceError(
            where, f"character #x{code:04x} is not allowed in YAML; remove it"
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise YamlSourceError(Position(1, 1), f"invalid YAML: {first}") from None
    except RecursionError:
        raise YamlSourceError(
            _too_deep(text), f"nested too deeply; an inventory needs at most {MAX_DEPTH} levels"
        ) from None
    doc = YamlDocument(path=path, data=None)
    if node is None:
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(node, ())
    return doc


_OPENS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _too_deep(text: str) -> Position:
    """Where ``text`` first nests deeper than MAX_DEPTH (the scanner does not recurse)."""
    depth = 0
    try:
        for token in yaml.scan(text, Loader=_UntaggedLoader):
            if isinstance(token, _OPENS):
                depth += 1  # the top-level collection is depth 1, the builder's level 0
                if depth - 1 > MAX_DEPTH:
                    return _mark(token.start_mark)
            elif isinstance(token, _CLOSES):
                depth -= 1
    except yaml.YAMLError:
        pass
    return Position(1, 1)


_OCTAL = re.compile(r"[-+]?0[0-7_]+")


class _Builder:
    """Turn a composed node tree into plain data, recording every position."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.ctor = yaml.SafeLoader("")
        self.active: set[int] = set()  # ids of the nodes being built: an alias cycle check
        self.count = 0

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise YamlSourceError(
                _mark(node.start_mark),
                f"more than {MAX_VALUES} values (aliases expand too far); write the data out",
            )
        if len(path) > MAX_DEPTH:
            raise YamlSourceError(
                _mark(node.start_mark),
                f"nested too deeply; an inventory needs at most {MAX_DEPTH} levels",
            )
        if id(node) in self.active:
            raise YamlSourceError(
                _mark(node.start_mark), "an alias refers to its own anchor; remove the loop"
            )
        self.doc.values[path] = _mark(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            self.active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self.active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            try:
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        value = _scalar(node, self.ctor)
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(node.value)
            if ":" in text or _OCTAL.fullmatch(text):
                self.doc.odd_numbers[path] = text
        return value

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        try:
            self.ctor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise YamlSourceError(_mark(exc.problem_mark), _explain(exc)) from None
        except RecursionError:
            raise YamlSourceError(
                _mark(node.start_mark), "a merge key (<<) refers to its own anchor; remove the loop"
            ) from None
        # flatten_mapping puts the merged (<<) pairs first; later pairs override them, as
        # in PyYAML, but a key written twice by hand is an error.
        merged = len(node.value) - explicit
        written: set[str] = set()
        result: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = _scalar(key_node, self.ctor)
            if isinstance(key, list | dict) or key is None:
                raise YamlSourceError(_mark(key_node.start_mark), "a mapping key must be a string")
            if not isinstance(key, str):
                key = str(key)
            if key in written:
                first = self.doc.keys[(*path, key)]
                raise YamlSourceError(
                    _mark(key_node.start_mark),
                    f"key '{key}' appears twice in the same mapping (first at line {first.line}); "
                    "keep one",
                )
            if index >= merged:
                written.add(key)
            self.doc.keys[(*path, key)] = _mark(key_node.start_mark)
            if self.doc.odd_numbers:  # a later pair overrides a merged (<<) one, and its notes
                under = (*path, key)
                for odd in [p for p in self.doc.odd_numbers if p[: len(under)] == under]:
                    del self.doc.odd_numbers[odd]
            result[key] = self.build(value_node, (*path, key))
        return result


def _scalar(node: yaml.Node, ctor: yaml.SafeLoader) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return [] if isinstance(node, yaml.SequenceNode) else {}
    try:
        return ctor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise YamlSourceError(_mark(exc.problem_mark or node.start_mark), _explain(exc)) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML can fail on odd scalars (e.g. out-of-range timestamps).
        raise YamlSourceError(
            _mark(node.start_mark), f"unreadable value ({exc}); quote it if it is text"
        ) from None


MAX_BYTES = 4 * 1024 * 1024


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; raise OSError (or UnicodeDecodeError) when it cannot be used.

    Reads at most MAX_BYTES, so a device or an endless pipe given by mistake cannot hang.
    """
    with path.open("rb") as fh:
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise OSError(
            errno.EFBIG, f"larger than {MAX_BYTES // (1024 * 1024)} MiB; is it the right file?"
        )
    if b"\x00" in raw:
        raise UnicodeDecodeError("utf-8", raw, 0, 1, "binary content (NUL byte)")
    return raw.decode("utf-8")
