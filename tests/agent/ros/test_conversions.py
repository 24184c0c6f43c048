"""Round trips of every to-ROS/from-ROS pair in anycell.agent.ros.conversions (no node needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from anycell.agent.ros import conversions as cv  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.planners.trajectory import Trajectory  # noqa: E402
from tests.paths import DEMO_CELL, DEMO_JOB  # noqa: E402


def test_duration_and_time_round_trip() -> None:
    for s in (0.0, 0.5, 1.999999999, 12.25, 3600.000000001):
        assert abs(cv.duration_from_msg(cv.duration_to_msg(s)) - s) < 1e-9
        assert abs(cv.time_from_msg(cv.time_to_msg(s)) - s) < 1e-9
    d = cv.duration_to_msg(1.9999999999)
    assert 0 <= d.nanosec < 1_000_000_000


def test_trajectory_round_trip() -> None:
    names = [f"panda_joint{i}" for i in range(1, 8)]
    traj = Trajectory(joint_names=names, times=[0.0, 0.4, 1.25],
                      positions=[[0.1 * j for j in range(7)], [0.2 * j for j in range(7)], [0.3 * j for j in range(7)]],
                      velocities=[[0.0] * 7, [0.5] * 7, [0.0] * 7],
                      accelerations=[[1.0] * 7, [0.0] * 7, [-1.0] * 7])
    msg = cv.trajectory_to_msg(traj, frame_id="cell")
    assert msg.joint_names == names and len(msg.points) == 3
    assert msg.points[1].time_from_start.sec == 0 and msg.points[1].time_from_start.nanosec == 400_000_000
    back = cv.trajectory_from_msg(msg)
    assert back.joint_names == names
    assert back.times == pytest.approx(traj.times)
    assert back.positions == traj.positions
    assert back.velocities == traj.velocities
    assert back.accelerations == traj.accelerations
    # a controller-style message without velocities reads back with zeros
    msg.points[0].velocities = []
    assert cv.trajectory_from_msg(msg).velocities[0] == [0.0] * 7


def test_joint_state_round_trip() -> None:
    s = cv.JointSample(names=["a", "b"], positions=[0.5, -1.0], velocities=[0.1, 0.0], stamp=12.5)
    back = cv.joint_state_from_msg(cv.joint_state_to_msg(s))
    assert back.names == ["a", "b"] and back.positions == [0.5, -1.0] and back.velocities == [0.1, 0.0]
    assert back.stamp == 12.5
    assert back.ordered(["b", "a"]) == [-1.0, 0.5]
    assert back.ordered(["c"]) is None


def test_diagnostics_round_trip() -> None:
    entries = [{"name": "demo_cell/printer", "level": 2, "message": "ALARM:1", "hardware_id": "marlin",
                "values": {"port": "/dev/pts/3", "lines": "120"}},
               {"name": "demo_cell/packml", "level": 0, "message": "Execute", "hardware_id": "", "values": {}}]
    back = cv.diagnostics_from_msg(cv.health_to_diagnostics(entries, stamp=3.0))
    assert back == entries


def test_json_round_trip() -> None:
    data = {"request_id": "r1", "op": "list", "nested": {"x": [1, 2.5, None]}}
    assert cv.json_from_msg(cv.json_to_msg(data)) == data


def test_plan_markers_read_back_the_plan_moves() -> None:
    from anycell.planners.process import plan_job

    plan = plan_job(load_cell(DEMO_CELL), load_job(DEMO_JOB))
    moves = [o for o in plan.operations if "source" in o.params and "target" in o.params]
    assert moves
    msg = cv.plan_to_markers(plan, frame_id="cell", done=[moves[0].id])
    assert msg.markers[0].action == msg.markers[0].DELETEALL
    back = cv.markers_to_moves(msg)
    assert set(back) == {o.id for o in moves}
    for o in moves:
        assert back[o.id]["source"] == pytest.approx(o.params["source"]["xyz"])
        assert back[o.id]["target"] == pytest.approx(o.params["target"]["xyz"])
    assert back[moves[0].id]["alpha"] == pytest.approx(0.25)
    assert back[moves[-1].id]["alpha"] == pytest.approx(0.9)
