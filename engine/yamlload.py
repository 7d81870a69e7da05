"""Safe, located YAML loading for every configuration file guanxi reads.

``load_yaml`` turns one YAML document into plain Python data whose mappings and sequences
remember where they came from (``LocatedDict`` / ``LocatedList``), so later checks can say
``workflows/sales.yaml:12: unknown state 'won'`` instead of just "bad config".

Contract:

* only plain data comes out: ``LocatedDict``, ``LocatedList``, ``str``, ``int``, ``float``,
  ``bool`` and ``None``. Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1
  default: only ``true``/``false`` (three spellings each) are booleans, so ``on``, ``no``
  or a country code ``NO`` stay strings; dates and times (``2024-01-01``, ``10:30``) stay
  strings; ``012`` is twelve, not octal ten;
* anything else is refused with a ``ConfigError`` whose ``where`` is ``file:line`` and
  nothing is returned: anchors and aliases (no alias bombs), tags outside the core schema
  (no ``!!python/...`` object construction, no custom tags), duplicate or non-scalar keys,
  more than one document, a file over ``max_bytes``, nesting over ``max_depth``, more than
  ``max_nodes`` nodes, invalid UTF-8, YAML syntax errors, a missing or unreadable file.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError

__all__ = ["LocatedDict", "LocatedList", "load_yaml", "where"]

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _CORE + "seq", _CORE + "map"
#: The only tags a document may carry, explicitly (``!!int "3"``) or by resolution.
_ALLOWED_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _SEQ, _MAP})

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), checked in order.
_NULL_RE = re.compile(r"null|Null|NULL|~|")
_BOOL_RE = re.compile(r"true|True|TRUE|false|False|FALSE")
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_PATTERNS = {_NULL: _NULL_RE, _BOOL: _BOOL_RE, _INT: _INT_RE, _FLOAT: _FLOAT_RE}


class LocatedDict(dict[Any, Any]):
    """A mapping read from YAML: ``source`` (file name as given), ``line`` (1-based start)
    and ``key_lines`` (1-based line of each key). Compares equal to a plain dict."""

    def __init__(self, source: str = "", line: int | None = None) -> None:
        super().__init__()
        self.source = source
        self.line = line
        self.key_lines: dict[Any, int] = {}


class LocatedList(list[Any]):
    """A sequence read from YAML: ``source`` and 1-based ``line`` where it starts."""

    def __init__(self, source: str = "", line: int | None = None) -> None:
        super().__init__()
        self.source = source
        self.line = line


def where(node: Any, key: Any = None, *, default: str = "<unknown>") -> str:
    """Return ``"source:line"`` for ``node``, or for ``key`` of a ``LocatedDict``.

    Falls back to the source name alone when no line is known, and to ``default`` for
    plain dicts and lists, which carry no source at all.
    """
    source = getattr(node, "source", None) or default
    line = getattr(node, "line", None)
    if key is not None:
        line = getattr(node, "key_lines", {}).get(key, None)
    return f"{source}:{line}" if line is not None else source


class _Loader(yaml.SafeLoader):
    """SafeLoader that composes a node tree under limits and refuses anchors and odd tags.

    Only the scanner, parser and composer of PyYAML are used; Python objects are built by
    ``_construct`` below, never by PyYAML's constructors, so no tag can reach Python code.
    """

    def __init__(self, text: str, source: str, max_depth: int, max_nodes: int) -> None:
        super().__init__(text)
        self.source = source
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # Checked before PyYAML recurses into a child, so a deep or huge document stops at
        # the limit instead of at the recursion limit or after exhausting memory.
        event = self.peek_event()
        at = f"{self.source}:{event.start_mark.line + 1}"
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError("YAML anchors and aliases are not allowed", where=at)
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
            raise ConfigError(f"YAML tag {_show_tag(tag)} is not allowed", where=at)
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise ConfigError(f"more than {self.max_nodes} YAML nodes (max_nodes)", where=at)
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self.depth += 1
            if self.depth > self.max_depth:
                raise ConfigError(f"nesting deeper than {self.max_depth} levels", where=at)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            if nested:
                self.depth -= 1

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # Plain scalars get YAML 1.2 core tags; everything else keeps PyYAML's defaults
        # (str for quoted scalars, seq, map). Overriding here replaces the 1.1 resolvers.
        if kind is ScalarNode and implicit[0]:
            for tag, pattern in _PATTERNS.items():
                if pattern.fullmatch(value):
                    return tag
            return _STR
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]


def _show_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/object`` -> ``!!python/object`` as the user wrote it."""
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _scalar(node: ScalarNode, source: str) -> Any:
    """Value of a scalar node; an explicit tag must fit its value (``!!int x`` is an error)."""
    value: str = node.value
    tag = node.tag
    if tag == _STR:
        return value
    pattern = _PATTERNS.get(tag)
    if pattern is None or not pattern.fullmatch(value):
        raise ConfigError(
            f"{value!r} is not a valid {_show_tag(tag)} value",
            where=f"{source}:{node.start_mark.line + 1}",
        )
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value.lower() == "true"
    if tag == _INT:
        if value[:2] in ("0o", "0x"):
            return int(value[2:], 8 if value[1] == "o" else 16)
        return int(value, 10)
    lowered = value.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(value)


