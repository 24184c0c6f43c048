"""The exchange's market: contracts, bids, awards, verification and settlement, durable in SQLite (WAL).

A contract moves ``open -> awarded -> built -> verified -> released``, or ends
``refunded``; a forfeit (the cell lost its liveliness, missed its deadline, or
its unit failed verification under ``on_fail: rebuild``) takes an awarded
contract back to the next bidder, or to a new call for proposals.

Every transition is one SQLite transaction that changes the contract, writes
its ledger entries and journals the transition (with a deterministic id) in
the ``transitions`` table, and the books are checked before it commits. A
transition already journaled is not applied again (idempotent), so a message
delivered twice, or retried after a crash, changes nothing. Announcing a
transition to the network happens after the commit, from the journal (an
outbox): after ``kill -9`` the exchange reopens the database and announces
what was journaled but not yet announced.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from anycell.errors import ConfigError, StateError

from .ledger import SCHEMA as LEDGER_SCHEMA
from .ledger import balances, check_invariants, post_entries
from .records import GENESIS, envelope_digest, verify_record

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    id TEXT PRIMARY KEY,
    buyer TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_digest TEXT NOT NULL,
    job_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    bond INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    cell TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    price INTEGER,
    deadline REAL,
    bids TEXT NOT NULL DEFAULT '[]',
    excluded TEXT NOT NULL DEFAULT '[]',
    records TEXT NOT NULL DEFAULT '[]',
    reason TEXT,
    posted_at REAL NOT NULL,
    awarded_at REAL,
    settled_at REAL
);
CREATE TABLE IF NOT EXISTS awards (
    contract TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    cell TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (contract, attempt)
);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    contract TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chains (
    cell TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    head TEXT NOT NULL
);
"""

RULES = ("lowest_price", "quickest", "weighted")
LIVE = ("open", "awarded", "built", "verified")
TERMINAL = ("released", "refunded")


@dataclass(frozen=True)
class AwardRule:
    """How the winner is chosen, and what a failed unit means.

    * ``lowest_price``: the cheapest bid that meets the due time (ties: the
      earlier finish);
    * ``quickest``: the earliest finish within the budget;
    * ``weighted``: the lowest ``price_weight * price/budget + time_weight *
      lead/(due - now)`` among bids that meet the due time.

    ``on_fail`` is ``rebuild`` (another cell makes it) or ``refund``;
    ``max_attempts`` bounds the awards of one contract; ``bond`` (cents) is
    the bid bond the awarded cell puts up, returned with its pay or forfeited
    to the buyer if it loses the job (dies, misses its deadline, fails
    verification).
    """

    rule: str = "lowest_price"
    price_weight: float = 0.5
    time_weight: float = 0.5
    on_fail: str = "rebuild"
    max_attempts: int = 4
    bond: int = 0

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "AwardRule":
        data = dict(data or {})
        rule = cls(**{k: data[k] for k in ("rule", "price_weight", "time_weight", "on_fail", "max_attempts", "bond")
                      if k in data})
        if rule.bond < 0:
            raise ConfigError("the bid bond cannot be negative", field="bond")
        if rule.rule not in RULES:
            raise ConfigError(f"unknown award rule '{rule.rule}'", field="rule", hint="one of " + ", ".join(RULES))
        if rule.on_fail not in ("rebuild", "refund"):
            raise ConfigError(f"unknown on_fail '{rule.on_fail}'", field="on_fail", hint="rebuild or refund")
        if rule.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1", field="max_attempts")
        return rule

    def to_dict(self) -> Dict[str, Any]:
        return {"rule": self.rule, "price_weight": self.price_weight, "time_weight": self.time_weight,
                "on_fail": self.on_fail, "max_attempts": self.max_attempts, "bond": self.bond}

    def rank(self, bids: Sequence[Dict[str, Any]], budget: int, due: float, now: float) -> List[Dict[str, Any]]:
        """The acceptable bids, best first (within budget; meeting the due time unless the rule is quickest)."""
        ok = [b for b in bids if int(b["price"]) <= budget]
        if self.rule != "quickest":
            ok = [b for b in ok if float(b["finish"]) <= due]
        if self.rule == "lowest_price":
            key: Callable[[Dict[str, Any]], Any] = lambda b: (int(b["price"]), float(b["finish"]), b["cell"])  # noqa: E731
        elif self.rule == "quickest":
            key = lambda b: (float(b["finish"]), int(b["price"]), b["cell"])   # noqa: E731
        else:
            span = max(1e-6, due - now)
            key = lambda b: (self.price_weight * int(b["price"]) / max(1, budget)   # noqa: E731
                             + self.time_weight * (float(b["finish"]) - now) / span, b["cell"])
        return sorted(ok, key=key)


