"""A compiled collision backend (pinocchio + coal) built once from a :class:`CollisionWorld`.

Why: the PyBullet check costs ~50 us per configuration from Python (joint resets, a
full-world contact pass, a Python loop over contact points). Here one configuration
is one C++ call (forward kinematics, geometry placements, the pair tests with an
early exit), and the scene is read from the very PyBullet world the reference check
uses, so both see the same geometry:

- every body's collision shapes come from ``getCollisionShapeData`` (boxes,
  cylinders, spheres, capsules, meshes by file and scale as convex hulls, as
  PyBullet itself treats URDF meshes);
- the planning robot's kinematics come from the URDF the builder loaded
  (:func:`anycell.sim.builder.robot_urdf`), fixed at the robot's base pose; each
  shape's offset in its link frame is measured once in PyBullet, so inertial
  frames and mesh offsets are handled whatever the URDF says;
- the allowed pairs mirror PyBullet's filters: parent/child links, the world's
  permanent self contacts, the robot base on the statics, the held part on the
  tool, obstacles among themselves and the statics, and ``ignore``d obstacles;
  robot self pairs proven never within one of :data:`APART_BANDS` are left out at clearances
  below that band (:meth:`FastCollision._prove_apart`), and so are a held part's pairs with the
  wrist links (:meth:`FastCollision._held_apart`);
- the scene is expressed in the planning robot's base frame (pinocchio's root), so a
  robot need not stand at the world origin;
- other robots of the cell are static geometry at their current joint positions
  (:meth:`FastCollision.refresh_robots` re-reads them after the planner moves them).
  Their own self contacts and their contacts with the statics are not the planning
  robot's business and are not checked (the PyBullet path skips them too).

One check is four compiled calls (:class:`_Check`): place what moves with the arm, box it, test
those boxes against the still cell's (computed once per scene) and against each other, and run
coal's narrow phase on the overlapping pairs that are not proven apart, stopping at the first
collision. Objects are ordered so that the pairs found in collision most often are tested first.
The proofs and tables are cached per robot model in bounded LRU caches (:class:`_LRU`).

A pair is in collision when its distance is below the clearance (coal's
``security_margin``, which may be negative: touching allowed). A pair between the
planning robot (or its held part) and another robot keeps the larger of the clearance
and ``safety.robot_margin`` plus slack (:attr:`CollisionWorld.robot_clearance`), as the
PyBullet path does. Distances within a
floating-point hair of the clearance may be judged differently by Bullet's and
coal's GJK; the tests bound that band.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from typing import (TYPE_CHECKING, Any, Dict, FrozenSet, Generic, Iterable, List, NamedTuple, Optional, Sequence,
                    Tuple, TypeVar)

import numpy as np

from anycell.geometry import Pose

from .kinematics import JointVector, pose_to_matrix, rotation_matrix

if TYPE_CHECKING:  # pragma: no cover
    from .collision import CollisionWorld, Contact, Held

log = logging.getLogger(__name__)

#: The owner body recorded for the held part (named from the part held at query time).
HELD_BODY = -2

#: Set to ``pybullet`` to keep the PyBullet reference check (benchmarks' "before", debugging);
#: unset or ``fast``: this backend, the default (PyBullet answers only where it cannot model the scene).
BACKEND_ENV = "ANYCELL_COLLISION"

#: How far pinocchio's forward kinematics may stray from PyBullet's before the backend refuses (m;
#: PyBullet rounds some URDF origins to about a micron).
FK_TOLERANCE = 1e-5

#: Bullet's collision margin on a URDF mesh's convex hull (``gUrdfDefaultCollisionMargin``): PyBullet's
#: hulls are this much fatter than the mesh, so its distances are this much shorter per mesh in a pair.
MESH_MARGIN = 0.001


#: m: robot link pairs proven never nearer than this (over every joint value the URDF allows) are left out of
#: the checks at clearances below it (see :meth:`FastCollision._prove_apart`).
APART_BAND = 0.02

#: m: the bands a pair is tried at, widest first: a pair that comes within 2 cm but never within 8 mm (the
#: iiwa's forearm and flange, the UR arm's wrist links) is still left out at the free-move clearance (4 mm
#: plus Bullet's 1 mm hull margin on each mesh).
APART_BANDS = (APART_BAND, 0.008)

#: Joint-space boxes one pair's proof may evaluate before it gives up (the pair is then checked as usual).
APART_BUDGET = 3000

#: The budgets of the proofs at each band of :data:`APART_BANDS`, narrowest band first: the narrow band is
#: the one every free move checks at, and pairs that nearly reach it need many boxes (the UR arm's wrist 1
#: and wrist 3 links: about 20000, 0.1 s).
APART_BUDGETS = (60000, APART_BUDGET)

#: Random configurations sampled once to order the checks (:meth:`FastCollision._reorder`).
COUNT_SAMPLES = 200

#: The budgets of the proofs between a held part and the robot's links (:meth:`FastCollision._held_apart`).
HELD_BUDGETS = (3000, 1000)

#: Cells per joint of the table of distance bounds over two joints (:meth:`FastCollision._joint_table`).
TABLE_CELLS = 64

#: How many robot models (with their tool state and joint domain) the proof and table caches keep.
MODEL_CACHE_SIZE = 32

#: How many (robot model, held part, robot shape) proofs the held-part cache keeps: a robot has 10-20 shapes,
#: so this is some 50-100 parts per robot model.
HELD_CACHE_SIZE = 1024

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A mapping that keeps its ``size`` most recently used entries, safe to share between threads.

    Why an LRU and not a plain size cap: the caches below hold proofs that are costly to redo (a
    robot's self pairs: up to a few seconds; a held part: tens of milliseconds) and are shared by
    every world of the process. A long-running cell sees many held parts over its jobs but uses a
    few at a time: keeping the most recently used ones keeps the working set (a cap that stopped
    adding, or dropped everything, would make every new part or every part again pay its proof).
    An evicted entry is only recomputed the next time it is asked for: the proofs are deterministic,
    so eviction changes what a check costs, never its verdict. Worlds live in several threads (each
    robot's planner), hence the lock; a proof runs outside it (two threads may both compute one).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an LRU cache keeps at least one entry")
        self.size = size
        self._data: "OrderedDict[K, V]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: Any = None) -> Any:  # noqa: ANN401 - V or the default
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


#: Sentinel for "not cached" (None is a value the caches hold: no table, no band proven).
_MISSING = object()

#: Tables of distance bounds per robot model (:class:`_Table`, or None where no pair group fits).
_TABLE_CACHE: "_LRU[Tuple, Optional[_Table]]" = _LRU(MODEL_CACHE_SIZE)

#: Bands proven between a held part and a robot shape, per robot model, part and shape.
_HELD_CACHE: "_LRU[Tuple, Optional[float]]" = _LRU(HELD_CACHE_SIZE)

#: Proven pairs per robot model and tool state (the proof depends on nothing else), shared by all worlds.
_APART_CACHE: "_LRU[Tuple, Dict[Tuple[int, int], float]]" = _LRU(MODEL_CACHE_SIZE)


class Unsupported(Exception):
    """The scene holds something this backend cannot model (the caller falls back to PyBullet)."""


def available() -> Optional[str]:
    """None when pinocchio and coal import, else why not."""
    try:
        import coal  # noqa: F401
        import pinocchio  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the venv
        return f"pinocchio/coal not installed ({exc})"
    return None


def _matrix(pos: Sequence[float], quat: Sequence[float]) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation_matrix(quat)
    t[:3, 3] = pos
    return t


def _hull(points: np.ndarray):  # noqa: ANN202 - coal.ConvexBase
    import coal

    pts = coal.StdVec_Vec3s()
    for v in points:
        pts.append(np.asarray(v, dtype=float))
    return coal.Convex.convexHull(pts, False, "Qt")


def _obj_parts(path: str) -> List[np.ndarray]:
    """The vertices each object (``o``/``g``) of a Wavefront file uses, in file order."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    verts: List[List[float]] = []
    parts: List[set] = [set()]
    for line in lines:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "v" and len(tok) >= 4:
            verts.append([float(t) for t in tok[1:4]])
        elif tok[0] in ("o", "g") and parts[-1]:
            parts.append(set())
        elif tok[0] == "f":
            for t in tok[1:]:
                i = int(t.split("/")[0])
                parts[-1].add(i - 1 if i > 0 else len(verts) + i)
    arr = np.asarray(verts, dtype=float)
    return [arr[sorted(ix)] for ix in parts if len(ix) >= 4]


