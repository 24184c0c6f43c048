"""bench/vamp_peer.py's geometry, without VAMP: the peer comparison is only fair if the cell's
boxes reach VAMP where anycell has them (base frame, VAMP's Euler order) and if the column
carved under the base removes nothing but that column."""

from __future__ import annotations

import math

import pytest

from bench.vamp_peer import BaseFrame, _carve, _euler_xyz, _rot_wxyz


def _volume(boxes):
    return sum(math.prod(h - lo for lo, h in zip(a, b)) for a, b in boxes)


def _inside(boxes, p):
    return any(all(a[i] <= p[i] <= b[i] for i in range(3)) for a, b in boxes)


def test_carve_leaves_the_table_but_the_column_under_the_base() -> None:
    table = ([-1.0, -1.0, -0.05], [1.0, 1.0, 0.0])
    pieces = _carve(table, [0.0, 0.0, 0.05], 0.08)          # VAMP's base sphere dips 3 cm into it
    assert _volume(pieces) == pytest.approx(_volume([table]) - 0.16 * 0.16 * 0.03)
    assert not _inside(pieces, [0.0, 0.0, -0.01])           # the base may stand there
    assert _inside(pieces, [0.0, 0.0, -0.04])               # below the sphere: still table
    assert _inside(pieces, [0.5, 0.0, -0.01]) and _inside(pieces, [0.0, -0.5, -0.01])


def test_carve_keeps_a_box_the_sphere_misses() -> None:
    box = ([0.3, 0.3, 0.0], [0.4, 0.4, 0.1])
    assert _carve(box, [0.0, 0.0, 0.05], 0.08) == [box]


def test_euler_xyz_is_read_back_in_vamps_order() -> None:
    a, b, c = 0.3, -0.4, 1.1
    # VAMP builds R = Rz(c) Ry(b) Rx(a); as a quaternion: qz * qy * qx
    qx = [math.cos(a / 2), math.sin(a / 2), 0.0, 0.0]
    qy = [math.cos(b / 2), 0.0, math.sin(b / 2), 0.0]
    qz = [math.cos(c / 2), 0.0, 0.0, math.sin(c / 2)]

    def mul(p, q):
        w1, x1, y1, z1 = p
        w2, x2, y2, z2 = q
        return [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]

    got = _euler_xyz(_rot_wxyz(mul(mul(qz, qy), qx)))
    assert all(abs(g - e) < 1e-9 for g, e in zip(got, [a, b, c]))


def test_base_frame_moves_world_points_into_the_robot_frame() -> None:
    s = math.sqrt(0.5)
    base = BaseFrame([1.0, 2.0, 0.5], [s, 0.0, 0.0, s])      # turned 90 degrees about z
    got = base.point([1.0, 3.0, 0.5])                        # 1 m along world y = base x
    assert all(abs(g - e) < 1e-9 for g, e in zip(got, [1.0, 0.0, 0.0]))
