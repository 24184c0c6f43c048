"""Collision checking for one robot against its cell, itself, other parts and a held part.

The geometry is built by :func:`anycell.sim.builder.build_cell` from the CellConfig, the
very builder the simulator uses, so there is one model of the cell. Keep-out
zones are added as solid boxes here (they are not physical in the simulator).
A configuration is in collision when any two bodies come closer than the
clearance asked for: a positive clearance for free moves, a slightly negative
one (touching allowed) for the short approach and retreat lines that end in contact.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from anycell.cell import CellConfig
from anycell.geometry import Pose, matrix_to_quat

from anycell.sim.shapes import collision_shape, tune_body

from .kinematics import JointVector, Kinematics, pose_to_matrix

if TYPE_CHECKING:  # pragma: no cover
    from .fast_collision import FastCollision

log = logging.getLogger(__name__)

FREE_CLEARANCE = 0.004     # m: free moves keep this far from everything
CONTACT_CLEARANCE = -0.0015  # m: approach/retreat lines may touch (tiny penetration from float noise)
ROBOT_SLACK = 0.02         # m: added to safety.robot_margin when planning near another robot
#: m: robot link pairs nearer than this in over 90 % of random configurations are ignored (mounted flush)
PERMANENT_BAND = 0.01
#: Finger positions, open to closed, at which :meth:`CollisionWorld.finger_contacts` checks the fingers' sweep.
FINGER_SWEEP = 9


@dataclass
class Held:
    """A part in the tool: its box size and its pose in the TCP frame."""

    part_id: str
    size: List[float]
    in_tcp: Pose
    shape: Optional[Any] = None     # the part's anycell.job.Geometry (its real solid); None: the box ``size``


@dataclass
class Contact:
    a: str
    b: str
    distance: float

    def __str__(self) -> str:
        return f"{self.a} and {self.b} ({self.distance * 1000:.1f} mm)"


F = TypeVar("F", bound=Callable[..., Any])


def locked(method: F) -> F:
    """Run ``method`` holding ``self.lock``: a planner is shared by threads (the step that runs,
    the one planned ahead, machine steps moving obstacles), and one query reads the world's joint
    states, obstacles and compiled scene in several calls that another thread must not split."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class CollisionWorld:
    """A private PyBullet DIRECT world of the cell for one robot's planner (thread-safe: :func:`locked`)."""

    def __init__(self, cell: CellConfig, robot_id: str) -> None:
        import pybullet as p

        from anycell.sim.builder import build_cell

        self.cell = cell
        self.lock = threading.RLock()
        self.fast: Optional["FastCollision"] = None    # the compiled backend (planners/fast_collision.py), built last
        self.client = p.connect(p.DIRECT)
        self.bodies = build_cell(self.client, cell, keep_out=True, self_collision=True)
        self.robot = self.bodies.robots[robot_id]
        self.robot_id = robot_id
        self.kin = Kinematics(cell, robot_id, client=self.client, body=self.robot)
        self._names: Dict[int, str] = {b: n for n, b in self.bodies.static.items()}
        for rid, rb in self.bodies.robots.items():
            self._names[rb.body] = rid
        self.obstacles: Dict[str, int] = {}
        self._held_body: Optional[int] = None
        self._held: Optional[Held] = None
        self._held_key: Optional[Tuple] = None
        statics = list(self.bodies.static.values())
        for i, a in enumerate(statics):
            for b in statics[i + 1:]:
                p.setCollisionFilterPair(a, b, -1, -1, 0, physicsClientId=self.client)
        # a robot's base stands on the table or its pedestal: never a collision. The other robots of
        # the cell stand where they were last told to be (home until then): see set_robot_position.
        for rb in self.bodies.robots.values():
            for b in statics:
                for link in rb.base_links:
                    p.setCollisionFilterPair(rb.body, b, link, -1, 0, physicsClientId=self.client)
        self._fingers_open()
        self.others: Dict[str, List[float]] = {}
        self._other_robots = {rb.body for rb in self.bodies.robots.values() if rb is not self.robot}
        # the plan keeps the margin at its samples; the extra RESOLUTION-sized slack covers a link's
        # travel between two samples, so the executed motion keeps the margin too
        self.robot_clearance = float(cell.safety.robot_margin) + ROBOT_SLACK
        from anycell.sim.builder import home_configuration

        for rid, rb in self.bodies.robots.items():
            if rid != robot_id:
                self.set_robot_position(rid, home_configuration(rb))
        self._disable_permanent_self_contacts()
        # --- fast backend hook (planners/fast_collision.py): None = the PyBullet path below
        from .fast_collision import build as _build_fast
        self.fast = _build_fast(self)

    # ------------------------------------------------------------------ setup
    def _fingers_open(self) -> None:
        import pybullet as p

        for rb in self.bodies.robots.values():
            for j, q in zip(*rb.finger_targets(rb.finger_open)):
                p.resetJointState(rb.body, j, q, physicsClientId=self.client)

    def _self_distances(self, pairs: Sequence[Tuple[int, int]], reach: float) -> Dict[Tuple[int, int], float]:
        """The distance of each robot link pair closer than ``reach`` (fresh closest-points queries)."""
        import pybullet as p

        body, out = self.robot.body, {}
        for a, b in pairs:
            pts = p.getClosestPoints(body, body, reach, linkIndexA=a, linkIndexB=b, physicsClientId=self.client)
            if pts:
                out[(a, b)] = min(float(pt[8]) for pt in pts)
        return out

    def _disable_permanent_self_contacts(self) -> None:
        """Ignore link pairs that touch at home or are near in nearly every configuration (parts mounted flush).

        Like MoveIt's setup assistant's "always in collision" pairs: a pair that penetrates at home,
        or is closer than :data:`PERMANENT_BAND` in over 90 % of random configurations (a palm
        bolted flush on the wrist, a cup a few millimetres beyond the last link), would make every
        configuration a collision at the planner's clearances. The distances come from
        ``getClosestPoints``, not the contact pass, whose reach shrinks with a shape's size (Bullet
        scales the contact threshold by the shape's bounding radius) and so misses small near pairs.
        Both backends ignore the same pairs (the compiled one reads ``ignored_self_pairs``).
        """
        import pybullet as p

        n_links = p.getNumJoints(self.robot.body, physicsClientId=self.client)
        parent = {j: p.getJointInfo(self.robot.body, j, physicsClientId=self.client)[16] for j in range(n_links)}
        shaped = [link for link in range(-1, n_links)
                  if p.getCollisionShapeData(self.robot.body, link, physicsClientId=self.client)]
        pairs = [(a, b) for i, a in enumerate(shaped) for b in shaped[i + 1:] if parent.get(b) != a]
        counts: Dict[Tuple[int, int], int] = {}
        self.kin.set(self.kin.home)
        always = {pair for pair, d in self._self_distances(pairs, 0.0).items() if d < 0.0}
        rng = np.random.default_rng(3)
        n = 60
        for _ in range(n):
            self.kin.set(self.kin.lower + (self.kin.upper - self.kin.lower) * rng.random(self.kin.dof))
            for pair, d in self._self_distances(pairs, PERMANENT_BAND).items():
                if d < PERMANENT_BAND:
                    counts[pair] = counts.get(pair, 0) + 1
        always |= {pair for pair, k in counts.items() if k > 0.9 * n}
        # the fingers and hand touch each other by construction
        tool = self.robot.tool_links + [self.robot.flange_link]
        for a in tool:
            for b in tool:
                if a < b:
                    always.add((a, b))
        for a, b in always:
            p.setCollisionFilterPair(self.robot.body, self.robot.body, a, b, 0, physicsClientId=self.client)
        self.ignored_self_pairs = sorted(always)

    @locked
    def set_robot_position(self, robot_id: str, q: Sequence[float]) -> None:
        """Put another robot of the cell at joint positions ``q`` (where it is, or where it will stand)."""
        import pybullet as p

        rb = self.bodies.robots[robot_id]
        if rb is self.robot:
            raise ValueError("set_robot_position is for the other robots; this planner's robot moves with q")
        if len(q) != len(rb.arm_joints):
            raise ValueError(f"robot '{robot_id}' has {len(rb.arm_joints)} arm joints, got {len(q)} values")
        new = [float(v) for v in q]
        if self.others.get(robot_id) == new:
            return
        p.resetJointStatesMultiDof(rb.body, rb.arm_joints, [[v] for v in new], physicsClientId=self.client)
        self.others[robot_id] = new
        if self.fast is not None:  # fast backend hook: the other robot's links are static geometry there
            self.fast.refresh_robots([robot_id])

    # ------------------------------------------------------------------ obstacles
    def _filter_new(self, body: int) -> None:
        import pybullet as p

        for b in list(self.bodies.static.values()) + list(self.obstacles.values()):
            if b != body:
                p.setCollisionFilterPair(body, b, -1, -1, 0, physicsClientId=self.client)

    @locked
    def add_obstacle(self, name: str, size: "Sequence[float] | object", pose: Pose) -> None:
        """A part lying in the cell the robot must avoid; replaces one of the same name.

        ``size`` is the part's Geometry (its real solid, see :mod:`anycell.sim.shapes`) or a box size.
        """
        import pybullet as p

        self.remove_obstacle(name)
        col = collision_shape(self.client, size)  # type: ignore[arg-type]
        body = p.createMultiBody(0.0, col, -1, pose.position, pose.quaternion, physicsClientId=self.client)
        tune_body(self.client, body, size)  # type: ignore[arg-type]
        self._filter_new(body)
        # PyBullet reuses the ids of removed bodies, and a pair filter set on the old body (a held part
        # exempt from the fingers) would silently carry over: the robot must collide with every obstacle
        for link in range(-1, p.getNumJoints(self.robot.body, physicsClientId=self.client)):
            p.setCollisionFilterPair(body, self.robot.body, -1, link, 1, physicsClientId=self.client)
        self.obstacles[name] = body
        self._names[body] = f"part:{name}"
        if self.fast is not None and not _plain_box(size):  # fast backend hook
            self._drop_fast(f"obstacle '{name}' is not a plain box (holes, a cylinder or a mesh)")
        if self.fast is not None:  # fast backend hook
            from .fast_collision import Unsupported

            try:
                self.fast.add_obstacle(name, size, pose)
            except Unsupported as exc:
                self._drop_fast(str(exc))

    def _drop_fast(self, why: str) -> None:
        """Go back to the PyBullet path for good: the fast backend cannot model this scene exactly."""
        if self.fast is not None:
            log.warning("collision checks for robot '%s' use PyBullet (slower) from now on: %s", self.robot_id, why)
            self.fast = None

    def _fast_for(self, held: Optional[Held]) -> bool:
        """Whether the fast backend answers this check (a held part of real shape sends it to PyBullet)."""
        if self.fast is not None and held is not None and not _plain_box(held.shape):
            self._drop_fast(f"held part '{held.part_id}' is not a plain box")
        return self.fast is not None

    @locked
    def remove_obstacle(self, name: str) -> None:
        import pybullet as p

        body = self.obstacles.pop(name, None)
        if body is not None:
            p.removeBody(body, physicsClientId=self.client)
            self._names.pop(body, None)
            if self.fast is not None:  # fast backend hook
                self.fast.remove_obstacle(name)

    def _set_held(self, held: Optional[Held]) -> None:
        import pybullet as p

        if held is not None and held is self._held:
            return
        key = None if held is None else (held.part_id, tuple(held.size), repr(held.shape))
        if key == self._held_key:
            self._held = held
            return
        if self._held_body is not None:
            p.removeBody(self._held_body, physicsClientId=self.client)
            self._names.pop(self._held_body, None)
            self._held_body = None
        self._held, self._held_key = held, key
        if held is None:
            return
        col = collision_shape(self.client, held.shape if held.shape is not None else held.size)
        body = p.createMultiBody(0.0, col, -1, [0, 0, -5], [0, 0, 0, 1], physicsClientId=self.client)
        tune_body(self.client, body, held.shape if held.shape is not None else held.size)
        # a reused body id may carry the pair filters of a removed obstacle: collide with everything again
        for other in list(self.bodies.static.values()) + list(self.obstacles.values()):
            p.setCollisionFilterPair(body, other, -1, -1, 1, physicsClientId=self.client)
        for link in range(-1, p.getNumJoints(self.robot.body, physicsClientId=self.client)):
            p.setCollisionFilterPair(body, self.robot.body, -1, link, 1, physicsClientId=self.client)
        for link in self.robot.tool_links + [self.robot.flange_link]:
            p.setCollisionFilterPair(body, self.robot.body, -1, link, 0, physicsClientId=self.client)
        self._held_body = body
        self._names[body] = f"held:{held.part_id}"

    # ------------------------------------------------------------------ queries
    def name(self, body: int, link: int) -> str:
        import pybullet as p

        n = self._names.get(body, f"body{body}")
        robot_bodies = {rb.body for rb in self.bodies.robots.values()}
        if body in robot_bodies:
            n += "/" + (p.getJointInfo(body, link, physicsClientId=self.client)[12].decode() if link >= 0
                        else p.getBodyInfo(body, physicsClientId=self.client)[0].decode())
        return n

    @locked
    def contacts(self, q: JointVector, held: Optional[Held] = None, *, clearance: float = FREE_CLEARANCE,
                 ignore: Iterable[str] = (), first: bool = True) -> List[Contact]:
        """The pairs closer than ``clearance`` at configuration ``q`` (just the first one when ``first``)."""
        import pybullet as p

        self._set_held(held)
        if self._fast_for(held):  # fast backend hook
            self.fast.set_held(held)  # type: ignore[union-attr]
            return self.fast.contacts(q, clearance=clearance, ignore=ignore, first=first)  # type: ignore[union-attr]
        self.kin.set(q)
        if self._held_body is not None and held is not None:
            tcp = self.kin._flange() @ self.kin.tcp @ pose_to_matrix(held.in_tcp)
            p.resetBasePositionAndOrientation(self._held_body, tcp[:3, 3].tolist(), matrix_to_quat(tcp[:3, :3]),
                                              physicsClientId=self.client)
        ignored = {self.obstacles[n] for n in ignore if n in self.obstacles}
        robot_clear = self.robot_clearance
        p.setPhysicsEngineParameter(contactBreakingThreshold=max(0.02, clearance + 0.01, robot_clear + 0.01),
                                    physicsClientId=self.client)
        p.performCollisionDetection(physicsClientId=self.client)
        out: List[Contact] = []
        mine = {self.robot.body} | ({self._held_body} if self._held_body is not None and held is not None else set())
        for c in p.getContactPoints(physicsClientId=self.client):
            if c[1] in ignored or c[2] in ignored:
                continue
            if c[1] not in mine and c[2] not in mine:
                continue    # between other bodies (another robot's own links, a part on a station): not ours
            near_robot = c[1] in self._other_robots or c[2] in self._other_robots
            limit = max(clearance, robot_clear) if near_robot else clearance
            if c[8] >= limit:
                continue
            dist = self._fresh_distance(c[1], c[2], c[3], c[4], limit)
            if dist is None:
                continue
            out.append(Contact(self.name(c[1], c[3]), self.name(c[2], c[4]), dist))
            if first:
                break
        return out

    def _fresh_distance(self, a: int, b: int, la: int, lb: int, limit: float) -> Optional[float]:
        """The pair's distance from a fresh closest-points query, or None when it is not below ``limit``.

        Why: ``performCollisionDetection`` keeps persistent contact manifolds between calls and only
        refreshes their old points, so a point from an earlier configuration can survive with a depth
        it no longer has (seen: -31 mm on Panda wrist pairs that are 1.5 mm apart). The verdict would
        depend on the previous query. ``getClosestPoints`` keeps no state, so each candidate is confirmed.
        """
        import pybullet as p

        pts = p.getClosestPoints(a, b, max(limit, 0.0) + 1e-3, linkIndexA=la, linkIndexB=lb,
                                 physicsClientId=self.client)
        dist = min((float(pt[8]) for pt in pts), default=float("inf"))
        return dist if dist < limit else None

    def free(self, q: JointVector, held: Optional[Held] = None, *, clearance: float = FREE_CLEARANCE,
             ignore: Iterable[str] = ()) -> bool:
        lock = self.lock    # what @locked does, inline: this is the planner's most frequent call, and an
        lock.acquire()      # explicit acquire/release costs half what a with block does on an RLock
        try:
            fast = self.fast
            if fast is not None and held is fast._held_obj:    # the backend already holds this part (or none)
                return fast.free(q, clearance=clearance, ignore=ignore)
            return self._free(q, held, clearance, ignore)
        finally:
            lock.release()

    def _free(self, q: JointVector, held: Optional[Held], clearance: float, ignore: Iterable[str]) -> bool:
        if self._fast_for(held):  # fast backend hook
            self._set_held(held)
            self.fast.set_held(held)  # type: ignore[union-attr]
            return self.fast.free(q, clearance=clearance, ignore=ignore)  # type: ignore[union-attr]
        return not self.contacts(q, held, clearance=clearance, ignore=ignore)

    @locked
    def first_collision(self, qs: "Sequence[JointVector] | np.ndarray", held: Optional[Held] = None, *,
                        clearance: float = FREE_CLEARANCE, ignore: Iterable[str] = ()) -> int:
        """The index of the first configuration of ``qs`` (in order) that is not free, or -1 when all are.

        One call for a whole run of configurations (the compiled backend loops in one place, without a
        Python call per configuration); :meth:`contacts` then names what a hit touches.
        """
        if self._fast_for(held):  # fast backend hook
            self._set_held(held)
            self.fast.set_held(held)  # type: ignore[union-attr]
            return self.fast.first_hit(np.asarray(qs, float), clearance=clearance,  # type: ignore[union-attr]
                                       ignore=ignore)
        for i, q in enumerate(qs):
            if not self.free(q, held, clearance=clearance, ignore=ignore):
                return i
        return -1

    @locked
    def segment_free(self, qa: JointVector, qb: JointVector, held: Optional[Held] = None, *,
                     resolution: float = 0.02, clearance: float = FREE_CLEARANCE, ignore: Iterable[str] = ()) -> bool:
        """Whether the straight joint-space segment is free, checked every ``resolution`` rad (max-norm)."""
        a, b = np.asarray(qa, float), np.asarray(qb, float)
        n = max(1, int(np.ceil(np.max(np.abs(b - a)) / resolution)))
        # check in bisection order so a collision in the middle is found early
        if self._fast_for(held):  # fast backend hook
            self._set_held(held)
            self.fast.set_held(held)  # type: ignore[union-attr]
            return self.fast.segment_free(a, b, n, clearance=clearance, ignore=ignore)  # type: ignore[union-attr]
        order = _bisection_order(n)
        for k in order:
            if not self.free(a + (b - a) * (k / n), held, clearance=clearance, ignore=ignore):
                return False
        return True

    @locked
    def finger_contacts(self, q: JointVector, *, ignore: Iterable[str] = (),
                        clearance: float = CONTACT_CLEARANCE) -> List[Contact]:
        """What the fingers hit while they close and open with the arm at ``q`` (the first contact, or none).

        The planner moves the robot with its fingers open; this checks the sweep between open and
        closed, which neither end shows: a hinged finger swings lower and wider on its way, and a finger
        opening inside a channel meets the channel's walls. Each link the finger joints move is tested
        against the cell (stations, machines, parts lying in it, the other robots) at
        :data:`FINGER_SWEEP` positions; the parts in ``ignore`` (the one the fingers hold or let go)
        and the held part are left out. The fingers are open again afterwards.
        """
        import pybullet as p

        rb = self.robot
        if not rb.finger_joints:
            return []
        self.kin.set(q)
        ignored = {self.obstacles[n] for n in ignore if n in self.obstacles}
        bodies = [b for b in list(self.bodies.static.values()) + list(self.obstacles.values()) if b not in ignored]
        bodies += sorted(self._other_robots)
        opened, closed = np.asarray(rb.finger_open, float), np.asarray(rb.finger_closed, float)
        try:
            for s in np.linspace(0.0, 1.0, FINGER_SWEEP):
                for j, v in zip(*rb.finger_targets(list(opened + s * (closed - opened)))):
                    p.resetJointState(rb.body, j, v, physicsClientId=self.client)
                for link in rb.finger_parts or rb.finger_links:
                    for body in bodies:
                        limit = max(clearance, self.robot_clearance) if body in self._other_robots else clearance
                        pts = p.getClosestPoints(rb.body, body, max(limit, 0.0) + 1e-3, linkIndexA=link,
                                                 physicsClientId=self.client)
                        hit = min(pts, key=lambda pt: pt[8], default=None)
                        if hit is not None and hit[8] < limit:
                            return [Contact(self.name(rb.body, link), self.name(body, hit[4]), float(hit[8]))]
        finally:
            for j, v in zip(*rb.finger_targets(rb.finger_open)):
                p.resetJointState(rb.body, j, v, physicsClientId=self.client)
        return []

    def close(self) -> None:
        import pybullet as p

        if self.client >= 0:
            p.disconnect(physicsClientId=self.client)
            self.client = -1


def _bisection_order(n: int) -> List[int]:
    out, seen = [n], {0, n}
    queue = [(0, n)]
    while queue:
        lo, hi = queue.pop(0)
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        if mid not in seen:
            out.append(mid)
            seen.add(mid)
        queue += [(lo, mid), (mid, hi)]
    return out


def _plain_box(shape: Any) -> bool:
    """A box the fast backend models exactly: a size, or a Geometry that is a box with no features."""
    if shape is None or isinstance(shape, (list, tuple)):
        return True
    return (getattr(shape, "box", None) is not None and not getattr(shape, "features", None)
            and getattr(shape, "mesh", None) is None and getattr(shape, "cylinder", None) is None)
