"""Time parameterisation: a geometric joint path -> the time-optimal trajectory under limits.

The path through the waypoints is a clamped cubic spline (it starts and ends at
rest); because a spline can bulge between sparse waypoints, the caller re-checks
the sampled result for collisions (see :mod:`anycell.planners.motion`), and
waypoints are densified first so the spline stays close to the checked straight
segments.

The fastest traversal of that path under each joint's velocity and acceleration
limits is found by TOPP-RA (Pham & Pham, "A new approach to time-optimal path
parameterization based on reachability analysis", 2018), on the same discretised
problem ``toppra`` solves with its default "interpolation" discretisation: a
backward pass computes each grid point's largest controllable ``sd^2``, a forward
pass takes the greatest admissible path acceleration at every stage. With only
joint velocity and acceleration limits, each stage's 2-variable linear program
has a closed form (a Fourier-Motzkin projection: every pair of the stage's
acceleration bounds gives one bound on ``sd^2``), so the constraint set-up is a
few vectorised numpy operations and the two passes are short scalar loops,
instead of toppra's per-stage Python calls (``tests/planners/test_timing.py``
holds both to the same velocity profile). Two departures from ``toppra``'s
defaults, both making motions shorter, never faster than the limits: the path
may start and end with sd > 0, since the clamped spline's tangent vanishes there
and the joints are at rest whatever sd is (``sd_start = 0`` costs a whole stage
at each end); and the grid follows the spline: each knot interval gets as many
stages as its curvature needs for the path's tangent to turn by at most
:data:`GRID_TURN` per stage (in closed form: a cubic's second derivative is
linear between knots), at least one per :data:`GRID_MAX_SEGMENT` of the path.

``time_optimal(..., gridpoints=N)`` runs ``toppra`` itself on a uniform grid of N
points: the references of ``bench/bench_timing.py`` and ``bench/bench_sim.py``.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from anycell.errors import PlanningError

from .kinematics import JointVector
from .trajectory import Trajectory

log = logging.getLogger(__name__)

#: The solver is asked for slightly lower limits than the true ones, so the spline
#: between its grid points never exceeds the true limits (checked by tests).
HEADROOM = 0.995
#: The grid: how far the path's tangent may turn within one stage, as a fraction of the path's length
#: (sets the grid where the path bends), and the longest stage as a fraction of the path (sets it on
#: straight stretches). TOPP-RA's discretisation costs time in proportion to both (bench/bench_timing.py:
#: these keep durations at or under the dense 500-1000 point grid's).
GRID_TURN = 0.05
GRID_MAX_SEGMENT = 0.01
#: How many times a grid is refined (x4 in density) when a stage comes out at rest in the middle of the
#: path (a discretisation artefact at a tight bend) before toppra's dense grid is used instead.
GRID_RETRIES = 2


def densify(waypoints: Sequence[JointVector], max_step: float) -> np.ndarray:
    """Insert points on each straight joint-space segment so no step exceeds ``max_step`` (rad)."""
    pts = np.asarray(waypoints, dtype=float)
    if len(pts) < 2:
        return pts.copy()
    d = np.diff(pts, axis=0)
    n = np.maximum(1, np.ceil(np.max(np.abs(d), axis=1) / max_step)).astype(int)
    seg = np.repeat(np.arange(len(d)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 1        # 1..n within each segment
    frac = (k / np.repeat(n, n))[:, None]
    return np.concatenate([pts[:1], pts[seg] + d[seg] * frac])


def _dedupe(pts: np.ndarray) -> np.ndarray:
    """Drop points within 1e-9 rad (max-norm) of the last point kept."""
    if len(pts) < 2:
        return pts
    step = np.max(np.abs(np.diff(pts, axis=0)), axis=1)
    if np.all(step > 1e-9):
        return pts
    keep = [0]
    for i in range(1, len(pts)):
        if np.max(np.abs(pts[i] - pts[keep[-1]])) > 1e-9:
            keep.append(i)
    return pts[keep]


def _path_parameter(pts: np.ndarray) -> Tuple[np.ndarray, float]:
    """Cumulative max-norm joint distance scaled to 0..1 (so the spline is well scaled), and the length."""
    seg = np.max(np.abs(np.diff(pts, axis=0)), axis=1)
    ss = np.concatenate([[0.0], np.cumsum(seg)])
    return ss / ss[-1], float(ss[-1])


def _grid(spline: Any, ss: np.ndarray, length: float, turn: float) -> np.ndarray:
    """Grid points on 0..1: every knot, each knot interval split evenly into enough stages that the path's
    tangent changes by at most ``turn`` of the path's length per stage (|q''| * stage <= turn * length;
    q'' of a cubic is linear between knots, so its largest value on an interval is at one end; the
    tangent's max-norm is about the length, the path parameter being the scaled max-norm distance) and
    none is longer than :data:`GRID_MAX_SEGMENT`."""
    h = np.diff(ss)
    d2 = np.abs(spline(ss, 2))
    curv = np.maximum(d2[:-1], d2[1:]).max(axis=1)
    n = np.maximum(np.ceil(h * curv / (turn * length)), np.ceil(h / GRID_MAX_SEGMENT))
    n = np.maximum(n, 1).astype(int)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)            # 0..n-1 within each interval
    return np.concatenate([np.repeat(ss[:-1], n) + np.repeat(h / n, n) * k, [1.0]])


def _stage_bounds(d1: np.ndarray, d2: np.ndarray, delta: np.ndarray,
                  amax: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each stage's acceleration limits as bounds on the path acceleration ``u`` given ``x = sd^2``.

    Stage i holds every joint's limit at grid point i, ``|q'_i u + q''_i x| <= a``, and at grid point
    i+1 reached with ``x + 2 delta u`` ("interpolation", toppra's default for joint accelerations):
    ``|(q'_i+1 + 2 delta q''_i+1) u + q''_i+1 x| <= a``. A row ``|c u + b x| <= a`` with c != 0 is the
    band ``alpha x - w <= u <= alpha x + w`` (alpha = -b/c, w = a/|c|); with c == 0 it bounds x alone.
    Returns (alpha, w) of shape (stages, 2 dof) and the bound on x from rows with c == 0 (stages,).
    """
    c = np.concatenate([d1[:-1], d1[1:] + (2.0 * delta)[:, None] * d2[1:]], axis=1)
    b = np.concatenate([d2[:-1], d2[1:]], axis=1)
    a = np.concatenate([amax, amax])[None, :]
    flat = np.abs(c) <= 1e-12
    if flat.any():
        c = np.where(flat, 1.0, c)
        alpha = np.where(flat, 0.0, -b / c)
        w = np.where(flat, 1e300, a / np.abs(c))
        with np.errstate(divide="ignore"):
            xb = np.where(flat, a / np.abs(b), np.inf).min(axis=1)
        return alpha, w, xb
    return -b / c, a / np.abs(c), np.full(len(delta), np.inf)


