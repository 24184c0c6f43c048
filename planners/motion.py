"""Collision-free, time-optimal robot motion for one robot of a cell.

Joint moves: the straight joint-space path is tried first (most pick/place
transfers are free), then a bidirectional RRT-Connect with path shortcutting
(between waypoints, then between any two points of the path).
``bench/bench_motion.py`` compares this with OMPL's RRTConnect on the same
problems and the same collision checker; ours is faster on these problems
because it skips the planner set-up and most transfers need no search at all.
Cartesian moves (approach and retreat) follow a straight TCP line, solved by
IK point by point from the previous solution and checked for collisions.

Every path is then time-parameterised by TOPP-RA under the joint limits
scaled by ``cell.safety.max_speed_fraction``, and the *timed* trajectory is
checked again every :data:`RESOLUTION` along the path its samples trace (the
spacing every planned segment is checked at); if the spline strays into a
collision the waypoints are densified and the parameterisation repeated.

Targets are refused before anything moves: outside the workspace or out of
reach gives :class:`UnreachableError`, a colliding goal :class:`CollisionError`
naming the two bodies.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from anycell.cell import CellConfig
from anycell.errors import CollisionError, PlanningError, UnreachableError
from anycell.geometry import Pose, matrix_to_quat, quat_slerp, quat_to_matrix

from .collision import CONTACT_CLEARANCE, FREE_CLEARANCE, CollisionWorld, Held, locked
from .kinematics import JointVector, pose_to_matrix
from .timing import time_optimal
from .trajectory import Trajectory

log = logging.getLogger(__name__)

RESOLUTION = 0.02        # rad: collision-check spacing along joint-space segments
CART_STEP = 0.005        # m: spacing of IK points along a Cartesian line
MAX_JOINT_JUMP = 0.15    # rad: larger jumps between consecutive line points mean a flip


class MotionPlanner:
    """Plans collision-free joint and Cartesian motions of ``robot_id`` in ``cell``.

    Thread-safe: every public method holds the planner's lock (shared with its collision world),
    because a cell plans ahead on one thread while machine steps move obstacles on others.
    """

    def __init__(self, cell: CellConfig, robot_id: str, *, seed: int = 1) -> None:
        self.cell = cell
        self.robot_id = robot_id
        self.world = CollisionWorld(cell, robot_id)
        self.lock = self.world.lock     # one lock for the planner and its world (see collision.locked)
        self.kin = self.world.kin
        self.joint_names = list(self.kin.joint_names)
        frac = float(cell.safety.max_speed_fraction)
        self.vmax = [v * frac for v in self.world.robot.velocity]
        self.amax = [a * frac for a in self.world.robot.acceleration]
        self.lower = self.kin.lower
        self.upper = self.kin.upper
        self._seed = seed
        self.last_stats: dict = {}

    # ------------------------------------------------------------------ obstacles
    @locked
    def add_obstacle(self, name: str, size: Sequence[float], pose: Pose) -> None:
        """Tell the planner about a part lying in the cell (feeder slot, fixture)."""
        self.world.add_obstacle(name, size, pose)

    @locked
    def remove_obstacle(self, name: str) -> None:
        self.world.remove_obstacle(name)

    # ------------------------------------------------------------------ checks
    @locked
    def check_target(self, pose: Pose, name: str = "target") -> None:
        """Refuse a TCP target outside the safety workspace."""
        ws = self.cell.safety.workspace
        if not ws.contains(pose.position):
            raise UnreachableError(f"{name} xyz={[round(v, 4) for v in pose.xyz]} lies outside the cell's "
                                   f"safety workspace {ws.min}..{ws.max}", hint="move the target inside safety.workspace")

    @locked
    def ik(self, pose: Pose, q_near: Sequence[float], held: Optional[Held] = None, *,
           clearance: float = FREE_CLEARANCE, ignore: Iterable[str] = (), name: str = "target") -> List[float]:
        """A collision-free IK solution for a TCP pose, closest to ``q_near``."""
        self.check_target(pose, name)
        ign = tuple(ignore)
        seen: List[str] = []

        def accept(q: np.ndarray) -> bool:
            bad = self.world.contacts(q, held, clearance=clearance, ignore=ign)
            if bad and str(bad[0]) not in seen:
                seen.append(str(bad[0]))
            return not bad

        try:
            return self.kin.ik(pose, q_near, name=name, accept=accept, prefer=self._elbow_rank())
        except CollisionError as exc:
            # name both bodies of every contact that ruled a solution out, not only "it collides"
            raise CollisionError(f"{exc.message}: {'; '.join(seen[:3])}", hint=exc.hint) from None

    #: m: elbow clearances from the other robots' bases within this of each other rank the same
    #: (then the solution nearest the current configuration wins: shorter moves)
    ELBOW_STEP = 0.1

    def _elbow_rank(self) -> Optional[Callable[[np.ndarray], float]]:
        """Beside other robots: rank IK solutions by how far the elbow stays from the other robots'
        bases (farther first, in steps of :attr:`ELBOW_STEP`). Two arms reaching for one station
        between them meet elbow to elbow when both swing them into the middle; the null space of a
        redundant arm, or another branch of any arm, turns the elbow to the robot's own side."""
        others = [np.asarray(r.base.xyz[:2], dtype=float) for r in self.cell.robots if r.id != self.robot_id]
        if not others:
            return None

        def rank(q: np.ndarray) -> float:
            e = self.kin.elbow(q)[:2]
            clear = min(float(np.linalg.norm(e - b)) for b in others)
            return -float(np.floor(clear / self.ELBOW_STEP))

        return rank

    @locked
    def set_robot_position(self, robot_id: str, q: Sequence[float]) -> None:
        """Another robot of the cell stands at ``q`` (its measured position, or where it will stop)."""
        self.world.set_robot_position(robot_id, q)

    @locked
    def fk(self, q: Sequence[float]) -> Pose:
        return self.kin.fk(q)

    def _require_free(self, q: JointVector, held: Optional[Held], clearance: float, ignore: Iterable[str],
                      what: str) -> None:
        bad = self.world.contacts(q, held, clearance=clearance, ignore=ignore)
        if bad:
            raise CollisionError(f"{what} configuration is in collision: {bad[0]}",
                                 hint="choose another target or clear the obstacle")

    @locked
    def check_fingers(self, q: JointVector, *, ignore: Iterable[str] = (), what: str = "grasp") -> None:
        """Refuse an arm configuration where the fingers would hit the cell as they close or open
        (:meth:`CollisionWorld.finger_contacts`), naming both bodies."""
        bad = self.world.finger_contacts(q, ignore=ignore)
        if bad:
            raise CollisionError(f"the fingers would hit the cell as they close or open at the {what}: {bad[0]}",
                                 hint="grasp the part another way round, or give the fingers room to open")

    def _check_limits(self, q: JointVector, what: str) -> None:
        qa = np.asarray(q)
        if np.any(qa < self.lower - 1e-6) or np.any(qa > self.upper + 1e-6):
            raise UnreachableError(f"{what} configuration {np.round(qa, 3).tolist()} is outside the joint limits")

    # ------------------------------------------------------------------ joint moves
    @locked
    def plan_joint_path(self, q_start: Sequence[float], q_goal: Sequence[float], held: Optional[Held] = None, *,
                        timeout: float = 3.0, clearance: float = FREE_CLEARANCE,
                        ignore: Iterable[str] = ()) -> List[np.ndarray]:
        """A collision-free joint-space path (waypoints), direct if possible, else RRT-Connect + shortcuts."""
        ign = tuple(ignore)
        a, b = np.asarray(q_start, float), np.asarray(q_goal, float)
        self._check_limits(a, "start")
        self._check_limits(b, "goal")
        self._require_free(b, held, clearance, ign, "goal")
        start_ok = self.world.free(a, held, clearance=clearance, ignore=ign)
        if not start_ok:
            # leaving a contact (just after a grasp or a place): allow touching at the start only
            self._require_free(a, held, CONTACT_CLEARANCE, ign, "start")
        free = (lambda q: self.world.free(q, held, clearance=clearance, ignore=ign))

        def seg(x: np.ndarray, y: np.ndarray) -> bool:
            # a segment leaving a start that touches something may touch it too (moving away from it)
            c = clearance if start_ok or not np.array_equal(x, a) else CONTACT_CLEARANCE
            return self.world.segment_free(x, y, held, resolution=RESOLUTION, clearance=c, ignore=ign)

        if seg(a, b):
            self.last_stats = {"method": "direct"}
            return [a, b]
        path = rrt_connect(a, b, free, seg, self.lower, self.upper, seed=self._seed, timeout=timeout)
        if path is None:
            raise PlanningError(f"no collision-free path found within {timeout:.1f} s",
                                hint="the goal may be enclosed by obstacles; check the cell layout")
        path = shortcut(path, seg, seed=self._seed, weights=[1.0 / v for v in self.vmax])
        self.last_stats = {"method": "rrt_connect", "waypoints": len(path)}
        return path

    @locked
    def plan_joint(self, q_start: Sequence[float], q_goal: Sequence[float], held: Optional[Held] = None, *,
                   timeout: float = 3.0, ignore: Iterable[str] = (), speed: float = 1.0) -> Trajectory:
        """A collision-free, time-optimal joint move from ``q_start`` to ``q_goal``.

        ``speed`` (0..1] scales the limits further, e.g. to carry a stack of loose parts gently.
        """
        path = self.plan_joint_path(q_start, q_goal, held, timeout=timeout, ignore=ignore)
        return self.parameterize(path, held, ignore=ignore, clearance=FREE_CLEARANCE,
                                 start_clearance=CONTACT_CLEARANCE, speed=speed)

    @locked
    def plan_to_pose(self, q_start: Sequence[float], pose: Pose, held: Optional[Held] = None, *,
                     ignore: Iterable[str] = (), name: str = "target") -> Trajectory:
        """IK (closest collision-free solution) and a joint move there."""
        goal = self.ik(pose, q_start, held, ignore=ignore, name=name)
        return self.plan_joint(q_start, goal, held, ignore=ignore)

    # ------------------------------------------------------------------ Cartesian moves
    @locked
    def cartesian_path(self, q_start: Sequence[float], target: Pose, held: Optional[Held] = None, *,
                       ignore: Iterable[str] = (), name: str = "target") -> List[np.ndarray]:
        """Joint waypoints that move the TCP on a straight line (and slerped orientation) to ``target``."""
        self.check_target(target, name)
        ign = tuple(ignore)
        t0 = self.kin.fk_matrix(q_start)
        t1 = pose_to_matrix(target)
        dist = float(np.linalg.norm(t1[:3, 3] - t0[:3, 3]))
        n = max(2, int(math.ceil(dist / CART_STEP)))
        q0 = matrix_to_quat(t0[:3, :3])
        q1 = matrix_to_quat(t1[:3, :3])
        q = np.asarray(q_start, float)
        path = [q.copy()]
        for k in range(1, n + 1):
            s = k / n
            m = np.eye(4)
            m[:3, 3] = t0[:3, 3] + (t1[:3, 3] - t0[:3, 3]) * s
            m[:3, :3] = quat_to_matrix(quat_slerp(q0, q1, s))
            sol = self.kin._solve(m, q, iters=60)
            if sol is None:
                raise UnreachableError(f"robot '{self.robot_id}' cannot follow the straight line to {name} "
                                       f"xyz={[round(v, 4) for v in target.xyz]} (no IK at {s:.0%} of it)",
                                       hint="shorten the approach distance or move the station")
            if np.max(np.abs(sol - q)) > MAX_JOINT_JUMP:
                raise UnreachableError(f"the straight line to {name} passes a singularity or a joint limit",
                                       hint="shorten the approach or change the target orientation")
            bad = self.world.contacts(sol, held, clearance=CONTACT_CLEARANCE, ignore=ign)
            if bad:
                raise CollisionError(f"the straight line to {name} collides: {bad[0]}",
                                     hint="clear the approach path or change the approach direction")
            q = sol
            path.append(q.copy())
        return path

    @locked
    def plan_cartesian_line(self, q_start: Sequence[float], target_pose: Pose, held: Optional[Held] = None, *,
                            ignore: Iterable[str] = (), name: str = "target", speed: float = 1.0) -> Trajectory:
        """A straight TCP line (approach or retreat), collision-checked, time-optimal."""
        path = self.cartesian_path(q_start, target_pose, held, ignore=ignore, name=name)
        return self.parameterize(path, held, ignore=ignore, clearance=CONTACT_CLEARANCE, max_step=0.02,
                                 speed=speed)

    # ------------------------------------------------------------------ timing
    @locked
    def parameterize(self, path: Sequence[JointVector], held: Optional[Held] = None, *,
                     ignore: Iterable[str] = (), clearance: float = FREE_CLEARANCE,
                     start_clearance: Optional[float] = None, max_step: float = 0.1,
                     speed: float = 1.0) -> Trajectory:
        """TOPP-RA timing of ``path``; the sampled result is re-checked and densified until it is free."""
        ign = tuple(ignore)
        for attempt in range(4):
            s = min(1.0, max(1e-3, float(speed)))
            traj = time_optimal(self.joint_names, path, [v * s for v in self.vmax], [a * s * s for a in self.amax],
                                max_step=max_step)
            bad = self.trajectory_collisions(traj, held, clearance=min(clearance, CONTACT_CLEARANCE)
                                             if attempt == 3 else clearance, ignore=ign,
                                             start_clearance=start_clearance)
            if not bad:
                return traj
            max_step /= 3.0
            log.debug("timed path strays into %s; densifying to %.3f rad", bad[0], max_step)
        raise PlanningError(f"the timed trajectory collides ({bad[0]}) even on a dense path",
                            hint="report this cell layout; the path hugs an obstacle")

    @locked
    def trajectory_collisions(self, traj: Trajectory, held: Optional[Held] = None, *,
                              clearance: float = CONTACT_CLEARANCE, ignore: Iterable[str] = (),
                              start_clearance: Optional[float] = None, resolution: float = RESOLUTION) -> list:
        """Contacts along a trajectory, checked every ``resolution`` rad along the path its samples trace
        (the collision model's own spacing, :data:`RESOLUTION`, as for a planned segment: a finer check
        finds nothing the planner did not; a trajectory's 10 ms samples are often much closer than that,
        near its ends, and are not each checked).

        With ``start_clearance``, a trajectory that starts in contact (just after a grasp or a
        place) is held to that looser clearance until it first reaches the normal one.
        """
        ign = tuple(ignore)
        pts = along(np.asarray(traj.positions, float), resolution)
        start = 0
        if start_clearance is not None and not self.world.free(pts[0], held, clearance=clearance, ignore=ign):
            for start, q in enumerate(pts, 1):      # noqa: B007 - ``start`` is used after the loop
                if self.world.free(q, held, clearance=clearance, ignore=ign):
                    break
                bad = self.world.contacts(q, held, clearance=start_clearance, ignore=ign)
                if bad:
                    return bad
        while start < len(pts):
            i = self.world.first_collision(pts[start:], held, clearance=clearance, ignore=ign)
            if i < 0:
                return []
            bad = self.world.contacts(pts[start + i], held, clearance=clearance, ignore=ign)
            if bad:
                return bad
            start += i + 1
        return []

    @locked
    def estimate_duration(self, q_start: Sequence[float], q_goal: Sequence[float]) -> float:
        """A quick lower bound of a joint move's duration (straight path, trapezoid per joint)."""
        d = np.abs(np.asarray(q_goal) - np.asarray(q_start))
        t = 0.0
        for dj, v, a in zip(d, self.vmax, self.amax):
            t = max(t, 2 * math.sqrt(dj / a) if dj < v * v / a else dj / v + v / a)
        return t

    def close(self) -> None:
        self.world.close()


