"""The exchange killed with SIGKILL mid-transition, again and again: nothing lost, nothing done twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from anycell.network.market import Exchange
from tests.paths import ROOT


@pytest.mark.slow
def test_kill_9_at_any_point_loses_and_duplicates_nothing(tmp_path) -> None:
    db, keys, count = str(tmp_path / "ex.db"), str(tmp_path / "keys"), 12
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "tests.network.crash_driver", db, keys, str(count)]
    kills = 0
    delays = [0.9, 1.1, 1.3, 1.5, 1.7, 2.0]
    for attempt in range(40):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            delay = delays[attempt] if attempt < len(delays) else None
            if delay is not None:
                try:
                    out, err = proc.communicate(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    kills += 1
                    # after every kill the books are right as they stand
                    ex = Exchange(db)
                    ex.books()
                    assert ex.double_awarded() == 0
                    ex.close()
                    continue
            else:
                out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            if b"done" in out:
                break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert kills >= 1
    ex = Exchange(db)
    try:
        books = ex.books()
        summary = ex.summary()
        assert summary["posted"] == count and summary["released"] == count and summary["lost"] == 0
        assert summary["double_awarded"] == 0
        ids = [t[0] for t in ex.transitions()]
        assert len(ids) == len(set(ids))
        assert sum(v for k, v in books.items() if k.startswith("cell:")) == sum(
            c["price"] for c in ex.contracts())
        assert books["buyer:buyer"] == -sum(c["price"] for c in ex.contracts())
        txns = [r[0] for r in ex.conn.execute("SELECT DISTINCT txn FROM ledger")]
        assert sorted(txns) == sorted([f"post:c{i}" for i in range(count)] + [f"release:c{i}" for i in range(count)])
    finally:
        ex.close()
    time.sleep(0)
