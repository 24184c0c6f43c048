"""Planning ahead (pick_place with plan_ahead) runs what planning on demand runs, overlaps, and refuses safely."""

from __future__ import annotations

import threading
from typing import Any, List

import numpy as np
import pytest

from anycell.agent.skills import pick_place
from anycell.cell import load_cell
from anycell.errors import PlanningError
from anycell.geometry import distance
from anycell.job import load_job
from anycell.planners import sites
from anycell.planners.motion import MotionPlanner
from anycell.sim.robot import SimRobot
from anycell.sim.world import SimWorld
from tests.paths import DEMO_CELL, STACK_JOB


def _setup() -> tuple:
    cell, job = load_cell(DEMO_CELL), load_job(STACK_JOB)
    world, planner = SimWorld(cell), MotionPlanner(cell, "panda")
    robot = SimRobot(world, "panda")
    slots = sites.allocate_feeder_slots(cell, job)
    ids = world.populate_job(job, slots, 1)
    world.settle(0.3)
    for pid, wid in ids.items():
        planner.add_obstacle(wid, job.part(pid).geometry.size, world.part_pose(wid))
    return cell, job, world, planner, robot, slots, ids


def _stack(plan_ahead: bool) -> List[Any]:
    """Assemble the whole stack; every executed segment's (name, times, positions)."""
    cell, job, world, planner, robot, slots, ids = _setup()
    try:
        out: List[Any] = []
        order = sorted(job.assembly.placements, key=lambda pl: pl.pose.xyz[2] - job.part(pl.part).geometry.size[2] / 2)
        for pl in order:
            part = job.part(pl.part)
            res = pick_place(robot, planner, ids[pl.part], part.geometry.size, slots[(1, pl.part)],
                             sites.fixture_site(cell, job, pl.part), plan_ahead=plan_ahead)
            assert [n for n, _a, _b in res.moves] == [n for n, _t in res.segments]   # each ran, in order
            out += [(n, None if t is None else (np.asarray(t.times), np.asarray(t.positions)))
                    for n, t in res.segments]
            out.append(("yaw", res.grasp_yaw))
        for pl in job.assembly.placements:   # and it made the same stack
            want = sites.placement_pose(cell, job, pl.part)
            assert distance(world.part_pose(ids[pl.part]).xyz, want.xyz) <= pl.tolerance.position
        return out
    finally:
        planner.close()
        world.close()


@pytest.mark.slow
def test_planning_ahead_executes_the_same_trajectories_as_planning_on_demand() -> None:
    on_demand, ahead = _stack(False), _stack(True)
    assert [s[0] for s in ahead] == [s[0] for s in on_demand]
    for (name, a), (_n, b) in zip(on_demand, ahead):
        if name == "yaw":
            assert a == b
        elif a is None:
            assert b is None
        else:
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), name


class _Planner:
    """The real planner, with the transfer (the loaded joint move) made to wait or to fail."""

    def __init__(self, real: MotionPlanner, transfer: Any) -> None:
        self._real, self._transfer = real, transfer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def plan_joint(self, q_start: Any, q_goal: Any, held: Any = None, **kw: Any) -> Any:
        self._transfer()
        return self._real.plan_joint(q_start, q_goal, held, **kw)


class _Robot:
    """The simulated robot, telling when it starts its first trajectory."""

    def __init__(self, real: SimRobot) -> None:
        self._real = real
        self.moving = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def execute(self, traj: Any) -> None:
        self.moving.set()
        self._real.execute(traj)


@pytest.mark.slow
def test_the_robot_moves_while_the_rest_of_its_motion_is_planned() -> None:
    """The transfer is planned only once the robot has started: on demand this would never finish."""
    cell, job, world, real, sim_robot, slots, ids = _setup()
    robot = _Robot(sim_robot)

    def transfer() -> None:
        assert robot.moving.wait(60.0), "the robot did not start before its transfer was planned"

    try:
        part = job.part("base")
        res = pick_place(robot, _Planner(real, transfer), ids["base"], part.geometry.size, slots[(1, "base")],
                         sites.fixture_site(cell, job, "base"))
        assert robot.holding() is None
        want = sites.placement_pose(cell, job, "base")
        assert distance(world.part_pose(ids["base"]).xyz, want.xyz) <= job.placement("base").tolerance.position
        assert res.moves[0][0] == "to_pick"
    finally:
        real.close()
        world.close()


@pytest.mark.slow
def test_a_transfer_that_cannot_be_planned_stops_before_the_grasp_with_the_planners_error() -> None:
    cell, job, world, real, sim_robot, slots, ids = _setup()
    robot = _Robot(sim_robot)
    refusal = PlanningError("no path for the transfer of 'u1.base' (test)", hint="a test refuses it")

    def transfer() -> None:
        robot.moving.wait(60.0)   # refuse only once the robot is on its way: the hard case
        raise refusal

    try:
        part = job.part("base")
        source = slots[(1, "base")]
        before = world.part_pose(ids["base"])
        with pytest.raises(PlanningError) as info:
            pick_place(robot, _Planner(real, transfer), ids["base"], part.geometry.size, source,
                       sites.fixture_site(cell, job, "base"))
        assert info.value is refusal                              # the planner's own error, not another
        assert robot.moving.is_set()                              # it had started (planning ahead)
        assert robot.holding() is None                            # it never took the part
        assert distance(world.part_pose(ids["base"]).xyz, before.xyz) < 0.001
        # it stopped clear of the part: at the pre-grasp height, not down at the grasp
        tcp = real.fk(robot.joint_positions())
        assert tcp.xyz[2] > before.xyz[2] + 0.05
    finally:
        real.close()
        world.close()


@pytest.mark.parametrize("blocked", ["to_pick", "transfer"])
@pytest.mark.slow
def test_a_motion_planned_ahead_runs_only_if_still_clear_when_its_turn_comes(blocked: str) -> None:
    """The first segment is checked before the robot moves, the rest while it runs (before the grasp)."""
    from anycell.agent.skills import plan_next
    from anycell.geometry import Pose

    cell, job, world, planner, robot, slots, ids = _setup()
    try:
        part = job.part("base")
        source, target = slots[(1, "base")], sites.fixture_site(cell, job, "base")
        ahead = plan_next(planner, robot.joint_positions(), ids["base"], part.geometry.size, source, target)
        seg = dict(ahead.segments)[blocked]
        assert seg is not None
        # something appears across the planned path (the cell changed after it was planned)
        middle = planner.fk(seg.sample(seg.duration / 2).tolist())
        planner.add_obstacle("intruder", [0.06, 0.06, 0.06], Pose(xyz=list(middle.xyz)))
        try:
            res = pick_place(robot, planner, ids["base"], part.geometry.size, source, target, planned=ahead)
        except PlanningError:
            assert robot.holding() is None                                   # refused holding nothing
        else:
            assert res.segments is not ahead.segments and res.planning_wait > 0   # planned again, around it
            assert not np.array_equal(dict(res.segments)[blocked].positions, seg.positions)
        # unchanged cell: the motion planned ahead runs as planned, without planning
        planner.remove_obstacle("intruder")
        peg = job.part("peg")
        source, target = slots[(1, "peg")], sites.fixture_site(cell, job, "peg")
        ahead = plan_next(planner, robot.joint_positions(), ids["peg"], peg.geometry.size, source, target)
        res = pick_place(robot, planner, ids["peg"], peg.geometry.size, source, target, planned=ahead)
        assert res.segments is ahead.segments and res.planning_wait == 0.0
        assert [n for n, _a, _b in res.moves] == [n for n, _t in ahead.segments]
    finally:
        planner.close()
        world.close()
