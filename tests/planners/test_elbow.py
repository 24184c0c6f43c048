"""Beside other robots, IK turns the arm's elbow to the robot's own side.

Two iiwa arms reaching for one fixture between their bases met elbow to elbow when each took the IK
solution nearest its current configuration; the planner now ranks the solutions by how far the elbow
stays from the other robots' bases first (in steps of ``MotionPlanner.ELBOW_STEP``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from anycell.cell import load_cell
from anycell.geometry import Pose
from anycell.planners.motion import MotionPlanner
from tests.paths import ROOT

TWO_ROBOT_CELL = f"{ROOT}/cell_configs/two_robot_cell.yaml"
FIXTURE_TOP = Pose(xyz=[0.45, 0.0, 0.12], rpy=[math.pi, 0.0, 0.0])


def _elbow_clearance(planner: MotionPlanner, q: list, other_base: list) -> float:
    e = planner.kin.elbow(q)
    return float(np.hypot(e[0] - other_base[0], e[1] - other_base[1]))


def test_the_elbow_is_the_link_farthest_from_the_base_to_tcp_line() -> None:
    planner = MotionPlanner(load_cell(TWO_ROBOT_CELL), "right")
    try:
        q = planner.ik(FIXTURE_TOP, planner.kin.home.tolist())
        links = planner.kin.link_positions(q)
        tcp = np.asarray(planner.kin.fk(q).xyz)
        u = (tcp - links[0]) / np.linalg.norm(tcp - links[0])
        off = [np.linalg.norm((p - links[0]) - ((p - links[0]) @ u) * u) for p in links]
        assert np.allclose(planner.kin.elbow(q), links[int(np.argmax(off))])
        assert max(off) > 0.05     # reaching down to a table, the arm bends
    finally:
        planner.close()


def test_beside_another_robot_the_elbow_keeps_away_from_its_base() -> None:
    cell = load_cell(TWO_ROBOT_CELL)
    left_base = list(cell.robot("left").base.xyz)
    alone_cell = dataclasses.replace(cell, robots=[cell.robot("right")])
    beside, alone = MotionPlanner(cell, "right"), MotionPlanner(alone_cell, "right")
    try:
        assert alone._elbow_rank() is None           # no other robot: the nearest solution, as before
        # start from a solution with the elbow swung towards the other robot (the one nearest its base)
        inward = alone.kin.ik(FIXTURE_TOP, alone.kin.home, max_solutions=6,
                              prefer=lambda q: _elbow_clearance(alone, list(q), left_base))
        q_alone = alone.ik(FIXTURE_TOP, inward)            # alone: the nearest, that same elbow
        q_beside = beside.ik(FIXTURE_TOP, inward)          # beside the other robot: the elbow turned away
        assert np.allclose(beside.kin.fk(q_beside).xyz, FIXTURE_TOP.xyz, atol=1e-3)
        c_beside = _elbow_clearance(beside, q_beside, left_base)
        c_alone = _elbow_clearance(beside, q_alone, left_base)
        assert c_beside >= c_alone
        assert c_beside > c_alone + MotionPlanner.ELBOW_STEP / 2, (c_beside, c_alone)
    finally:
        beside.close()
        alone.close()
