"""The carry check refuses what the simulated cell cannot carry (its other side, a unit carried out, is in
tests/agent/test_placement.py): forcing the carry anyway fails in the simulator or its world model."""

from __future__ import annotations

import os

import pytest

from anycell.cell import load_cell
from anycell.errors import AnycellError
from anycell.job import load_job
from anycell.planners import sites
from anycell.planners.feasibility import carry_problem
from tests.paths import DEMO_CELL, KUKA_CELL, ROOT, STACK_JOB

pytestmark = pytest.mark.slow


def _assembled(cell, job):  # noqa: ANN001, ANN202
    """A simulated cell with one finished unit standing on its fixture, and the robot's planner knowing it."""
    from anycell.planners.motion import MotionPlanner
    from anycell.sim.robot import SimRobot
    from anycell.sim.world import SimWorld

    world = SimWorld(cell)
    robot_id = cell.robots[0].id
    planner = MotionPlanner(cell, robot_id)
    for pl in job.assembly.placements:
        pose = sites.placement_pose(cell, job, pl.part)
        world.add_part(pl.part, job.part(pl.part).geometry, job.part(pl.part).mass, pose)
        planner.add_obstacle(pl.part, job.part(pl.part).geometry, pose)
    world.settle(0.3)
    return world, SimRobot(world, robot_id), planner


def _force_carry(cell, job, hints):  # noqa: ANN001
    from anycell.agent.skills import pick_place

    base = sites.base_part(job)
    others = [pl.part for pl in job.assembly.placements if pl.part != base.id]
    world, robot, planner = _assembled(cell, job)
    try:
        start = world.part_pose(base.id)
        target = sites.tray_site(cell.stations_of("output_tray")[0], job, 0)
        with pytest.raises(AnycellError) as err:
            pick_place(robot, planner, base.id, base.geometry.size, sites.fixture_site(cell, job, base.id), target,
                       carried=others, shape=base.geometry, hints=hints)
        # the unit did not reach the tray
        from anycell.geometry import distance

        assert distance(world.part_pose(base.id).position, target.xyz) > 0.05
        assert distance(world.part_pose(base.id).position, start.position) < 0.05
        return err.value
    finally:
        world.close()


def test_the_hand_would_hit_a_tall_stack_and_does_in_the_simulator() -> None:
    from anycell.agent.skills import GraspHints

    cell, job = load_cell(DEMO_CELL), load_job(STACK_JOB)
    assert "would hit the parts standing" in carry_problem(cell.robot("panda"), job)
    # the skill refuses on the same figures ...
    from anycell.agent.skills import grasp_offset
    from anycell.errors import PlanningError
    from anycell.planners.motion import MotionPlanner

    planner = MotionPlanner(cell, "panda")
    with pytest.raises(PlanningError):
        grasp_offset(planner, job.part("base").geometry.size, GraspHints(hand_clear=sites.carried_top(job)))
    # ... and holding the base low anyway, the simulated hand hits the stack
    err = _force_carry(cell, job, GraspHints())
    assert "peg" in str(err) or "block" in str(err)


def test_the_cup_cannot_hold_a_holder_beside_a_standing_pin_and_does_not_in_the_world_model() -> None:
    from anycell.agent.skills import GraspHints

    cell = load_cell(KUKA_CELL)
    job = load_job(os.path.join(ROOT, "examples", "jobs", "peg_in_hole.yaml"))
    # the cup finds no area on the 50 mm holder clear of the pin, or its flange would hit the pin
    problem = carry_problem(cell.robot("iiwa"), job)
    assert problem is not None
    assert "beside 'pin'" in problem or "would hit the parts standing on base part 'holder'" in problem, problem
    spot = sites.suction_spot(job, "holder", 0.01)      # the best spot ignoring the pin
    err = _force_carry(cell, job, GraspHints(suction_xy=(spot[0], spot[1]), top=spot[2]))
    assert "pin" in str(err)
