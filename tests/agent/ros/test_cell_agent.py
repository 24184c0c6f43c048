"""The cell_agent node as a real process in an isolated ROS domain, driven through CellClient.

Jobs are planned by the real planners and executed by the dry-run runner (the
agent layer under test here: services, topics, API, journal, recovery; the
concrete robot/machine runner is wired separately).
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from .conftest import agent_argv

rclpy = pytest.importorskip("rclpy")

from anycell.agent.ros.client import CellClient  # noqa: E402
from tests.paths import DEMO_CELL, DEMO_JOB  # noqa: E402


def _command(client: CellClient, name: str, then: str) -> None:
    ok, message = client.command(name)
    assert ok, f"{name} refused: {message} (state {client.state()})"
    assert client.wait_state([then], 30), f"after {name}: state {client.state()}, wanted {then}"


def _reset_and_start(client: CellClient) -> None:
    _command(client, "reset", "Idle")
    _command(client, "start", "Execute")


def _client(timeout: float = 20.0) -> CellClient:
    client = CellClient("demo_cell")
    assert client.wait_ready(timeout), "the cell agent's API did not match in time"
    return client


def test_packml_over_trigger_services(processes, rclpy_context, tmp_path) -> None:
    proc = processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = _client()
    try:
        assert client.state() == "Stopped"
        ok, reason = client.command("start")
        assert ok is False and "not allowed in state Stopped" in reason and "start needs Idle" in reason
        ok, reason = client.command("unhold")
        assert ok is False and "unhold needs Held" in reason
        assert client.command("reset") == (True, "Resetting")
        assert client.wait_state(["Idle"], 10)
        assert client.command("start")[0]
        assert client.wait_state(["Execute"], 10)
        assert client.command("hold")[0] and client.wait_state(["Held"], 10)
        assert client.command("start")[0] is False
        assert client.command("unhold")[0] and client.wait_state(["Execute"], 10)
        assert client.command("suspend")[0] and client.wait_state(["Suspended"], 10)
        assert client.command("unsuspend")[0] and client.wait_state(["Execute"], 10)
        assert client.command("abort")[0] and client.wait_state(["Aborted"], 10)
        assert client.command("reset")[0] is False
        assert client.command("clear")[0] and client.wait_state(["Stopped"], 10)
        assert proc.poll() is None
    finally:
        client.destroy()


def test_malformed_requests_get_errors_and_the_cell_keeps_serving(processes, rclpy_context, tmp_path) -> None:
    from std_msgs.msg import String

    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = _client()
    try:
        # raw garbage on the request topic: the error response carries request_id null
        seen = []
        sub = client.node.create_subscription(String, "/demo_cell/api/response",
                                              lambda m: seen.append(json.loads(m.data)), 10)
        raw = client.node.create_publisher(String, "/demo_cell/api/request", 10)
        deadline = time.monotonic() + 10
        while raw.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        raw.publish(String(data="{this is not json"))
        deadline = time.monotonic() + 10
        while not any(r.get("request_id") is None for r in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        bad = [r for r in seen if r.get("request_id") is None]
        assert bad and bad[0]["ok"] is False and "not JSON" in bad[0]["error"]["message"]
        client.node.destroy_subscription(sub)

        r = client.request("explode")
        assert r["ok"] is False and r["error"]["field"] == "op"
        r = client.request("submit", job={"id": "x"})
        assert r["ok"] is False and r["error"]["error"] == "ConfigError" and r["error"]["field"] == "job"
        r = client.request("get", job_id="nope")
        assert r["ok"] is False and "no job 'nope'" in r["error"]["message"]
        # still serving, and a good job is accepted
        r = client.submit_file(DEMO_JOB)
        assert r["ok"] is True and r["job_id"] == "demo_widget"
        assert [j["job_id"] for j in client.list_jobs()["jobs"]] == ["demo_widget"]
    finally:
        client.destroy()


def test_repeated_request_id_gets_the_same_response_and_no_second_job(processes, rclpy_context, tmp_path) -> None:
    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = _client()
    try:
        first = client.submit_file(DEMO_JOB, request_id="retry-1")
        second = client.submit_file(DEMO_JOB, request_id="retry-1")
        assert first["ok"], first
        assert second == first
        assert len(client.list_jobs(all=True)["jobs"]) == 1
    finally:
        client.destroy()


def test_job_runs_to_complete_and_diagnostics_report_the_cell(processes, rclpy_context, tmp_path) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    from anycell.agent.ros.conversions import diagnostics_from_msg

    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db"), scale=0.005), "agent")
    client = _client()
    diags = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda m: diags.extend(diagnostics_from_msg(m)), 10)
    try:
        _reset_and_start(client)
        r = client.submit_file(DEMO_JOB)
        updates = []
        final = client.wait_job(r["job_id"], 60, on_update=updates.append)
        assert final["status"] == "complete" and final["done"] == final["total"] == r["steps"]
        assert any(u["running"] for u in updates)          # progress named the running steps
        assert [u["done"] for u in updates] == sorted(u["done"] for u in updates)
        deadline = time.monotonic() + 10
        while not any(d["name"] == "demo_cell/packml" for d in diags) and time.monotonic() < deadline:
            time.sleep(0.05)
        packml = [d for d in diags if d["name"] == "demo_cell/packml"]
        assert packml and packml[-1]["message"] == "Execute" and packml[-1]["level"] == 0
        # the plan in RViz: latched markers, one arrow per move, every move drawn done (faded)
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from visualization_msgs.msg import MarkerArray

        from anycell.agent.ros.conversions import markers_to_moves

        marks = []
        client.node.create_subscription(
            MarkerArray, "/demo_cell/plan_markers", marks.append,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        deadline = time.monotonic() + 10
        while not marks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marks
        moves = markers_to_moves(marks[-1])
        plan_ops = client.get(r["job_id"])["job"]["steps"]
        assert moves and set(moves) <= {s["op"] for s in plan_ops}
        assert all(m["alpha"] < 0.5 for m in moves.values())
    finally:
        client.destroy()


def test_kill_9_mid_job_restart_names_the_step_and_resume_completes(processes, rclpy_context, tmp_path) -> None:
    journal = str(tmp_path / "j.db")
    agent = processes.start(agent_argv(DEMO_CELL, journal, scale=0.03), "agent")
    client = _client()
    try:
        _reset_and_start(client)
        job_id = client.submit_file(DEMO_JOB)["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = client.progress(job_id)
            if p and p["done"] >= 4 and p["running"]:
                break
            time.sleep(0.01)
        processes.kill9(agent)
        db = sqlite3.connect(journal)
        done_before = {r[0] for r in db.execute(
            "SELECT op_id FROM steps WHERE job_id = ? AND status = 'done'", (job_id,))}
        unconfirmed = [r[0] for r in db.execute(
            "SELECT op_id FROM steps WHERE job_id = ? AND status = 'started' ORDER BY rowid", (job_id,))]
        db.close()
        assert len(done_before) >= 4 and unconfirmed
    finally:
        client.destroy()
    rclpy.shutdown()
    rclpy.init()
    processes.start(agent_argv(DEMO_CELL, journal, scale=0.005), "agent-restarted")
    client = _client()
    try:
        job = client.get(job_id)["job"]
        assert job["status"] == "interrupted"
        assert job["interruption"]["unconfirmed"] == unconfirmed
        assert job["interruption"]["last_completed"] in done_before
        assert client.status()["interrupted"] == [job_id]
        _reset_and_start(client)
        r = client.resume(job_id)
        assert r["ok"] and r["resolved"] == unconfirmed
        final = client.wait_job(job_id, 60)
        assert final["status"] == "complete"
    finally:
        client.destroy()
    db = sqlite3.connect(journal)
    rows = db.execute("SELECT op_id, status, attempts FROM steps WHERE job_id = ?", (job_id,)).fetchall()
    db.close()
    assert all(attempts == 1 for _op, _st, attempts in rows), "a step was run twice"
    assert {op for op, st, _a in rows if st == "resolved"} == set(unconfirmed)
    assert all(st in ("done", "resolved") for _op, st, _a in rows)
    assert len(rows) == final["total"]


def test_hold_and_unhold_mid_job_continue_correctly(processes, rclpy_context, tmp_path) -> None:
    journal = str(tmp_path / "j.db")
    processes.start(agent_argv(DEMO_CELL, journal, scale=0.05), "agent")
    client = _client()
    try:
        _reset_and_start(client)
        job_id = client.submit_file(DEMO_JOB)["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = client.progress(job_id)
            if p and p["done"] >= 3:
                break
            time.sleep(0.01)
        _command(client, "hold", "Held")
        held_at = time.time()
        done_held = client.get(job_id)["job"]["done"]
        assert client.command("start")[0] is False         # Held refuses start
        unheld_at = time.time()
        _command(client, "unhold", "Execute")
        final = client.wait_job(job_id, 60)
        assert final["status"] == "complete" and final["done"] == final["total"]
        assert done_held < final["total"], "the job had ended before the hold"
    finally:
        client.destroy()
    db = sqlite3.connect(journal)
    starts = [r[0] for r in db.execute("SELECT started FROM steps WHERE job_id = ?", (job_id,))]
    attempts = [r[0] for r in db.execute("SELECT attempts FROM steps WHERE job_id = ?", (job_id,))]
    db.close()
    assert not [t for t in starts if held_at <= t <= unheld_at], "a step started while the cell was Held"
    assert set(attempts) == {1}
