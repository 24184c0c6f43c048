"""A cell on the network: it answers calls for proposals, accepts awards, builds, and delivers signed records.

The node is the bridge between one cell and the market. It holds the cell's
key, a liveliness token (its presence: when the process dies the token goes
and the exchange re-awards its jobs), a :class:`~.bidding.Bidder` and a
:class:`~.building.Builder`. Won jobs go into the node's queue and are built
one after the other; each unit's record is sealed into the cell's chain and
the records are delivered to the exchange (retried until acknowledged).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from anycell.cell import CellConfig
from anycell.errors import AnycellError

from .bidding import Bidder, PlanCache
from .building import Builder
from .identity import Identity, Keyring, MessageGuard, Refused, encode, sign_message
from .records import RecordChain
from .transport import Keys, open_session, reply_payloads

log = logging.getLogger(__name__)


@dataclass
class WonJob:
    contract: str
    attempt: int
    spec: Dict[str, Any]
    spec_digest: str
    deadline: float
    wall: float            # expected wall seconds


class CellNode:
    """One cell's bridge to the market (see the module docstring).

    ``session`` options are :func:`~.transport.open_session`'s. ``builder``
    builds won jobs; ``time_scale`` maps plan seconds to wall seconds for
    the finish promise (the builder should use the same).
    """

    def __init__(self, ident: Identity, cell: CellConfig, builder: Builder, keyring: Keyring, *,
                 session: Optional[Dict[str, Any]] = None, keys: Optional[Keys] = None, time_scale: float = 1.0,
                 chain_path: Optional[str] = None, price_factor: float = 1.0, on_record: Any = None,
                 max_jobs: Optional[int] = None) -> None:
        self.ident = ident
        self.name = ident.name
        self.cell = cell
        self.builder = builder
        self.keyring = keyring
        self.guard = MessageGuard(keyring)
        self.keys = keys or Keys()
        self.session_options = session or {}
        self.time_scale = time_scale
        self.cache = PlanCache(cell)
        self.bidder = Bidder(self.name, self.cache, time_scale=time_scale, price_factor=price_factor,
                             backlog=self.backlog)
        self.chain = RecordChain(chain_path)
        self.on_record = on_record
        self.deliver_after_deadline = 30.0
        self.max_jobs = max_jobs          # jobs accepted and not finished; at the limit the cell does not bid
        self._open_jobs = 0
        self.jobs: "queue.Queue[Optional[WonJob]]" = queue.Queue()
        self._inbox: "queue.Queue[Any]" = queue.Queue()
        self._pending_wall = 0.0
        self._current_end = 0.0
        self._lock = threading.Lock()
        self.cancel = threading.Event()
        self.killed = False
        self.session: Any = None
        self._decls: List[Any] = []
        self._worker: Optional[threading.Thread] = None
        self.built_contracts: List[str] = []
        self.building: Optional[str] = None

    # ------------------------------------------------------------ life
    def start(self) -> "CellNode":
        self.cache.warm()
        self.session = open_session(**self.session_options)
        s = self.session
        # the queries are answered on the node's own thread: a callback that plans for a second would hold
        # one of Zenoh's few runtime threads, and with it every other participant in this process
        self._decls.append(s.declare_queryable(self.keys.cfp("*"), lambda q: self._inbox.put((self._on_cfp, q))))
        self._decls.append(s.declare_queryable(self.keys.accept(self.name),
                                               lambda q: self._inbox.put((self._on_accept, q))))
        self._answerer = threading.Thread(target=self._answer, name=f"cell-{self.name}-market", daemon=True)
        self._answerer.start()
        self._progress = s.declare_publisher(self.keys.progress(self.name))
        self._decls.append(self._progress)
        self._token = s.liveliness().declare_token(self.keys.alive("cell", self.name))
        self._worker = threading.Thread(target=self._work, name=f"cell-{self.name}", daemon=True)
        self._worker.start()
        log.info("cell %s is on the network (key %s)", self.name, self.ident.key_id)
        return self

    def stop(self, timeout: float = 180.0) -> None:
        """Leave politely: start nothing more, let the build in progress stop (a builder that cannot be
        interrupted, like the full simulated cell, shuts its machines down first), close the session."""
        self.cancel.set()
        self.jobs.put(None)
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(timeout=timeout)
        self._close()

    def kill(self) -> None:
        """Die abruptly (the demo's fault): the build in progress stops, nothing more is sent."""
        self.killed = True
        self.cancel.set()
        self.jobs.put(None)
        self._inbox.put(None)
        self._close()

    def _close(self) -> None:
        if self.session is None:
            return
        session, self.session = self.session, None
        try:
            self._token.undeclare()
        except Exception:  # noqa: BLE001 - closing the session drops it anyway
            pass
        try:
            session.close()
        except Exception:  # noqa: BLE001
            log.debug("closing the session of %s", self.name, exc_info=True)

    def backlog(self) -> float:
        """Wall seconds of work already accepted: the job being built (what is left of it) and the queue."""
        with self._lock:
            return self._pending_wall + max(0.0, self._current_end - time.time())

    # ------------------------------------------------------------ market messages
    def _answer(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None or self.session is None:
                return
            handler, query = item
            try:
                handler(query)
            except Exception:  # noqa: BLE001 - one bad query never stops the cell answering
                log.exception("cell %s: answering a query failed", self.name)
            finally:
                del query, item       # the query's final reply goes out when it is freed

    def _on_cfp(self, query: Any) -> None:
        try:
            msg = self.guard.check(query.payload.to_bytes() if query.payload else b"", "cfp")
            if msg["signer_role"] != "exchange":
                raise Refused("wrong_role", f"a call for proposals from {msg['signer_name']}")
        except Refused:
            return
        body = msg["body"]
        with self._lock:
            full = self.max_jobs is not None and self._open_jobs >= self.max_jobs
        if full:
            bid = {"cell": self.name, "declined": f"the queue is full ({self.max_jobs} job(s) in hand)",
                   "spec_digest": body["spec_digest"]}
        else:
            bid = self.bidder.bid(body["spec"], body["spec_digest"])
        bid["contract"] = body["contract"]
        bid["round"] = body.get("round")
        kind = "refuse" if "declined" in bid else "propose"
        log.debug("cell %s: %s for %s", self.name, kind, body["contract"])
        query.reply(query.key_expr, encode(sign_message(self.ident, kind, bid)))

    def _on_accept(self, query: Any) -> None:
        try:
            msg = self.guard.check(query.payload.to_bytes() if query.payload else b"", "award")
            if msg["signer_role"] != "exchange":
                raise Refused("wrong_role", f"an award from {msg['signer_name']}")
        except Refused:
            return
        body = msg["body"]
        if self.cancel.is_set():
            return
        try:
            planned = self.cache.get(body["spec"], body["spec_digest"])
        except AnycellError as exc:
            query.reply(query.key_expr, encode(sign_message(self.ident, "reject",
                                                            {"contract": body["contract"], "reason": str(exc)})))
            return
        wall = planned.makespan * self.time_scale
        with self._lock:
            self._pending_wall += wall
            self._open_jobs += 1
        self.jobs.put(WonJob(body["contract"], int(body["attempt"]), body["spec"], body["spec_digest"],
                             float(body["deadline"]), wall))
        query.reply(query.key_expr, encode(sign_message(self.ident, "accept", {"contract": body["contract"],
                                                                               "attempt": body["attempt"]})))

    # ------------------------------------------------------------ building
    def _work(self) -> None:
        while not self.cancel.is_set():
            won = self.jobs.get()
            if won is None:
                break
            with self._lock:
                self._pending_wall -= won.wall
                self._current_end = time.time() + won.wall
            self.building = won.contract
            try:
                self._build(won)
            except AnycellError as exc:
                log.warning("cell %s: job %s failed: %s", self.name, won.contract, exc)
                self._publish({"event": "failed", "contract": won.contract, "error": str(exc)})
            except Exception:  # noqa: BLE001 - one job's bug never stops the cell
                log.exception("cell %s: job %s crashed", self.name, won.contract)
            finally:
                self.building = None
                with self._lock:
                    self._current_end = 0.0
                    self._open_jobs -= 1

    def _build(self, won: WonJob) -> None:
        planned = self.cache.get(won.spec, won.spec_digest)
        self._publish({"event": "started", "contract": won.contract})
        log.info("cell %s: building %s", self.name, won.contract)
        units = self.builder.build(planned.job, planned.plan, self.cancel,
                                   lambda info: self._publish({**info, "contract": won.contract}))
        if self.cancel.is_set():
            return
        cell_info = {"id": self.name, "config_digest": self.cache.config_digest}
        records = [self.chain.seal(self.ident, won.spec, planned.job.id, cell_info, u, contract=won.contract)
                   for u in units]
        if self.on_record is not None:
            for env in records:
                self.on_record(self.name, won.contract, env)
        self.built_contracts.append(won.contract)
        self._publish({"event": "built", "contract": won.contract, "units": len(records)})
        body = {"contract": won.contract, "attempt": won.attempt, "records": records}
        # deliver until acknowledged: the exchange may be restarting (its books survive); past the award's
        # deadline it will have given the job to another cell, so the records no longer matter
        delay = 0.0
        while time.time() < won.deadline + self.deliver_after_deadline:
            if self.cancel.wait(delay) or self.session is None:
                return
            msg = encode(sign_message(self.ident, "inform", body))
            try:
                acks = reply_payloads(self.session.get(self.keys.inform(), payload=msg, timeout=5.0))
            except Exception:  # noqa: BLE001 - the session closed under us
                return
            if acks:
                log.info("cell %s: records of %s delivered", self.name, won.contract)
                return
            delay = min(2.0, max(0.2, 2 * delay))
            log.info("cell %s: the exchange did not take the records of %s yet; retrying in %.1f s", self.name,
                     won.contract, delay)
        log.warning("cell %s: the exchange never acknowledged the records of %s", self.name, won.contract)

    def _publish(self, info: Dict[str, Any]) -> None:
        if self.session is None:
            return
        try:
            self._progress.put(json.dumps({"cell": self.name, "ts": time.time(), **info}))
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
