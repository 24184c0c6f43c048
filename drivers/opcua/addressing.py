"""Where a machine's nodes are: node ids and browse paths, with namespaces by index or by URI.

A config names a node by id (``ns=2;s=Machine.State``, ``nsu=urn:vendor:machine;s=Machine.State``,
``i=2253``) or by browse path (``0:Objects/2:Machine/2:State``, ``0:Objects/{urn:vendor:machine}:Filler``).
A path that starts neither at ``0:Objects`` nor ``0:Root`` (nor is a node id) is relative to the
configured machine object. Namespace indices are an accident of one server run: a URI is looked up
in the server's namespace array on every (re)connect, so a server that moved a namespace is either
followed (URI given) or noticed (the URI is gone: :class:`ServerMismatch`, no retrying).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from asyncua import ua

from anycell.errors import DriverError

from .errors import ServerMismatch

_SEGMENT = re.compile(r"^(?:\{(?P<uri>[^}]+)\}|(?P<ns>\d+)):(?P<name>.+)$")
_NODE_ID = re.compile(r"^(?:(?:ns=(?P<ns>\d+)|nsu=(?P<uri>[^;]+));)?(?P<kind>[isgb])=(?P<ident>.+)$", re.S)


@dataclass(frozen=True)
class Segment:
    """One browse-path step: a name qualified by a namespace index or URI (or neither: any namespace)."""

    name: str
    ns: Optional[int] = None
    uri: Optional[str] = None

    def text(self) -> str:
        if self.uri is not None:
            return f"{{{self.uri}}}:{self.name}"
        return f"{self.ns}:{self.name}" if self.ns is not None else self.name


def is_node_id(text: str) -> bool:
    return bool(_NODE_ID.match(text.strip()))


def is_absolute(text: str) -> bool:
    """A node id or a path from the root (``0:Objects/...``, ``0:Root/...``); else relative to the object."""
    t = text.strip()
    return is_node_id(t) or t.startswith(("0:Objects", "0:Root", "0:Types", "/"))


def split_path(text: str) -> List[str]:
    """Split a browse path on ``/``, except inside ``{...}`` (namespace URIs have slashes)."""
    parts: List[str] = []
    cur: List[str] = []
    depth = 0
    for ch in text.strip():
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == "/" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_path(text: str, field: str = "") -> List[Segment]:
    """``0:Objects/{urn:x}:Filler/State`` -> segments; a bad segment is a config error with a hint."""
    out: List[Segment] = []
    for part in [p for p in split_path(text) if p]:
        m = _SEGMENT.match(part)
        if m is None:
            if ":" in part and not part.startswith("{"):
                raise DriverError(f"browse path segment '{part}' in '{text}' has a bad namespace prefix",
                                  field=field or None, hint="write NS:Name with NS a number, or {namespace-uri}:Name")
            out.append(Segment(part))
            continue
        out.append(Segment(m.group("name"), int(m.group("ns")) if m.group("ns") else None, m.group("uri")))
    if not out:
        raise DriverError(f"empty browse path '{text}'", field=field or None,
                          hint="e.g. 0:Objects/2:Machine/2:State")
    return out


def ns_index(uri: str, namespaces: Sequence[str], what: str) -> int:
    """The index of ``uri`` in the server's namespace array, or ServerMismatch (not worth retrying)."""
    try:
        return list(namespaces).index(uri)
    except ValueError:
        raise ServerMismatch(f"the server has no namespace '{uri}' (needed for {what})",
                             hint="is this the right server? compare its NamespaceArray with the config") from None


def node_id(text: str, namespaces: Sequence[str], field: str = "") -> ua.NodeId:
    """A NodeId from ``ns=``/``nsu=`` text, with a URI resolved against ``namespaces``."""
    m = _NODE_ID.match(text.strip())
    if m is None:
        raise DriverError(f"'{text}' is not a node id", field=field or None,
                          hint="ns=2;s=Name, nsu=urn:vendor;i=5, or a browse path 0:Objects/2:Machine")
    ns = int(m.group("ns") or 0)
    if m.group("uri"):
        ns = ns_index(m.group("uri"), namespaces, text)
    kind, ident = m.group("kind"), m.group("ident")
    try:
        return ua.NodeId.from_string(f"ns={ns};{kind}={ident}")
    except Exception as exc:  # noqa: BLE001 - asyncua raises several types for bad ids
        raise DriverError(f"'{text}' is not a valid node id: {exc}", field=field or None,
                          hint="numeric ids are i=NUMBER, GUIDs g=..., strings s=...") from None


def qualified(seg: Segment, namespaces: Sequence[str], what: str) -> ua.QualifiedName:
    if seg.uri is not None:
        return ua.QualifiedName(seg.name, ns_index(seg.uri, namespaces, what))
    return ua.QualifiedName(seg.name, seg.ns if seg.ns is not None else 0)