def _at_rest(d1: np.ndarray, d2: np.ndarray, amax: np.ndarray) -> float:
    """The largest sd^2 at a path end that leaves every joint at rest there: any, within the acceleration
    limits (|q'' sd^2| <= a), where the spline's tangent vanishes (a clamped end); else 0."""
    if np.max(np.abs(d1)) > 1e-12:
        return 0.0
    with np.errstate(divide="ignore"):
        return float(np.min(amax / np.abs(d2)))


def _reachability(grid: np.ndarray, d1: np.ndarray, d2: np.ndarray, vmax: np.ndarray,
                  amax: np.ndarray) -> np.ndarray:
    """TOPP-RA on ``grid`` (path derivatives ``d1``, ``d2`` at its points): ``sd^2`` at each point, every
    joint at rest at both ends.

    Backward pass: K_i, the largest x_i from which the end can still be reached, is the largest x for which
    some u lies in every band of stage i (:func:`_bands_meet`), with x + 2 delta u in [0, K_i+1]
    (x <= (K_i+1 + 2 delta w) / (1 + 2 delta alpha) for each band whose lower edge meets the upper bound;
    x <= w / (-1/(2 delta) - alpha) for each whose upper edge meets the lower one) and under the velocity
    limits. The smallest controllable x is 0 at every point (x = u = 0 meets every band), so the sets are
    [0, K_i]. Forward pass: from the largest x_0 at rest, the largest u in every band with
    x_i+1 <= K_i+1. At a clamped end the joints are at rest whatever sd is, so x_0 and K_n are bounded
    only by the accelerations there (toppra's ``sd_start = 0`` costs a stage at each end).
    Everything but the two passes' scalar recurrences is vectorised, and those visit only the bands
    that can bind in each stage (:func:`_undominated`).
    """
    n = len(grid) - 1
    delta = np.diff(grid)
    h = 2.0 * delta
    with np.errstate(divide="ignore"):
        xv = np.min(np.square(vmax[None, :] / np.abs(d1)), axis=1)
    alpha, w, xb = _stage_bounds(d1, d2, delta, amax)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = -1.0 / h[:, None] - alpha
        low = np.where(g > 0.0, w / g, np.inf).min(axis=1)
    static = _bands_meet(alpha, w, np.minimum(np.minimum(xv[:-1], xb), low))
    one = 1.0 + h[:, None] * alpha
    act = one > 1e-12
    cc = np.where(act, h[:, None] * w, 1e300)
    dd = np.where(act, 1.0 / np.where(act, one, 1.0), 1.0)
    k = min(_at_rest(d1[-1], d2[-1], amax), 1e300)
    # backward: K_i = max(0, min(static_i, min over bands (K_i+1 + c) d)) for K_i+1 in [0, static_i+1]
    top = np.minimum(np.append(static[1:], k), 1e200)[:, None]
    keep = _undominated(cc * dd, (top + cc) * dd)
    cl, dl = cc[keep].tolist(), dd[keep].tolist()
    first = (np.cumsum(keep.sum(axis=1)) - keep.sum(axis=1)).tolist()
    sl = static.tolist()
    ks = [k] * (n + 1)
    j = len(cl)
    for i in range(n - 1, -1, -1):
        best = sl[i]
        f = first[i]
        while j > f:
            j -= 1
            v = (k + cl[j]) * dl[j]
            if v < best:
                best = v
        k = ks[i] = best if best > 0.0 else 0.0
    # forward: u_i = min((K_i+1 - x_i) / h, min over bands alpha x_i + w), x_i in [0, K_i]
    keep = _undominated(w, alpha * np.asarray(ks[:-1])[:, None] + w)
    al, wl = alpha[keep].tolist(), w[keep].tolist()
    last = np.cumsum(keep.sum(axis=1)).tolist()
    xi = min(ks[0], _at_rest(d1[0], d2[0], amax))
    x = [xi] * (n + 1)
    j = 0
    for i, h_i in enumerate(h.tolist()):
        u = (ks[i + 1] - xi) / h_i
        e = last[i]
        while j < e:
            v = al[j] * xi + wl[j]
            if v < u:
                u = v
            j += 1
        xi += h_i * u
        xi = x[i + 1] = xi if xi > 0.0 else 0.0
    return np.asarray(x)


