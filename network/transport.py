"""Zenoh sessions and the market's key expressions.

On one machine or a LAN the participants are Zenoh peers (no server); across
sites they connect to Zenoh routers (``anycell network router`` or
``zenohd``), over TLS with mutual authentication when configured. The TLS
options are Zenoh's own (``transport/link/tls/...``), passed through as given.

Key expressions (``<ns>`` is ``anycell`` unless a namespace is given):

=================================  ===========================================
``<ns>/market/post``               queryable (exchange): a buyer posts a job
``<ns>/market/cfp/<contract>``     queryable (every cell): call for proposals,
                                   one query, one reply (bid or decline) per cell
``<ns>/market/accept/<cell>``      queryable (cell): the award (accept proposal)
``<ns>/market/inform``             queryable (exchange): a cell delivers records
``<ns>/market/events``             pub/sub: every journaled transition
``<ns>/market/progress/<cell>``    pub/sub: a cell's progress on its jobs
``<ns>/alive/<role>/<name>``       liveliness tokens: who is present
=================================  ===========================================
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any, Dict, List, Optional, Sequence

from anycell.errors import ConfigError

log = logging.getLogger(__name__)

#: The TLS options passed through to Zenoh's ``transport/link/tls`` (file paths, and mTLS on/off).
TLS_KEYS = ("root_ca_certificate", "listen_private_key", "listen_certificate", "enable_mtls",
            "connect_private_key", "connect_certificate", "verify_name_on_connect")


def zenoh_module() -> Any:
    try:
        import zenoh
    except ImportError:
        raise ConfigError("the network needs Eclipse Zenoh, which is not installed",
                          hint="pip install -r requirements.txt (eclipse-zenoh)") from None
    return zenoh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_config(*, mode: str = "peer", listen: Sequence[str] = (), connect: Sequence[str] = (),
                   multicast: bool = False, tls: Optional[Dict[str, Any]] = None) -> Any:
    """A Zenoh config: ``mode`` (peer, client or router), endpoints, multicast scouting, TLS options."""
    zenoh = zenoh_module()
    if mode not in ("peer", "client", "router"):
        raise ConfigError(f"unknown Zenoh mode '{mode}'", field="mode", hint="peer, client or router")
    conf = zenoh.Config()
    try:
        conf.insert_json5("mode", json.dumps(mode))
        conf.insert_json5("listen/endpoints", json.dumps(list(listen)))
        conf.insert_json5("connect/endpoints", json.dumps(list(connect)))
        conf.insert_json5("scouting/multicast/enabled", json.dumps(bool(multicast)))
        for key, value in (tls or {}).items():
            if key not in TLS_KEYS:
                raise ConfigError(f"unknown TLS option '{key}'", field=f"tls.{key}",
                                  hint="one of " + ", ".join(TLS_KEYS))
            if value is not None:
                conf.insert_json5(f"transport/link/tls/{key}", json.dumps(value))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - zenoh raises its own ZError for a bad value
        raise ConfigError(f"bad Zenoh setting: {exc}", field="zenoh", hint="endpoints look like tcp/127.0.0.1:7447 "
                          "or tls/host:7447") from None
    return conf


def open_session(**kwargs: Any) -> Any:
    """A Zenoh session with :func:`session_config`'s options; a clear error if it cannot open."""
    zenoh = zenoh_module()
    conf = session_config(**kwargs)
    try:
        return zenoh.open(conf)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot open a Zenoh session: {exc}", field="listen",
                          hint="is the port taken, or the router unreachable?") from None


class Keys:
    """The key expressions of one market namespace."""

    def __init__(self, namespace: str = "anycell") -> None:
        self.ns = namespace.strip("/")

    def post(self) -> str:
        return f"{self.ns}/market/post"

    def cfp(self, contract: str = "*") -> str:
        return f"{self.ns}/market/cfp/{contract}"

    def accept(self, cell: str) -> str:
        return f"{self.ns}/market/accept/{cell}"

    def inform(self) -> str:
        return f"{self.ns}/market/inform"

    def events(self) -> str:
        return f"{self.ns}/market/events"

    def progress(self, cell: str = "*") -> str:
        return f"{self.ns}/market/progress/{cell}"

    def alive(self, role: str = "*", name: str = "*") -> str:
        return f"{self.ns}/alive/{role}/{name}"

    def query_ctl(self) -> str:
        return f"{self.ns}/market/state"


def gather(session: Any, key: str, payload: bytes, timeout: float) -> Any:
    """A query whose every reply counts (one per cell): all matching queryables, no consolidation."""
    zenoh = zenoh_module()
    return session.get(key, payload=payload, timeout=timeout, target=zenoh.QueryTarget.ALL,
                       consolidation=zenoh.ConsolidationMode.NONE)


def reply_payloads(replies: Any) -> List[bytes]:
    """The payloads of the good replies of a Zenoh ``get`` (errors are logged and dropped)."""
    out = []
    for r in replies:
        if r.ok is not None:
            out.append(r.ok.payload.to_bytes())
        else:
            log.debug("error reply: %s", r.err.payload.to_string() if r.err else "?")
    return out
