"""Values in and out of a server: PackML state names, typed method arguments, structures, ReturnStatus.

Servers report a state as a String, a LocalizedText (every OPC UA state machine's ``CurrentState``)
or a number; :func:`state_of` turns each into a PackML name, through the config's ``state_values``
map first. Method arguments are typed from the method's own ``InputArguments`` (an ``Int32`` goes
out as Int32, not as Python's Int64), and a value that does not fit is :class:`ProgramRejected`
before anything is sent. Structure arguments are built from dicts with the server's data type
definitions (loaded once per session).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

from asyncua import ua

from anycell.errors import ProgramRejected
from anycell.packml_model import state_name

_INT_RANGES = {
    ua.VariantType.SByte: (-2**7, 2**7 - 1), ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-2**15, 2**15 - 1), ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-2**31, 2**31 - 1), ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-2**63, 2**63 - 1), ua.VariantType.UInt64: (0, 2**64 - 1),
}


def text_of(value: Any) -> str:
    """The text of a state value: LocalizedText -> its Text, numbers and strings as they are."""
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, ua.Variant):
        return text_of(value.Value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return "" if value is None else str(value)


def state_of(value: Any, state_values: Mapping[str, str]) -> Optional[str]:
    """The PackML name for a reported state, or None when nothing maps it.

    ``state_values`` maps what the server says (text, or a number written as text) to a PackML
    name; without an entry, names in any case and OPC 30050 state numbers are understood.
    """
    if value is None:
        return None
    text = text_of(value)
    if text in state_values:
        return state_values[text]
    if isinstance(value, float) and value.is_integer() and str(int(value)) in state_values:
        return state_values[str(int(value))]
    if isinstance(value, int) and not isinstance(value, bool):
        return state_name(value)
    return state_name(text)


def check_scalar(value: Any, vt: ua.VariantType, what: str) -> Any:
    """``value`` converted for ``vt``, or ProgramRejected saying why it cannot be."""
    if vt in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and (not math.isfinite(value) or not value.is_integer())):
            raise ProgramRejected(f"{what} is {vt.name}; {value!r} is not an integer",
                                  hint="give a whole number")
        lo, hi = _INT_RANGES[vt]
        if not lo <= int(value) <= hi:
            raise ProgramRejected(f"{what} is {vt.name} ({lo}..{hi}); {value!r} does not fit",
                                  hint="give a value in the range")
        return int(value)
    if vt in (ua.VariantType.Double, ua.VariantType.Float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProgramRejected(f"{what} is {vt.name}; {value!r} is not a number", hint="give a number")
        return float(value)
    if vt == ua.VariantType.Boolean:
        if not isinstance(value, (bool, int)):
            raise ProgramRejected(f"{what} is Boolean; {value!r} is not", hint="give true or false")
        return bool(value)
    if vt == ua.VariantType.String:
        if not isinstance(value, (str, int, float)):
            raise ProgramRejected(f"{what} is String; {value!r} is not", hint="give a text")
        return str(value)
    if vt == ua.VariantType.LocalizedText:
        return value if isinstance(value, ua.LocalizedText) else ua.LocalizedText(str(value))
    if vt == ua.VariantType.ByteString:
        return value if isinstance(value, bytes) else str(value).encode()
    return value


def build_structure(cls: type, value: Any, what: str) -> Any:
    """An instance of the server's structure class ``cls`` from a dict (nested dicts and lists too)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ProgramRejected(f"{what} is a {cls.__name__} structure; {value!r} is not a mapping",
                              hint="give the fields as a mapping: " + fields)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ProgramRejected(f"{what}: {cls.__name__} has no field {', '.join(unknown)}",
                              hint="fields: " + ", ".join(names))
    try:
        hints = typing.get_type_hints(cls, vars(ua))
    except Exception:  # noqa: BLE001 - generated classes may not resolve every hint
        hints = {}
    obj = cls()
    for key, raw in value.items():
        setattr(obj, key, _convert_field(hints.get(key), getattr(obj, key), raw, f"{what}.{key}"))
    return obj


def _convert_field(hint: Any, current: Any, raw: Any, what: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]: convert as X
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return _convert_field(inner[0], current, raw, what)
    if origin in (list, List) and isinstance(raw, (list, tuple)):
        (inner,) = typing.get_args(hint) or (None,)
        return [_convert_field(inner, None, item, f"{what}[{i}]") for i, item in enumerate(raw)]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(raw, Mapping):
        return build_structure(hint, raw, what)
    if hint is ua.Variant or getattr(hint, "__name__", None) == "Variant":
        return raw if isinstance(raw, ua.Variant) else ua.Variant(raw)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(raw) if not isinstance(raw, str) else hint[raw]
    for vt in (ua.VariantType.Int32, ua.VariantType.Float):
        name = vt.name
        if getattr(hint, "__name__", None) == name or hint is getattr(ua, name, None):
            return check_scalar(raw, vt if vt == ua.VariantType.Int32 else ua.VariantType.Float, what)
    if isinstance(current, float) and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(raw, (int, float)):
        return check_scalar(raw, ua.VariantType.Int64, what)
    if isinstance(current, ua.LocalizedText):
        return raw if isinstance(raw, ua.LocalizedText) else ua.LocalizedText(str(raw))
    return raw


@dataclasses.dataclass
class ArgSpec:
    """One declared method argument: its name, builtin variant type, structure class and array-ness."""

    name: str
    vt: ua.VariantType
    array: bool
    struct: Optional[type] = None


def encode_args(specs: Optional[Sequence[ArgSpec]], args: Sequence[Any], what: str) -> List[ua.Variant]:
    """Variants typed as the method declares; ProgramRejected before sending when a value cannot fit."""
    if specs is None:  # the server does not declare its arguments: best effort from the Python types
        return [a if isinstance(a, ua.Variant) else ua.Variant(a) for a in args]
    if len(args) != len(specs):
        names = ", ".join(f"{s.name}: {s.struct.__name__ if s.struct else s.vt.name}{'[]' if s.array else ''}"
                          for s in specs)
        raise ProgramRejected(f"{what} takes {len(specs)} argument(s) ({names}), {len(args)} given",
                              hint="match the method's InputArguments")
    out = []
    for spec, value in zip(specs, args):
        label = f"{what} argument '{spec.name}'"
        if isinstance(value, ua.Variant):
            out.append(value)
            continue
        if spec.array:
            if not isinstance(value, (list, tuple)):
                value = [value]
            items = [_one(spec, v, f"{label}[{i}]") for i, v in enumerate(value)]
            out.append(ua.Variant(items, spec.vt, is_array=True) if spec.struct is None
                       else ua.Variant(items, ua.VariantType.ExtensionObject, is_array=True))
        else:
            out.append(ua.Variant(_one(spec, value, label), spec.vt))
    return out


def _one(spec: ArgSpec, value: Any, label: str) -> Any:
    if spec.struct is not None:
        return build_structure(spec.struct, value, label)
    return check_scalar(value, spec.vt, label)


def return_status(outputs: Sequence[Any], names: Sequence[str]) -> Optional[int]:
    """The value of an output argument named ``ReturnStatus`` (OPC 40001-3: 0 is success), or None."""
    for name, val in zip(names, outputs):
        if name.lower() == "returnstatus":
            try:
                return int(val)
            except (TypeError, ValueError):
                return None
    return None


def describe(values: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
