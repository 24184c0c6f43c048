"""The voxels a robot's motion reserves cover the robot all along it, and stay tight.

The check is independent of how the voxels are made: PyBullet's own link frames (not the
compiled kinematics the voxels come from) place every collision shape's bounding box, at
configurations ten times denser than the samples and between them, and every corner and
centre, pushed out by half the margin, must fall in a reserved voxel.
"""

from __future__ import annotations

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.planners.swept import CELL, MotionSpace, _model, part_cells, standing_cells, voxel_keys
from anycell.geometry import Pose
from tests.paths import ROOT


class _Traj:
    def __init__(self, positions):
        self.positions = positions


def _points(planner, model, q, push):
    """Corners and centres of every collision box at ``q``, from PyBullet's link frames, pushed out."""
    import pybullet as p

    from anycell.planners.fast_collision import _matrix

    world = planner.world
    planner.kin.set(q)
    out = []
    for link, in_link, half in model.boxes:
        if link < 0:
            continue
        st = p.getLinkState(world.robot.body, link, computeForwardKinematics=True, physicsClientId=world.client)
        pose = _matrix(st[4], st[5]) @ in_link
        signs = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], float)
        local = signs * (half + push)
        out.append(local @ pose[:3, :3].T + pose[:3, 3])
    return np.vstack(out)


@pytest.mark.parametrize("cell_file,robot", [("two_robot_cell.yaml", "left"), ("demo_cell.yaml", None),
                                             ("ur_cell.yaml", None)])
def test_reserved_voxels_cover_the_robot_between_samples(cell_file, robot) -> None:
    from anycell.planners.motion import MotionPlanner

    cell = load_cell(f"{ROOT}/cell_configs/{cell_file}")
    rid = robot or cell.robots[0].id
    planner = MotionPlanner(cell, rid)
    try:
        model = _model(planner)
        if model.fast is None:
            pytest.skip("the compiled collision backend is not available for this robot")
        rng = np.random.default_rng(3)
        lo, hi = np.asarray(planner.kin.lower), np.asarray(planner.kin.upper)
        margin = float(cell.safety.robot_margin)
        for _ in range(3):
            a = planner.kin.home + (rng.random(len(lo)) - 0.5) * 0.8
            b = np.clip(a + (rng.random(len(lo)) - 0.5) * 1.6, lo, hi)
            a = np.clip(a, lo, hi)
            space = MotionSpace(planner, [("move", _Traj([a.tolist(), b.tolist()]))], margin=margin)
            for t in np.linspace(0.0, 1.0, 97):
                pts = _points(planner, model, a + (b - a) * t, margin / 2.0)
                keys = voxel_keys(np.floor(pts / CELL).astype(np.int64))
                missing = [k for k in keys.tolist() if k not in space.whole]
                assert not missing, f"{len(missing)} points of the robot outside its reservation at t={t:.3f}"
    finally:
        planner.close()


def test_reservations_are_tight_enough_for_two_arms_side_by_side() -> None:
    """Standing at home, the two arms of the two-robot cell (0.7 m apart) reserve disjoint space."""
    from anycell.planners.motion import MotionPlanner

    cell = load_cell(f"{ROOT}/cell_configs/two_robot_cell.yaml")
    planners = {rid: MotionPlanner(cell, rid) for rid in ("left", "right")}
    try:
        margin = float(cell.safety.robot_margin)
        left, right = (standing_cells(planners[r], planners[r].kin.home, margin=margin) for r in ("left", "right"))
        assert left and right and left.isdisjoint(right)
    finally:
        for pl in planners.values():
            pl.close()


def test_a_placed_part_reserves_its_box() -> None:
    cells = part_cells(Pose(xyz=[0.3, 0.0, 0.05]), [0.06, 0.04, 0.02], margin=0.02)
    inside = voxel_keys(np.floor(np.array([[0.3, 0.0, 0.05], [0.33, 0.02, 0.06]]) / CELL).astype(np.int64))
    assert set(inside.tolist()) <= cells
    assert len(cells) < 200       # a few voxels, not a region