@dataclass
class Transition:
    """One journaled transition: what to announce to the network after it committed."""

    seq: int
    id: str
    contract: str
    kind: str
    data: Dict[str, Any]
    at: float


class Exchange:
    """The exchange's books: durable contracts and ledger, and every market transition.

    Thread-safe (one lock around the connection). ``announce`` is called with
    each :class:`Transition` after its commit; ``check_books`` (on by default)
    checks the ledger invariants inside every transition.
    """

    def __init__(self, path: str, *, announce: Optional[Callable[[Transition], None]] = None,
                 grace: float = 5.0, check_books: bool = True) -> None:
        self.path = path
        self.grace = grace
        self.check_books = check_books
        self.announce = announce
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL" if path == ":memory:" else "PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA + LEDGER_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # ------------------------------------------------------------ the core
    def _apply(self, tid: str, contract: str, kind: str, change: Callable[[sqlite3.Connection, float], Dict[str, Any]],
               now: Optional[float] = None) -> Optional[Transition]:
        """Apply one transition atomically, or nothing if ``tid`` is journaled already; then announce it."""
        at = time.time() if now is None else now
        with self._lock:
            if self.conn.execute("SELECT 1 FROM transitions WHERE id=?", (tid,)).fetchone():
                return None
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                data = change(self.conn, at)
                cur = self.conn.execute("INSERT INTO transitions(id, contract, kind, data, at) VALUES (?,?,?,?,?)",
                                        (tid, contract, kind, json.dumps(data, sort_keys=True), at))
                if self.check_books:
                    check_invariants(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            tr = Transition(int(cur.lastrowid or 0), tid, contract, kind, data, at)
        self.flush_announcements([tr])
        return tr

    def flush_announcements(self, transitions: Optional[Iterable[Transition]] = None) -> int:
        """Announce journaled transitions not yet announced (all of them after a restart); return how many."""
        if transitions is None:
            with self._lock:
                rows = self.conn.execute("SELECT seq, id, contract, kind, data, at FROM transitions "
                                         "WHERE announced=0 ORDER BY seq").fetchall()
            transitions = [Transition(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]
        n = 0
        for tr in transitions:
            if self.announce is not None:
                try:
                    self.announce(tr)
                except Exception:  # noqa: BLE001 - it stays unannounced and is retried
                    log.exception("announcing %s failed; it will be retried", tr.id)
                    continue
            with self._lock:
                self.conn.execute("UPDATE transitions SET announced=1 WHERE seq=?", (tr.seq,))
            n += 1
        return n

    def contract(self, cid: str) -> Dict[str, Any]:
        with self._lock:
            cur = self.conn.execute("SELECT * FROM contracts WHERE id=?", (cid,))
            row = cur.fetchone()
            if row is None:
                raise StateError(f"no contract '{cid}'", field="contract")
            out = dict(zip([d[0] for d in cur.description], row))
        for k in ("spec", "rule", "bids", "excluded", "records"):
            out[k] = json.loads(out[k])
        return out

    def contracts(self, states: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """The contracts (in the given states), oldest first."""
        with self._lock:
            if states is None:
                ids = [r[0] for r in self.conn.execute("SELECT id FROM contracts ORDER BY posted_at, id")]
            else:
                marks = ",".join("?" * len(states))
                ids = [r[0] for r in self.conn.execute(
                    f"SELECT id FROM contracts WHERE state IN ({marks}) ORDER BY posted_at, id", tuple(states))]
        return [self.contract(i) for i in ids]

    # ------------------------------------------------------------ transitions
    def post(self, cid: str, buyer: str, spec: Dict[str, Any], spec_digest: str, budget: int, due: float,
             rule: Optional[Dict[str, Any]] = None, now: Optional[float] = None) -> Optional[Transition]:
        """A buyer posts a job: the contract opens and the budget moves into escrow."""
        award_rule = AwardRule.from_dict(rule)
        if budget <= 0:
            raise ConfigError("the budget must be positive", field="budget", hint="--budget 25.00")
        job_id = str(spec.get("id", "job"))
        quantity = int(spec.get("quantity", 1))

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            if due <= at:
                raise ConfigError("the due time is in the past", field="due", hint="--due 600 (seconds from now)")
            conn.execute("INSERT INTO contracts(id, buyer, spec, spec_digest, job_id, quantity, budget, due, rule, "
                         "state, posted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (cid, buyer, json.dumps(spec, sort_keys=True), spec_digest, job_id, quantity, budget, due,
                          json.dumps(award_rule.to_dict()), "open", at))
            post_entries(conn, f"post:{cid}", [(f"buyer:{buyer}", -budget), (f"escrow:{cid}", budget)], at)
            return {"buyer": buyer, "budget": budget, "due": due, "job_id": job_id, "spec_digest": spec_digest}

        return self._apply(f"post:{cid}", cid, "posted", change, now)

    def award(self, cid: str, bids: Sequence[Dict[str, Any]], *, alive: Optional[Set[str]] = None,
              now: Optional[float] = None) -> Optional[Transition]:
        """Award an open contract to the best acceptable bid of a live cell not excluded; refund if there is none.

        ``bids`` are the replies to this round's call for proposals (or
        nothing, to use the ranked bids left from the last round).
        """
        c = self.contract(cid)
        if c["state"] != "open":
            return None
        at = time.time() if now is None else now
        rule = AwardRule.from_dict(c["rule"])
        ranked = rule.rank(bids, c["budget"], c["due"], at) if bids else c["bids"]
        ranked = [b for b in ranked if b["cell"] not in c["excluded"] and (alive is None or b["cell"] in alive)]
        attempt = c["attempt"] + 1
        if not ranked or attempt > rule.max_attempts:
            why = "no acceptable bid" if attempt <= rule.max_attempts else f"{rule.max_attempts} attempts failed"
            if bids and not ranked:
                why = "no bid within the budget and due time"
            return self.refund(cid, why, now=now)
        best, rest = ranked[0], ranked[1:]

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            cur = conn.execute("SELECT state, attempt FROM contracts WHERE id=?", (cid,)).fetchone()
            if cur[0] != "open" or cur[1] != attempt - 1:
                raise _Stale()
            if conn.execute("SELECT COUNT(*) FROM awards WHERE contract=? AND status='active'", (cid,)).fetchone()[0]:
                raise StateError(f"contract {cid} already has an active award", hint="a bug in the exchange")
            deadline = float(best["finish"]) + self.grace
            conn.execute("UPDATE contracts SET state='awarded', cell=?, attempt=?, price=?, deadline=?, bids=?, "
                         "bond=?, awarded_at=COALESCE(awarded_at, ?) WHERE id=?",
                         (best["cell"], attempt, int(best["price"]), deadline, json.dumps(rest), rule.bond, at, cid))
            post_entries(conn, f"bond:{cid}:{attempt}", [(f"cell:{best['cell']}", -rule.bond),
                                                          (f"bond:{cid}", rule.bond)], at)
            conn.execute("INSERT INTO awards(contract, attempt, cell, status, at) VALUES (?,?,?,?,?)",
                         (cid, attempt, best["cell"], "active", at))
            return {"cell": best["cell"], "attempt": attempt, "price": int(best["price"]), "deadline": deadline,
                    "spec": c["spec"], "job_id": c["job_id"], "quantity": c["quantity"],
                    "rejected": [b["cell"] for b in rest]}

        return self._guarded(f"award:{cid}:{attempt}", cid, "awarded", change, now)

    def forfeit(self, cid: str, cell: str, reason: str, *, now: Optional[float] = None) -> Optional[Transition]:
        """The awarded cell loses the job (lost, late, or its unit failed): the contract reopens for the next bidder."""
        c = self.contract(cid)
        if c["state"] not in ("awarded", "built") or c["cell"] != cell:
            return None
        attempt = c["attempt"]

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            cur = conn.execute("SELECT state, attempt, cell FROM contracts WHERE id=?", (cid,)).fetchone()
            if cur[0] not in ("awarded", "built") or cur[1] != attempt or cur[2] != cell:
                raise _Stale()
            excluded = sorted(set(c["excluded"]) | {cell})
            post_entries(conn, f"forfeit:{cid}:{attempt}", [(f"bond:{cid}", -int(c["bond"])),
                                                             (f"buyer:{c['buyer']}", int(c["bond"]))], at)
            conn.execute("UPDATE contracts SET state='open', cell=NULL, price=NULL, deadline=NULL, excluded=?, "
                         "records='[]', reason=?, bond=0 WHERE id=?", (json.dumps(excluded), reason, cid))
            conn.execute("UPDATE awards SET status='forfeited' WHERE contract=? AND attempt=?", (cid, attempt))
            return {"cell": cell, "attempt": attempt, "reason": reason, "bond_forfeited": int(c["bond"])}

        return self._guarded(f"forfeit:{cid}:{attempt}", cid, "forfeited", change, now)

    def built(self, cid: str, cell: str, attempt: int, records: List[Dict[str, Any]], *,
              now: Optional[float] = None) -> Optional[Transition]:
        """The awarded cell delivered its signed records (one per unit); they wait for verification."""
        c = self.contract(cid)
        if c["state"] != "awarded" or c["cell"] != cell or c["attempt"] != attempt:
            log.info("records for %s from %s (attempt %d) ignored: the contract is %s with %s/%d",
                     cid, cell, attempt, c["state"], c["cell"], c["attempt"])
            return None

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            cur = conn.execute("SELECT state, attempt FROM contracts WHERE id=?", (cid,)).fetchone()
            if cur[0] != "awarded" or cur[1] != attempt:
                raise _Stale()
            conn.execute("UPDATE contracts SET state='built', records=? WHERE id=?", (json.dumps(records), cid))
            conn.execute("UPDATE awards SET status='built' WHERE contract=? AND attempt=?", (cid, attempt))
            return {"cell": cell, "attempt": attempt, "units": len(records), "late": at > (c["deadline"] or at)}

        return self._guarded(f"built:{cid}:{attempt}", cid, "built", change, now)

    def verify(self, cid: str, *, keyring: Any = None, now: Optional[float] = None) -> Optional[Transition]:
        """Check the delivered records against the posted spec (signature, chain, every measurement).

        Pass: ``verified``. Fail: a forfeit (``on_fail: rebuild``) or a refund.
        """
        c = self.contract(cid)
        if c["state"] != "built":
            return None
        failures: List[str] = []
        with self._lock:
            row = self.conn.execute("SELECT sequence, head FROM chains WHERE cell=?", (c["cell"],)).fetchone()
        seq, head = (row[0], row[1]) if row else (None, None)
        units = set()
        for env in c["records"]:
            v = verify_record(env, keyring=keyring, spec_data=c["spec"])
            pred = (v.statement or {}).get("predicate", {})
            chain = pred.get("chain") or {}
            if v.statement is not None and pred.get("cell", {}).get("id") != c["cell"]:
                v.add("cell", False, f"record signed by {pred.get('cell', {}).get('id')}, awarded to {c['cell']}")
            if head is not None and seq is not None and chain.get("sequence") == seq + 1:
                v.add("chain", chain.get("previous") == head, "links to the cell's last record")
            elif head is None and chain.get("sequence") == 1:
                v.add("chain", chain.get("previous") == GENESIS, "the cell's first record starts at genesis")
            if v.ok:
                seq, head = chain.get("sequence"), envelope_digest(env)
                units.add(pred.get("unit"))
            failures += v.failures()
        if len(units) != c["quantity"]:
            failures.append(f"{len(units)} verified unit(s) of {c['quantity']}")
        attempt = c["attempt"]
        if failures:
            self._fail(cid, c, "; ".join(failures[:4]), now)
            return None

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            cur = conn.execute("SELECT state, attempt FROM contracts WHERE id=?", (cid,)).fetchone()
            if cur[0] != "built" or cur[1] != attempt:
                raise _Stale()
            conn.execute("UPDATE contracts SET state='verified' WHERE id=?", (cid,))
            conn.execute("INSERT INTO chains(cell, sequence, head) VALUES (?,?,?) ON CONFLICT(cell) "
                         "DO UPDATE SET sequence=excluded.sequence, head=excluded.head", (c["cell"], seq, head))
            return {"cell": c["cell"], "attempt": attempt, "units": len(units)}

        return self._guarded(f"verified:{cid}:{attempt}", cid, "verified", change, now)

    def _fail(self, cid: str, c: Dict[str, Any], why: str, now: Optional[float]) -> None:
        log.warning("contract %s: verification failed: %s", cid, why)
        rule = AwardRule.from_dict(c["rule"])
        if rule.on_fail == "rebuild":
            self.forfeit(cid, c["cell"], "verification failed: " + why, now=now)
        else:
            self.refund(cid, "verification failed: " + why, now=now)

    def release(self, cid: str, *, now: Optional[float] = None) -> Optional[Transition]:
        """Pay the cell its price from escrow and return the change to the buyer."""
        c = self.contract(cid)
        if c["state"] != "verified":
            return None

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            if conn.execute("SELECT state FROM contracts WHERE id=?", (cid,)).fetchone()[0] != "verified":
                raise _Stale()
            price, budget = int(c["price"]), int(c["budget"])
            bond = int(c["bond"])
            post_entries(conn, f"release:{cid}", [(f"escrow:{cid}", -budget), (f"cell:{c['cell']}", price + bond),
                                                  (f"bond:{cid}", -bond), (f"buyer:{c['buyer']}", budget - price)],
                         at)
            conn.execute("UPDATE contracts SET state='released', settled_at=? WHERE id=?", (at, cid))
            conn.execute("UPDATE awards SET status='completed' WHERE contract=? AND attempt=?", (cid, c["attempt"]))
            return {"cell": c["cell"], "price": price, "change": budget - price, "buyer": c["buyer"]}

        return self._guarded(f"release:{cid}", cid, "released", change, now)

    def refund(self, cid: str, reason: str, *, now: Optional[float] = None) -> Optional[Transition]:
        """Return the whole budget to the buyer and close the contract."""
        c = self.contract(cid)
        if c["state"] in TERMINAL:
            return None

        def change(conn: sqlite3.Connection, at: float) -> Dict[str, Any]:
            if conn.execute("SELECT state FROM contracts WHERE id=?", (cid,)).fetchone()[0] in TERMINAL:
                raise _Stale()
            budget = int(c["budget"])
            bond = int(c["bond"]) if c["state"] in ("awarded", "built", "verified") else 0
            post_entries(conn, f"refund:{cid}", [(f"escrow:{cid}", -budget), (f"bond:{cid}", -bond),
                                                 (f"buyer:{c['buyer']}", budget + bond)], at)
            conn.execute("UPDATE contracts SET state='refunded', reason=?, settled_at=?, bond=0 WHERE id=?",
                         (reason, at, cid))
            conn.execute("UPDATE awards SET status='forfeited' WHERE contract=? AND status IN ('active','built')",
                         (cid,))
            return {"buyer": c["buyer"], "amount": budget, "reason": reason, "cell": c["cell"]}

        return self._guarded(f"refund:{cid}", cid, "refunded", change, now)

    def _guarded(self, tid: str, cid: str, kind: str, change: Callable[[sqlite3.Connection, float], Dict[str, Any]],
                 now: Optional[float]) -> Optional[Transition]:
        """Apply, treating a state that moved on meanwhile (another thread won the race) as nothing to do."""
        try:
            return self._apply(tid, cid, kind, change, now)
        except _Stale:
            return None

    # ------------------------------------------------------------ faults
    def awarded(self) -> List[Tuple[str, str, float]]:
        """(contract, cell, deadline) of every contract awarded and not yet built (cheap: no spec parsing)."""
        with self._lock:
            return [(r[0], r[1], float(r[2])) for r in self.conn.execute(
                "SELECT id, cell, deadline FROM contracts WHERE state='awarded' ORDER BY posted_at, id")]

    def cell_lost(self, cell: str, *, now: Optional[float] = None) -> List[str]:
        """A cell lost its liveliness: it forfeits every contract awarded to it and not yet built."""
        out = []
        for cid, holder, _deadline in self.awarded():
            if holder == cell and self.forfeit(cid, cell, "the cell lost its liveliness", now=now):
                out.append(cid)
        return out

    def overdue(self, now: Optional[float] = None) -> List[str]:
        """Forfeit awards whose deadline has passed; return their contracts."""
        at = time.time() if now is None else now
        out = []
        for cid, cell, deadline in self.awarded():
            if at > deadline and self.forfeit(cid, cell, "missed its deadline", now=now):
                out.append(cid)
        return out

    # ------------------------------------------------------------ figures
    def books(self) -> Dict[str, int]:
        """The balances, after checking the invariants (raises if the books are wrong)."""
        with self._lock:
            return check_invariants(self.conn)

    def balances(self) -> Dict[str, int]:
        with self._lock:
            return balances(self.conn)

    def double_awarded(self) -> int:
        """Contracts with more than one award active at once (must be 0)."""
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM (SELECT contract FROM awards WHERE status IN "
                                         "('active','built') GROUP BY contract HAVING COUNT(*) > 1)").fetchone()[0])

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            count = lambda sql: int(self.conn.execute(sql).fetchone()[0])   # noqa: E731
            states = dict(self.conn.execute("SELECT state, COUNT(*) FROM contracts GROUP BY state").fetchall())
            out = {
                "posted": count("SELECT COUNT(*) FROM contracts"),
                "awarded": count("SELECT COUNT(DISTINCT contract) FROM awards"),
                "completed": count("SELECT COUNT(DISTINCT contract) FROM transitions WHERE kind='built'"),
                "verified": count("SELECT COUNT(DISTINCT contract) FROM transitions WHERE kind='verified'"),
                "released": states.get("released", 0),
                "refunded": states.get("refunded", 0),
                "reawarded": count("SELECT COUNT(DISTINCT contract) FROM awards WHERE attempt > 1"),
                "forfeits": count("SELECT COUNT(*) FROM transitions WHERE kind='forfeited'"),
                "open": sum(states.get(s, 0) for s in LIVE),
            }
        out["double_awarded"] = self.double_awarded()
        out["lost"] = out["posted"] - out["released"] - out["refunded"] - out["open"]
        return out

    def transitions(self, contract: Optional[str] = None) -> List[Tuple[str, str, Dict[str, Any]]]:
        with self._lock:
            rows = self.conn.execute("SELECT id, kind, data FROM transitions " +
                                     ("WHERE contract=? " if contract else "") + "ORDER BY seq",
                                     (contract,) if contract else ()).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]


class _Stale(Exception):
    """The contract moved on between reading it and the transition's lock: nothing to do."""
