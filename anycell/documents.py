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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from .errors import ConfigError, Location

PathKey = Tuple[Union[str, int], ...]


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
        return os.path.dirname(os.path.abspath(self.file)) if self.file else None

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
    """SafeLoader; duplicate keys are caught in :func:`_convert`."""


def _scalar(node: yaml.Node, loader: yaml.SafeLoader, json_source: Optional[str]) -> Any:
    """A scalar's value: YAML's reading, or for a JSON document, JSON's reading of its source text."""
    if json_source is not None and isinstance(node, yaml.ScalarNode):
        return json.loads(json_source[node.start_mark.index:node.end_mark.index])
    return loader.construct_object(node, deep=True)


def _convert(node: yaml.Node, path: PathKey, doc: Document, loader: yaml.SafeLoader,
             json_source: Optional[str] = None) -> Any:
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
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the document is empty", location=Location(file, 1, 1),
                              hint="start from an example in cell_configs/ or examples/jobs/")
        doc.data = _convert(node, (), doc, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"YAML/JSON syntax error: {problem}", location=loc,
                          hint="check indentation, colons and quotes around this position") from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for text input
        raise ConfigError(f"YAML/JSON syntax error: {exc}", location=Location(file)) from None
    finally:
        loader.dispose()
    return doc


def _parse_json(text: str, file: Optional[str]) -> Document:
    """JSON text into a :class:`Document`: JSON's values, positions from the text's YAML node tree."""
    doc = Document(data=None, file=file)
    if not text.strip():
        raise ConfigError("the document is empty", location=Location(file, 1, 1),
                          hint="start from an example in cell_configs/ or examples/jobs/")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"JSON syntax error: {exc.msg}", location=Location(file, exc.lineno, exc.colno),
                          hint="check commas, quotes and brackets around this position") from None
    # Valid JSON has tabs only between tokens (never raw inside a string): as spaces they keep
    # every index and column, and PyYAML, which refuses tabs there, composes the same tree.
    loader = _UniqueKeyLoader(text.replace("\t", " "))
    try:
        node = loader.get_single_node()
        doc.data = _convert(node, (), doc, loader, json_source=text) if node is not None else data
    except yaml.YAMLError:  # JSON that PyYAML cannot compose: the values without positions
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
    return parse_text(text, file=path)


def from_data(data: Any, file: Optional[str] = None) -> Document:
    """Wrap already-parsed data (a JSON request, a dict in a test) as a document without positions."""
    return Document(data=data, file=file)
