"""pick_place puts every part of the stack assembly within tolerance, on both example cells."""

from __future__ import annotations

import numpy as np
import pytest

from anycell.agent.skills import pick_place
from anycell.cell import load_cell
from anycell.errors import CollisionError, UnreachableError
from anycell.geometry import Pose, distance, quat_angle
from anycell.job import load_job
from anycell.plan import Site
from anycell.sim.robot import SimRobot
from anycell.planners import sites
from anycell.planners.motion import MotionPlanner
from anycell.sim.world import SimWorld
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
@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_estimate_matches_the_executed_motion_time() -> None:
    from anycell.agent.skills import estimate_pick_place

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


def _stack_job_with_peg(tmp_path, width: float) -> str:
    """The stack job with a narrower peg (the demo widget's is 12 mm square)."""
    text = open(STACK_JOB).read()
    assert "box: [0.02, 0.02, 0.03]" in text
    path = tmp_path / f"stack_peg_{width * 1000:.0f}mm.yaml"
    path.write_text(text.replace("box: [0.02, 0.02, 0.03]", f"box: [{width}, {width}, 0.03]"))
    return str(path)


@pytest.mark.parametrize("width", [0.012, 0.008], ids=["peg_12mm", "peg_8mm"])
def test_narrow_peg_is_grasped_and_placed_within_tolerance(width: float, tmp_path) -> None:
    """Regression: the fingers used to be given a fixed second to close, too short to reach a thin part."""
    cell, job = load_cell(DEMO_CELL), load_job(_stack_job_with_peg(tmp_path, width))
    world, planner = SimWorld(cell), MotionPlanner(cell, "panda")
    robot = SimRobot(world, "panda")
    try:
        slots = sites.allocate_feeder_slots(cell, job)
        ids = world.populate_job(job, slots, 1)
        world.settle(0.3)
        for pid, wid in ids.items():
            planner.add_obstacle(wid, job.part(pid).geometry.size, world.part_pose(wid))
        peg = job.part("peg")
        assert peg.geometry.size[0] == width
        fixture = cell.station("fixture").pose.xyz
        height = peg.geometry.size[2]
        # standing on the bare fixture top, off its centre
        target = Site(kind="fixture", ref="fixture", xyz=[fixture[0] + 0.02, fixture[1] - 0.01, fixture[2] + height / 2])
        before = world.part_pose(ids["peg"])
        pick_place(robot, planner, ids["peg"], peg.geometry.size, slots[(1, "peg")], target)
        world.settle(0.3)
        got = world.part_pose(ids["peg"])
        assert distance(before.xyz, got.xyz) > 0.1                         # it was carried, not left behind
        tol = job.placement("peg").tolerance
        assert distance(got.xyz, target.xyz) <= min(tol.position, 0.002)
        assert quat_angle(got.quaternion, Pose(xyz=list(target.xyz)).quaternion) <= tol.angle   # upright
        assert robot.holding() is None
    finally:
        planner.close()
        world.close()
