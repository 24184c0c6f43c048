"""Reading YAML and JSON documents while remembering where every value came from.

The typed layer (:mod:`anycell.typed`) turns plain data into dataclasses and
needs the line and column of every key and value to point a person at the
exact spot of a mistake. PyYAML's node tree has those marks, so we compose the
node tree and convert it ourselves.

A ``.json`` document is JSON, not YAML 1.1 (which would read ``5e-05`` as
text): it is parsed by :mod:`json` (syntax errors carry JSON's line and
column), then composed as YAML only to learn where each value is (JSON is
YAML 1.2), with every scalar read back from its source text as JSON. So both
formats get the same positions in their errors.

Limits (:func:`check_limits`), so no document can hang or crash a loader: at most
``MAX_DEPTH`` levels of nesting, ``MAX_NODES`` values after aliases are expanded (no
"billion laughs"), ``MAX_ALIASES`` aliases, ``MAX_TEXT`` characters; numbers finite and
within ``MAX_NUMBER``; no control characters in text. Each refusal names the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from .errors import ConfigError, Location

PathKey = Tuple[Union[str, int], ...]

MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_ALIASES = 1_000
MAX_TEXT = 5_000_000
MAX_NUMBER = 1e15


def _control(text: str) -> int:
    """Index of the first control character (C0 but tab/newline/CR, DEL, C1, NUL), or -1."""
    for i, c in enumerate(text):
        o = ord(c)
        if (o < 32 and c not in "\t\n\r") or 127 <= o < 160:
            return i
    return -1


def check_limits(data: Any, file: Optional[str] = None) -> None:
    """Refuse data nested too deep, too large, with out-of-range numbers or control characters.

    Iterative (no recursion), so it is safe on any input; raises :class:`ConfigError` with the field.
    """
    stack: List[Tuple[Any, PathKey, int]] = [(data, (), 0)]
    count = 0
    while stack:
        value, path, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"the document has more than {MAX_NODES} values", field=format_path(path),
                              location=Location(file), hint="send a smaller document")
        if depth > MAX_DEPTH:
            raise ConfigError(f"the document nests deeper than {MAX_DEPTH} levels", field=format_path(path),
                              location=Location(file), hint="flatten the document")
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and _control(k) >= 0:
                    raise ConfigError("a key holds a control character", field=format_path(path),
                                      location=Location(file), hint="remove control characters from keys")
                stack.append((v, path + (k,), depth + 1))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                stack.append((v, path + (i,), depth + 1))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_NUMBER:
                raise ConfigError(f"number {str(value)[:24]}{'...' if len(str(value)) > 24 else ''} is out of range "
                                  f"(at most {MAX_NUMBER:g} in size)", field=format_path(path),
                                  location=Location(file), hint="use a realistic value")
        elif isinstance(value, float):
            if not math.isfinite(value) or abs(value) > MAX_NUMBER:
                raise ConfigError(f"number {value} is out of range (finite, at most {MAX_NUMBER:g} in size)",
                                  field=format_path(path), location=Location(file), hint="use a realistic value")
        elif isinstance(value, str):
            at = _control(value)
            if at >= 0:
                raise ConfigError(f"text holds a control character (U+{ord(value[at]):04X} at position {at})",
                                  field=format_path(path), location=Location(file),
                                  hint="remove control characters; use plain text")


@dataclass
class Document:
    """Plain data plus the position of each value, keyed by its path."""

    data: Any
    file: Optional[str] = None
    positions: Dict[PathKey, Tuple[int, int]] = field(default_factory=dict)
    key_positions: Dict[PathKey, Tuple[int, int]] = field(default_factory=dict)

    @property
    def base_dir(self) -> Optional[str]:
        """The directory that relative file references in this document resolve against."""
        if not self.file or self.file.startswith("<"):   # "<api:job>", "<journal:...>": no folder of its own
            return None
        return os.path.dirname(os.path.abspath(self.file))

    def location(self, path: PathKey, *, key: bool = False) -> Location:
        """Where ``path`` is; the nearest enclosing value when the path itself is absent."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while True:
            if probe in table:
                line, col = table[probe]
                return Location(self.file, line, col)
            if key and probe in self.positions:
                line, col = self.positions[probe]
                return Location(self.file, line, col)
            if not probe:
                return Location(self.file)
            probe = probe[:-1]


def format_path(path: PathKey) -> str:
    """``('machines', 1, 'driver')`` -> ``machines[1].driver``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<document>"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader; duplicate keys are caught in :func:`_convert`; aliases and nesting are counted."""

    aliases = 0
    depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise ConfigError(f"more than {MAX_ALIASES} aliases", hint="write the values out, or use fewer aliases",
                                  location=Location(self.name if self.name != "<unicode string>" else None,
                                                    mark.line + 1, mark.column + 1))
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"the document nests deeper than {MAX_DEPTH} levels", hint="flatten the document",
                                  location=Location(None, mark.line + 1, mark.column + 1))
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _scalar(node: yaml.Node, loader: yaml.SafeLoader, json_source: Optional[str]) -> Any:
    """A scalar's value: YAML's reading, or for a JSON document, JSON's reading of its source text."""
    if json_source is not None and isinstance(node, yaml.ScalarNode):
        return json.loads(json_source[node.start_mark.index:node.end_mark.index])
    return loader.construct_object(node, deep=True)


