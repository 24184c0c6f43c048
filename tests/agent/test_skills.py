"""pick_place puts every part of the stack assembly within tolerance, on both example cells."""

from __future__ import annotations

import numpy as np
import pytest

from agent.skills import pick_place
from anycell.cell import load_cell
from anycell.errors import CollisionError, UnreachableError
from anycell.geometry import distance, quat_angle
from anycell.job import load_job
from anycell.plan import Site
from drivers.sim_robot import SimRobot
from planners import sites
from planners.motion import MotionPlanner
from sim.world import SimWorld
from tests.paths import DEMO_CELL, KUKA_CELL, STACK_JOB


def _setup(path: str):
    cell, job = load_cell(path), load_job(STACK_JOB)
    rid = cell.robots[0].id
    world, planner = SimWorld(cell), MotionPlanner(cell, rid)
    robot = SimRobot(world, rid)
    slots = sites.allocate_feeder_slots(cell, job)
    ids = world.populate_job(job, slots, 1)
    world.settle(0.3)
    for pid, wid in ids.items():
        planner.add_obstacle(wid, job.part(pid).geometry.size, world.part_pose(wid))
    return cell, job, world, planner, robot, slots, ids


def _xarm_cell(tmp_path) -> str:
    """The KUKA cell with an xArm6 instead: nothing in anycell is tied to one robot."""
    text = open(KUKA_CELL).read()
    for a, b in (("model: kuka_iiwa", "model: xarm6"), ("id: iiwa", "id: xarm"),
                 ("home: [0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0]", "home: [0.0, -0.3, -0.6, 0.0, 0.9, 0.0]")):
        assert a in text
        text = text.replace(a, b)
    path = tmp_path / "xarm_cell.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("path", [DEMO_CELL, KUKA_CELL, "xarm"], ids=["panda_gripper", "iiwa_suction",
                                                                      "xarm6_suction"])
def test_stack_assembly_every_part_within_tolerance(path: str, tmp_path) -> None:
    if path == "xarm":
        path = _xarm_cell(tmp_path)
    cell, job, world, planner, robot, slots, ids = _setup(path)
    try:
        order = sorted(job.assembly.placements, key=lambda pl: pl.pose.xyz[2] - job.part(pl.part).geometry.size[2] / 2)
        for pl in order:
            part = job.part(pl.part)
            before = world.part_pose(ids[pl.part])
            res = pick_place(robot, planner, ids[pl.part], part.geometry.size, slots[(1, pl.part)],
                             sites.fixture_site(cell, job, pl.part).__dict__)   # a Site dict works too
            assert res.duration > 0 and [n for n, _ in res.segments][2] == "grasp"
            world.settle(0.3)
            assert distance(before.xyz, world.part_pose(ids[pl.part]).xyz) > 0.1   # it really moved
        # every part, checked at the end (later placements must not have disturbed earlier ones)
        for pl in job.assembly.placements:
            got = world.part_pose(ids[pl.part])
            want = sites.placement_pose(cell, job, pl.part)
            assert distance(got.xyz, want.xyz) <= pl.tolerance.position, pl.part
            assert quat_angle(got.quaternion, want.quaternion) <= pl.tolerance.angle, pl.part
        assert robot.holding() is None
    finally:
        planner.close()
        world.close()


def test_unreachable_or_colliding_target_is_refused_before_the_robot_moves() -> None:
    cell, job, world, planner, robot, slots, ids = _setup(DEMO_CELL)
    try:
        q0 = robot.joint_positions()
        t0 = world.sim_time
        part = job.part("block")
        far = Site(kind="fixture", ref="fixture", xyz=[0.85, 0.75, 0.05])
        with pytest.raises(UnreachableError):
            pick_place(robot, planner, ids["block"], part.geometry.size, slots[(1, "block")], far)
        # a target inside the mill's body
        mill = cell.machine("mill")
        inside = Site(kind="machine", ref="mill", xyz=[mill.pose.xyz[0], mill.pose.xyz[1], 0.05])
        with pytest.raises(CollisionError):
            pick_place(robot, planner, ids["block"], part.geometry.size, slots[(1, "block")], inside)
        assert world.sim_time == t0                      # nothing was simulated: nothing moved
        assert np.allclose(robot.joint_positions(), q0)
        assert distance(world.part_pose(ids["block"]).xyz, slots[(1, "block")].xyz) < 0.001
    finally:
        planner.close()
        world.close()


def test_estimate_matches_the_executed_motion_time() -> None:
    from agent.skills import estimate_pick_place

    cell, job, world, planner, robot, slots, ids = _setup(KUKA_CELL)
    try:
        part = job.part("block")
        target = sites.fixture_site(cell, job, "block")
        t0, q0 = world.sim_time, robot.joint_positions()
        est = estimate_pick_place(planner, q0, ids["block"], part.geometry.size, slots[(1, "block")], target)
        assert world.sim_time == t0 and robot.joint_positions() == q0     # estimating moved nothing
        res = pick_place(robot, planner, ids["block"], part.geometry.size, slots[(1, "block")], target)
        assert abs(res.duration - est) < 1e-6
    finally:
        planner.close()
        world.close()