def along(pos: np.ndarray, resolution: float) -> np.ndarray:
    """Points on the polyline through ``pos`` (rows), from its first point to its last, evenly spaced by
    path length (the sum of max-norm steps) and at most ``resolution`` apart along it, so at most that
    far apart in max-norm; the polyline's own points lie within ``resolution`` / 2 of one of them."""
    if len(pos) < 2:
        return pos
    step = np.max(np.abs(np.diff(pos, axis=0)), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(step)])
    n = max(1, int(np.ceil(arc[-1] / resolution)))
    at = np.linspace(0.0, arc[-1], n + 1)
    i = np.clip(np.searchsorted(arc, at, side="right") - 1, 0, len(pos) - 2)
    frac = np.clip((at - arc[i]) / np.where(step[i] > 0.0, step[i], 1.0), 0.0, 1.0)
    out = pos[i] + (pos[i + 1] - pos[i]) * frac[:, None]
    out[0], out[-1] = pos[0], pos[-1]
    return out

def rrt_connect(start: np.ndarray, goal: np.ndarray, free: Callable, seg: Callable, lower: np.ndarray,
                upper: np.ndarray, *, seed: int = 1, timeout: float = 3.0,
                step: float = 0.3) -> Optional[List[np.ndarray]]:
    """Bidirectional RRT (RRT-Connect, Kuffner & LaValle 2000) in joint space; deterministic for a seed.

    ``free(q)`` checks a configuration, ``seg(a, b)`` a straight segment (from ``a``); ``step`` is the
    largest extension, rad (max-norm).
    """
    import time

    rng = np.random.default_rng(seed)
    trees = [([start], [-1]), ([goal], [-1])]
    deadline = time.monotonic() + timeout

    def nearest(tree, q):  # noqa: ANN001
        nodes = np.asarray(tree[0])
        return int(np.argmin(np.sum((nodes - q) ** 2, axis=1)))

    def extend(tree, q):  # noqa: ANN001
        i = nearest(tree, q)
        near = tree[0][i]
        d = q - near
        dist = float(np.max(np.abs(d)))
        new = q if dist <= step else near + d * (step / dist)
        if not free(new) or not seg(near, new):
            return None, False
        tree[0].append(new)
        tree[1].append(i)
        return len(tree[0]) - 1, dist <= step

    def connect(tree, q):  # noqa: ANN001
        while True:
            idx, reached = extend(tree, q)
            if idx is None:
                return None
            if reached:
                return idx

    def trace(tree, idx):  # noqa: ANN001
        out = []
        while idx != -1:
            out.append(tree[0][idx])
            idx = tree[1][idx]
        return out

    swap = False
    while time.monotonic() < deadline:
        q_rand = lower + (upper - lower) * rng.random(len(start))
        a, b = (trees[1], trees[0]) if swap else (trees[0], trees[1])
        idx, _ = extend(a, q_rand)
        if idx is not None:
            j = connect(b, a[0][idx])
            if j is not None:
                pa, pb = trace(a, idx), trace(b, j)
                path = list(reversed(pa)) + pb[1:]
                if swap:
                    path = list(reversed(path))
                return path
        swap = not swap
    return None