def _convert(node: yaml.Node, path: PathKey, doc: Document, loader: yaml.SafeLoader,
             json_source: Optional[str] = None) -> Any:
    seen = getattr(loader, "converted", 0) + 1
    loader.converted = seen   # type: ignore[attr-defined]
    if seen > MAX_NODES:
        raise ConfigError(f"the document expands to more than {MAX_NODES} values (aliases?)", field=format_path(path),
                          location=Location(doc.file), hint="write the values out, or use fewer aliases")
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        if json_source is None:
            loader.flatten_mapping(node)
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader, json_source)
            if not isinstance(key, str):
                raise ConfigError(
                    f"keys must be text, found {key!r}",
                    field=format_path(path),
                    location=Location(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                    hint="quote the key",
                )
            child = path + (key,)
            if key in out:
                raise ConfigError(
                    f"duplicate key '{key}'",
                    field=format_path(child),
                    location=Location(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                    hint="each key may appear once in a mapping; remove or merge the repeat",
                )
            doc.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, doc, loader, json_source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc, loader, json_source) for i, item in enumerate(node.value)]
    return _scalar(node, loader, json_source)


def is_json(file: Optional[str]) -> bool:
    """Whether a document of this file name is read as JSON (``.json``), else as YAML."""
    return bool(file) and str(file).lower().endswith(".json")


def parse_text(text: str, file: Optional[str] = None, *, fmt: Optional[str] = None) -> Document:
    """Parse YAML or JSON text into a :class:`Document`; syntax errors carry their position.

    ``fmt`` is ``json`` or ``yaml``; by default ``.json`` files are JSON and everything else YAML.
    """
    if (fmt or ("json" if is_json(file) else "yaml")) == "json":
        return _parse_json(text, file)
    doc = Document(data=None, file=file)
    if len(text) > MAX_TEXT:
        raise ConfigError(f"the document is {len(text)} characters, more than {MAX_TEXT}", location=Location(file),
                          hint="split it, or send a smaller document")
    try:
        loader = _UniqueKeyLoader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"the document holds a character YAML does not allow ({exc.reason}, "
                          f"position {exc.position})", location=Location(file),
                          hint="remove control characters; save the file as UTF-8 text") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the document is empty", location=Location(file, 1, 1),
                              hint="start from an example in cell_configs/ or examples/jobs/")
        doc.data = _convert(node, (), doc, loader)
    except ConfigError as exc:
        if exc.location is not None and exc.location.file is None:
            exc.location = Location(file, exc.location.line, exc.location.column)
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"YAML/JSON syntax error: {problem}", location=loc,
                          hint="check indentation, colons and quotes around this position") from None
    except yaml.YAMLError as exc:  # a reader error mid-stream (control characters) and the like
        raise ConfigError(f"YAML/JSON syntax error: {str(exc)[:120]}", location=Location(file),
                          hint="remove control characters; check the syntax") from None
    except (RecursionError, ValueError, OverflowError, TypeError) as exc:  # a value PyYAML cannot build
        raise ConfigError(f"the document cannot be read: {type(exc).__name__}: {str(exc)[:80]}",
                          location=Location(file), hint="check the values near the end of what was read") from None
    finally:
        loader.dispose()
    check_limits(doc.data, file)
    return doc


def _parse_json(text: str, file: Optional[str]) -> Document:
    """JSON text into a :class:`Document`: JSON's values, positions from the text's YAML node tree."""
    doc = Document(data=None, file=file)
    if not text.strip():
        raise ConfigError("the document is empty", location=Location(file, 1, 1),
                          hint="start from an example in cell_configs/ or examples/jobs/")
    if len(text) > MAX_TEXT:
        raise ConfigError(f"the document is {len(text)} characters, more than {MAX_TEXT}", location=Location(file),
                          hint="split it, or send a smaller document")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"JSON syntax error: {exc.msg}", location=Location(file, exc.lineno, exc.colno),
                          hint="check commas, quotes and brackets around this position") from None
    except (RecursionError, ValueError) as exc:   # nesting too deep for the decoder, numbers too long
        raise ConfigError(f"the document cannot be read: {type(exc).__name__}", location=Location(file),
                          hint=f"nest at most {MAX_DEPTH} levels") from None
    check_limits(data, file)
    # Valid JSON has tabs only between tokens (never raw inside a string): as spaces they keep
    # every index and column, and PyYAML, which refuses tabs there, composes the same tree.
    loader = _UniqueKeyLoader(text.replace("\t", " "))
    try:
        node = loader.get_single_node()
        doc.data = _convert(node, (), doc, loader, json_source=text) if node is not None else data
    except (yaml.YAMLError, RecursionError):  # the values without positions
        doc.positions.clear()
        doc.key_positions.clear()
        doc.data = data
    finally:
        loader.dispose()
    return doc


def load_file(path: str) -> Document:
    """Read and parse a file; a missing or unreadable file is a :class:`ConfigError`."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError("file not found", location=Location(path),
                          hint="check the path; relative paths start from the current directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", location=Location(path),
                          hint="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", location=Location(path)) from None
    except ValueError:   # a NUL in the path
        raise ConfigError("the path holds a NUL character", location=Location(repr(path)),
                          hint="check the path") from None
    return parse_text(text, file=path)


def from_data(data: Any, file: Optional[str] = None) -> Document:
    """Wrap already-parsed data (a JSON request, a dict in a test) as a document without positions."""
    check_limits(data, file)
    return Document(data=data, file=file)
