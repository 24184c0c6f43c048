"""Typed documents: plain data -> frozen dataclasses, and dataclasses -> JSON Schema.

The cell config and the job spec are declared once, as dataclasses whose fields
carry their documentation and limits in ``field(metadata=...)`` (see
:func:`spec`). From that one declaration this module

* converts a parsed :class:`~anycell.documents.Document` into the dataclasses,
  rejecting unknown fields (with a "did you mean"), wrong types, out-of-range
  numbers and escaping file references, each error naming file, line, column
  and field path; and
* exports a JSON Schema (draft 2020-12) so editors can complete and check the
  same documents.

Keeping both in one place means the schema can never disagree with the loader.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import typing
from dataclasses import MISSING
from typing import Any, Callable, Dict, List, Literal, Optional, Type, TypeVar, Union

from .documents import Document, PathKey, format_path
from .errors import ConfigError

T = TypeVar("T")


class FileRef(str):
    """A path to a file, resolved against the directory of the document that names it."""


def spec(
    doc: str,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    exclusive_minimum: Optional[float] = None,
    length: Optional[int] = None,
    min_items: Optional[int] = None,
    pattern: Optional[str] = None,
    examples: Optional[List[Any]] = None,
) -> Any:
    """A dataclass field with documentation and limits that both the loader and schema use."""
    meta = {
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "length": length,
        "min_items": min_items,
        "pattern": pattern,
        "examples": examples,
    }
    kwargs: Dict[str, Any] = {"metadata": meta}
    if default is not MISSING:
        kwargs["default"] = default
    if default_factory is not MISSING:
        kwargs["default_factory"] = default_factory
    return dataclasses.field(**kwargs)


class Context:
    """What conversion needs besides the data: the document (for positions) and its directory."""

    def __init__(self, document: Document, base_dir: Optional[str] = None) -> None:
        self.document = document
        self.base_dir = base_dir if base_dir is not None else document.base_dir

    def error(self, path: PathKey, message: str, hint: Optional[str] = None, *, key: bool = False,
              cls: Type[ConfigError] = ConfigError) -> ConfigError:
        """Build an error that points at ``path`` in the document."""
        return cls(message, field=format_path(path), location=self.document.location(path, key=key), hint=hint)


def _type_hints(cls: type) -> Dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def _check_number(value: float, meta: Dict[str, Any], path: PathKey, ctx: Context) -> None:
    lo, hi, xlo = meta.get("minimum"), meta.get("maximum"), meta.get("exclusive_minimum")
    if lo is not None and value < lo:
        raise ctx.error(path, f"{value} is below the minimum {lo}", "use a value within the documented range")
    if hi is not None and value > hi:
        raise ctx.error(path, f"{value} is above the maximum {hi}", "use a value within the documented range")
    if xlo is not None and value <= xlo:
        raise ctx.error(path, f"{value} must be greater than {xlo}", "use a positive value")


def _resolve_file(value: str, path: PathKey, ctx: Context) -> FileRef:
    if ctx.base_dir is None:
        raise ctx.error(path, f"file reference '{value}' cannot be resolved here",
                        "documents sent over the API must carry programs inline, not as file paths")
    base = os.path.realpath(ctx.base_dir)
    full = os.path.realpath(os.path.join(base, value))
    if os.path.commonpath([base, full]) != base:
        raise ctx.error(path, f"file reference '{value}' escapes the document's directory {base}",
                        "keep referenced files in the same folder as the document, or below it")
    if not os.path.isfile(full):
        raise ctx.error(path, f"file '{value}' not found (looked for {full})",
                        "paths are relative to the file that names them")
    return FileRef(full)


def convert(tp: Any, value: Any, path: PathKey, ctx: Context, meta: Optional[Dict[str, Any]] = None) -> Any:
    """Convert ``value`` to type ``tp``; raise a located :class:`ConfigError` when it does not fit."""
    meta = meta or {}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is Union:
        non_none = [a for a in args if a is not type(None)]
        if value is None and len(non_none) < len(args):
            return None
        if len(non_none) == 1:
            return convert(non_none[0], value, path, ctx, meta)
        raise TypeError(f"unsupported union {tp}")  # pragma: no cover - a declaration bug

    if tp is Any:
        return value
    if tp is FileRef:
        if not isinstance(value, str) or not value:
            raise ctx.error(path, f"expected a file path, found {value!r}")
        return _resolve_file(value, path, ctx)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected text, found {value!r}", "quote the value")
        pattern = meta.get("pattern")
        if pattern:
            import re

            if not re.fullmatch(pattern, value):
                raise ctx.error(path, f"'{value}' does not match the pattern {pattern}",
                                "ids use letters, digits, '_' and '-', and start with a letter")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, found {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected a whole number, found {value!r}")
        _check_number(value, meta, path, ctx)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(path, f"expected a number, found {value!r}",
                            "numbers are in SI units (meters, radians, seconds, kilograms)")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ctx.error(path, "expected a finite number")
        _check_number(value, meta, path, ctx)
        return value
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "allowed: " + ", ".join(str(a) for a in args)
            raise ctx.error(path, f"'{value}' is not one of {', '.join(str(a) for a in args)}", hint)
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # pragma: no cover - not used yet
        return tp(value)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ctx.error(path, f"expected a list, found {_describe(value)}")
        length, min_items = meta.get("length"), meta.get("min_items")
        if length is not None and len(value) != length:
            raise ctx.error(path, f"expected exactly {length} items, found {len(value)}",
                            "vectors are [x, y, z]; angles are [roll, pitch, yaw] in radians")
        if min_items is not None and len(value) < min_items:
            raise ctx.error(path, f"expected at least {min_items} item(s), found {len(value)}")
        item_meta = {k: meta.get(k) for k in ("minimum", "maximum", "exclusive_minimum", "pattern")}
        return [convert(args[0], item, path + (i,), ctx, item_meta) for i, item in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a mapping, found {_describe(value)}")
        item_meta = {k: meta.get(k) for k in ("minimum", "maximum", "exclusive_minimum")}
        return {k: convert(args[1], v, path + (k,), ctx, item_meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) or _tagged_variants(tp) is not None:
        return convert_dataclass(tp, value, path, ctx)
    raise TypeError(f"unsupported type {tp}")  # pragma: no cover - a declaration bug


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _tagged_variants(cls: Any) -> Optional[Dict[str, type]]:
    variants = getattr(cls, "VARIANTS", None) if isinstance(cls, type) else None
    return variants() if callable(variants) else None


def convert_dataclass(cls: Type[T], value: Any, path: PathKey, ctx: Context) -> T:
    """Build dataclass ``cls`` from a mapping, checking unknown, missing and mistyped fields.

    A class with a ``VARIANTS()`` classmethod is a tagged union: its ``kind``
    field picks the concrete dataclass.
    """
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a mapping, found {_describe(value)}",
                        "write this as 'key: value' lines")
    variants = _tagged_variants(cls)
    if variants is not None:
        kind = value.get("kind")
        if kind is None:
            raise ctx.error(path, "missing required field 'kind'", "one of: " + ", ".join(variants))
        if kind not in variants:
            close = difflib.get_close_matches(str(kind), list(variants), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(variants)
            raise ctx.error(path + ("kind",), f"unknown kind '{kind}'", hint)
        cls = variants[kind]  # type: ignore[assignment]
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else "known fields: " + ", ".join(fields)
            raise ctx.error(path + (key,), f"unknown field '{key}'", hint, key=True)
    kwargs: Dict[str, Any] = {}
    for name, fld in fields.items():
        if name in value:
            kwargs[name] = convert(hints[name], value[name], path + (name,), ctx, dict(fld.metadata))
        elif fld.default is MISSING and fld.default_factory is MISSING:  # type: ignore[misc]
            doc = fld.metadata.get("doc", "")
            raise ctx.error(path, f"missing required field '{name}'", doc or None)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check(path, ctx)
    return obj


# ---------------------------------------------------------------- JSON Schema


def json_schema(cls: type, title: str, schema_id: str) -> Dict[str, Any]:
    """A JSON Schema (2020-12) for dataclass ``cls``, with shared definitions in ``$defs``."""
    defs: Dict[str, Any] = {}
    root = _schema_for(cls, {}, defs)
    out: Dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
    }
    out.update(root)
    out["$defs"] = defs
    return out


def _schema_for(tp: Any, meta: Dict[str, Any], defs: Dict[str, Any]) -> Dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    out: Dict[str, Any]
    if origin is Union:
        non_none = [a for a in args if a is not type(None)]
        return _schema_for(non_none[0], meta, defs)
    if tp is str or tp is FileRef:
        out = {"type": "string"}
        if meta.get("pattern"):
            out["pattern"] = meta["pattern"]
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    elif tp is Any:
        out = {}
    elif origin is Literal:
        out = {"enum": list(args)}
    elif origin in (list, List):
        item_meta = {k: meta.get(k) for k in ("minimum", "maximum", "exclusive_minimum", "pattern")}
        out = {"type": "array", "items": _schema_for(args[0], item_meta, defs)}
        if meta.get("length") is not None:
            out["minItems"] = out["maxItems"] = meta["length"]
        elif meta.get("min_items") is not None:
            out["minItems"] = meta["min_items"]
        return _with_doc(out, meta)
    elif origin in (dict, Dict):
        item_meta = {k: meta.get(k) for k in ("minimum", "maximum", "exclusive_minimum")}
        out = {"type": "object", "additionalProperties": _schema_for(args[1], item_meta, defs)}
    elif dataclasses.is_dataclass(tp) or _tagged_variants(tp) is not None:
        out = {"$ref": f"#/$defs/{_dataclass_def(tp, defs)}"}
    else:  # pragma: no cover - a declaration bug
        raise TypeError(f"unsupported type {tp}")
    if out.get("type") in ("integer", "number"):
        if meta.get("minimum") is not None:
            out["minimum"] = meta["minimum"]
        if meta.get("maximum") is not None:
            out["maximum"] = meta["maximum"]
        if meta.get("exclusive_minimum") is not None:
            out["exclusiveMinimum"] = meta["exclusive_minimum"]
    return _with_doc(out, meta)


def _with_doc(out: Dict[str, Any], meta: Dict[str, Any]) -> Dict[str, Any]:
    if meta.get("doc"):
        if "$ref" in out:
            out = {"allOf": [out], "description": meta["doc"]}
        else:
            out["description"] = meta["doc"]
    if meta.get("examples"):
        out["examples"] = meta["examples"]
    return out


def _dataclass_def(cls: type, defs: Dict[str, Any]) -> str:
    name = cls.__name__
    if name in defs:
        return name
    defs[name] = {}  # placeholder against recursion
    variants = _tagged_variants(cls)
    if variants is not None:
        defs[name] = {
            "description": (cls.__doc__ or "").strip().split("\n\n")[0],
            "oneOf": [{"$ref": f"#/$defs/{_dataclass_def(v, defs)}"} for v in variants.values()],
        }
        return name
    hints = _type_hints(cls)
    props: Dict[str, Any] = {}
    required: List[str] = []
    for fld in dataclasses.fields(cls):
        if not fld.init:
            continue
        props[fld.name] = _schema_for(hints[fld.name], dict(fld.metadata), defs)
        if fld.default is not MISSING and _json_ready(fld.default):
            props[fld.name]["default"] = fld.default
        if fld.default is MISSING and fld.default_factory is MISSING:  # type: ignore[misc]
            required.append(fld.name)
    body: Dict[str, Any] = {
        "type": "object",
        "description": (cls.__doc__ or "").strip().split("\n\n")[0],
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        body["required"] = required
    defs[name] = body
    return name


def _json_ready(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


Checker = Callable[[PathKey, Context], None]
