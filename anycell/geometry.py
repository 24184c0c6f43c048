"""Poses and boxes in the cell frame: SI units, radians, right-handed, z up.

A pose is written in documents as ``{xyz: [x, y, z], rpy: [roll, pitch, yaw]}``
(meters, radians; rotations applied as fixed-axis roll about x, then pitch
about y, then yaw about z, the URDF convention). Everything here is small and
dependency-light so every layer can share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Sequence, Tuple, Union

from .typed import spec

if TYPE_CHECKING:
    import numpy as np

Vec3 = Tuple[float, float, float]
Quat = Tuple[float, float, float, float]  # x, y, z, w (PyBullet and ROS order)


@dataclass(frozen=True, kw_only=True)
class Pose:
    """A position and orientation: xyz in meters, rpy in radians (URDF fixed-axis order)."""

    xyz: List[float] = spec("position [x, y, z] in meters", default_factory=lambda: [0.0, 0.0, 0.0], length=3)
    rpy: List[float] = spec("orientation [roll, pitch, yaw] in radians", default_factory=lambda: [0.0, 0.0, 0.0],
                            length=3)

    @property
    def position(self) -> Vec3:
        return (float(self.xyz[0]), float(self.xyz[1]), float(self.xyz[2]))

    @property
    def quaternion(self) -> Quat:
        return rpy_to_quat(self.rpy)

    def compose(self, other: "Pose") -> "Pose":
        """``self * other``: ``other`` expressed in this pose's frame, returned in the parent frame."""
        q = quat_mul(self.quaternion, other.quaternion)
        p = vec_add(self.position, quat_rotate(self.quaternion, other.position))
        return Pose(xyz=list(p), rpy=list(quat_to_rpy(q)))

    def inverse(self) -> "Pose":
        qi = quat_conj(self.quaternion)
        p = quat_rotate(qi, self.position)
        return Pose(xyz=[-p[0], -p[1], -p[2]], rpy=list(quat_to_rpy(qi)))

    @staticmethod
    def from_pq(position: Sequence[float], quaternion: Sequence[float]) -> "Pose":
        return Pose(xyz=[float(v) for v in position], rpy=list(quat_to_rpy(tuple(quaternion))))  # type: ignore[arg-type]


def rpy_to_quat(rpy: Sequence[float]) -> Quat:
    r, p, y = (float(v) * 0.5 for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def quat_to_rpy(q: Quat) -> Vec3:
    x, y, z, w = q
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    sinp = max(-1.0, min(1.0, 2 * (w * y - z * x)))
    pitch = math.asin(sinp)
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return (roll, pitch, yaw)


def quat_mul(a: Quat, b: Quat) -> Quat:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def quat_conj(q: Quat) -> Quat:
    return (-q[0], -q[1], -q[2], q[3])


def quat_rotate(q: Quat, v: Sequence[float]) -> Vec3:
    qv = (float(v[0]), float(v[1]), float(v[2]), 0.0)
    r = quat_mul(quat_mul(q, qv), quat_conj(q))
    return (r[0], r[1], r[2])


def quat_angle(a: Quat, b: Quat) -> float:
    """The rotation angle (radians, 0..pi) between two orientations."""
    dot = abs(sum(x * y for x, y in zip(a, b)))
    return 2.0 * math.acos(max(-1.0, min(1.0, dot)))


def quat_to_matrix(q: Sequence[float]) -> List[List[float]]:
    """The 3x3 rotation matrix (rows) of a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in q)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]


def matrix_to_quat(m: Union[Sequence[Sequence[float]], "np.ndarray"]) -> Quat:
    """The unit quaternion (x, y, z, w) of a 3x3 rotation matrix (rows; a numpy array works too).

    Shepperd's method: it divides by the largest of the four candidates, so it
    stays accurate near 180-degree turns.
    """
    r = [[float(m[i][j]) for j in range(3)] for i in range(3)]
    t = r[0][0] + r[1][1] + r[2][2]
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        return ((r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s, 0.25 * s)
    diag = [r[0][0], r[1][1], r[2][2]]
    i = diag.index(max(diag))
    if i == 0:
        s = math.sqrt(1.0 + r[0][0] - r[1][1] - r[2][2]) * 2
        return (0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s, (r[2][1] - r[1][2]) / s)
    if i == 1:
        s = math.sqrt(1.0 + r[1][1] - r[0][0] - r[2][2]) * 2
        return ((r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s, (r[0][2] - r[2][0]) / s)
    s = math.sqrt(1.0 + r[2][2] - r[0][0] - r[1][1]) * 2
    return ((r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s, (r[1][0] - r[0][1]) / s)


def quat_slerp(a: Sequence[float], b: Sequence[float], s: float) -> Quat:
    """The orientation a fraction ``s`` (0..1) of the way from ``a`` to ``b``, along the shorter arc."""
    qa = [float(v) for v in a]
    qb = [float(v) for v in b]
    dot = sum(x * y for x, y in zip(qa, qb))
    if dot < 0:
        qb, dot = [-v for v in qb], -dot
    if dot > 0.9995:  # nearly the same: interpolate linearly and normalise
        r = [x + (y - x) * s for x, y in zip(qa, qb)]
        n = math.sqrt(sum(v * v for v in r))
        return (r[0] / n, r[1] / n, r[2] / n, r[3] / n)
    th = math.acos(dot)
    wa, wb = math.sin((1 - s) * th) / math.sin(th), math.sin(s * th) / math.sin(th)
    return (wa * qa[0] + wb * qb[0], wa * qa[1] + wb * qb[1], wa * qa[2] + wb * qb[2], wa * qa[3] + wb * qb[3])


def vec_add(a: Sequence[float], b: Sequence[float]) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))


@dataclass(frozen=True, kw_only=True)
class Box:
    """An axis-aligned box in the cell frame, given by its min and max corners (meters)."""

    min: List[float] = spec("lowest corner [x, y, z] in meters", length=3)
    max: List[float] = spec("highest corner [x, y, z] in meters", length=3)

    def contains(self, point: Sequence[float], margin: float = 0.0) -> bool:
        return all(self.min[i] - margin <= point[i] <= self.max[i] + margin for i in range(3))

    def check(self, path, ctx) -> None:  # noqa: ANN001 - see anycell.typed.Checker
        for i in range(3):
            if self.min[i] >= self.max[i]:
                raise ctx.error(path + ("max", i), f"max[{i}]={self.max[i]} is not above min[{i}]={self.min[i]}",
                                "swap the corners or give the box a size")
