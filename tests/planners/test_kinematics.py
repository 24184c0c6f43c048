"""IK accuracy (1 mm, 0.5 degrees), joint limits, closest solution, clear refusal of unreachable targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import UnreachableError
from anycell.geometry import Pose, distance, quat_angle
from anycell.planners.kinematics import Kinematics
from tests.paths import DEMO_CELL, KUKA_CELL


@pytest.fixture(scope="module", params=[DEMO_CELL, KUKA_CELL], ids=["panda", "iiwa"])
def kin(request):
    cell = load_cell(request.param)
    k = Kinematics(cell, cell.robots[0].id)
    yield k
    k.close()


def test_ik_round_trip_is_within_1mm_and_half_a_degree(kin: Kinematics) -> None:
    rng = np.random.default_rng(11)
    solved = 0
    for _ in range(25):
        q_true = kin.lower + (kin.upper - kin.lower) * (0.15 + 0.7 * rng.random(kin.dof))
        target = kin.fk(q_true)
        seed = np.clip(q_true + rng.normal(0, 0.4, kin.dof), kin.lower, kin.upper)
        q = np.asarray(kin.ik(target, seed))
        got = kin.fk(q)
        assert distance(got.xyz, target.xyz) < 0.001
        assert math.degrees(quat_angle(got.quaternion, target.quaternion)) < 0.5
        assert np.all(q >= kin.lower - 1e-9) and np.all(q <= kin.upper + 1e-9)
        solved += 1
    assert solved == 25


def test_ik_prefers_the_solution_closest_to_the_current_configuration(kin: Kinematics) -> None:
    q_now = np.asarray(kin.home) + 0.05
    target = kin.fk(q_now)
    q = np.asarray(kin.ik(target, q_now))
    # a redundant arm has infinitely many solutions; the one found from here stays here
    assert np.max(np.abs(q - q_now)) < 0.05


def test_unreachable_target_is_refused_and_named(kin: Kinematics) -> None:
    far = Pose(xyz=[2.5, 0.3, 0.2], rpy=[math.pi, 0, 0])
    with pytest.raises(UnreachableError) as err:
        kin.ik(far, kin.home, name="far target")
    assert "far target" in str(err.value) and "2.5" in str(err.value)
