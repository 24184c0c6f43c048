"""VAMP on bench_motion's problems, in a venv of its own (``.venv/vamp-peer``).

Run by ``bench/bench_motion.py``, never imported by anycell. VAMP (vamp-planner, an sdist
only) is built there once from its PyPI source with anycell's offline CPM stand-in
(``bench/vamp_cmake``); it needs numpy only, but keeping it apart means a VAMP build that
fails, or a user without its two GitHub-only dependencies, never touches anycell's venv.

Reads one JSON document on stdin (the cell's static bodies as boxes in the world frame, the
robot's base, the problems as joint configurations, the held part and the post) and prints
one JSON document with, per problem and repetition: solved or not, the wall time of VAMP's
RRT-Connect plus its simplification as a Python user calls them, VAMP's own nanosecond
counts, and the simplified path's waypoints, so bench_motion times them with the same
TOPP-RA as anycell's paths.

What VAMP sees differs from what anycell and mplib see, and the report says so:
 - the robot is VAMP's compiled Panda, a fixed set of spheres (not the URDF meshes anycell's
   checker uses), standing at its own origin: the boxes are moved into the base's frame;
 - every box is a VAMP cuboid (the same axis-aligned boxes mplib gets), the post too; VAMP
   cannot exempt the base from the table as anycell and mplib do, so a box the base's
   spheres dip into loses a column the width of those spheres under the base (``_carve``);
 - the held part is a VAMP ``Attachment`` at the TCP, which holds spheres only: one sphere
   enclosing the part's box (so slightly larger than the part);
 - motions are checked at VAMP's own resolution (``panda.resolution()`` states per unit of
   joint distance, vectorised), not at anycell's RESOLUTION.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

Vec = Sequence[float]

# panda_grasptarget, VAMP's end-effector frame, in panda_link8 (anycell's flange for the Panda):
# the hand is turned -45 degrees about z and the grasp target sits 0.105 m further along z
# (VAMP's resources/panda/panda.urdf)
GRASP_Z = 0.105
GRASP_YAW = -math.pi / 4


def _rot_wxyz(q: Vec) -> List[List[float]]:
    """The rotation matrix of a unit quaternion given w, x, y, z."""
    w, x, y, z = q
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]


def _euler_xyz(r: List[List[float]]) -> List[float]:
    """The (a, b, c) VAMP's ``Cuboid`` takes as ``euler_xyz``: it builds R = Rz(c) Ry(b) Rx(a)
    (vamp/collision/factory.hh), so the angles are read back in that order."""
    b = -math.asin(max(-1.0, min(1.0, r[2][0])))
    a = math.atan2(r[2][1], r[2][2])
    c = math.atan2(r[1][0], r[0][0])
    return [a, b, c]


class BaseFrame:
    """World -> robot base frame: VAMP's Panda always stands at its own origin."""

    def __init__(self, p: Vec, q: Vec) -> None:
        self.p = list(p)
        self.r = _rot_wxyz(q)

    def point(self, x: Vec) -> List[float]:
        """A world point in the base frame (R^T (x - p))."""
        d = [x[i] - self.p[i] for i in range(3)]
        return [sum(self.r[i][j] * d[i] for i in range(3)) for j in range(3)]

    def rotation(self, q: Vec) -> List[List[float]]:
        """A world orientation in the base frame (R^T Rq)."""
        rq = _rot_wxyz(q)
        return [[sum(self.r[k][i] * rq[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def _cuboid(vamp: Any, base: BaseFrame, box: Dict[str, Any], name: str) -> Any:
    """A box (size, centre, wxyz) of the world as a VAMP cuboid in the base frame."""
    c = vamp.Cuboid(base.point(box["p"]), _euler_xyz(base.rotation(box.get("q", [1.0, 0.0, 0.0, 0.0]))),
                    [s / 2 for s in box["size"]])
    c.name = name
    return c


Box = Tuple[List[float], List[float]]     # axis-aligned, (low corner, high corner), in the base frame


def _fixed_spheres(robot: Any) -> List[Tuple[List[float], float]]:
    """The spheres of VAMP's model that no joint moves (the base link's): the same at two
    configurations far apart."""
    lo, hi = robot.lower_bounds(), robot.upper_bounds()
    a = robot.fk([float(x) + 0.25 * (float(y) - float(x)) for x, y in zip(lo, hi)])
    b = robot.fk([float(x) + 0.75 * (float(y) - float(x)) for x, y in zip(lo, hi)])
    return [([s.x, s.y, s.z], s.r) for s, t in zip(a, b)
            if abs(s.x - t.x) + abs(s.y - t.y) + abs(s.z - t.z) < 1e-6]


def _carve(box: Box, centre: Vec, r: float) -> List[Box]:
    """``box`` without the column a base sphere stands in, from the sphere's lowest point up.

    Why: anycell (and mplib, through its allowed-collision matrix) let the robot's base stand
    on the table; VAMP has no such exemption, and its Panda's base sphere reaches 3 cm below
    the base, into the table top, so every configuration would be invalid. The box keeps its
    full height everywhere but a square of the sphere's diameter under the base.
    """
    lo, hi = box
    if any(centre[i] + r <= lo[i] or centre[i] - r >= hi[i] for i in range(3)):
        return [box]
    cut = centre[2] - r
    out: List[Box] = []
    if cut > lo[2]:
        out.append(([lo[0], lo[1], lo[2]], [hi[0], hi[1], cut]))
    z0 = max(cut, lo[2])
    x0, x1 = max(lo[0], centre[0] - r), min(hi[0], centre[0] + r)
    y0, y1 = max(lo[1], centre[1] - r), min(hi[1], centre[1] + r)
    for piece in (([lo[0], lo[1], z0], [x0, hi[1], hi[2]]), ([x1, lo[1], z0], [hi[0], hi[1], hi[2]]),
                  ([x0, lo[1], z0], [x1, y0, hi[2]]), ([x0, y1, z0], [x1, hi[1], hi[2]])):
        if all(piece[1][i] - piece[0][i] > 1e-9 for i in range(3)):
            out.append(piece)
    return out


def _statics(vamp: Any, robot: Any, base: BaseFrame, boxes: List[Dict[str, Any]]) -> Tuple[List[Any], int]:
    """The cell's static boxes as VAMP cuboids, carved around the base's spheres where they are
    axis-aligned in the base frame (returns the cuboids and how many boxes were carved)."""
    fixed = _fixed_spheres(robot)
    cuboids, carved = [], 0
    for k, box in enumerate(boxes):
        rot = base.rotation(box.get("q", [1.0, 0.0, 0.0, 0.0]))
        if any(abs(rot[i][j] - (i == j)) > 1e-9 for i in range(3) for j in range(3)):
            cuboids.append(_cuboid(vamp, base, box, f"box{k}"))
            continue
        c = base.point(box["p"])
        pieces: List[Box] = [([c[i] - box["size"][i] / 2 for i in range(3)],
                              [c[i] + box["size"][i] / 2 for i in range(3)])]
        for centre, r in fixed:
            pieces = [q for piece in pieces for q in _carve(piece, centre, r)]
        carved += len(pieces) != 1
        for n, (lo, hi) in enumerate(pieces):
            cub = vamp.Cuboid([(a + b) / 2 for a, b in zip(lo, hi)], [0.0, 0.0, 0.0],
                              [(b - a) / 2 for a, b in zip(lo, hi)])
            cub.name = f"box{k}.{n}"
            cuboids.append(cub)
    return cuboids, carved


def _attachment(vamp: Any, held: Dict[str, Any]) -> Any:
    """The held part as VAMP can carry it: one sphere enclosing the box, centred where the part
    is (its centre in the flange frame), expressed in VAMP's grasp-target frame."""
    import numpy as np

    x, y, z = held["p"]
    z -= GRASP_Z
    cy, sy = math.cos(-GRASP_YAW), math.sin(-GRASP_YAW)     # flange axes -> grasp-target axes
    tf = np.identity(4)
    tf[:3, 3] = [cy * x - sy * y, sy * x + cy * y, z]
    att = vamp.Attachment(tf)
    att.add_spheres([vamp.Sphere([0.0, 0.0, 0.0], 0.5 * math.sqrt(sum(s * s for s in held["size"])))])
    return att


def main() -> int:
    import vamp

    spec = json.load(sys.stdin)
    base = BaseFrame(spec["base"]["p"], spec["base"]["q"])
    robot, rrtc, settings, simp = vamp.configure_robot_and_planner_with_kwargs("panda", "rrtc")
    statics, carved = _statics(vamp, robot, base, spec["boxes"])
    out = []
    invalid = {"start": 0, "goal": 0}
    for prob in spec["problems"]:
        env = vamp.Environment()
        for c in statics:
            env.add_cuboid(c)
        if prob.get("post"):
            env.add_cuboid(_cuboid(vamp, base, prob["post"], "post"))
        if prob.get("held"):
            env.attach(_attachment(vamp, prob["held"]))
        start, goal = [float(v) for v in prob["start"]], [float(v) for v in prob["goal"]]
        invalid["start"] += not robot.validate(start, env)
        invalid["goal"] += not robot.validate(goal, env)
        runs = []
        for _ in range(int(spec.get("repeats", 1))):
            sampler = robot.halton()         # VAMP's default sampler, fresh as in its examples
            t0 = time.perf_counter()
            res = rrtc(start, goal, env, settings, sampler)
            ok = bool(res.solved)
            path: List[List[float]] = []
            simp_ns = 0
            if ok:
                short = robot.simplify(res.path, env, simp, sampler)
                simp_ns = int(short.nanoseconds)
                path = [[float(v) for v in short.path[k]] for k in range(len(short.path))]
            dt = time.perf_counter() - t0
            runs.append({"seconds": dt, "ok": ok, "plan_ns": int(res.nanoseconds), "simplify_ns": simp_ns,
                         "iterations": int(res.iterations), "path": path})
        out.append(runs)
    info = {"version": getattr(vamp, "__version__", "?"), "resolution": float(robot.resolution()),
            "n_spheres": int(robot.n_spheres()), "invalid": invalid, "boxes": len(spec["boxes"]),
            "cuboids": len(statics), "carved": carved}
    json.dump({"info": info, "results": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