def shortcut(path: List[np.ndarray], seg: Callable, *, seed: int = 1, rounds: int = 60, partial: int = 40,
             patience: int = 10, weights: Optional[Sequence[float]] = None) -> List[np.ndarray]:
    """Random shortcutting: join two points of the path directly when the segment is free.

    First ``rounds`` tries between two waypoints; then up to ``partial`` tries between two points anywhere
    on the path (drawn evenly along its length; Geraerts & Overmars' partial shortcuts, what OMPL's rope
    shortcutting does), stopping after ``patience`` failures in a row: waypoint shortcuts leave the
    detours an RRT makes inside one segment, and the corners where two segments would meet nearer the
    obstacle. Length is the max-norm of each step scaled by ``weights`` (the planner's 1 / velocity limits:
    a step's duration at full speed), so every accepted shortcut shortens the path (the triangle
    inequality). A final greedy pass drops every waypoint it can. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    path = [np.asarray(q, float) for q in path]
    for _ in range(rounds):
        if len(path) < 3:
            break
        i, j = sorted(rng.choice(len(path), size=2, replace=False))
        if j - i < 2:
            continue
        if seg(path[i], path[j]):
            path = path[: i + 1] + path[j:]
    w = np.ones(len(path[0])) if weights is None else np.asarray(weights, float)
    fails = 0
    for _ in range(partial):
        if len(path) < 3 or fails >= patience:
            break
        step = np.max(np.abs(np.diff(np.asarray(path), axis=0)) * w, axis=1)
        arc = np.concatenate([[0.0], np.cumsum(step)])
        at = np.sort(rng.random(2)) * arc[-1]
        i, j = np.minimum(np.searchsorted(arc, at, side="right") - 1, len(path) - 2)
        if i == j:
            continue
        a = path[i] + (path[i + 1] - path[i]) * ((at[0] - arc[i]) / step[i] if step[i] > 0 else 0.0)
        b = path[j] + (path[j + 1] - path[j]) * ((at[1] - arc[j]) / step[j] if step[j] > 0 else 0.0)
        if seg(a, b):
            path = path[: i + 1] + [a, b] + path[j + 1:]
            fails = 0
        else:
            fails += 1
    # a final greedy pass from the start
    out = [path[0]]
    k = 0
    while k < len(path) - 1:
        j = len(path) - 1
        while j > k + 1 and not seg(path[k], path[j]):
            j -= 1
        out.append(path[j])
        k = j
    return out
