"""The exchange killed with SIGKILL mid-transition, again and again: nothing lost, nothing done twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from anycell.network.market import Exchange
from tests.paths import ROOT


def _transitions(db: str) -> int:
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM transitions").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0     # not created yet


@pytest.mark.slow
def test_kill_9_at_any_point_loses_and_duplicates_nothing(tmp_path) -> None:
    """Each run is killed once the journal has grown past a new mark, so kills land all through the market's
    life (posts, awards, forfeits, deliveries, verifications, releases); then a last run finishes."""
    db, keys, count = str(tmp_path / "ex.db"), str(tmp_path / "keys"), 30
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "tests.network.crash_driver", db, keys, str(count)]
    kills = 0
    for mark in (5, 25, 50, 80, 110, 140, 170, None):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            if mark is not None:
                end = time.time() + 120
                while proc.poll() is None and _transitions(db) < mark and time.time() < end:
                    time.sleep(0.002)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    kills += 1
                    ex = Exchange(db)           # after every kill the books are right as they stand
                    try:
                        ex.books()
                        assert ex.double_awarded() == 0
                    finally:
                        ex.close()
                    continue
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0 and b"done" in out, err.decode()[-2000:]
            break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert kills >= 4
    ex = Exchange(db)
    try:
        books = ex.books()
        summary = ex.summary()
        assert summary["posted"] == count and summary["released"] == count and summary["lost"] == 0
        assert summary["double_awarded"] == 0 and summary["reawarded"] >= len(range(0, count, 3))
        ids = [t[0] for t in ex.transitions()]
        assert len(ids) == len(set(ids))
        # every journaled transition was announced (at least once: a kill between announce and its mark
        # repeats it), and nothing was announced that is not journaled
        with open(db + ".announced", encoding="utf-8") as handle:
            announced = handle.read().split()
        assert set(announced) == set(ids) and len(announced) - len(ids) <= kills
        assert ex.conn.execute("SELECT COUNT(*) FROM transitions WHERE announced=0").fetchone()[0] == 0
        paid = sum(c["price"] for c in ex.contracts())
        assert sum(v for k, v in books.items() if k.startswith("cell:")) == paid and books["buyer:buyer"] == -paid
        txns = [r[0] for r in ex.conn.execute("SELECT DISTINCT txn FROM ledger")]
        assert sorted(txns) == sorted([f"post:c{i}" for i in range(count)] + [f"release:c{i}" for i in range(count)])
    finally:
        ex.close()
