"""SimRobot: tracks planned trajectories, stops on unexpected contact, grasps only on real contact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import ExecutionError
from anycell.geometry import Pose
from anycell.sim.robot import SimRobot
from anycell.planners.collision import CollisionWorld
from anycell.planners.motion import MotionPlanner
from anycell.sim.world import SimWorld
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


@pytest.mark.parametrize("offset", [0.0, 0.003], ids=["centred", "3mm_off_centre"])
def test_fingers_close_all_the_way_onto_an_8mm_peg_and_lift_it(cell, planner, world, offset: float) -> None:
    """A thin part is only reached late in the fingers' travel; the close must wait for it.

    The fingers must really touch it (not stop short within a gap), so a part lying off centre
    along the finger axis is pushed to the middle of the hand before it is held.
    """
    from anycell.agent.skills import grasp_offset
    from anycell.planners.tool import finger_axis_yaw
    from anycell.sim.robot import FINGER_TOUCH

    robot = SimRobot(world, "panda")
    size = [0.008, 0.008, 0.03]
    feeder = cell.station("feeder").pose.xyz
    world.add_part("peg", size, 0.01, Pose(xyz=[feeder[0], feeder[1], feeder[2] + size[2] / 2]))
    world.settle(0.2)
    centre = world.part_pose("peg").xyz
    yaw = finger_axis_yaw(planner)      # the fingers close along the cell's x axis
    world.remove_part("peg")
    world.add_part("peg", size, 0.01, Pose(xyz=[centre[0] + offset, centre[1], centre[2]]))
    world.settle(0.2)
    grasp = Pose(xyz=[centre[0], centre[1], centre[2] + grasp_offset(planner, size)], rpy=[math.pi, 0.0, yaw])
    above = Pose(xyz=[grasp.xyz[0], grasp.xyz[1], grasp.xyz[2] + 0.08], rpy=grasp.rpy)
    robot.execute(planner.plan_joint(robot.joint_positions(), planner.ik(above, robot.joint_positions())))
    robot.expect_contact("peg")
    robot.execute(planner.plan_cartesian_line(robot.joint_positions(), grasp, ignore=("peg",)))
    t0 = world.sim_time
    assert robot.grasp("peg") is True and robot.holding() == "peg"
    assert world.sim_time - t0 > 1.0       # the fingers travelled ~36 mm each at their closing speed
    # both fingers are on the part's sides: the pads are the part's width apart, not closed on each other
    import pybullet as pb

    rb = world.robots["panda"]
    for link in rb.finger_links:
        assert pb.getClosestPoints(rb.body, world.parts["peg"], FINGER_TOUCH, linkIndexA=link,
                                   physicsClientId=world.client)
    left, right = rb.finger_links
    pads = pb.getClosestPoints(rb.body, rb.body, 0.1, linkIndexA=left, linkIndexB=right, physicsClientId=world.client)
    gap = min(c[8] for c in pads)
    assert size[0] - 0.0005 < gap < size[0] + 2 * FINGER_TOUCH + 0.0005, gap
    held = world.part_pose("peg").xyz
    tcp = planner.fk(robot.joint_positions()).xyz
    assert math.hypot(held[0] - tcp[0], held[1] - tcp[1]) < 0.0005      # centred between the fingers
    # lifted with the hand
    robot.execute(planner.plan_cartesian_line(robot.joint_positions(), above, ignore=("peg",)))
    assert world.part_pose("peg").xyz[2] > centre[2] + 0.07
    robot.release()


def test_fingers_resting_on_top_of_a_part_do_not_hold_it(cell, planner, world) -> None:
    """Both fingertips on the top face of a part longer than the opening is no grasp: nothing is attached."""
    import pybullet as pb

    from anycell.planners.tool import finger_axis_yaw

    robot = SimRobot(world, "panda")
    rb = world.robots["panda"]
    size = [0.16, 0.02, 0.02]            # 160 mm along the closing axis: far wider than the 80 mm opening
    feeder = cell.station("feeder").pose.xyz
    world.add_part("bar", size, 0.05, Pose(xyz=[feeder[0], feeder[1], feeder[2] + size[2] / 2]))
    world.settle(0.2)
    before = world.part_pose("bar").xyz
    yaw = finger_axis_yaw(planner)       # the fingers close along the cell's x axis, the bar's length
    above = Pose(xyz=[before[0], before[1], before[2] + 0.1], rpy=[math.pi, 0.0, yaw])
    robot.execute(planner.plan_joint(robot.joint_positions(), planner.ik(above, robot.joint_positions())))
    # lower the hand until the fingertips just press on the bar's top face
    gap = min(c[8] for link in rb.finger_links for c in pb.getClosestPoints(
        rb.body, world.parts["bar"], 0.2, linkIndexA=link, physicsClientId=world.client))
    on_top = Pose(xyz=[above.xyz[0], above.xyz[1], above.xyz[2] - gap - 0.0002], rpy=above.rpy)
    robot.expect_contact("bar")
    robot.execute(planner.plan_cartesian_line(robot.joint_positions(), on_top, ignore=("bar",)))
    for link in rb.finger_links:         # both fingertips are on it ...
        assert pb.getClosestPoints(rb.body, world.parts["bar"], 0.001, linkIndexA=link, physicsClientId=world.client)
    assert robot.grasp("bar") is False   # ... but neither presses a side of it
    assert robot.holding() is None
    robot.expect_contact("bar")          # the open fingers leave the bar's top
    robot.execute(planner.plan_cartesian_line(robot.joint_positions(), above, ignore=("bar",)))
    assert world.part_pose("bar").xyz[2] < before[2] + 0.002      # left where it was, not lifted
