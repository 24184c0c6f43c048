"""The one rotation implementation (anycell.geometry): quaternions, matrices, rpy and slerp agree."""

from __future__ import annotations

import math
import random

import pytest

from anycell.geometry import Pose, matrix_to_quat, quat_angle, quat_rotate, quat_slerp, quat_to_matrix, rpy_to_quat


def _random_rpy(rng: random.Random) -> list:
    return [rng.uniform(-math.pi, math.pi), rng.uniform(-1.5, 1.5), rng.uniform(-math.pi, math.pi)]


def test_matrix_and_quaternion_round_trip_including_half_turns() -> None:
    rng = random.Random(7)
    cases = [_random_rpy(rng) for _ in range(200)] + [[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi],
                                                      [math.pi, 0, 0.3], [0, 0, 0]]
    for rpy in cases:
        q = rpy_to_quat(rpy)
        back = matrix_to_quat(quat_to_matrix(q))
        assert quat_angle(q, back) < 1e-6, rpy
        assert abs(sum(v * v for v in back) - 1.0) < 1e-9


def test_the_matrix_rotates_as_the_quaternion_does() -> None:
    rng = random.Random(3)
    for _ in range(50):
        q = rpy_to_quat(_random_rpy(rng))
        v = [rng.uniform(-1, 1) for _ in range(3)]
        m = quat_to_matrix(q)
        by_matrix = [sum(m[i][j] * v[j] for j in range(3)) for i in range(3)]
        assert by_matrix == pytest.approx(list(quat_rotate(q, v)), abs=1e-12)


def test_slerp_ends_halfway_and_shorter_arc() -> None:
    a, b = rpy_to_quat([0, 0, 0]), rpy_to_quat([0, 0, 1.0])
    assert quat_angle(quat_slerp(a, b, 0.0), a) < 1e-9 and quat_angle(quat_slerp(a, b, 1.0), b) < 1e-9
    half = quat_slerp(a, b, 0.5)
    assert quat_angle(half, rpy_to_quat([0, 0, 0.5])) < 1e-9
    neg_b = tuple(-v for v in b)   # the same orientation: the shorter arc is taken either way
    assert quat_angle(quat_slerp(a, neg_b, 0.5), half) < 1e-9
    near = rpy_to_quat([0, 0, 1e-4])  # nearly equal: the linear branch, still unit length
    mid = quat_slerp(a, near, 0.5)
    assert abs(math.sqrt(sum(v * v for v in mid)) - 1.0) < 1e-12


def test_pose_compose_and_inverse_use_the_same_rotations() -> None:
    p = Pose(xyz=[0.1, -0.2, 0.3], rpy=[0.2, -0.4, 1.1])
    ident = p.compose(p.inverse())
    assert ident.xyz == pytest.approx([0, 0, 0], abs=1e-12) and ident.rpy == pytest.approx([0, 0, 0], abs=1e-12)
