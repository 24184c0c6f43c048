"""SimRobot: tracks planned trajectories, stops on unexpected contact, grasps only on real contact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import ExecutionError
from anycell.geometry import Pose
from drivers.sim_robot import SimRobot
from planners.collision import CollisionWorld
from planners.motion import MotionPlanner
from sim.world import SimWorld
from tests.paths import DEMO_CELL

DOWN = [math.pi, 0.0, 0.0]


@pytest.fixture(scope="module")
def cell():
    return load_cell(DEMO_CELL)


@pytest.fixture(scope="module")
def planner(cell):
    mp = MotionPlanner(cell, "panda")
    yield mp
    mp.close()


@pytest.fixture
def world(cell):
    w = SimWorld(cell)
    yield w
    w.close()


def test_executes_a_planned_move_and_the_executed_path_is_collision_free(cell, planner, world) -> None:
    robot = SimRobot(world, "panda", record=True)
    fixture, feeder = cell.station("fixture").pose.xyz, cell.station("feeder").pose.xyz
    q1 = planner.ik(Pose(xyz=[feeder[0], feeder[1], 0.1], rpy=DOWN), robot.joint_positions())
    q2 = planner.ik(Pose(xyz=[fixture[0], fixture[1], 0.1], rpy=DOWN), q1)
    t0 = world.sim_time
    for goal in (q1, q2):
        robot.execute(planner.plan_joint(robot.joint_positions(), goal))
        assert np.max(np.abs(np.asarray(robot.joint_positions()) - goal)) < 0.003
    assert world.sim_time > t0
    assert robot.max_tracking_error < 0.05
    # an independent collision model checks every measured configuration (one per physics step)
    checker = CollisionWorld(cell, "panda")
    try:
        assert len(robot.trace) > 100
        assert all(checker.free(q, clearance=0.0) for q in robot.trace)
    finally:
        checker.close()


def test_unexpected_contact_stops_the_robot_and_names_both_bodies(cell, planner, world) -> None:
    robot = SimRobot(world, "panda")
    fixture = cell.station("fixture").pose.xyz
    q_above = planner.ik(Pose(xyz=[fixture[0], fixture[1], 0.15], rpy=DOWN), robot.joint_positions())
    robot.execute(planner.plan_joint(robot.joint_positions(), q_above))
    # a box the planner does not know about, right under the tool
    world.add_part("intruder", [0.1, 0.1, 0.06], 1.0, Pose(xyz=[fixture[0], fixture[1], fixture[2] + 0.03]))
    world.settle(0.2)
    line = planner.plan_cartesian_line(q_above, Pose(xyz=[fixture[0], fixture[1], 0.04], rpy=DOWN))
    with pytest.raises(ExecutionError) as err:
        robot.execute(line)
    text = str(err.value)
    assert "panda/" in text and "part:intruder" in text
    # it stopped: the tool stays above the box instead of finishing the line
    assert planner.fk(robot.joint_positions()).xyz[2] > 0.06


def test_grasp_needs_both_fingers_on_the_part(cell, planner, world) -> None:
    robot = SimRobot(world, "panda")
    feeder = cell.station("feeder").pose.xyz
    world.add_part("cube", [0.03, 0.03, 0.03], 0.05, Pose(xyz=[feeder[0], feeder[1], feeder[2] + 0.015]))
    world.settle(0.2)
    before = world.part_pose("cube")
    # close the gripper in mid-air, 10 cm above the part: nothing to hold, the part does not move
    q = planner.ik(Pose(xyz=[feeder[0], feeder[1], 0.15], rpy=DOWN), robot.joint_positions())
    robot.execute(planner.plan_joint(robot.joint_positions(), q))
    assert robot.grasp("cube") is False
    assert robot.holding() is None
    after = world.part_pose("cube")
    assert np.allclose(before.xyz, after.xyz, atol=1e-4)
