"""The market over real Zenoh sessions on loopback: an exchange, two cells and a buyer, each its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest

from anycell.network.transport import free_port
from tests.paths import ROOT

CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")


class Proc:
    """A child ``anycell`` process whose output is collected, so we can wait on a line."""

    def __init__(self, args: List[str], cwd: str) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.p = subprocess.Popen([sys.executable, "-m", "anycell", *args], cwd=cwd, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        end = time.time() + timeout
        while not any(text in ln for ln in self.lines):
            assert self.p.poll() is None, "".join(self.lines)
            assert time.time() < end, f"no '{text}' in: " + "".join(self.lines)
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.mark.slow
def test_a_job_is_bid_built_verified_and_paid_across_processes(tmp_path) -> None:
    port = free_port()
    hub = f"tcp/127.0.0.1:{port}"
    ns = f"anycell-test-{os.getpid()}"
    common = ["--keys", str(tmp_path / "keys"), "--namespace", ns]
    procs: List[Proc] = []
    try:
        ex = Proc(["network", "exchange", "--listen", hub, "--db", str(tmp_path / "ex.db"), "--bid-window", "20",
                   *common], str(tmp_path))
        procs.append(ex)
        ex.wait_for("exchange exchange ready")
        for name, scale in (("cell-fast", "0.005"), ("cell-slow", "0.05")):
            c = Proc(["network", "cell", CELL, "--name", name, "--connect", hub, "--time-scale", scale,
                      "--builder", "plan", "--records", str(tmp_path / name), *common], str(tmp_path))
            procs.append(c)
            c.wait_for(f"cell {name} ready")
        for name in ("cell-fast", "cell-slow"):
            ex.wait_for(f"cell {name} is present")
        post = subprocess.run([sys.executable, "-m", "anycell", "post", JOB, "--budget", "50", "--due", "120",
                               "--rule", "quickest", "--wait", "--json", "--connect", hub, *common],
                              cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                              text=True, timeout=180)
        assert post.returncode == 0, "".join(ex.lines) + "".join(procs[1].lines)
        out = json.loads(post.stdout)
        kinds = [e["kind"] for e in out["events"]]
        assert out["state"] == "released" and kinds[-3:] == ["built", "verified", "released"], kinds
        awarded = [e for e in out["events"] if e["kind"] == "awarded"]
        assert awarded[0]["data"]["cell"] == "cell-fast"        # quickest: the faster cell wins
        assert set(awarded[0]["data"]["rejected"]) == {"cell-slow"}
        # the live view's summary comes from the exchange, signed
        market = subprocess.run([sys.executable, "-m", "anycell", "market", "--once", "--connect", hub, *common],
                                cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                                text=True, timeout=60)
        assert market.returncode == 0, market.stdout + market.stderr
        state = json.loads(market.stdout)
        assert state["posted"] == 1 and state["released"] == 1 and set(state["alive"]) == {"cell-fast", "cell-slow"}
        # the winner's records verify offline against the published keys
        ver = subprocess.run([sys.executable, "-m", "anycell", "verify", str(tmp_path / "cell-fast"), "--keys",
                              str(tmp_path / "keys"), "--json"], cwd=str(tmp_path),
                             env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=60)
        assert ver.returncode == 0, ver.stdout + ver.stderr
        assert len(json.loads(ver.stdout)["records"]) == 2          # demo_widget: two units
    finally:
        for p in reversed(procs):
            p.stop()


def _journal(db: str) -> List[str]:
    import sqlite3

    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return [r[0] for r in conn.execute("SELECT kind FROM transitions ORDER BY seq")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


@pytest.mark.slow
def test_the_exchange_killed_with_sigkill_mid_job_comes_back_and_settles_it(tmp_path) -> None:
    """kill -9 of the exchange process while a cell builds; the restarted exchange (same books) takes the
    records, verifies and pays; the buyer, still waiting, sees the job released; nothing done twice."""
    port = free_port()
    hub = f"tcp/127.0.0.1:{port}"
    ns = f"anycell-restart-{os.getpid()}"
    common = ["--keys", str(tmp_path / "keys"), "--namespace", ns]
    db = str(tmp_path / "ex.db")
    exchange_args = ["network", "exchange", "--listen", hub, "--db", db, "--bid-window", "20", *common]
    procs: List[Proc] = []
    buyer = None
    try:
        ex = Proc(exchange_args, str(tmp_path))
        procs.append(ex)
        ex.wait_for("exchange exchange ready")
        cell = Proc(["network", "cell", CELL, "--name", "cell-a", "--connect", hub, "--time-scale", "0.1",
                     "--builder", "plan", *common], str(tmp_path))
        procs.append(cell)
        cell.wait_for("cell cell-a ready")
        ex.wait_for("cell cell-a is present")
        buyer = subprocess.Popen([sys.executable, "-m", "anycell", "post", JOB, "--budget", "50", "--due", "300",
                                  "--wait", "--json", "--connect", hub, *common], cwd=str(tmp_path),
                                 env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        end = time.time() + 60
        while "awarded" not in _journal(db):
            assert time.time() < end and buyer.poll() is None, "".join(ex.lines)
            time.sleep(0.02)
        ex.stop(signal.SIGKILL)            # the cell is building now (about 12 s of work)
        assert "built" not in _journal(db)
        ex2 = Proc(exchange_args, str(tmp_path))
        procs.append(ex2)
        ex2.wait_for("exchange exchange ready")
        out, err = buyer.communicate(timeout=180)
        assert buyer.returncode == 0, out + err + "".join(ex2.lines) + "\n--- cell ---\n" + "".join(cell.lines)
        assert json.loads(out)["state"] == "released"
        kinds = _journal(db)
        assert kinds == ["posted", "awarded", "built", "verified", "released"], kinds
    finally:
        if buyer is not None and buyer.poll() is None:
            buyer.kill()
            buyer.wait()
        for p in reversed(procs):
            p.stop()
