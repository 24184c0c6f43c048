"""The cell's JSON API, without ROS: request parsing and validation, and the response shapes.

A request is one JSON object (carried in a ``std_msgs/String`` on
``api/request``)::

    {"request_id": "c1-0001", "op": "submit", "job": {...the job document...}}
    {"request_id": "c1-0002", "op": "get", "job_id": "demo_widget"}
    {"request_id": "c1-0003", "op": "cancel", "job_id": "demo_widget"}
    {"request_id": "c1-0004", "op": "resume", "job_id": "demo_widget", "retry": false}
    {"request_id": "c1-0005", "op": "quote", "job": {...}}
    {"request_id": "c1-0006", "op": "list"}
    {"request_id": "c1-0007", "op": "status"}

Every response carries the same ``request_id`` and ``op``, ``ok`` (true or
false) and, when false, ``error``: the error's class name, message, field path
and hint (:meth:`anycell.errors.AnycellError.to_dict`). A request that is not
even JSON gets ``request_id: null`` and the parse error, so a client can still
see why. The agent never crashes on a request.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from anycell.errors import AnycellError, ConfigError

#: op -> (required fields, optional fields)
OPS: Dict[str, tuple] = {
    "submit": (("job",), ("job_id",)),
    "quote": (("job",), ()),
    "cancel": (("job_id",), ()),
    "resume": (("job_id",), ("retry", "decisions")),
    "get": (("job_id",), ()),
    "list": ((), ("all",)),
    "status": ((), ()),
}

MAX_REQUEST_BYTES = 1_000_000
MAX_DEPTH = 64


@dataclass
class Request:
    """A validated request."""

    request_id: str
    op: str
    args: Dict[str, Any] = field(default_factory=dict)


def parse_request(raw: Any) -> Request:
    """Parse and validate a request (JSON text or an already-decoded dict); raises ConfigError."""
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        if len(raw) > MAX_REQUEST_BYTES:
            raise ConfigError(f"request is {len(raw)} bytes, more than {MAX_REQUEST_BYTES}",
                              hint="inline only the programs the job needs")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"request is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              hint='send one JSON object like {"request_id": "r1", "op": "list"}') from None
        except (RecursionError, ValueError) as exc:   # nesting too deep for the decoder, huge numbers
            raise ConfigError(f"request cannot be read: {type(exc).__name__}",
                              hint=f"nest at most {MAX_DEPTH} levels") from None
    else:
        data = raw
    from anycell.documents import check_limits

    check_limits(data, file="<api:request>")
    if not isinstance(data, dict):
        raise ConfigError("request must be a JSON object", hint='{"request_id": "r1", "op": "list"}')
    rid = data.get("request_id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 200 or _has_control(rid):
        raise ConfigError("request_id is missing or not a non-empty string (at most 200 characters)",
                          field="request_id", hint="give every request a unique id, e.g. a UUID")
    op = data.get("op")
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}", field="op", hint="one of: " + ", ".join(OPS))
    required, optional = OPS[op]
    for name in required:
        if name not in data:
            raise ConfigError(f"'{op}' needs '{name}'", field=name)
    for name in data:
        if name not in ("request_id", "op") + tuple(required) + tuple(optional):
            raise ConfigError(f"unknown field '{name}' for '{op}'", field=name,
                              hint="fields: " + ", ".join(("request_id", "op") + tuple(required) + tuple(optional)))
    if "job" in data and not isinstance(data["job"], dict):
        raise ConfigError("'job' must be the job document as a JSON object", field="job")
    if "job_id" in data:
        check_job_id(data["job_id"], "job_id")
    if "decisions" in data:
        _check_decisions(data["decisions"])
    for name in ("retry", "all"):
        if name in data and not isinstance(data[name], bool):
            raise ConfigError(f"'{name}' must be true or false (a JSON boolean), not {data[name]!r}", field=name,
                              hint=f'"{name}": true')
    args = {k: v for k, v in data.items() if k not in ("request_id", "op")}
    return Request(request_id=rid, op=op, args=args)


#: what a job id may look like: a name, never a path (reports are written under the job id)
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def check_job_id(value: Any, field_name: str = "job_id") -> str:
    """A job id is a name (letters, digits, ``_ . -``, at most 128), never a path; ConfigError otherwise."""
    if not isinstance(value, str):
        raise ConfigError(f"job id must be a string, not {type(value).__name__}", field=field_name,
                          hint='"job_id": "widget-42"')
    if not JOB_ID.fullmatch(value) or ".." in value:
        raise ConfigError(f"job id {str(value)[:40]!r} is not a name", field=field_name,
                          hint="letters, digits, '_', '.' and '-', starting with a letter or digit; no '/' or '..'")
    return value


def _check_decisions(value: Any) -> None:
    """``decisions``: ``{op_id: {"action": "done"|"retry"|"skip", "reason": "..."}}``; skip needs a reason."""
    if not isinstance(value, dict):
        raise ConfigError("'decisions' must map step ids to {action, reason}", field="decisions",
                          hint='{"u1.print": {"action": "retry"}, "u1.place.a": {"action": "skip", "reason": "..."}}')
    for op_id, d in value.items():
        where = f"decisions.{op_id}"
        if not isinstance(d, dict) or set(d) - {"action", "reason"}:
            raise ConfigError("a decision is {action, reason}", field=where, hint='{"action": "done"}')
        if d.get("action") not in ("done", "retry", "skip"):
            raise ConfigError(f"action {d.get('action')!r} is not done, retry or skip", field=where + ".action")
        reason = d.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            raise ConfigError("reason must be text (at most 500 characters)", field=where + ".reason")
        if d["action"] == "skip" and not reason.strip():
            raise ConfigError("skipping a step needs a reason", field=where + ".reason",
                              hint='{"action": "skip", "reason": "placed by hand"}')


def request_id_of(raw: Any) -> Optional[str]:
    """Best-effort request id of a request that failed validation (for the error response)."""
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else raw
        rid = data.get("request_id") if isinstance(data, dict) else None
        return rid if isinstance(rid, str) else None
    except Exception:
        return None


def ok(request_id: Optional[str], op: Optional[str], **data: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"request_id": request_id, "op": op, "ok": True}
    out.update(data)
    return out


def error(request_id: Optional[str], op: Optional[str], exc: BaseException) -> Dict[str, Any]:
    if isinstance(exc, AnycellError):
        err = exc.to_dict()
    else:
        err = {"error": type(exc).__name__, "message": str(exc)}
    return {"request_id": request_id, "op": op, "ok": False, "error": err}


def inline_program_files(job_data: Dict[str, Any], base_dir: str) -> Dict[str, Any]:
    """A copy of a job document with every ``program: {file: ...}`` and ``geometry: {mesh: ...}`` replaced by
    its text (a mesh as ``mesh_inline``; OBJ and ASCII STL).

    The agent may run on another machine than the person submitting, so a job
    sent over the API carries its programs and meshes inline instead of naming local files.
    """
    data = copy.deepcopy(job_data)
    base = os.path.realpath(base_dir)
    for i, part in enumerate(data.get("parts") or []):
        geo = part.get("geometry") if isinstance(part, dict) else None
        if isinstance(geo, dict) and isinstance(geo.get("mesh"), str):
            mesh_field = f"parts[{i}].geometry.mesh"
            path = _inside(base, geo["mesh"], mesh_field, "mesh")
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
                text = raw.decode("utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read mesh file '{geo['mesh']}': {exc.strerror}",
                                  field=mesh_field) from None
            except UnicodeDecodeError:
                raise ConfigError(f"mesh file '{geo['mesh']}' is binary and cannot travel in a job document",
                                  field=mesh_field, hint="export it as OBJ or ASCII STL") from None
            geo["mesh_inline"] = text
            geo["mesh_format"] = "stl" if path.lower().endswith(".stl") else "obj"
            del geo["mesh"]
        src = (part or {}).get("source") if isinstance(part, dict) else None
        prog = src.get("program") if isinstance(src, dict) else None
        if isinstance(prog, dict) and isinstance(prog.get("file"), str):
            field_name = f"parts[{i}].source.program.file"
            name = prog["file"]
            path = _inside(base, name, field_name, "program")
            try:
                with open(path, "r", encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read program file '{name}': {getattr(exc, 'strerror', None) or exc}",
                                  field=field_name) from None
            assert isinstance(src, dict)
            src["program"] = {"inline": text}
    return data


def _inside(base: str, name: str, field_name: str, what: str) -> str:
    """The real path of ``name`` under ``base``; ConfigError (no server path in it) when it is not there."""
    if "\0" in name or os.path.isabs(name):
        raise ConfigError(f"{what} file '{name[:80]}' must be a path relative to the job's folder",
                          field=field_name, hint=f"keep {what} files beside the job file, or below it")
    path = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([base, path]) != base:
        raise ConfigError(f"{what} file '{name[:80]}' lies outside the job's folder", field=field_name,
                          hint=f"keep {what} files beside the job file, or below it")
    return path
