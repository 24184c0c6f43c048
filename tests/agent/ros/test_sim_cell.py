"""The whole cell over ROS 2 with the real step runner: `anycell up --sim`, jobs submitted over the API.

The robot moves in the sim_cell node (JointTrajectory in, JointState out), the
machines are simulated firmware and servers driven over their real protocols,
the inspection station measures each unit in the simulated world.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.agent.ros.client import CellClient  # noqa: E402
from tests.paths import DEMO_CELL, DEMO_JOB, STACK_JOB  # noqa: E402


def _up(processes, tmp_path, name="up", timeout=240.0):
    argv = [sys.executable, "-m", "anycell", "up", DEMO_CELL, "--sim", "--startup", "execute",
            "--journal", str(tmp_path / "journal.db"), "--no-color"]
    return processes.start(argv, name, timeout=timeout)


def _ready_client(processes, up) -> CellClient:
    client = CellClient("demo_cell")
    assert client.wait_ready(60), processes.log(up)
    assert client.wait_state(["Execute"], 60), processes.log(up)
    return client


def _diagnostics(client: CellClient) -> list:
    from diagnostic_msgs.msg import DiagnosticArray

    from anycell.agent.ros.conversions import diagnostics_from_msg

    seen: list = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: seen.extend(diagnostics_from_msg(m)), 10)
    return seen


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_submitted_job_completes_with_every_part_within_tolerance(processes, rclpy_context, tmp_path) -> None:
    up = _up(processes, tmp_path)
    client = _ready_client(processes, up)
    diags = _diagnostics(client)
    try:
        r = client.submit_file(STACK_JOB)
        assert r["ok"], r
        final = client.wait_job(r["job_id"], 180)
        assert final["status"] == "complete", (final, processes.log(up)[-3000:])
        job = client.get(r["job_id"])["job"]
        assert job["report"]["all_units_passed"] is True and job["report"]["outcome"] == "complete"
        assert "rehearsal" not in job                       # the real runner made it
        report = json.loads((tmp_path / "reports" / r["job_id"] / "report.json").read_text())
        assert {p["part"] for p in report["placements"]} == {"base", "block", "peg"}
        for p in report["placements"]:
            assert p["error_m"] <= p["tolerance_m"] and p["angle_error_rad"] <= p["angle_tolerance_rad"], p
        assert _wait_for(lambda: any(d["name"] == "demo_cell/machine/mill" for d in diags), 10)
        mill = [d for d in diags if d["name"] == "demo_cell/machine/mill"][-1]
        assert mill["level"] == 0, mill
    finally:
        client.destroy()


def test_abort_mid_motion_stops_the_robot(processes, rclpy_context, tmp_path) -> None:
    from sensor_msgs.msg import JointState

    up = _up(processes, tmp_path)
    client = _ready_client(processes, up)
    states: list = []
    client.node.create_subscription(JointState, "/demo_cell/panda/joint_states",
                                    lambda m: states.append((time.monotonic(), list(m.position))), 10)
    try:
        r = client.submit_file(STACK_JOB)
        assert r["ok"], r
        assert _wait_for(lambda: any("pick_place" in x.get("what", "")
                                     for x in (client.progress(r["job_id"]) or {}).get("running", [])), 60)
        # abort while the arm really moves (the step may still be planning when it is reported running)
        def arm_moving() -> bool:
            recent = [q for t, q in states if t > time.monotonic() - 0.2]
            return len(recent) > 3 and max(abs(a - b) for a, b in zip(recent[0], recent[-1])) > 2e-3

        assert _wait_for(arm_moving, 60), "the arm never moved"
        moving = max(abs(a - b) for a, b in zip(states[-1][1], states[-6][1]))
        ok, why = client.command("abort")
        assert ok, why
        assert client.wait_state(["Aborted"], 30), client.state()
        t_abort = time.monotonic()
        assert _wait_for(lambda: states[-1][0] > t_abort + 1.5, 10)
        late = [q for t, q in states if t > t_abort + 1.0]
        drift = max(abs(a - b) for a, b in zip(late[0], late[-1]))
        assert drift < 1e-3, f"the arm kept moving after Abort: {drift} rad (it moved {moving} rad before)"
        job = client.get(r["job_id"])["job"]
        assert job["status"] == "interrupted" and job["interruption"]["unconfirmed"], json.dumps(job)[:3000]
    finally:
        client.destroy()


def test_machine_alarm_is_reported_on_diagnostics_and_aborts_the_cell(processes, ros_env, rclpy_context,
                                                                    tmp_path) -> None:
    processes.env = dict(ros_env, ANYCELL_SIM_FAULTS=json.dumps({"mill": {"alarm_at_progress": 0.3}}))
    up = _up(processes, tmp_path)
    client = _ready_client(processes, up)
    diags = _diagnostics(client)
    try:
        r = client.submit_file(DEMO_JOB)
        assert r["ok"], r
        final = client.wait_job(r["job_id"], 180)
        assert final["status"] == "failed", final
        assert "run.block" in final["error"] and "alarm" in final["error"].lower(), final["error"]
        assert client.wait_state(["Aborted"], 30), client.state()
        assert _wait_for(lambda: any(d["name"] == "demo_cell/machine/mill" and d["level"] == 2 for d in diags), 10), \
            [d for d in diags if "mill" in d["name"]][-3:]
        packml = [d for d in diags if d["name"] == "demo_cell/packml"]
        assert _wait_for(lambda: any(d["name"] == "demo_cell/packml" and d["level"] == 2 for d in diags), 10), packml[-3:]
        # the operator clears and resets the cell: the mill is reset with it and reports healthy again
        assert client.command("clear")[0] and client.wait_state(["Stopped"], 30)
        assert client.command("reset")[0] and client.wait_state(["Idle"], 30), client.state()
        diags.clear()
        assert _wait_for(lambda: any(d["name"] == "demo_cell/machine/mill" for d in diags), 10)
        mill = [d for d in diags if d["name"] == "demo_cell/machine/mill"][-1]
        assert mill["level"] == 0 and mill["values"].get("state") == "Idle", mill
    finally:
        client.destroy()


@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.parametrize("name", ["peg_in_hole", "bracket_clip"])
def test_shaped_parts_over_ros_every_placement_confirmed(processes, rclpy_context, tmp_path, name) -> None:
    """Inserted pins, and a mesh part whose OBJ travels inline in the job document, over ROS 2: each
    placement measured through the sim node, the fixture's clamp holding the base."""
    import os

    from tests.paths import ROOT

    up = _up(processes, tmp_path)
    client = _ready_client(processes, up)
    try:
        r = client.submit_file(os.path.join(ROOT, "examples", "jobs", f"{name}.yaml"))
        assert r["ok"], r
        final = client.wait_job(r["job_id"], 300)
        assert final["status"] == "complete", (client.get(r["job_id"])["job"].get("error"),
                                               processes.log(up)[-3000:])
        report = json.loads((tmp_path / "reports" / r["job_id"] / "report.json").read_text())
        assert report["all_units_passed"] and report["quantity"] == 2
        base, other = ("holder", "pin") if name == "peg_in_hole" else ("bracket", "clip")
        assert sorted((p["unit"], p["part"]) for p in report["placements"]) == sorted(
            [(1, base), (1, other), (2, base), (2, other)])
        for p in report["placements"]:
            assert p["error_m"] <= p["tolerance_m"] and p["angle_error_rad"] <= p["angle_tolerance_rad"], p
        if name == "peg_in_hole":
            pins = [s["detail"] for s in report["steps"] if s["op"].endswith(".place.pin")]
            assert len(pins) == 2 and all(abs(d["depth_error_m"]) < 0.0015 for d in pins)
        bases = [s["detail"] for s in report["steps"] if s["op"].endswith(f".place.{base}")]
        assert all(d.get("held_by") == "clamp:fixture" for d in bases)
    finally:
        client.destroy()
