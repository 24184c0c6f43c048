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
  robot self pairs proven never within :data:`APART_BAND` are left out below that
  clearance (:meth:`FastCollision._prove_apart`);
- the scene is expressed in the planning robot's base frame (pinocchio's root), so a
  robot need not stand at the world origin;
- other robots of the cell are static geometry at their current joint positions
  (:meth:`FastCollision.refresh_robots` re-reads them after the planner moves them).
  Their own self contacts and their contacts with the statics are not the planning
  robot's business and are not checked (the PyBullet path skips them too).

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
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

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

#: Joint-space boxes one pair's proof may evaluate before it gives up (the pair is then checked as usual).
APART_BUDGET = 3000

#: Proven pairs per robot model and tool state (the proof depends on nothing else), shared by all worlds.
_APART_CACHE: Dict[Tuple, FrozenSet[Tuple[int, int]]] = {}


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
        self._static_cache: Dict[int, List[Tuple[int, Any, Any]]] = {}
        self._held_key: Optional[Tuple] = None
        self._held_obj: Optional["Held"] = None
        self._last: Optional[Tuple[float, Any, Any, Any]] = None
        self._variants: Dict[Optional[Tuple], Tuple[Any, ...]] = {}
        self._qbuf = self._q0.copy()
        self._held_size: Optional[Tuple[float, ...]] = None
        self._held_pose: Optional[Tuple[float, ...]] = None
        self._rebuild()

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

    def _prove_apart(self, urdf: str) -> FrozenSet[Tuple[int, int]]:
        """Robot self pairs (geometry indices) that no joint values within the URDF's limits bring within APART_BAND.

        Why: most of a check's time is the narrow phase on robot link pairs whose boxes overlap in
        nearly every configuration (links two joints apart near the base or wrist) although the
        shapes never come near. MoveIt's setup assistant drops "never in collision" pairs after
        random sampling; sampling proves nothing, so here each pair gets a branch-and-bound proof
        over the joints between its two links (at most three, the others cannot change the pair's
        relative pose): a box of joint values is cleared when the distance at its centre, less the
        farthest any point of the shapes can move inside the box (each revolute joint moves a point
        at most its half-width times the point's reach from the joint's origin; a prismatic one its
        half-width), is at least APART_BAND. A pair that is not cleared within APART_BUDGET boxes is
        checked as before. The domain is the URDF's own limits plus 0.05 rad (a full turn for
        continuous joints), which contains every configuration the planner accepts (the cell's
        limits lie within the URDF's); fingers and other joints outside the arm are held where
        they are in every query, as here.
        """
        import pinocchio as pin

        key = (urdf, self._q0.tobytes(), tuple(self._arm_idx), len(self._robot_shapes))
        if key in _APART_CACHE:
            return _APART_CACHE[key]
        model = self.model
        data = model.createData()
        gm, pairs = self._self_pairs_model()
        gd = pin.GeometryData(gm)
        # the domain of each arm joint: the URDF's limits and the cell's, whichever reach further, plus a pad
        lo_all, hi_all = model.lowerPositionLimit.copy(), model.upperPositionLimit.copy()
        for n, i in enumerate(self._arm_idx):
            lo_all[i] = min(lo_all[i], float(self.world.kin.lower[n])) - 0.05
            hi_all[i] = max(hi_all[i], float(self.world.kin.upper[n])) + 0.05
        arm_q = set(self._arm_idx)
        proven = set()
        for k, (ga, gb) in enumerate(pairs):
            sa = list(model.supports[gm.geometryObjects[ga].parentJoint])
            sb = list(model.supports[gm.geometryObjects[gb].parentJoint])
            common = 0
            while common < min(len(sa), len(sb)) and sa[common] == sb[common]:
                common += 1
            joints: List[int] = []     # q indices of the arm joints between the two shapes
            rates: List[float] = []    # how far a unit of each moves a point of the shapes, at most
            lo: List[float] = []
            hi: List[float] = []
            for side, g in ((sa[common:], ga), (sb[common:], gb)):
                geom = gm.geometryObjects[g]
                geom.geometry.computeLocalAABB()
                # from the shape's joint up to the common ancestor: the reach from each joint's origin grows
                reach = (float(np.linalg.norm(geom.placement.translation))
                         + float(np.linalg.norm(geom.geometry.aabb_center)) + float(geom.geometry.aabb_radius))
                for j in reversed(side):
                    jm = model.joints[j]
                    prismatic = jm.shortname().startswith("JointModelP")
                    if jm.idx_q in arm_q:
                        a, b = float(lo_all[jm.idx_q]), float(hi_all[jm.idx_q])
                        if not prismatic and (not (np.isfinite(a) and np.isfinite(b)) or b - a > 2 * np.pi):
                            a, b = -np.pi, np.pi     # a full turn covers every value of a periodic joint
                        joints.append(jm.idx_q)
                        rates.append(1.0 if prismatic else reach)
                        lo.append(a)
                        hi.append(b)
                    reach += float(np.linalg.norm(model.jointPlacements[j].translation))
                    if prismatic:
                        reach += float(max(abs(lo_all[jm.idx_q]), abs(hi_all[jm.idx_q])))
            if len(joints) > 3 or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.isfinite(rates).all()):
                continue
            rate = np.asarray(rates)
            boxes = [(np.asarray(lo), np.asarray(hi))]
            q = self._q0.copy()
            evals, ok = 0, True
            while boxes and ok:
                blo, bhi = boxes.pop()
                evals += 1
                if evals > APART_BUDGET:
                    ok = False
                    break
                q[joints] = (blo + bhi) / 2
                pin.updateGeometryPlacements(model, data, gm, gd, q)
                d = float(pin.computeDistance(gm, gd, k).min_distance)
                slack = float(np.sum((bhi - blo) / 2 * rate))
                if d - slack >= APART_BAND:
                    continue
                if d < APART_BAND or not joints:
                    ok = False
                    break
                m = int(np.argmax((bhi - blo) * rate))
                mid = (blo[m] + bhi[m]) / 2
                left_hi, right_lo = bhi.copy(), blo.copy()
                left_hi[m], right_lo[m] = mid, mid
                boxes += [(blo, left_hi), (right_lo, bhi)]
            if ok:
                proven.add((ga, gb))
        out = frozenset(proven)
        _APART_CACHE[key] = out
        log.debug("robot '%s': %d of %d self pairs proven never within %.0f mm", self.world.robot.config.id,
                  len(out), len(pairs), APART_BAND * 1000)
        return out

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
        self._other_objs = frozenset(others)
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
        world_objs = statics + others + [g for gs in obstacle_objs.values() for g in gs]
        for i in robot_objs:                       # robot against the cell
            on_base = self._owner[i][1] in base_links
            for k in world_objs:
                if on_base and k in statics:
                    continue
                gm.addCollisionPair(pin.CollisionPair(i, k))
        if held_obj is not None:                   # held part against everything but the tool
            for i in robot_objs:
                if self._owner[i][1] not in tool:
                    gm.addCollisionPair(pin.CollisionPair(i, held_obj))
            for k in world_objs:
                gm.addCollisionPair(pin.CollisionPair(held_obj, k))
        self.gm = gm
        self._obstacle_objs = {name: frozenset(gs) for name, gs in obstacle_objs.items()}
        self._gdata: Dict[Tuple[float, FrozenSet[str]], Tuple[Any, Any]] = {}
        self._variants[self._held_key] = (gm, self._owner, self._margin, self._obstacle_objs, self._gdata,
                                          self._other_objs)

    def _use(self) -> None:
        """The scene for the current held part: built once per held part until the scene changes."""
        variant = self._variants.get(self._held_key)
        if variant is None:
            self._rebuild()
        else:
            self.gm, self._owner, self._margin, self._obstacle_objs, self._gdata, self._other_objs = variant

    def _scene_changed(self) -> None:
        self._variants.clear()
        self._last = None
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
        """(GeometryData, broad-phase manager) for one clearance and set of ignored obstacles, made once.

        The manager is coal's naive AABB pass (fastest here: about 20 objects), which pinocchio
        inflates by each pair's security margin, so a positive clearance is never lost in the broad phase.
        Pairs with another robot's links keep at least the robot clearance (``safety.robot_margin``).
        """
        key = (clearance, ignore)
        scene = self._gdata.get(key)
        if scene is None:
            import pinocchio as pin

            gd = pin.GeometryData(self.gm)
            skip = frozenset().union(*(self._obstacle_objs.get(n, frozenset()) for n in ignore)) if ignore else ()
            robot_clear = max(clearance, float(self.world.robot_clearance))
            others = self._other_objs
            for k, pair in enumerate(self.gm.collisionPairs):
                req = gd.collisionRequests[k]
                near_robot = pair.first in others or pair.second in others
                req.security_margin = ((robot_clear if near_robot else clearance)
                                       + self._margin[pair.first] + self._margin[pair.second])
                req.break_distance = 0.0
                req.num_max_contacts = 1
                if skip and (pair.first in skip or pair.second in skip):
                    gd.deactivateCollisionPair(k)
                elif req.security_margin <= APART_BAND and (pair.first, pair.second) in self._apart:
                    gd.deactivateCollisionPair(k)     # proven never this near: no test needed
            scene = (gd, pin.BroadPhaseManager_NaiveCollisionManager(self.model, self.gm, gd))
            self._gdata[key] = scene
        return scene

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

        gd, manager = self._scene(float(clearance), frozenset(ignore))
        qq = self._q(q)
        if not pin.computeCollisions(self.model, self.data, manager, qq, True):
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
        import pinocchio as pin

        qq = self._qbuf
        qq[self._arm_sel] = q          # a reused buffer: pinocchio reads it before this returns
        return not pin.computeCollisions(self.model, self.data, self._manager(clearance, ignore), qq, True)

    def _manager(self, clearance: float, ignore: Iterable[str]) -> Any:
        """The broad-phase manager for these settings; the last one is kept (the planner repeats them)."""
        last = self._last
        if (last is not None and last[0] == clearance and last[1] is ignore and last[2] is self.gm
                and isinstance(ignore, (tuple, frozenset))):   # immutable: the same object means the same set
            return last[3]
        manager = self._scene(float(clearance), frozenset(ignore))[1]
        self._last = (clearance, ignore, self.gm, manager)
        return manager

    def segment_free(self, qa: JointVector, qb: JointVector, n: int, *,
                     clearance: float, ignore: Iterable[str] = ()) -> bool:
        """Whether ``qa + (qb - qa) * k / n`` is free for k = 1..n, checked in bisection order (end first)."""
        import pinocchio as pin

        manager = self._manager(clearance, ignore)
        a = np.asarray(qa, float)
        d = np.asarray(qb, float) - a
        ks = _fractions(n)
        qs = np.repeat(self._q0[None, :], len(ks), axis=0)
        qs[:, self._arm_idx] = a + d * ks
        model, data = self.model, self.data
        for q in qs:
            if pin.computeCollisions(model, data, manager, q, True):
                return False
        return True


    def first_hit(self, qs: np.ndarray, *, clearance: float, ignore: Iterable[str] = ()) -> int:
        """The index of the first arm configuration (a row of ``qs``) in collision, or -1."""
        import pinocchio as pin

        manager = self._manager(clearance, ignore)
        full = np.repeat(self._q0[None, :], len(qs), axis=0)
        full[:, self._arm_idx] = qs
        model, data = self.model, self.data
        for i, q in enumerate(full):
            if pin.computeCollisions(model, data, manager, q, True):
                return i
        return -1

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
