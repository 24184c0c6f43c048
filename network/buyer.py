"""A small Python client for buyers: post jobs, follow them to settlement.

    buyer = Buyer(Identity.load_or_create("keys", "acme", "buyer"), Keyring("keys"),
                  session={"connect": ["tcp/exchange.example:7447"]}).start()
    cid = buyer.post(spec_data, budget=25.0, due_in=600)
    print(buyer.wait([cid], timeout=900))     # {cid: "released"} or "refunded"

The spec is sent whole (program files inlined, :func:`portable_spec`), signed
by the buyer's key; the exchange's events are checked against the
exchange's key before the buyer believes them.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import threading
import time
from typing import Any, Dict, Iterable, List, Optional

from anycell.documents import load_file
from anycell.errors import AnycellError, ConfigError, DriverTimeout
from anycell.job import job_from_document

from .identity import Identity, Keyring, MessageGuard, Refused, digest, encode, sign_message
from .ledger import cents
from .transport import Keys, open_session

log = logging.getLogger(__name__)


def portable_spec(path: str) -> Dict[str, Any]:
    """A job spec file as self-contained data: validated, with every program file inlined."""
    doc = load_file(path)
    job_from_document(doc)   # refuse a bad spec here, with the file's line numbers
    data = copy.deepcopy(doc.data)
    base = os.path.dirname(os.path.abspath(path))
    for part in data.get("parts", []):
        prog = (part.get("source") or {}).get("program")
        if isinstance(prog, dict) and "file" in prog:
            try:
                with open(os.path.join(base, prog["file"]), encoding="utf-8") as handle:
                    part["source"]["program"] = {"inline": handle.read()}
            except OSError as exc:
                raise ConfigError(f"cannot read the program {prog['file']}: {exc.strerror}",
                                  field=f"parts.{part.get('id')}.source.program.file") from None
    return data


class Buyer:
    """Posts jobs to the exchange and follows the market's events for them."""

    def __init__(self, ident: Identity, keyring: Keyring, *, session: Optional[Dict[str, Any]] = None,
                 keys: Optional[Keys] = None) -> None:
        self.ident = ident
        self.keyring = keyring
        self.guard = MessageGuard(keyring)
        self.keys = keys or Keys()
        self.session_options = session or {}
        self.session: Any = None
        self.states: Dict[str, str] = {}
        self.events: List[Dict[str, Any]] = []
        self._cond = threading.Condition()

    def start(self) -> "Buyer":
        self.session = open_session(**self.session_options)
        self._sub = self.session.declare_subscriber(self.keys.events(), self._on_event)
        return self

    def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.close()

    def _on_event(self, sample: Any) -> None:
        try:
            msg = self.guard.check(sample.payload.to_bytes(), "event")
        except Refused:
            return
        if msg["signer_role"] != "exchange":
            return
        body = msg["body"]
        with self._cond:
            self.events.append(body)
            self.states[body["contract"]] = body["kind"]
            self._cond.notify_all()

    def post(self, spec: Dict[str, Any], *, budget: float, due_in: float, rule: Optional[Dict[str, Any]] = None,
             contract: Optional[str] = None, timeout: float = 10.0) -> str:
        """Post a job; return its contract id once the exchange has it in escrow (retried, idempotent)."""
        cid = contract or f"{self.ident.name}-{secrets.token_hex(5)}"
        body = {"contract": cid, "spec": spec, "spec_digest": digest(spec), "budget": cents(budget),
                "due": time.time() + float(due_in), "rule": rule or {}}
        end = time.time() + timeout
        while time.time() < end:
            msg = encode(sign_message(self.ident, "post", body))
            for reply in self.session.get(self.keys.post(), payload=msg, timeout=min(5.0, timeout)):
                if reply.ok is None:
                    raise ConfigError(f"the exchange refused the post: {reply.err.payload.to_string()}",
                                      hint="is the buyer's public key in the exchange's keys directory?")
                ack = self.guard.check(reply.ok.payload.to_bytes(), "posted")["body"]
                if ack.get("error"):
                    raise ConfigError(f"the exchange refused the post: {ack['error']}", field="post")
                return cid
            time.sleep(0.2)
        raise DriverTimeout("no exchange answered the post", hint="start one: anycell network exchange")

    def wait(self, contracts: Iterable[str], timeout: float = 600.0) -> Dict[str, str]:
        """Block until every contract is released or refunded (or the timeout); return their last states."""
        want = list(contracts)
        end = time.time() + timeout
        with self._cond:
            while not all(self.states.get(c) in ("released", "refunded") for c in want):
                left = end - time.time()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return {c: self.states.get(c, "unknown") for c in want}

    def market_state(self, timeout: float = 3.0) -> Dict[str, Any]:
        """The exchange's summary (counts, live cells, refusals)."""
        for reply in self.session.get(self.keys.query_ctl(), timeout=timeout):
            if reply.ok is not None:
                return self.guard.check(reply.ok.payload.to_bytes(), "state")["body"]
        raise AnycellError("no exchange answered", hint="is the exchange running and reachable?")