@functools.lru_cache(maxsize=256)
def _fractions(n: int) -> np.ndarray:
    """k / n for k in :func:`anycell.planners.collision._bisection_order` (n), as a column."""
    from .collision import _bisection_order

    out = np.asarray(_bisection_order(n), float)[:, None] / n
    out.flags.writeable = False
    return out


def _points(geom: Any) -> Optional[np.ndarray]:  # noqa: ANN401 - pinocchio.GeometryObject
    """A convex hull's vertices in its joint's frame (None for other shapes)."""
    import coal

    shape = geom.geometry
    if not isinstance(shape, coal.ConvexBase) or shape.num_points == 0:
        return None
    local = np.asarray([shape.point(i) for i in range(shape.num_points)], float)
    return local @ np.asarray(geom.placement.rotation, float).T + np.asarray(geom.placement.translation, float)


def _fixed_axis_distance(model: Any, joint: int, geom: Any) -> float:  # noqa: ANN401 - pinocchio objects
    """How far the farthest point of ``geom`` lies from the axis of ``joint``, ``geom`` being fixed in the frame of
    the joint's parent (its points and the axis in that frame); inf when the joint is not a plain revolute one."""
    jm = model.joints[joint]
    axis = _revolute_axis(jm.shortname(), tuple(np.asarray(jm.createData().S, float).ravel()))
    if axis is None:
        return float("inf")
    place = model.jointPlacements[joint]
    origin = np.asarray(place.translation, float)
    direction = np.asarray(place.rotation, float) @ axis
    points = _points(geom)
    if points is None:
        geom.geometry.computeLocalAABB()
        centre = np.asarray(geom.placement.act(np.asarray(geom.geometry.aabb_center, float)), float)
        rel = np.atleast_2d(centre - origin)
        return float(np.linalg.norm(rel - np.outer(rel @ direction, direction), axis=1).max()
                     + float(geom.geometry.aabb_radius))
    rel = points - origin
    return float(np.linalg.norm(rel - np.outer(rel @ direction, direction), axis=1).max())


def _axis_distance(joint: Any, points: np.ndarray) -> float:  # noqa: ANN401 - pinocchio.JointModel
    """How far the farthest of ``points`` (rows, in the joint's frame) lies from a revolute joint's axis: a turn
    by d moves each point at most d times its distance. From the joint's origin when the joint is not a plain
    revolute one."""
    pts = np.atleast_2d(np.asarray(points, float))
    axis = _revolute_axis(joint.shortname(), tuple(np.asarray(joint.createData().S, float).ravel()))
    if axis is None:
        return float(np.linalg.norm(pts, axis=1).max())
    return float(np.linalg.norm(pts - np.outer(pts @ axis, axis), axis=1).max())


@functools.lru_cache(maxsize=64)
def _revolute_axis(kind: str, motion: Tuple[float, ...]) -> Optional[np.ndarray]:  # noqa: ARG001 - part of the key
    """A revolute joint's unit axis from its motion subspace (linear part first), or None for another joint."""
    s = np.asarray(motion, float)
    if s.shape != (6,) or np.linalg.norm(s[:3]) > 1e-9 or abs(np.linalg.norm(s[3:]) - 1.0) > 1e-9:
        return None
    return s[3:]


def _se3(t: np.ndarray):  # noqa: ANN202 - pinocchio.SE3
    import pinocchio as pin

    return pin.SE3(np.ascontiguousarray(t[:3, :3]), np.ascontiguousarray(t[:3, 3]))


