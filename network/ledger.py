"""The escrow ledger: double entries in integer cents, and the invariants checked after every transition.

Accounts are ``buyer:<name>``, ``escrow:<contract>``, ``bond:<contract>`` and
``cell:<name>``. A buyer's post moves the budget from the buyer to the
contract's escrow; a release pays the agreed price to the cell and the change
back to the buyer; a refund returns the whole budget. When the award rule sets
a bid bond, the awarded cell's bond is held in ``bond:<contract>`` until the
contract settles: returned to the cell with its pay, or forfeited to the buyer
when the cell loses the job. Each transaction's entries sum to zero, so
the whole ledger does too: money is never created or lost. Amounts are
integers (cents) so no rounding ever makes a cent appear.
"""

from __future__ import annotations

import sqlite3
from typing import Dict, List, Tuple

from anycell.errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    txn TEXT NOT NULL,
    account TEXT NOT NULL,
    amount INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger(account);
"""

#: States whose escrow holds the whole budget; in every other state it holds nothing.
HOLDING = ("open", "awarded", "built", "verified")
#: States in which the awarded cell's bond (if the rule sets one) is held.
BONDED = ("awarded", "built", "verified")


def cents(amount: float) -> int:
    """Money from a price in currency units, rounded to the cent once."""
    return int(round(float(amount) * 100))


def post_entries(conn: sqlite3.Connection, txn: str, entries: List[Tuple[str, int]], at: float) -> None:
    """Write one balanced transaction; refuse an unbalanced one before anything is written."""
    if sum(a for _acct, a in entries) != 0:
        raise StateError(f"transaction {txn} does not balance: {entries}", hint="a bug in the exchange")
    conn.executemany("INSERT INTO ledger(txn, account, amount, at) VALUES (?, ?, ?, ?)",
                     [(txn, acct, amount, at) for acct, amount in entries if amount != 0])


def balances(conn: sqlite3.Connection) -> Dict[str, int]:
    return {acct: int(total) for acct, total in
            conn.execute("SELECT account, SUM(amount) FROM ledger GROUP BY account")}


def check_invariants(conn: sqlite3.Connection) -> Dict[str, int]:
    """Raise :class:`StateError` unless the books are right; return the balances.

    * the ledger sums to zero, and so does every transaction;
    * each contract's escrow holds its budget while the contract is live and
      nothing once it is settled; no escrow is ever negative;
    * a released contract paid its cell exactly the agreed price.
    """
    total = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger").fetchone()[0]
    if total != 0:
        raise StateError(f"the ledger sums to {total} cents, not 0", hint="money was created or lost")
    bad = conn.execute("SELECT txn, SUM(amount) FROM ledger GROUP BY txn HAVING SUM(amount) != 0").fetchall()
    if bad:
        raise StateError(f"unbalanced transactions: {bad}")
    bal = balances(conn)
    for cid, state, budget, bond in conn.execute("SELECT id, state, budget, bond FROM contracts"):
        held = bal.get(f"escrow:{cid}", 0)
        want = budget if state in HOLDING else 0
        if held != want:
            raise StateError(f"contract {cid} ({state}) escrow holds {held} cents, expected {want}")
        held = bal.get(f"bond:{cid}", 0)
        want = bond if state in BONDED else 0
        if held != want:
            raise StateError(f"contract {cid} ({state}) bond holds {held} cents, expected {want}")
    return bal
