"""A child process for the kill -9 test: drives contracts through the market until all are settled.

It decides every step from the durable state, as a restarted exchange does,
so it can be killed at any instant and started again.
"""

from __future__ import annotations

import sys

from anycell.network.identity import Identity, Keyring, digest
from anycell.network.market import Exchange
from anycell.network.records import RecordChain
from tests.network.test_market import JOB, NOW
from tests.network.test_records import _unit


def main(db: str, keys: str, count: int) -> None:
    from anycell.network.buyer import portable_spec

    spec = portable_spec(JOB)
    spec["quantity"] = 1
    import os

    log = open(db + ".announced", "a", encoding="utf-8")

    def announce(tr) -> None:   # the network, as far as this test is concerned: a durable log of announcements
        log.write(tr.id + "\n")
        log.flush()
        os.fsync(log.fileno())

    ex = Exchange(db, grace=5.0, announce=announce)
    ex.flush_announcements()    # what a crash left journaled but unannounced goes out first
    ring = Keyring(keys)
    cells = {n: Identity.load_or_create(keys, n, "cell") for n in ("a", "b")}
    ring.rescan()
    for i in range(count):
        ex.post(f"c{i}", "buyer", spec, digest(spec), 1000 + i, NOW + 600, now=NOW)
    ex.flush_announcements()
    while True:
        live = ex.contracts(("open", "awarded", "built", "verified"))
        if not live:
            break
        for c in live:
            cid = c["id"]
            if c["state"] == "open":
                ex.award(cid, [{"cell": "a", "price": 500, "finish": NOW + 100},
                               {"cell": "b", "price": 600, "finish": NOW + 100}], now=NOW)
            elif c["state"] == "awarded":
                if c["cell"] == "a" and int(cid[1:]) % 3 == 0:
                    ex.cell_lost("a", now=NOW)          # every third contract: a dies, b takes it
                    continue
                # a fresh chain per record: the exchange checks each cell's chain only from what it verified
                rec = RecordChain().seal(cells[c["cell"]], spec, spec["id"], {"id": c["cell"], "config_digest": "x"},
                                         _unit(spec, 1), contract=cid)
                ex.built(cid, c["cell"], c["attempt"], [rec], now=NOW + 1)
            elif c["state"] == "built":
                ex.verify(cid, now=NOW + 2)
            elif c["state"] == "verified":
                ex.release(cid, now=NOW + 3)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