class FastCollision:
    """The scene of one :class:`CollisionWorld` in pinocchio/coal; queries mirror the world's."""

    def __init__(self, world: "CollisionWorld") -> None:
        import pinocchio as pin
        import pybullet as p

        from anycell.sim.builder import robot_urdf

        self.world = world
        self.client = world.client
        rb = world.robot
        self.body = rb.body
        self.model = pin.buildModelFromUrdf(robot_urdf(rb.config))
        self.data = self.model.createData()
        # pinocchio's model is rooted at the robot's base; the scene is expressed in that frame too
        # (everything not on the robot is placed by base^-1 @ world pose), so the robot stands where it does
        self.base = _matrix(rb.config.base.position, rb.config.base.quaternion)
        self._base_inv = np.linalg.inv(self.base)
        self._mesh_cache: Dict[Tuple[str, Tuple[float, ...]], List[Any]] = {}
        # joint q indices: the arm's joints by name, the other movable joints where PyBullet holds them
        n = p.getNumJoints(self.body, physicsClientId=self.client)
        self._q0 = pin.neutral(self.model)
        self._arm_idx: List[int] = []
        self._link_frame: Dict[int, int] = {}
        for j in range(n):
            info = p.getJointInfo(self.body, j, physicsClientId=self.client)
            jname, jtype, child = info[1].decode(), info[2], info[12].decode()
            if not self.model.existFrame(child):
                raise Unsupported(f"link '{child}' not in pinocchio's model")
            self._link_frame[j] = self.model.getFrameId(child)
            if jtype == p.JOINT_FIXED:
                continue
            if not self.model.existJointName(jname):
                raise Unsupported(f"joint '{jname}' not in pinocchio's model")
            jm = self.model.joints[self.model.getJointId(jname)]
            if jm.nq != 1:
                raise Unsupported(f"joint '{jname}' has {jm.nq} coordinates (continuous or free joint)")
            if j in rb.arm_joints:
                self._arm_idx.append(jm.idx_q)
            else:
                self._q0[jm.idx_q] = p.getJointState(self.body, j, physicsClientId=self.client)[0]
        order = {j: k for k, j in enumerate(rb.arm_joints)}
        if len(self._arm_idx) != len(rb.arm_joints):
            raise Unsupported("the arm's joints do not match pinocchio's model")
        # arm_idx in arm_joints order (the loop above visits joints in URDF order, the same order)
        self._arm_idx = [self._arm_idx[order[j]] for j in rb.arm_joints]
        first = self._arm_idx[0]
        contiguous = self._arm_idx == list(range(first, first + len(self._arm_idx)))
        self._arm_sel = slice(first, first + len(self._arm_idx)) if contiguous else self._arm_idx
        root = p.getBodyInfo(self.body, physicsClientId=self.client)[0].decode()
        self._link_frame[-1] = self.model.getFrameId(root) if self.model.existFrame(root) else 0
        self._check_fk()
        self._robot_shapes = self._read_robot_shapes()
        self._filter = self._robot_filter()
        self._apart = self._prove_apart(robot_urdf(rb.config))
        self._table = self._joint_table()
        self._static_cache: Dict[int, List[Tuple[int, Any, Any]]] = {}
        self._held_key: Optional[Tuple] = None
        self._held_obj: Optional["Held"] = None
        self._last: Optional[Tuple[Any, ...]] = None   # what free() calls for the last settings
        self._variants: Dict[Optional[Tuple], Tuple[Any, ...]] = {}
        self._qbuf = self._q0.copy()
        self._place = pin.updateGeometryPlacements      # bound once: the per-check path makes no imports
        self._held_size: Optional[Tuple[float, ...]] = None
        self._held_pose: Optional[Tuple[float, ...]] = None
        self._counts: Dict[Tuple[int, int], int] = {}
        self._rebuild()
        self._counts = self._collision_counts()
        self._scene_changed()          # again, in the order the counts give

    # ------------------------------------------------------------------ reading the world
    def _q(self, q: JointVector) -> np.ndarray:
        out = self._q0.copy()
        out[self._arm_sel] = q
        return out

    def _link_world(self, link: int) -> np.ndarray:
        """A link's URDF frame in the world, from pinocchio (after forwardKinematics/updateFramePlacements)."""
        return self.base @ self.data.oMf[self._link_frame[link]].homogeneous

    def _check_fk(self) -> None:
        import pinocchio as pin
        import pybullet as p

        rb = self.world.robot
        rng = np.random.default_rng(11)
        saved = [p.getJointState(self.body, j, physicsClientId=self.client)[0] for j in rb.arm_joints]
        try:
            for _ in range(3):
                q = np.asarray(rb.lower) + (np.asarray(rb.upper) - np.asarray(rb.lower)) * rng.random(len(rb.lower))
                self.world.kin.set(q)
                pin.framesForwardKinematics(self.model, self.data, self._q(q))
                for link in self._link_frame:
                    if link < 0:
                        continue
                    st = p.getLinkState(self.body, link, computeForwardKinematics=True, physicsClientId=self.client)
                    err = np.abs(_matrix(st[4], st[5]) - self._link_world(link)).max()
                    if err > FK_TOLERANCE:
                        raise Unsupported(f"pinocchio's kinematics differ from PyBullet's by {err:.2e} at link {link}")
        finally:
            self.world.kin.set(saved)

    def _shape(self, data: Tuple, body: int, link: int, index: int) -> List[Tuple[Any, float]]:
        """The coal geometries for one ``getCollisionShapeData`` entry, each with Bullet's margin around it.

        A mesh is read from its file, one convex hull per object of an ``.obj`` (as PyBullet
        builds a compound of per-object hulls, e.g. for V-HACD decompositions); a mesh PyBullet
        made itself (a URDF cylinder becomes a hull, reported as ``unknown_file``) is rebuilt
        from the vertices ``getMeshData`` gives. ``body`` and ``link`` are the ones asked for: the
        object id ``getCollisionShapeData`` reports for a URDF link is not always its body's (0 was seen).
        """
        import coal
        import pybullet as p

        kind, dims, fname = data[2], data[3], data[4]
        if kind == p.GEOM_BOX:
            return [(coal.Box(*(float(d) for d in dims)), 0.0)]
        if kind == p.GEOM_SPHERE:
            return [(coal.Sphere(float(dims[0])), 0.0)]
        if kind == p.GEOM_CYLINDER:
            return [(coal.Cylinder(float(dims[1]), float(dims[0])), 0.0)]
        if kind == p.GEOM_CAPSULE:
            return [(coal.Capsule(float(dims[1]), float(dims[0])), 0.0)]
        if kind == p.GEOM_MESH:
            path = fname.decode() if isinstance(fname, bytes) else str(fname)
            if path == "unknown_file":
                return [(self._hull_from_bullet(body, link, index, _matrix(data[5], data[6])), MESH_MARGIN)]
            key = (path, tuple(float(d) for d in dims))
            parts = _obj_parts(path) if path.lower().endswith(".obj") and key not in self._mesh_cache else []
            if len(parts) > 1:
                self._mesh_cache[key] = [_hull(v * np.asarray(dims, dtype=float)) for v in parts]
            if key not in self._mesh_cache:
                try:
                    bvh = coal.MeshLoader().load(path, np.asarray(dims, dtype=float))
                except Exception as exc:  # noqa: BLE001 - any loader failure means "not supported"
                    raise Unsupported(f"cannot load mesh '{path}': {exc}") from exc
                bvh.buildConvexHull(True, "Qt")
                self._mesh_cache[key] = [bvh.convex]
            return [(hull, MESH_MARGIN) for hull in self._mesh_cache[key]]
        raise Unsupported(f"collision shape type {kind} (plane or height field)")

    def _hull_from_bullet(self, body: int, link: int, index: int, local: np.ndarray) -> Any:
        """The hull PyBullet made for a shape without a file, in the shape's own frame ``local``.

        ``getMeshData`` gives the vertices in the link's inertial frame with the shape's offset
        already applied (a URDF cylinder at z 0.045 comes back spanning z 0..0.09), while the caller
        places every shape by ``local``: they are moved back into the shape frame so it is not applied twice.
        """
        import pybullet as p

        if body not in {rb.body for rb in self.world.bodies.robots.values()}:
            # a compound of convex pieces (a part with holes): getMeshData can crash PyBullet on those
            raise Unsupported(f"body {body} has a mesh without a file (a compound of convex pieces)")
        _, vertices = p.getMeshData(body, link, collisionShapeIndex=index, physicsClientId=self.client)
        if len(vertices) < 4:
            raise Unsupported(f"body {body} link {link}: a mesh without a file or vertices")
        pts = np.asarray(vertices, dtype=float)
        inv = np.linalg.inv(local)
        return _hull(pts @ inv[:3, :3].T + inv[:3, 3])

    def _shapes_world(self, body: int, link: int) -> List[Tuple[Tuple[Any, float], np.ndarray]]:
        """The shapes of one body's link and their poses in the world (PyBullet's current state)."""
        import pybullet as p

        if link < 0:
            com = _matrix(*p.getBasePositionAndOrientation(body, physicsClientId=self.client))
        else:
            st = p.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=self.client)
            com = _matrix(st[0], st[1])
        out = []
        for k, d in enumerate(p.getCollisionShapeData(body, link, physicsClientId=self.client)):
            pose = com @ _matrix(d[5], d[6])
            out += [(part, pose) for part in self._shape(d, body, link, k)]
        return out

    def _read_robot_shapes(self) -> List[Tuple[int, Tuple[Any, float], np.ndarray]]:
        """(link, shape, pose in the link's URDF frame) for every collision shape of the planning robot."""
        import pinocchio as pin
        import pybullet as p

        q = [p.getJointState(self.body, j, physicsClientId=self.client)[0] for j in self.world.robot.arm_joints]
        pin.framesForwardKinematics(self.model, self.data, self._q(np.asarray(q)))
        out = []
        for link in [-1] + list(range(p.getNumJoints(self.body, physicsClientId=self.client))):
            inv = np.linalg.inv(self._link_world(link))
            for shape, world in self._shapes_world(self.body, link):
                out.append((link, shape, inv @ world))
        return out

    def _robot_filter(self) -> FrozenSet[Tuple[int, int]]:
        """Robot link pairs PyBullet never reports: parent/child links and the world's permanent contacts."""
        import pybullet as p

        pairs = set()
        for j in range(p.getNumJoints(self.body, physicsClientId=self.client)):
            parent = p.getJointInfo(self.body, j, physicsClientId=self.client)[16]
            pairs.add((min(parent, j), max(parent, j)))
        pairs |= {(min(a, b), max(a, b)) for a, b in self.world.ignored_self_pairs}
        return frozenset(pairs)

    # ------------------------------------------------------------------ pairs that can never meet
    def _self_pairs_model(self) -> Tuple[Any, List[Tuple[int, int]]]:
        """The robot's own geometry (indices as in every scene: robot shapes come first) and its checked pairs."""
        import pinocchio as pin

        gm = pin.GeometryModel()
        links: List[int] = []
        for link, shape, in_link in self._robot_shapes:
            frame = self.model.frames[self._link_frame[link]]
            gm.addGeometryObject(pin.GeometryObject(f"r{len(links)}", frame.parentJoint,
                                                    _se3(frame.placement.homogeneous @ in_link), shape[0]))
            links.append(link)
        pairs = [(i, k) for i in range(len(links)) for k in range(i + 1, len(links))
                 if links[i] != links[k] and (min(links[i], links[k]), max(links[i], links[k])) not in self._filter]
        for i, k in pairs:
            gm.addCollisionPair(pin.CollisionPair(i, k))
        return gm, pairs

    def _prove_apart(self, urdf: str) -> Dict[Tuple[int, int], float]:
        """Robot self pairs (geometry indices) that no joint values within the joints' domain bring within a band
        (the widest of :data:`APART_BANDS` proven, by pair).

        Why: most of a check's time is the narrow phase on robot link pairs whose boxes overlap in
        nearly every configuration (links two joints apart near the base or wrist) although the
        shapes never come near. MoveIt's setup assistant drops "never in collision" pairs after
        random sampling; sampling proves nothing, so here each pair gets a branch-and-bound proof
        over the joints between its two links (at most three, the others cannot change the pair's
        relative pose): a box of joint values is cleared when the distance at its centre, less the
        farthest any point of the shapes can move inside the box (each revolute joint moves a point
        at most its half-width times the point's distance from the joint's axis; a prismatic one its
        half-width), is at least the band. A pair that is not cleared within its budget of boxes is
        checked as before. The domain (:meth:`_joint_domain`) is the URDF's limits and the cell's,
        whichever reach further, plus 0.05 rad, which contains every configuration the planner
        accepts; fingers and other joints outside the arm are held where
        they are in every query, as here.
        """
        lo_all, hi_all = self._joint_domain()
        # the domain is part of the key: a cell may widen a joint's range beyond the URDF's
        key = (urdf, self._q0.tobytes(), tuple(self._arm_idx), len(self._robot_shapes), lo_all.tobytes(),
               hi_all.tobytes())
        self._proof_key = key
        cached = _APART_CACHE.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        gm, pairs = self._self_pairs_model()
        proven: Dict[Tuple[int, int], float] = {}
        for ga, gb in pairs:
            band = self._prove_two(gm, ga, gb, APART_BUDGETS)
            if band is not None:
                proven[(ga, gb)] = band
        _APART_CACHE[key] = proven
        log.debug("robot '%s': %d of %d self pairs proven apart (%s)", self.world.robot.config.id,
                  len(proven), len(pairs), ", ".join(f"{sum(b == x for b in proven.values())} by {x * 1000:.0f} mm"
                                                    for x in APART_BANDS))
        return proven

    def _joint_table(self) -> Optional["_Table"]:
        """Lower bounds on the distances of the robot self pairs that only two joints move, per cell of a grid.

        Why: some pairs come near each other only in part of the joint space (the wrist links two joints
        apart: the Panda's fifth link against its seventh and the hand, the iiwa's fifth against its
        seventh), so no proof drops them, yet their boxes overlap in nearly every check. The pairs of the
        two-joint group with the most pairs get a TABLE_CELLS x TABLE_CELLS grid over those joints' domain;
        in each cell, the distance at its centre less the farthest the pair can move inside it (the
        proof's bound) bounds the pair's distance from below. A check whose two joint values fall in a
        cell where every pair of the group keeps its margin runs without them (:meth:`free`); a value
        outside the grid (a joint turning further than the table covers) runs the full check.
        """
        import pinocchio as pin

        key = self._proof_key
        cached = _TABLE_CACHE.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        gm, pairs = self._self_pairs_model()
        groups: Dict[Tuple[int, ...], List[Tuple[int, int, np.ndarray]]] = {}
        boxes: Dict[Tuple[int, ...], Tuple[np.ndarray, np.ndarray]] = {}
        for ga, gb in pairs:
            if (ga, gb) in self._apart:
                continue
            domain = self._pair_domain(gm, ga, gb)
            if domain is None or len(domain[0]) != 2 or len(set(domain[0])) != 2:
                continue
            joints, rates, (lo, hi) = domain
            if np.any(hi - lo > 2 * np.pi + 0.2):
                continue
            order = tuple(sorted(joints))
            flip = list(joints) != list(order)
            groups.setdefault(order, []).append((ga, gb, rates[::-1] if flip else rates))
            boxes[order] = (lo[::-1], hi[::-1]) if flip else (lo, hi)
        table = None
        if groups:
            order = max(groups, key=lambda j: (len(groups[j]), j))
            lo, hi = boxes[order]
            n = TABLE_CELLS
            width = (hi - lo) / n
            data = self.model.createData()
            bounds = np.empty((n * n, len(groups[order])))
            q = self._q0.copy()
            for p, (ga, gb, rates) in enumerate(groups[order]):
                two = FastCollision._permuted(gm, {ga: 0, gb: 1})
                two_data = pin.GeometryData(two)
                slack = float(np.sum(width / 2 * rates))
                for cell in range(n * n):
                    q[list(order)] = lo + width * (np.asarray(divmod(cell, n)) + 0.5)
                    pin.updateGeometryPlacements(self.model, data, two, two_data, q)
                    bounds[cell, p] = pin.computeDistance(two, two_data, 0).min_distance - slack
            table = _Table(order, (float(lo[0]), float(lo[1])), (float(n / (hi[0] - lo[0])), float(n / (hi[1] - lo[1]))),
                           n, tuple((ga, gb) for ga, gb, _ in groups[order]), bounds)
        _TABLE_CACHE[key] = table
        return table

    def _held_apart(self, gm: Any, link: int, held: int) -> Optional[float]:  # noqa: ANN401
        """The band the held part (object ``held`` of ``gm``) is proven to keep from robot shape ``link`` (an index
        of :attr:`_robot_shapes`), or None; once per robot, part and shape (the planner holds few parts).

        Why: a part at the TCP sits in the boxes of the wrist links in most configurations without coming
        near them (the iiwa's fifth and sixth links: 70-80 % of checks), and the proof runs over the one
        or two joints between them, with small budgets because it runs when a new part is first held.
        """
        key = (self._proof_key, self._held_size, self._held_pose, link)   # the pose in the flange frame (with the TCP)
        band = _HELD_CACHE.get(key, _MISSING)
        if band is _MISSING:
            band = self._prove_two(gm, link, held, HELD_BUDGETS)
            _HELD_CACHE[key] = band
        return band  # type: ignore[no-any-return]

    def _joint_domain(self) -> Tuple[np.ndarray, np.ndarray]:
        """The domain of each arm joint: the URDF's limits and the cell's, whichever reach further, plus a pad."""
        lo_all, hi_all = self.model.lowerPositionLimit.copy(), self.model.upperPositionLimit.copy()
        for n, i in enumerate(self._arm_idx):
            lo_all[i] = min(lo_all[i], float(self.world.kin.lower[n])) - 0.05
            hi_all[i] = max(hi_all[i], float(self.world.kin.upper[n])) + 0.05
        return lo_all, hi_all

    def _prove_two(self, gm: Any, ga: int, gb: int, budgets: Sequence[int]) -> Optional[float]:  # noqa: ANN401
        """The widest of :data:`APART_BANDS` objects ``ga`` and ``gb`` of ``gm`` are proven to keep, or None.

        The narrowest band first, with the first budget (it is the one free moves need; a pair that comes
        within it fails fast), then the wider ones, each with the next budget, while they hold.
        """
        import pinocchio as pin

        domain = self._pair_domain(gm, ga, gb)
        if domain is None:
            return None
        joints, rates, box = domain
        two = FastCollision._permuted(gm, {ga: 0, gb: 1})     # just the pair: placing it is cheaper
        two_data = pin.GeometryData(two)
        data = self.model.createData()
        out = None
        for band, budget in zip(sorted(APART_BANDS), budgets):
            if not self._prove_pair(self.model, data, two, two_data, 0, joints, rates, box, band, budget):
                break
            out = band
        return out

    def _pair_domain(self, gm: Any, ga: int, gb: int  # noqa: ANN401 - pinocchio.GeometryModel
                     ) -> Optional[Tuple[List[int], np.ndarray, Tuple[np.ndarray, np.ndarray]]]:
        """The arm joints between two objects of ``gm`` (q indices), how far a unit of each moves a point of
        the two at most, and the box of their values; None when more than three joints or an unbounded one."""
        model = self.model
        lo_all, hi_all = self._joint_domain()
        arm_q = set(self._arm_idx)
        sa = list(model.supports[gm.geometryObjects[ga].parentJoint])
        sb = list(model.supports[gm.geometryObjects[gb].parentJoint])
        common = 0
        while common < min(len(sa), len(sb)) and sa[common] == sb[common]:
            common += 1
        joints: List[int] = []     # q indices of the arm joints between the two shapes
        rates: List[float] = []    # how far a unit of each moves a point of the shapes, at most
        lo: List[float] = []
        hi: List[float] = []
        sides = ((sa[common:], ga, gb), (sb[common:], gb, ga))
        for side, g, other in sides:
            geom = gm.geometryObjects[g]
            geom.geometry.computeLocalAABB()
            # from the shape's joint up to the common ancestor: the reach from each joint's origin grows;
            # (centre, radius): a ball in the joint's frame holding everything below it, whatever its joints
            centre = np.asarray(geom.placement.act(np.asarray(geom.geometry.aabb_center, float)), float)
            radius = float(geom.geometry.aabb_radius)
            points = _points(geom)         # a hull's own vertices bound its first joint's rate more tightly
            reach = float(np.linalg.norm(centre)) + radius if points is None else float(
                np.linalg.norm(points, axis=1).max())
            for j in reversed(side):
                jm = model.joints[j]
                prismatic = jm.shortname().startswith("JointModelP")
                travel = float(max(abs(lo_all[jm.idx_q]), abs(hi_all[jm.idx_q]))) if prismatic else 0.0
                if jm.idx_q in arm_q:
                    a, b = float(lo_all[jm.idx_q]), float(hi_all[jm.idx_q])
                    if not prismatic and (not (np.isfinite(a) and np.isfinite(b)) or b - a > 2 * np.pi):
                        a, b = -np.pi, np.pi     # a full turn covers every value of a periodic joint
                    joints.append(jm.idx_q)
                    if prismatic:
                        rates.append(1.0)
                    elif points is not None:
                        rates.append(_axis_distance(jm, points))
                    else:
                        rates.append(min(reach, _axis_distance(jm, centre) + radius))
                    if j == side[0] and not prismatic and len(sides[1 if g == ga else 0][0]) == 0:
                        # the other shape is fixed in the frame this joint turns in: turning this side by d
                        # moves the pair as much as turning the other shape by -d, whichever bound is smaller
                        rates[-1] = min(rates[-1], _fixed_axis_distance(model, j, gm.geometryObjects[other]))
                    lo.append(a)
                    hi.append(b)
                centre = np.asarray(model.jointPlacements[j].translation, float)
                radius = reach + travel
                points = None
                reach += float(np.linalg.norm(centre)) + travel
        if len(joints) > 3 or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.isfinite(rates).all()):
            return None
        return joints, np.asarray(rates), (np.asarray(lo), np.asarray(hi))

    def _prove_pair(self, model: Any, data: Any, gm: Any, gd: Any, k: int, joints: List[int],  # noqa: ANN401
                    rate: np.ndarray, box: Tuple[np.ndarray, np.ndarray], band: float, budget: int) -> bool:
        """Whether pair ``k`` of ``gm`` stays at least ``band`` apart over the joint box (branch and bound).

        A box is cleared when the distance at its centre, less the farthest a point of the two shapes
        can move inside it (``rate`` per unit of each joint in ``joints``), is at least ``band``; a
        centre nearer than ``band`` is a counterexample; other boxes are halved along their widest
        joint (weighted by rate). False too when the pair needs more than ``budget`` boxes.
        """
        import pinocchio as pin

        place, distance = pin.updateGeometryPlacements, pin.computeDistance
        lo, hi = box[0][None, :], box[1][None, :]
        evals = 0
        while len(lo):                   # breadth first: one numpy pass per level, two pinocchio calls per box
            evals += len(lo)
            if evals > budget:
                return False
            qs = np.repeat(self._q0[None, :], len(lo), axis=0)
            qs[:, joints] = (lo + hi) / 2
            d = np.empty(len(lo))
            for i, q in enumerate(qs):
                place(model, data, gm, gd, q)
                d[i] = distance(gm, gd, k).min_distance
            if (d < band).any():
                return False             # a counterexample
            keep = d - ((hi - lo) / 2 * rate).sum(axis=1) < band
            lo, hi = lo[keep], hi[keep]
            if not len(lo):
                return True
            if not joints:
                return False
            rows = np.arange(len(lo))
            m = np.argmax((hi - lo) * rate, axis=1)
            mid = (lo[rows, m] + hi[rows, m]) / 2
            left_hi, right_lo = hi.copy(), lo.copy()
            left_hi[rows, m] = mid
            right_lo[rows, m] = mid
            lo, hi = np.vstack([lo, right_lo]), np.vstack([left_hi, hi])
        return True

    # ------------------------------------------------------------------ the geometry model
    def _rebuild(self) -> None:
        """Build the geometry model: robot shapes on their joints, everything else on the universe."""
        import coal  # noqa: F401 - shapes are coal objects
        import pinocchio as pin

        gm = pin.GeometryModel()
        self._owner: List[Tuple[int, int]] = []   # (PyBullet body, link) of each geometry object
        self._margin: List[float] = []            # Bullet's margin around each geometry object
        robot_objs: List[int] = []
        rb = self.world.robot
        for link, shape, in_link in self._robot_shapes:
            frame = self.model.frames[self._link_frame[link]]
            placement = frame.placement.homogeneous @ in_link
            gid = gm.addGeometryObject(pin.GeometryObject(f"r{len(self._owner)}", frame.parentJoint, _se3(placement),
                                                          shape[0]))
            self._owner.append((self.body, link))
            self._margin.append(shape[1])
            robot_objs.append(gid)
        tool = set(rb.tool_links + [rb.flange_link])
        held_obj: Optional[int] = None
        if self._held_size is not None and self._held_pose is not None:
            flange = self.model.frames[self._link_frame[rb.flange_link]]
            placement = flange.placement.homogeneous @ np.asarray(self._held_pose).reshape(4, 4)
            held_obj = gm.addGeometryObject(pin.GeometryObject(
                "held", flange.parentJoint, _se3(placement), coal.Box(*self._held_size)))
            self._owner.append((HELD_BODY, -1))
            self._margin.append(0.0)
        statics: List[int] = []
        for body in self.world.bodies.static.values():
            statics += self._add_static(gm, body, cache=True)
        others: List[int] = []
        for orb in self.world.bodies.robots.values():
            if orb.body != self.body:
                others += self._add_static(gm, orb.body, cache=True)
        obstacle_objs: Dict[str, List[int]] = {}
        for name, body in self.world.obstacles.items():
            obstacle_objs[name] = self._add_static(gm, body, cache=False)
        base_links = set(rb.base_links)
        for i in robot_objs:                       # robot against itself
            la = self._owner[i][1]
            for k in robot_objs:
                lb = self._owner[k][1]
                if k <= i or la == lb or (min(la, lb), max(la, lb)) in self._filter:
                    continue
                gm.addCollisionPair(pin.CollisionPair(i, k))
        apart = dict(self._apart)                  # robot shapes come first: their indices here are the proof's
        if held_obj is not None:                   # held part against the robot but its tool
            for i in robot_objs:
                if self._owner[i][1] not in tool:
                    gm.addCollisionPair(pin.CollisionPair(i, held_obj))
                    band = self._held_apart(gm, i, held_obj)
                    if band is not None:
                        apart[(i, held_obj)] = band
        world_objs = statics + others + [g for gs in obstacle_objs.values() for g in gs]
        for i in robot_objs:                       # robot against the cell
            on_base = self._owner[i][1] in base_links
            for k in world_objs:
                if on_base and k in statics:
                    continue
                gm.addCollisionPair(pin.CollisionPair(i, k))
        if held_obj is not None:                   # held part against the cell
            for k in world_objs:
                gm.addCollisionPair(pin.CollisionPair(held_obj, k))
        # what moves with the arm (not the robot's base link, fixed to pinocchio's root), the cell, obstacles
        obstacles = {g for gs in obstacle_objs.values() for g in gs}
        groups = {g: 0 if gm.geometryObjects[g].parentJoint != 0 else 2 if g in obstacles else 1
                  for g in range(gm.ngeoms)}
        moving = sum(1 for v in groups.values() if v == 0)
        new = self._reorder(gm, groups)
        self.gm = self._permuted(gm, new, first=moving)
        self._gm_moving = self._moving_model(self.gm, moving)
        self._gm_still = self._still_only(self.gm)
        self._owner = [self._owner[g] for g in sorted(new, key=new.__getitem__)]
        self._margin = [self._margin[g] for g in sorted(new, key=new.__getitem__)]
        self._other_objs = frozenset(new[g] for g in others)
        self._obstacle_objs = {name: frozenset(new[g] for g in gs) for name, gs in obstacle_objs.items()}
        self._apart_gm = {(min(new[a], new[b]), max(new[a], new[b])): band for (a, b), band in apart.items()}
        self._table_gm = () if self._table is None else tuple(
            (min(new[a], new[b]), max(new[a], new[b])) for a, b in self._table.pairs)
        self._gdata: Dict[Tuple[float, FrozenSet[str]], _Check] = {}
        self._variants[self._held_key] = (self.gm, self._owner, self._margin, self._obstacle_objs, self._gdata,
                                          self._other_objs, self._apart_gm, self._gm_moving, self._gm_still,
                                          self._table_gm)
        self._last = None

    def _reorder(self, gm: Any, groups: Dict[int, int]) -> Dict[int, int]:  # noqa: ANN401 - pinocchio.GeometryModel
        """Each geometry object's new index: what the robot carries first (its links, the held part; see
        :meth:`_moving_model`), then the cell's bodies, then obstacles; within each, the objects found in
        collision most often in :meth:`_collision_counts`' sample first.

        Why: coal's naive broad phase tests pairs in object order and a check stops at the first collision,
        so a check in collision costs less when the pairs that collide most come first (e.g. the forearm
        against the table before the wrist against the forearm). Order changes cost, never a verdict.
        """
        counts = self._counts
        key = {g: (groups[g], -counts.get(self._owner[g], 0), g) for g in range(gm.ngeoms)}
        return {g: k for k, g in enumerate(sorted(range(gm.ngeoms), key=key.__getitem__))}

    @staticmethod
    def _permuted(gm: Any, new: Dict[int, int], first: int = 0) -> Any:  # noqa: ANN401 - pinocchio.GeometryModel
        """A copy of ``gm`` with object ``g`` at index ``new[g]`` (the objects ``new`` names) and the pairs among
        them (renumbered, in the same order, except that pairs among the new objects below ``first`` come first)."""
        import pinocchio as pin

        out = pin.GeometryModel()
        for g in sorted(new, key=new.__getitem__):
            obj = gm.geometryObjects[g]
            out.addGeometryObject(pin.GeometryObject(obj.name, obj.parentJoint, obj.placement, obj.geometry))
        pairs = [(min(new[p.first], new[p.second]), max(new[p.first], new[p.second]))
                 for p in gm.collisionPairs if p.first in new and p.second in new]
        for a, b in sorted(pairs, key=lambda ab: ab[1] >= first):    # stable: the order is kept within each part
            out.addCollisionPair(pin.CollisionPair(a, b))
        return out

    @staticmethod
    def _moving_model(gm: Any, n: int) -> Any:  # noqa: ANN401 - pinocchio.GeometryModel
        """The first ``n`` objects of ``gm`` (what the robot carries) and their pairs, which come first in ``gm``.

        Why: the per-check calls then place and box only these objects and walk only their pairs (pinocchio
        walks every pair of the model it is given to inflate the boxes), while indices of objects and pairs
        stay those of ``gm``, so the scene's GeometryData and the callback on ``gm`` serve both.
        """
        out = FastCollision._permuted(gm, {g: g for g in range(n)})
        if any(gm.geometryObjects[g].parentJoint == 0 for g in range(n)) or any(
                (a.first, a.second) != (b.first, b.second) for a, b in zip(out.collisionPairs, gm.collisionPairs)):
            raise Unsupported("the moving objects and their pairs do not come first in the geometry model")
        return out

    @staticmethod
    def _still_only(gm: Any) -> Any:  # noqa: ANN401 - pinocchio.GeometryModel
        """A copy of ``gm`` (same objects, shapes and pairs, in the same order) with the objects the robot
        carries left out of a broad phase built on it: the still cell's broad phase (:meth:`_Check._still`).

        The copies share their shapes with ``gm``, which pinocchio's broad-phase callback checks; the
        callback itself works on ``gm``, where every object takes part.
        """
        out = gm.copy()        # its own objects (their flags), the same shapes and pairs: 0.01 ms, not 0.4
        for obj in out.geometryObjects:
            obj.disableCollision = obj.parentJoint != 0
        return out

    def _collision_counts(self, samples: int = COUNT_SAMPLES) -> Dict[Tuple[int, int], int]:
        """How many of ``samples`` random arm configurations (a fixed seed) put each (body, link) in collision.

        Only an order for the checks comes of it (:meth:`_reorder`), never a verdict, so sampling is safe here.
        """
        import pinocchio as pin

        from .collision import FREE_CLEARANCE

        gd = self._configured(FREE_CLEARANCE, frozenset())
        rng = np.random.default_rng(5)
        lo, hi = np.asarray(self.world.kin.lower, float), np.asarray(self.world.kin.upper, float)
        counts: Dict[Tuple[int, int], int] = {}
        pairs = [(pair.first, pair.second) for pair in self.gm.collisionPairs]
        for _ in range(samples):
            pin.computeCollisions(self.model, self.data, self.gm, gd, self._q(lo + (hi - lo) * rng.random(len(lo))),
                                  False)
            for k, res in enumerate(gd.collisionResults):
                if gd.activeCollisionPairs[k] and res.isCollision():
                    for g in pairs[k]:
                        counts[self._owner[g]] = counts.get(self._owner[g], 0) + 1
        return counts

    def _use(self) -> None:
        """The scene for the current held part: built once per held part until the scene changes."""
        variant = self._variants.get(self._held_key)
        if variant is None:
            self._rebuild()
        else:
            (self.gm, self._owner, self._margin, self._obstacle_objs, self._gdata, self._other_objs,
             self._apart_gm, self._gm_moving, self._gm_still, self._table_gm) = variant
            self._last = None

    def _scene_changed(self) -> None:
        self._variants.clear()
        self._rebuild()

    def _add_static(self, gm, body: int, *, cache: bool) -> List[int]:  # noqa: ANN001 - pinocchio.GeometryModel
        """Add one body's shapes, fixed where PyBullet holds them now (read once when ``cache``).

        Placements are in the planning robot's base frame, the root of pinocchio's model: a robot whose
        base is not the world origin (a second robot of the cell, a turned UR) meets the cell where it is.
        """
        import pinocchio as pin
        import pybullet as p

        shapes = self._static_cache.get(body) if cache else None
        if shapes is None:
            shapes = [(link, _se3(self._base_inv @ world), shape)
                      for link in [-1] + list(range(p.getNumJoints(body, physicsClientId=self.client)))
                      for shape, world in self._shapes_world(body, link)]
            if cache:
                self._static_cache[body] = shapes
        ids = []
        for link, placement, shape in shapes:
            ids.append(gm.addGeometryObject(pin.GeometryObject(f"s{len(self._owner)}", 0, placement, shape[0])))
            self._owner.append((body, link))
            self._margin.append(shape[1])
        return ids

    def _scene(self, clearance: float, ignore: FrozenSet[str]) -> Tuple[Any, Any]:
        """(GeometryData, broad-phase manager) for one clearance and set of ignored obstacles, made once."""
        check = self._check(clearance, ignore)
        return check.gd, check.manager

    def _check(self, clearance: float, ignore: FrozenSet[str]) -> "_Check":
        """The compiled check for one clearance and set of ignored obstacles, made once per scene.

        The manager is coal's naive AABB pass (fastest here: about 20 objects), which pinocchio
        inflates by each pair's security margin, so a positive clearance is never lost in the broad phase.
        Pairs with another robot's links keep at least the robot clearance (``safety.robot_margin``).
        """
        key = (clearance, ignore)
        check = self._gdata.get(key)
        if check is None:
            check = _Check.make(self, self._configured(clearance, ignore))
            table = self._table_for(check)
            if table is not None:
                check = check._replace(table=table)
            self._gdata[key] = check
        return check

    def _configured(self, clearance: float, ignore: FrozenSet[str]) -> Any:  # noqa: ANN401
        """A GeometryData with every pair's margin for these settings and the pairs not to test deactivated
        (ignored obstacles', proven apart at this margin, and the pair indices in ``drop``)."""
        import pinocchio as pin

        gd = pin.GeometryData(self.gm)
        skip = frozenset().union(*(self._obstacle_objs.get(n, frozenset()) for n in ignore)) if ignore else ()
        robot_clear = max(clearance, float(self.world.robot_clearance))
        others, margin, apart = self._other_objs, self._margin, self._apart_gm
        deactivate = gd.deactivateCollisionPair
        # this runs at every scene change (a part placed, a robot moved): the loop is kept lean
        for k, (pair, req) in enumerate(zip(self.gm.collisionPairs, gd.collisionRequests)):
            a, b = pair.first, pair.second
            m = (robot_clear if a in others or b in others else clearance) + margin[a] + margin[b]
            req.security_margin = m
            req.break_distance = 0.0
            req.num_max_contacts = 1
            req.enable_contact = False       # a verdict, not contact points (contacts() measures distances)
            if (skip and (a in skip or b in skip)) or m <= apart.get((a, b), -np.inf):
                deactivate(k)                # ignored, or proven never this near (no test needed)
        return gd

    def _table_for(self, full: "_Check") -> Optional[Tuple[Any, ...]]:
        """What :meth:`free` needs to use :attr:`_table` in this scene: the two joints' q indices, the grid, which
        cells clear every active pair of the table's group at its margin here, and the check without them;
        None when no table, no active pair of its group, or no cell clears them.

        The check without them is ``full``'s GeometryData copied with those pairs switched off, over ``full``'s
        still broad phase: the table's pairs are among the robot's own moving links, so the still objects'
        boxes and margins are the same (building them again cost half of a scene change).
        """
        table = self._table
        if table is None:
            return None
        gd = full.gd
        index = {(p.first, p.second): k for k, p in enumerate(self.gm.collisionPairs)}
        ks = [index.get(pair) for pair in self._table_gm]
        live = [(p, k) for p, k in enumerate(ks) if k is not None and gd.activeCollisionPairs[k]]
        if not live:
            return None
        clear = np.ones(table.n * table.n, bool)
        for p, k in live:
            clear &= table.bounds[:, p] >= gd.collisionRequests[k].security_margin
        if not clear.any():
            return None
        alt_gd = gd.copy()
        for _, k in live:
            alt_gd.deactivateCollisionPair(k)
        alt = _Check.make(self, alt_gd, still=full.still)
        (i0, i1), (lo0, lo1), (s0, s1) = table.joints, table.lo, table.scale
        return (i0, lo0, s0, i1, lo1, s1, table.n, clear.tolist(),
                (alt.gd, alt.update, alt.collide, alt.still, alt.callback), clear)

    # ------------------------------------------------------------------ scene changes
    def set_held(self, held: Optional["Held"]) -> None:
        """Attach a held part (a box in the TCP frame) to the flange, or drop it (cheap when unchanged)."""
        if held is self._held_obj and (held is None or self._held_key == self._key_of(held)):
            return
        key = None if held is None else self._key_of(held)
        self._held_obj = held
        if key == self._held_key:
            return
        self._held_key = key
        if held is None:
            self._held_size = self._held_pose = None
        else:
            self._held_size = tuple(float(s) for s in held.size)
            self._held_pose = tuple((self.world.kin.tcp @ pose_to_matrix(held.in_tcp)).ravel().tolist())
        self._use()

    @staticmethod
    def _key_of(held: "Held") -> Tuple:
        return (tuple(held.size), tuple(held.in_tcp.xyz), tuple(held.in_tcp.rpy))

    def add_obstacle(self, name: str, size: Any, pose: Pose) -> None:  # noqa: ARG002
        """Mirror an obstacle the world just added (its shape is read back from PyBullet)."""
        self._scene_changed()

    def remove_obstacle(self, name: str) -> None:  # noqa: ARG002
        self._scene_changed()

    def refresh_robots(self, robot_ids: Optional[Iterable[str]] = None) -> None:
        """Re-read other robots' poses from PyBullet after the planner set their joints (all when None).

        Call it after ``resetJointState`` on another robot of the world: its links are static
        geometry here, placed where PyBullet holds them when they were read.
        """
        if robot_ids is None:
            self._static_cache.clear()
        else:
            for rid in robot_ids:
                self._static_cache.pop(self.world.bodies.robots[rid].body, None)
        self._scene_changed()

    # ------------------------------------------------------------------ queries
    def contacts(self, q: JointVector, *, clearance: float, ignore: Iterable[str] = (),
                 first: bool = True) -> List["Contact"]:
        """The pairs closer than ``clearance`` at ``q``, named like the PyBullet path names them."""
        import pinocchio as pin

        from .collision import Contact

        check = self._check(float(clearance), frozenset(ignore))
        gd = check.gd
        qq = self._q(q)
        if self._hits(qq[None, :], check) < 0:
            return []
        # the broad phase leaves untested pairs' results stale: name the pairs from a full pass
        pin.computeCollisions(self.model, self.data, self.gm, gd, qq, first)
        out = []
        for k, res in enumerate(gd.collisionResults):
            if not res.isCollision():
                continue
            pair = self.gm.collisionPairs[k]
            dist = float(pin.computeDistance(self.gm, gd, k).min_distance)
            dist -= self._margin[pair.first] + self._margin[pair.second]
            (ba, la), (bb, lb) = self._owner[pair.first], self._owner[pair.second]
            out.append(Contact(self._name(ba, la), self._name(bb, lb), dist))
            if first:
                break
        return out

    def _name(self, body: int, link: int) -> str:
        if body == HELD_BODY:
            return f"held:{self._held_obj.part_id if self._held_obj is not None else '?'}"
        return self.world.name(body, link)

    def free(self, q: JointVector, *, clearance: float, ignore: Iterable[str] = ()) -> bool:
        last = self._last
        if last is None or last[0] != clearance or last[1] is not ignore:
            last = self._settings(clearance, ignore)
        # four calls, not pinocchio's computeCollisions (see _Check); one unpacking, no attribute lookups
        _, _, qq, sel, place, model, data, gm, gd, update, collide, still, callback, table = last
        qq[sel] = q                    # a reused buffer: pinocchio reads it before this returns
        if table is not None:          # two joints in a cell where the table's pairs keep their margins
            i0, lo0, s0, i1, lo1, s1, n, clear, without, _ = table
            x, y = (qq.item(i0) - lo0) * s0, (qq.item(i1) - lo1) * s1
            if 0.0 <= x < n and 0.0 <= y < n and clear[int(x) * n + int(y)]:
                gd, update, collide, still, callback = without
        place(model, data, gm, gd, qq)
        update(False)
        return not (collide(still, callback) or collide(callback))

    def _settings(self, clearance: float, ignore: Iterable[str]) -> Tuple[Any, ...]:
        """What :meth:`free` calls for these settings, in one tuple; kept for the next call when ``ignore`` is
        immutable (the planner repeats its settings, and the same tuple or frozenset object then means the
        same set)."""
        check = self._check(float(clearance), frozenset(ignore))
        hot = (clearance, ignore, self._qbuf, self._arm_sel, self._place, self.model, self.data, self._gm_moving,
               check.gd, check.update, check.collide, check.still, check.callback, check.table)
        if isinstance(ignore, (tuple, frozenset)):
            self._last = hot
        return hot

    def _hits(self, full: np.ndarray, check: "_Check", *, table: bool = True) -> int:
        """The index of the first row of ``full`` (whole pinocchio configurations) in collision, or -1.

        Rows whose two table joints fall in a cell that clears the table's pairs (looked up for all rows at
        once) run the scene's twin without them, as :meth:`free` does; ``table=False``: every row runs the
        full check (what the tests compare with).
        """
        place, model, data, gm = self._place, self.model, self.data, self._gm_moving
        full_parts = (check.gd, check.update, check.collide, check.still, check.callback)
        skip = self._cleared(full, check.table) if table and check.table is not None else None
        for i, q in enumerate(full):
            gd, update, collide, still, callback = (check.table[8] if skip is not None and skip[i]  # type: ignore[index]
                                                    else full_parts)
            place(model, data, gm, gd, q)
            update(False)
            if collide(still, callback) or collide(callback):
                return i
        return -1

    @staticmethod
    def _cleared(full: np.ndarray, table: Tuple[Any, ...]) -> np.ndarray:
        """Per row of ``full``, whether its two table joints fall in a cell that clears the table's pairs."""
        i0, lo0, s0, i1, lo1, s1, n, _, _, clear = table
        x, y = (full[:, i0] - lo0) * s0, (full[:, i1] - lo1) * s1
        inside = (x >= 0) & (x < n) & (y >= 0) & (y < n)
        cells = np.where(inside, np.floor(x) * n + np.floor(y), 0).astype(int)
        return inside & clear[cells]

    def segment_free(self, qa: JointVector, qb: JointVector, n: int, *,
                     clearance: float, ignore: Iterable[str] = ()) -> bool:
        """Whether ``qa + (qb - qa) * k / n`` is free for k = 1..n, checked in bisection order (end first)."""
        check = self._check(float(clearance), frozenset(ignore))
        a = np.asarray(qa, float)
        d = np.asarray(qb, float) - a
        ks = _fractions(n)
        qs = np.repeat(self._q0[None, :], len(ks), axis=0)
        qs[:, self._arm_idx] = a + d * ks
        return self._hits(qs, check) < 0

    def first_hit(self, qs: np.ndarray, *, clearance: float, ignore: Iterable[str] = ()) -> int:
        """The index of the first arm configuration (a row of ``qs``) in collision, or -1."""
        check = self._check(float(clearance), frozenset(ignore))
        full = np.repeat(self._q0[None, :], len(qs), axis=0)
        full[:, self._arm_idx] = qs
        return self._hits(full, check)


