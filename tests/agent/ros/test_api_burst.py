"""The cell agent as a real process: a burst of 1000 requests all answered, Stop answered in time during a
submit storm, a robot_description published, and a clean exit on SIGINT/SIGTERM with the halt journaled.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import pytest
import yaml

from tests.paths import DEMO_CELL, DEMO_JOB

from .conftest import agent_argv

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from anycell.agent.api import inline_program_files  # noqa: E402
from anycell.agent.ros.client import CellClient  # noqa: E402
from anycell.errors import ConnectionLost  # noqa: E402


def _client(timeout: float = 30.0) -> CellClient:
    client = CellClient("demo_cell")
    assert client.wait_ready(timeout), "the agent's API did not appear"
    return client


def test_burst_of_1000_requests_all_answered(processes, rclpy_context, tmp_path) -> None:
    from std_msgs.msg import String

    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = _client()
    try:
        got = set()
        lock = threading.Condition()

        def on(msg: String) -> None:
            data = json.loads(msg.data)
            with lock:
                got.add(data.get("request_id"))
                lock.notify_all()

        from anycell.agent.ros.json_topic import QOS

        client.node.create_subscription(String, "/demo_cell/api/response", on, QOS)
        time.sleep(0.5)   # let the extra subscription match (the client already matched the agent)
        pub = client._api._pub
        ids = [f"burst-{i}" for i in range(1000)]
        for rid in ids:
            pub.publish(String(data=json.dumps({"request_id": rid, "op": "status"})))
        with lock:
            lock.wait_for(lambda: set(ids) <= got, 60)
        assert len(set(ids) & got) == 1000
    finally:
        client.destroy()


def test_stop_answered_fast_during_a_submit_storm_then_reset_works(processes, rclpy_context, tmp_path) -> None:
    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = _client()
    try:
        with open(DEMO_JOB, encoding="utf-8") as handle:
            job = inline_program_files(yaml.safe_load(handle), os.path.dirname(DEMO_JOB))
        assert client.command("reset")[0] and client.wait_state(["Idle"], 10)
        storm = []

        def submit(doc: dict) -> None:
            try:
                client.submit(doc, timeout=120)
            except ConnectionLost:
                pass            # still waiting when the test destroys its client: expected

        for i in range(6):
            storm.append(threading.Thread(target=submit, args=(dict(job, id=f"storm-{i}", quantity=20),), daemon=True))
        for t in storm:
            t.start()
        time.sleep(0.3)
        times = []
        for name in ("start", "stop"):
            t0 = time.monotonic()
            ok, msg = client.command(name)
            times.append(time.monotonic() - t0)
            assert ok, msg
        assert max(times) < 0.1 * 5, times    # 100 ms goal; slack for a loaded 2-core test machine
        assert client.wait_state(["Stopped"], 30)
        ok, msg = client.command("reset")
        assert ok, msg
        assert client.wait_state(["Idle"], 30)
    finally:
        client.destroy()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_exit_on_signal_journals_the_halt(processes, rclpy_context, tmp_path, sig) -> None:
    journal = str(tmp_path / "j.db")
    proc = processes.start(agent_argv(DEMO_CELL, journal), "agent")
    client = _client()
    try:
        from std_msgs.msg import String

        from anycell.agent.ros.cell_agent_node import LATCHED

        got = []
        client.node.create_subscription(String, "/demo_cell/panda/robot_description",
                                        lambda m: got.append(m.data), LATCHED)
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got and "<robot" in got[0]
    finally:
        client.destroy()
    time.sleep(0.2)
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=10) == 0
    log = processes.log(proc)
    assert "Traceback" not in log
    rows = sqlite3.connect(journal).execute("SELECT kind, detail FROM events WHERE kind = 'signal'").fetchall()
    assert rows and signal.Signals(sig).name in rows[0][1]
