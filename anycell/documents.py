"""Reading YAML and JSON documents while remembering where every value came from.

The typed layer (:mod:`anycell.typed`) turns plain data into dataclasses and
needs the line and column of every key and value to point a person at the
exact spot of a mistake. PyYAML's node tree has those marks, so we compose the
node tree and convert it ourselves. JSON is read through the same path (YAML
1.2 is a superset of JSON for the documents we accept), so both formats get
identical positions in their errors.
"""

from __future__ import annotations

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


def _convert(node: yaml.Node, path: PathKey, doc: Document, loader: yaml.SafeLoader) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
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
            out[key] = _convert(value_node, child, doc, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_text(text: str, file: Optional[str] = None) -> Document:
    """Parse YAML or JSON text into a :class:`Document`; syntax errors carry their position."""
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