class _Table(NamedTuple):
    """Lower bounds on some robot self pairs' distances over a grid of two joints (:meth:`FastCollision._joint_table`).

    Cell ``i * n + j`` spans ``lo[k] + [i, i + 1] / scale[k]`` (k = 0) and ``[j, j + 1]`` likewise (k = 1)."""

    joints: Tuple[int, ...]           # the two q indices
    lo: Tuple[float, float]
    scale: Tuple[float, float]        # cells per unit of each joint
    n: int
    pairs: Tuple[Tuple[int, int], ...]   # robot shape indices (as in _apart)
    bounds: np.ndarray                # (n * n, len(pairs)): each pair's distance is at least this in the cell


class _Check(NamedTuple):
    """One scene's compiled check, with the bound methods the per-check path calls.

    Why not ``pinocchio.computeCollisions``: it has 50 Python overloads, and resolving them costs
    about a microsecond per call, as much as a third of a check. And why two broad phases: a single
    one over the whole scene recomputes every object's box at each check and tests every pair of
    boxes, although the cell's own objects (stations, other robots, obstacles) never move between
    two scene changes: half the fixed cost of a check. So the objects the robot carries (its links,
    the held part) are one naive broad phase, updated at each check and tested against itself (the
    robot's own pairs) and against the other, the still cell, whose boxes are computed once. The
    moving objects come first in the scene's model, their pairs too: the per-check calls work on that
    prefix (:meth:`FastCollision._moving_model`), with the same indices.

    Boxes are inflated so that a pair nearer than its security margin always overlaps: pinocchio
    inflates each moving object by half the largest margin of its pairs among the moving objects;
    each still object's box is inflated here by the full largest margin of its pairs (the moving
    side's inflation may come from smaller margins). The callback works on the scene's full model,
    whose pairs and margins are those of ``gd``; the calls reset it at the start of each pass.
    """

    gd: Any                 # pinocchio.GeometryData (requests, active pairs, placements)
    manager: Any            # the moving objects' naive broad phase over gd
    still: Any              # the still objects' naive broad phase (boxes computed once)
    update: Any             # manager.update
    collide: Any            # manager.collide
    callback: Any           # pinocchio.CollisionCallBackDefault on the full model, stopping at the first collision
    table: Optional[Tuple[Any, ...]] = None   # FastCollision._table_for: the check without the table's pairs, and where

    @staticmethod
    def make(fast: FastCollision, gd: Any, still: Any = None) -> "_Check":  # noqa: ANN401
        """The check on ``gd``; ``still``: a still broad phase built for the same still objects and margins."""
        import pinocchio as pin

        # the still objects' placements, once (the per-check calls place only the moving objects)
        pin.updateGeometryPlacements(fast.model, fast.model.createData(), fast.gm, gd, fast._q0)
        manager = pin.BroadPhaseManager_NaiveCollisionManager(fast.model, fast._gm_moving, gd)
        if still is None:
            still = _Check._still(fast, gd)
        callback = pin.CollisionCallBackDefault(fast.gm, gd, True)
        return _Check(gd, manager, still, manager.update, manager.collide, callback)

    @staticmethod
    def _still(fast: FastCollision, gd: Any) -> Any:  # noqa: ANN401
        """The still objects' broad phase: their boxes where they stand, inflated by their pairs' largest margin."""
        import pinocchio as pin

        gm = fast._gm_still
        own = pin.GeometryData(gm)
        pin.updateGeometryPlacements(fast.model, fast.model.createData(), gm, own, fast._q0)
        still = pin.BroadPhaseManager_NaiveCollisionManager(fast.model, gm, own)
        still.update(False)
        grow: Dict[int, float] = {}
        for pair, active, req in zip(gm.collisionPairs, gd.activeCollisionPairs, gd.collisionRequests):
            if active:
                reach = req.security_margin + req.break_distance
                for g in (pair.first, pair.second):
                    if reach > grow.get(g, 0.0):
                        grow[g] = reach
        objects = still.getCollisionObjects()     # one per geometry object, in order (disabled ones too)
        if len(objects) != gm.ngeoms:
            raise Unsupported("pinocchio's broad phase does not hold one collision object per geometry object")
        for g, obj in enumerate(objects):
            margin = grow.get(g, 0.0)
            if margin > 0.0 and gm.geometryObjects[g].parentJoint == 0:
                obj.getAABB().expand(margin)      # a reference to the object's box: pinocchio keeps it
        return still


