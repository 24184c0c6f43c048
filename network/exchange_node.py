"""The exchange on the network: takes posts, calls for proposals, awards, verifies, settles, re-awards.

The books are an :class:`~.market.Exchange` (SQLite WAL). The node drives
each contract through the market from one worker thread, in order (a burst of
posts becomes a queue of calls for proposals, so each one sees the cells'
queues as they are after the previous award):

* ``open``: a call for proposals (one Zenoh query; every live cell replies
  with a signed proposal or refusal, within ``bid_window``; a later reply is
  ignored), then the award to the best bid (signed, as a query the winning
  cell must acknowledge) or a refund;
* ``built``: verify the records; ``verified``: release the escrow.

Liveliness: when a cell's token disappears its awarded contracts are
forfeited and called again. Deadlines: checked every ``tick`` seconds. After a
(re)start the exchange gives the cells ``startup_grace`` seconds to reconnect
and show their tokens before it judges an awarded cell absent.
Every transition is journaled, then published on ``market/events``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Set

from anycell.errors import AnycellError

from .identity import Identity, Keyring, MessageGuard, Refused, digest, encode, sign_message
from .market import Exchange, Transition
from .transport import Keys, gather, open_session

log = logging.getLogger(__name__)


class ExchangeNode:
    """The exchange's process: its key, its books, its Zenoh session and its worker."""

    def __init__(self, ident: Identity, db_path: str, keyring: Keyring, *, session: Optional[Dict[str, Any]] = None,
                 keys: Optional[Keys] = None, bid_window: float = 1.0, grace: float = 5.0, tick: float = 0.2,
                 startup_grace: float = 10.0) -> None:
        self.ident = ident
        self.keyring = keyring
        self.guard = MessageGuard(keyring)
        self.keys = keys or Keys()
        self.session_options = session or {}
        self.bid_window = bid_window
        self.tick = tick
        self.startup_grace = startup_grace
        self.exchange = Exchange(db_path, announce=self._announce, grace=grace)
        self.todo: "queue.Queue[Optional[str]]" = queue.Queue()
        self._inbox: "queue.Queue[Any]" = queue.Queue()
        self.alive: Set[str] = set()
        self._alive_lock = threading.Lock()
        self.stopping = threading.Event()
        self.session: Any = None
        self.late_bids = 0
        self.bid_rounds = 0
        self.award_latency: Dict[str, float] = {}    # contract -> seconds from post to first award
        self._posted_at: Dict[str, float] = {}
        self._worker: Optional[threading.Thread] = None
        self._decls: List[Any] = []
        self.started_at = time.time()

    # ------------------------------------------------------------ life
    def start(self) -> "ExchangeNode":
        self.session = open_session(**self.session_options)
        s = self.session
        self._events = s.declare_publisher(self.keys.events())
        # posts and deliveries write the books (an fsync each): answered on the node's own thread, so that
        # Zenoh's runtime threads stay free to carry everyone else's messages
        self._inbox_thread = threading.Thread(target=self._answer, name="exchange-inbox", daemon=True)
        self._inbox_thread.start()
        self._decls += [
            s.declare_queryable(self.keys.post(), lambda q: self._inbox.put((self._on_post, q))),
            s.declare_queryable(self.keys.inform(), lambda q: self._inbox.put((self._on_inform, q))),
            s.declare_queryable(self.keys.query_ctl(), self._on_state),
            s.liveliness().declare_subscriber(self.keys.alive("cell", "*"), self._on_liveliness, history=True),
            self._events,
        ]
        self._token = s.liveliness().declare_token(self.keys.alive("exchange", self.ident.name))
        self.started_at = time.time()
        # recovery: announce what was journaled but not announced, and pick every live contract up again
        self.exchange.flush_announcements()
        for c in self.exchange.contracts(("open", "awarded", "built", "verified")):
            self.todo.put(c["id"])
        self._worker = threading.Thread(target=self._work, name="exchange", daemon=True)
        self._worker.start()
        log.info("exchange %s is on the network (key %s, books %s)", self.ident.name, self.ident.key_id,
                 self.exchange.path)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.todo.put(None)
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
        if self.session is not None:
            session, self.session = self.session, None
            try:
                session.close()
            except Exception:  # noqa: BLE001
                pass
        self.exchange.close()

    def alive_cells(self) -> Set[str]:
        with self._alive_lock:
            return set(self.alive)

    # ------------------------------------------------------------ announcements (after commit)
    def _announce(self, tr: Transition) -> None:
        data = {k: v for k, v in tr.data.items() if k != "spec"}
        if self.session is not None:
            self._events.put(encode(sign_message(self.ident, "event", {"id": tr.id, "kind": tr.kind,
                                                                        "contract": tr.contract, "data": data})))
        if tr.kind in ("posted", "forfeited", "built", "verified"):
            self.todo.put(tr.contract)
        if tr.kind == "awarded" and tr.contract not in self.award_latency:
            posted = self._posted_at.get(tr.contract)
            if posted is not None:
                self.award_latency[tr.contract] = tr.at - posted

    # ------------------------------------------------------------ incoming
    def _answer(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            handler, query = item
            try:
                handler(query)
            except Exception:  # noqa: BLE001 - one bad query never stops the exchange
                log.exception("answering a query failed")
            finally:
                del query, item       # the query's final reply goes out when it is freed

    def _on_post(self, query: Any) -> None:
        try:
            msg = self.guard.check(query.payload.to_bytes() if query.payload else b"", "post")
        except Refused as exc:
            query.reply_err(json.dumps({"error": exc.reason, "message": exc.detail}))
            return
        b = msg["body"]
        try:
            if digest(b["spec"]) != b["spec_digest"]:
                raise AnycellError("the spec does not match its digest", field="spec_digest")
            self._posted_at.setdefault(b["contract"], time.time())
            self.exchange.post(b["contract"], msg["signer_name"], b["spec"], b["spec_digest"], int(b["budget"]),
                               float(b["due"]), b.get("rule"))
            reply = {"contract": b["contract"], "state": self.exchange.contract(b["contract"])["state"]}
        except (AnycellError, KeyError, TypeError, ValueError) as exc:
            reply = {"contract": b.get("contract"), "error": str(exc)}
        query.reply(query.key_expr, encode(sign_message(self.ident, "posted", reply)))

    def _on_inform(self, query: Any) -> None:
        try:
            msg = self.guard.check(query.payload.to_bytes() if query.payload else b"", "inform")
        except Refused as exc:
            query.reply_err(json.dumps({"error": exc.reason}))
            return
        b = msg["body"]
        log.info("records of %s from %s (attempt %s)", b.get("contract"), msg["signer_name"], b.get("attempt"))
        try:
            self.exchange.built(b["contract"], msg["signer_name"], int(b["attempt"]), list(b["records"]))
        except AnycellError as exc:
            log.warning("records for %s refused: %s", b.get("contract"), exc)
        query.reply(query.key_expr, encode(sign_message(self.ident, "ack", {"contract": b["contract"]})))

    def _on_state(self, query: Any) -> None:
        query.reply(query.key_expr, encode(sign_message(self.ident, "state", self.state())))

    def state(self) -> Dict[str, Any]:
        return {**self.exchange.summary(), "alive": sorted(self.alive_cells()),
                "refused": dict(self.guard.refused), "late_bids": self.late_bids}

    def _on_liveliness(self, sample: Any) -> None:
        name = str(sample.key_expr).rsplit("/", 1)[-1]
        if str(sample.kind).endswith("PUT"):
            with self._alive_lock:
                self.alive.add(name)
            log.info("cell %s is present", name)
            return
        with self._alive_lock:
            self.alive.discard(name)
        log.warning("cell %s lost its liveliness", name)
        try:
            self.exchange.cell_lost(name)
        except AnycellError:
            log.exception("forfeiting the jobs of %s", name)

    # ------------------------------------------------------------ the worker
    def _check_deadlines_and_presence(self) -> None:
        """After the start-up grace: forfeit overdue awards, and awards held by cells not on the network.

        Not before: while the exchange was down no cell could deliver, so a deadline that passed meanwhile
        is judged only once the cells had a chance to reconnect and hand their records in.
        """
        if time.time() - self.started_at > self.startup_grace:
            self.exchange.overdue()
            alive = self.alive_cells()
            for cid, cell, _deadline in self.exchange.awarded():
                if cell not in alive:
                    self.exchange.forfeit(cid, cell, "the cell is not on the network")

    def _work(self) -> None:
        last_check = 0.0
        while not self.stopping.is_set():
            try:
                cid = self.todo.get(timeout=self.tick)
            except queue.Empty:
                cid = ""
            if cid is None:
                break
            try:
                if time.time() - last_check >= self.tick:
                    last_check = time.time()
                    self._check_deadlines_and_presence()
                if cid:
                    self._step(cid)
            except AnycellError:
                log.exception("contract %s", cid)
            except Exception:  # noqa: BLE001 - the worker must survive one contract's bug
                log.exception("exchange worker: contract %s", cid)

    def _step(self, cid: str) -> None:
        c = self.exchange.contract(cid)
        if c["state"] == "open":
            self._call_and_award(c)
        elif c["state"] == "built":
            self.exchange.verify(cid, keyring=self.keyring)
        elif c["state"] == "verified":
            self.exchange.release(cid)

    def _collect(self, cid: str, round_id: str, cfp: Dict[str, Any], close: float, bids: List[Dict[str, Any]]) -> int:
        """Send one call for proposals and add the good proposals to ``bids``; return how many cells answered."""
        answered = 0
        for reply in gather(self.session, self.keys.cfp(cid), encode(cfp), max(0.05, close - time.time())):
            if reply.ok is None:
                continue
            try:
                msg = self.guard.check(reply.ok.payload.to_bytes())
            except Refused:
                continue
            body = msg["body"]
            if body.get("cell") != msg["signer_name"] or body.get("round") != round_id:
                continue
            if time.time() > close or float(msg["ts"]) > close:
                self.late_bids += 1
                continue
            answered += 1
            if msg["kind"] == "propose" and all(b["cell"] != body["cell"] for b in bids):
                bids.append(body)
        return answered

    def _call_and_award(self, c: Dict[str, Any]) -> None:
        cid = c["id"]
        if time.time() - self.started_at < self.startup_grace and not self.alive_cells():
            self.todo.put(cid)      # right after a (re)start: let the cells show up first
            time.sleep(0.05)
            return
        self.bid_rounds += 1
        round_id = f"{cid}/{c['attempt'] + 1}"
        bids: List[Dict[str, Any]] = []
        # no answer at all while cells are alive (their queryables have not reached us yet, or they were all
        # too busy to answer in the window): call again, twice at most, before refunding for want of bids
        for round_try in range(3):
            close = time.time() + self.bid_window
            cfp = sign_message(self.ident, "cfp", {"contract": cid, "round": round_id, "spec": c["spec"],
                                                   "spec_digest": c["spec_digest"], "due": c["due"],
                                                   "budget": c["budget"], "close": close})
            answered = self._collect(cid, round_id, cfp, close, bids)
            if answered or not self.alive_cells():
                break
            log.info("call for proposals %s: no cell answered; calling again", round_id)
            time.sleep(0.1 * (round_try + 1))
        log.debug("call for proposals %s: %d bid(s)", round_id, len(bids))
        tr = self.exchange.award(cid, bids, alive=self.alive_cells())
        if tr is None or tr.kind != "awarded":
            return
        award = sign_message(self.ident, "award", {"contract": cid, "attempt": tr.data["attempt"],
                                                   "spec": tr.data["spec"], "spec_digest": c["spec_digest"],
                                                   "price": tr.data["price"], "deadline": tr.data["deadline"]})
        accepted = False
        for reply in self.session.get(self.keys.accept(tr.data["cell"]), payload=encode(award), timeout=2.0):
            if reply.ok is None:
                continue
            try:
                msg = self.guard.check(reply.ok.payload.to_bytes())
            except Refused:
                continue
            accepted = msg["kind"] == "accept" and msg["signer_name"] == tr.data["cell"]
        if not accepted:
            self.exchange.forfeit(cid, tr.data["cell"], "the cell did not accept the award")