def _bands_meet(alpha: np.ndarray, w: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per stage, the largest x <= ``start`` at which all bands ``alpha x +- w`` share a u.

    That is min over pairs (w_j + w_k) / |alpha_j - alpha_k|, found without forming the pairs: the gap
    F(x) = min(alpha x + w) - max(alpha x - w) is concave and piecewise linear, so Newton's step from the
    right (the root of the piece the two binding bands make at x) never passes the largest root and
    reaches it in a few steps.
    """
    x = np.minimum(start, 1e200)
    rows = np.arange(len(x))
    for _ in range(50):
        up = alpha * x[:, None] + w
        dn = alpha * x[:, None] - w
        m = np.argmin(up, axis=1)
        k = np.argmax(dn, axis=1)
        gap = up[rows, m] - dn[rows, k]
        bad = gap < -1e-12 * (np.abs(up[rows, m]) + np.abs(dn[rows, k]))
        if not bad.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            root = (w[rows, m] + w[rows, k]) / (alpha[rows, k] - alpha[rows, m])
        x = np.where(bad, np.minimum(x, np.maximum(root, 0.0)), x)
    return x


def _undominated(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Which lines (a boolean mask per row) may be the least somewhere between two ends.

    ``lo`` and ``hi`` are each line's values at the two ends of a row's interval. A line at or above
    the least line of either end at both ends is never below it in between, so it is dropped (the
    least lines themselves are kept): the scalar passes then visit one or two lines per stage, mostly,
    instead of every band.
    """
    rows = np.arange(len(lo))[:, None]
    a = np.argmin(lo, axis=1)[:, None]
    b = np.argmin(hi, axis=1)[:, None]
    cols = np.arange(lo.shape[1])[None, :]
    return ~(((lo >= lo[rows, a]) & (hi >= hi[rows, a]) & (cols != a))
             | ((lo >= lo[rows, b]) & (hi >= hi[rows, b]) & (cols != b)))


def _sample(spline: Any, grid: np.ndarray, x: np.ndarray, dt: float) -> Optional[Tuple[np.ndarray, ...]]:
    """Times, positions, velocities and accelerations every ``dt`` along the profile ``x = sd^2`` on
    ``grid``, with constant path acceleration per stage; None when the profile stops inside the path."""
    sd = np.sqrt(x)
    delta = np.diff(grid)
    speed = sd[:-1] + sd[1:]
    if np.any(speed <= 0.0):
        return None
    t = np.concatenate([[0.0], np.cumsum(2.0 * delta / speed)])
    u = (x[1:] - x[:-1]) / (2.0 * delta)
    duration = float(t[-1])
    n = max(2, int(np.ceil(duration / dt)) + 1)
    ts = np.linspace(0.0, duration, n)
    i = np.clip(np.searchsorted(t, ts, side="right") - 1, 0, len(delta) - 1)
    tau = ts - t[i]
    s = np.clip(grid[i] + sd[i] * tau + 0.5 * u[i] * tau * tau, 0.0, 1.0)
    sdot = sd[i] + u[i] * tau
    q, d1, d2 = spline(s), spline(s, 1), spline(s, 2)
    return ts, q, d1 * sdot[:, None], d2 * np.square(sdot)[:, None] + d1 * u[i][:, None]


def _toppra(pts: np.ndarray, ss: np.ndarray, v: np.ndarray, a: np.ndarray, gridpoints: int,
            dt: float) -> Tuple[np.ndarray, ...]:
    """``toppra`` itself on a uniform grid (the benchmarks' reference, and the fallback)."""
    import toppra as ta
    import toppra.algorithm as algo
    import toppra.constraint as constraint

    logging.getLogger("toppra").setLevel(logging.WARNING)
    path = ta.SplineInterpolator(ss, pts, bc_type="clamped")
    pc_vel = constraint.JointVelocityConstraint(np.stack([-v, v], axis=1))
    pc_acc = constraint.JointAccelerationConstraint(np.stack([-a, a], axis=1))
    grid = np.linspace(0.0, 1.0, gridpoints)
    instance = algo.TOPPRA([pc_vel, pc_acc], path, gridpoints=grid, parametrizer="ParametrizeConstAccel")
    jt = instance.compute_trajectory(0.0, 0.0)
    if jt is None:
        raise PlanningError("time parameterisation failed (TOPP-RA found no feasible velocity profile)",
                            hint="check the joint velocity and acceleration limits")
    duration = float(jt.duration)
    n = max(2, int(np.ceil(duration / dt)) + 1)
    ts = np.linspace(0.0, duration, n)
    return ts, np.asarray(jt(ts)), np.asarray(jt(ts, 1)), np.asarray(jt(ts, 2))


def time_optimal(joint_names: Sequence[str], waypoints: Sequence[JointVector], vmax: Sequence[float],
                 amax: Sequence[float], *, dt: float = 0.01, max_step: float = 0.15,
                 headroom: float = HEADROOM, gridpoints: Optional[int] = None) -> Trajectory:
    """The TOPP-RA time-optimal trajectory along the spline through ``waypoints``, sampled every ``dt``.

    ``vmax``/``amax`` are the (already speed-scaled) per-joint limits. Starts and ends at rest.
    ``headroom`` < 1 keeps the samples strictly inside the limits; 1.0 gives the exact optimum
    (the benchmark's reference). ``gridpoints`` runs ``toppra`` on that many uniform grid points
    instead of the curvature-following grid (the benchmarks' references).
    """
    from scipy.interpolate import CubicSpline

    pts = _dedupe(densify(waypoints, max_step))
    dof = pts.shape[1]
    if len(pts) < 2:
        return Trajectory.hold(joint_names, pts[0])
    ss, length = _path_parameter(pts)
    v = np.asarray(vmax, dtype=float) * headroom
    a = np.asarray(amax, dtype=float) * headroom
    out = None
    if not gridpoints:
        spline = CubicSpline(ss, pts, bc_type="clamped", axis=0)
        turn = GRID_TURN
        for _ in range(GRID_RETRIES + 1):
            grid = _grid(spline, ss, length, turn)
            d1 = spline(grid, 1)
            d1[0] = d1[-1] = 0.0      # clamped: the path's tangent vanishes at both ends
            out = _sample(spline, grid, _reachability(grid, d1, spline(grid, 2), v, a), dt)
            if out is not None:
                break
            turn /= 4.0     # four times the points where the path bends
            log.debug("TOPP-RA stopped inside the path on %d grid points; refining the grid", len(grid))
        if out is None:
            log.debug("TOPP-RA stopped inside the path on every refined grid; using toppra's dense grid")
            gridpoints = min(1000, max(500, 20 * len(pts)))
    if out is None:
        out = _toppra(pts, ss, v, a, int(gridpoints or 0), dt)
    ts, q, qd, qdd = out
    n = len(ts)
    q[0], q[-1] = pts[0], pts[-1]
    qd[0] = qd[-1] = 0.0
    # between the grid points the spline may overshoot a limit by a hair: if a sample does,
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