def backend_choice() -> str:
    """``pybullet`` when :data:`BACKEND_ENV` asks for the PyBullet reference check, else ``fast`` (the default)."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower()
    if value not in ("", "fast", "pybullet"):
        log.warning("%s=%r is not 'fast' or 'pybullet': using the compiled backend", BACKEND_ENV, value)
    return "pybullet" if value == "pybullet" else "fast"


def build(world: "CollisionWorld") -> Optional[FastCollision]:
    """The backend for ``world``, or None (with a log line saying why) when it cannot model the scene.

    The compiled backend is the default; PyBullet answers when :data:`BACKEND_ENV` is ``pybullet``
    (logged at INFO) or when this backend cannot model the world exactly (logged as a WARNING with the
    reason: an unsupported shape, kinematics pinocchio reads differently): a fallback, never a wrong answer.
    """
    if backend_choice() == "pybullet":
        log.info("collision checks for robot '%s' use PyBullet: %s=pybullet", world.robot.config.id, BACKEND_ENV)
        return None
    why = available()
    if why is None:
        try:
            return FastCollision(world)
        except Unsupported as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - a URDF pinocchio cannot parse, a bad mesh: fall back, say why
            why = f"{type(exc).__name__}: {exc}"
    log.warning("collision checks for robot '%s' use PyBullet (slower): %s", world.robot.config.id, why)
    return None
