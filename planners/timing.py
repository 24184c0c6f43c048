"""Time parameterisation: a geometric joint path -> the time-optimal trajectory under limits.

TOPP-RA (``toppra``) finds the fastest traversal of a fixed path under each
joint's velocity and acceleration limits. The path through the waypoints is a
clamped cubic spline (it starts and ends at rest); because a spline can bulge
between sparse waypoints, the caller re-checks the sampled result for
collisions (see :mod:`anycell.planners.motion`), and waypoints are densified first so
the spline stays close to the checked straight segments.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence

import numpy as np

from anycell.errors import PlanningError

from .kinematics import JointVector
from .trajectory import Trajectory

log = logging.getLogger(__name__)

#: TOPP-RA is asked for slightly lower limits than the true ones, so the spline
#: between its grid points never exceeds the true limits (checked by tests).
HEADROOM = 0.995
#: toppra's grid proposal: the largest interpolation error between grid points (path units), the
#: longest grid segment (the path parameter runs 0..1) and the fewest points. A fixed dense grid of
#: 500-1000 points cost most of each motion's planning for no shorter motions (bench/bench_timing.py).
GRID_ERROR = 1e-4
GRID_MAX_SEGMENT = 0.05
GRID_MIN_POINTS = 100


def densify(waypoints: Sequence[JointVector], max_step: float) -> np.ndarray:
    """Insert points on each straight joint-space segment so no step exceeds ``max_step`` (rad)."""
    pts = np.asarray(waypoints, dtype=float)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.ceil(np.max(np.abs(b - a)) / max_step)))
        for k in range(1, n + 1):
            out.append(a + (b - a) * (k / n))
    return np.asarray(out)


def _dedupe(pts: np.ndarray) -> np.ndarray:
    keep = [0]
    for i in range(1, len(pts)):
        if np.max(np.abs(pts[i] - pts[keep[-1]])) > 1e-9:
            keep.append(i)
    return pts[keep]


def time_optimal(joint_names: Sequence[str], waypoints: Sequence[JointVector], vmax: Sequence[float],
                 amax: Sequence[float], *, dt: float = 0.01, max_step: float = 0.15,
                 headroom: float = HEADROOM, gridpoints: Optional[int] = None) -> Trajectory:
    """The TOPP-RA time-optimal trajectory along the spline through ``waypoints``, sampled every ``dt``.

    ``vmax``/``amax`` are the (already speed-scaled) per-joint limits. Starts and ends at rest.
    ``headroom`` < 1 keeps the samples strictly inside the limits; 1.0 gives the exact optimum
    (the benchmark's reference).
    """
    import toppra as ta
    import toppra.algorithm as algo
    import toppra.constraint as constraint

    logging.getLogger("toppra").setLevel(logging.WARNING)
    pts = _dedupe(densify(waypoints, max_step))
    dof = pts.shape[1]
    if len(pts) < 2:
        return Trajectory.hold(joint_names, pts[0])
    # path parameter: cumulative max-norm joint distance, so the spline is well scaled
    seg = np.max(np.abs(np.diff(pts, axis=0)), axis=1)
    ss = np.concatenate([[0.0], np.cumsum(seg)])
    ss /= ss[-1]
    path = ta.SplineInterpolator(ss, pts, bc_type="clamped")
    v = np.asarray(vmax, dtype=float) * headroom
    a = np.asarray(amax, dtype=float) * headroom
    pc_vel = constraint.JointVelocityConstraint(np.stack([-v, v], axis=1))
    pc_acc = constraint.JointAccelerationConstraint(np.stack([-a, a], axis=1))
    if gridpoints:
        grid = np.linspace(0.0, 1.0, gridpoints)
    else:  # toppra's own proposal (points where the spline needs them), plus every knot
        from toppra.interpolator import propose_gridpoints

        grid = propose_gridpoints(path, max_err_threshold=GRID_ERROR, max_seg_length=GRID_MAX_SEGMENT,
                                  min_nb_points=GRID_MIN_POINTS)
        grid = np.union1d(grid, ss)  # the spline bends hardest at its knots
    instance = algo.TOPPRA([pc_vel, pc_acc], path, gridpoints=grid, parametrizer="ParametrizeConstAccel")
    jt = instance.compute_trajectory(0.0, 0.0)
    if jt is None:
        raise PlanningError("time parameterisation failed (TOPP-RA found no feasible velocity profile)",
                            hint="check the joint velocity and acceleration limits")
    duration = float(jt.duration)
    n = max(2, int(np.ceil(duration / dt)) + 1)
    ts = np.linspace(0.0, duration, n)
    q = np.asarray(jt(ts))
    qd = np.asarray(jt(ts, 1))
    qdd = np.asarray(jt(ts, 2))
    q[0], q[-1] = pts[0], pts[-1]
    qd[0] = qd[-1] = 0.0
    # between TOPP-RA's grid points the spline may overshoot a limit by a hair: if a sample does,
    # stretch time uniformly (velocity / r, acceleration / r^2) so every sample is within
    r = max(1.0, float(np.max(np.abs(qd) / np.asarray(vmax))), float(np.sqrt(np.max(np.abs(qdd) / np.asarray(amax)))))
    if r > 1.0:
        ts, qd, qdd = ts * r, qd / r, qdd / (r * r)
    return Trajectory(list(joint_names), ts.tolist(), q.reshape(n, dof).tolist(), qd.reshape(n, dof).tolist(),
                      qdd.reshape(n, dof).tolist())


def limits_ok(traj: Trajectory, vmax: Sequence[float], amax: Sequence[float], slack: float = 1e-6) -> List[str]:
    """Which limits the trajectory exceeds at any sample (empty when none): for tests and checks."""
    bad: List[str] = []
    v = np.abs(np.asarray(traj.velocities))
    a = np.abs(np.asarray(traj.accelerations))
    for j, name in enumerate(traj.joint_names):
        if v[:, j].max() > vmax[j] * (1 + slack):
            bad.append(f"{name} velocity {v[:, j].max():.3f} > {vmax[j]:.3f}")
        if a[:, j].max() > amax[j] * (1 + slack):
            bad.append(f"{name} acceleration {a[:, j].max():.3f} > {amax[j]:.3f}")
    return bad