def _construct(root: Node, source: str) -> Any:
    """Build plain located data from a node tree, iteratively (no recursion depth issue)."""

    def make(node: Node) -> Any:
        line = node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            return _scalar(node, source)
        # An explicit tag of the wrong kind, e.g. ``!!map [1]`` or ``!!str {a: 1}``.
        expected = _SEQ if isinstance(node, SequenceNode) else _MAP
        if node.tag != expected:
            raise ConfigError(
                f"YAML tag {_show_tag(node.tag)} does not fit this value",
                where=f"{source}:{line}",
            )
        made: LocatedList | LocatedDict
        made = LocatedList(source, line) if expected == _SEQ else LocatedDict(source, line)
        pending.append((node, made))
        return made

    pending: list[tuple[Node, Any]] = []
    result = make(root)
    while pending:
        node, made = pending.pop()
        if isinstance(node, SequenceNode):
            made.extend(make(child) for child in node.value)
            continue
        assert isinstance(node, MappingNode)
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise ConfigError(
                    "mapping keys must be plain values, not lists or mappings",
                    where=f"{source}:{key_line}",
                )
            key = make(key_node)
            # Note ``1`` and ``true`` are the same Python key: also reported, not merged.
            if key in made:
                first = made.key_lines[key]
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {first})",
                    where=f"{source}:{key_line}",
                )
            made.key_lines[key] = key_line
            made[key] = make(value_node)
    return result


def _syntax_error(error: yaml.YAMLError, source: str, text: str) -> ConfigError:
    """A PyYAML error as a ConfigError at ``file:line`` with a one-line message."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and error.problem:
            # PyYAML reads "while parsing X" then "expected Y, but found Z": keep that order.
            message = f"{error.context}, {error.problem}"
        return ConfigError(
            f"YAML syntax error: {message}",
            where=f"{source}:{mark.line + 1}" if mark else source,
        )
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(error.position, 0)) + 1
        return ConfigError(
            f"unacceptable character #x{error.character:04x}"
            if isinstance(error.character, int)
            else "unacceptable character",
            where=f"{source}:{line}",
        )
    return ConfigError(f"YAML error: {error}", where=source)


def _read(source: str, max_bytes: int) -> str:
    """Read and decode the file, refusing it when larger than ``max_bytes``."""
    try:
        with open(source, "rb") as stream:
            # Read one byte past the limit rather than trusting stat() (pipes, /proc ...).
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise ConfigError(f"cannot read file: {error.strerror or error}", where=source) from None
    if len(data) > max_bytes:
        raise ConfigError(f"file is larger than the limit of {max_bytes} bytes", where=source)
    try:
        return data.decode("utf-8-sig")  # -sig: a leading BOM is accepted and dropped
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError("file is not valid UTF-8", where=f"{source}:{line}") from None


def load_yaml(
    source: str | os.PathLike[str],
    *,
    text: str | None = None,
    max_bytes: int = 1_048_576,
    max_depth: int = 64,
    max_nodes: int = 100_000,
) -> Any:
    """Load one YAML document from the file ``source`` (or from ``text``, then ``source``
    only names it in messages) as located plain data; see the module docstring.

    Returns ``None`` for an empty document. Raises ``ConfigError`` (``where`` =
    ``file:line`` when a line is known) for every refused or broken input.
    """
    name = os.fsdecode(source)
    if text is None:
        text = _read(name, max_bytes)
    else:
        if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ConfigError(f"text is larger than the limit of {max_bytes} bytes", where=name)
        text = text.removeprefix("\ufeff")
    loader: _Loader | None = None
    try:
        loader = _Loader(text, name, max_depth, max_nodes)  # the reader checks characters
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise _syntax_error(error, name, text) from None
    except RecursionError:
        # Only reachable when a caller raises max_depth past what the Python stack holds.
        raise ConfigError("YAML nesting is too deep", where=name) from None
    finally:
        if loader is not None:
            loader.dispose()
    return None if root is None else _construct(root, name)
