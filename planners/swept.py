"""The space a robot's motion occupies, as voxels: what the reservation table of shared space holds.

Why this shape
--------------
Two robots that move at once are kept apart by reserving, for each motion, the voxels
the moving robot's body (and the part it carries) may touch on the way, inflated by
half the robot-robot margin. Two robots whose voxel sets are disjoint are then at
least the margin apart at every instant. The sets must be *tight* as well as safe:
a robot's world-axis bounding boxes make a 7-axis arm's sweep several times larger
than the arm, so two arms half a metre apart could never move at once.

So each collision shape of the robot is taken as its exact bounding box in its link's
frame (read from the compiled collision backend's geometry, which comes from the same
PyBullet world as every other check), covered by a row of spheres along its longest
axis, posed by the robot's forward kinematics at samples along the trajectory; the
voxels any inflated sphere may touch are kept (precomputed integer stencils, so the
cost is a few array operations per link and segment).

What happens between samples is bounded, not guessed: a point of the robot at most
``reach`` from every joint axis moves at most ``reach * |dq|_1`` when the joints move by
``dq`` (each joint's rotation moves it at most its angle times its distance from the
axis). Samples are spaced so that this is at most ``STEP``, and every box is inflated by
``STEP / 2`` more (a point between two samples is within half its path of one of them).

Without the compiled backend (``ANYCELL_COLLISION=pybullet``, or a robot it cannot
model) each link's world-axis bounding box from PyBullet is used instead: safe, looser.
"""

from __future__ import annotations

import functools
import logging
import math
import weakref
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)

Cells = FrozenSet[int]

CELL = 0.02    # m: voxel edge of the reservation grid (3 cm: more false conflicts, no less planning time)
SUB = 2        # sphere centres are placed to 1/SUB of a voxel (per axis) when their voxels are found
STEP = 0.02    # m: the farthest any point of the robot moves between two samples
_HALF_DIAG = CELL * math.sqrt(3.0) / 2.0   # for the fallback's boxes
_OFF = 1 << 19
_SPAN = 1 << 20


def voxel_keys(idx: np.ndarray) -> np.ndarray:
    """One int per voxel index triple (rows of ``idx``), for sets that compare fast."""
    i = idx.astype(np.int64) + _OFF
    return (i[..., 0] * _SPAN + i[..., 1]) * _SPAN + i[..., 2]


def key_centers(keys: Sequence[int]) -> np.ndarray:
    """The centres (m) of voxels given by :func:`voxel_keys` (for pictures and tests)."""
    k = np.asarray(list(keys), dtype=np.int64)
    idx = np.stack([k // (_SPAN * _SPAN), (k // _SPAN) % _SPAN, k % _SPAN], axis=-1) - _OFF
    return (idx + 0.5) * CELL


class _Boxes:
    """A robot's collision shapes as oriented boxes on its links, and a bound of its reach."""

    def __init__(self, planner: Any) -> None:
        import pybullet as p

        world = planner.world
        self.world = world
        self.fast = getattr(world, "fast", None)
        rb = world.robot
        self.links: List[int] = [-1] + list(range(p.getNumJoints(rb.body, physicsClientId=world.client)))
        self.tool = set(rb.tool_links) | {rb.flange_link}
        self.boxes: List[Tuple[int, np.ndarray, np.ndarray]] = []   # (link, shape pose in link frame, half extents)
        if self.fast is not None:
            for link, shape, in_link in self.fast._robot_shapes:
                geom = shape[0]
                geom.computeLocalAABB()
                lo, hi = np.asarray(geom.aabb_local.min_), np.asarray(geom.aabb_local.max_)
                centre = np.eye(4)
                centre[:3, 3] = (lo + hi) / 2.0
                self.boxes.append((link, in_link @ centre, (hi - lo) / 2.0 + float(shape[1])))
        # each box as a row of spheres along its longest axis (no rotation to test per sample):
        # link -> (sphere centres in the link frame (n x 3), radii (n,), on the tool?)
        self.spheres: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        for link, pose, half in self.boxes:
            centres, radii = _cover(half)
            world = centres @ pose[:3, :3].T + pose[:3, 3]
            got = self.spheres.get(link)
            self.spheres[link] = (world, radii) if got is None else \
                (np.vstack([got[0], world]), np.concatenate([got[1], radii]))
        self.reach = self._reach(planner)

    def _reach(self, planner: Any) -> float:
        """An upper bound of any robot point's distance from any joint axis: the chain's link lengths
        plus the farthest shape corner from its link frame (at least 1, for sliding joints)."""
        if self.fast is not None:
            chain = sum(float(np.linalg.norm(m.translation)) for m in self.fast.model.jointPlacements)
            corner = max((float(np.linalg.norm(t[:3, 3])) + float(np.linalg.norm(h)) for _l, t, h in self.boxes),
                         default=0.0)
            return max(1.0, chain + corner)
        return max(1.0, 2.0 * float(getattr(planner, "reach", 1.5)))

    def link_poses(self, samples: np.ndarray) -> Dict[int, np.ndarray]:
        """Every link (with spheres) in the world at each sample: link -> S x 4 x 4 (compiled kinematics)."""
        import pinocchio as pin

        fast: Any = self.fast
        out: Dict[int, List[np.ndarray]] = {link: [] for link in self.spheres}
        for q in samples:
            pin.framesForwardKinematics(fast.model, fast.data, fast._q(q))
            for link in out:
                out[link].append(fast._link_world(link))
        return {link: np.stack(v) for link, v in out.items()}


def _cover(half: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Spheres (centres in the box frame, radii) whose union covers a box of ``half`` extents."""
    axis = int(np.argmax(half))
    a = float(half[axis])
    cross = float(np.linalg.norm(np.delete(half, axis)))
    n = max(1, int(math.ceil(2.0 * a / max(cross, 1e-3))))   # radius at most 1.12 x the cross-section's
    step = 2.0 * a / n
    centres = np.zeros((n, 3))
    centres[:, axis] = -a + step * (np.arange(n) + 0.5)
    return centres, np.full(n, math.hypot(cross, step / 2.0))


_models: "weakref.WeakKeyDictionary[Any, _Boxes]" = weakref.WeakKeyDictionary()


def _model(planner: Any) -> _Boxes:
    got = _models.get(planner)
    if got is None or got.fast is not getattr(planner.world, "fast", None):
        got = _Boxes(planner)
        _models[planner] = got
    return got


def _samples(model: _Boxes, positions: Sequence[Sequence[float]]) -> np.ndarray:
    pts = [np.asarray(q, float) for q in positions]
    out = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        n = max(1, int(math.ceil(model.reach * float(np.sum(np.abs(b - a))) / STEP)))
        out += [a + (b - a) * (k / n) for k in range(1, n + 1)]
    return np.asarray(out)


@functools.lru_cache(maxsize=256)
def _sphere_stencil(reach_mm: int, where: Tuple[int, int, int]) -> np.ndarray:
    """Voxel offsets from the voxel holding a sphere's centre that a sphere of ``reach_mm`` may touch,
    for a centre anywhere in the sub-cell ``where`` of its voxel (box-to-box distance, so it is never
    too small; the sub-cell keeps it from growing by a whole voxel)."""
    r = reach_mm / 1000.0
    n = int(math.ceil(r / CELL)) + 1
    ax = np.arange(-n, n + 1)
    off = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    lo = np.asarray(where, float) * (CELL / SUB)          # the centre's sub-cell, in its voxel's frame
    hi = lo + CELL / SUB
    gap = np.maximum(np.maximum(off * CELL - hi, lo - (off + 1) * CELL), 0.0)
    out = off[np.einsum("ki,ki->k", gap, gap) <= r * r]
    out.flags.writeable = False
    return out


def _sphere_keys(centres: np.ndarray, radius: float) -> np.ndarray:
    """Keys of the voxels within ``radius`` of any of ``centres`` (N x 3)."""
    sub = np.unique(np.floor(centres / (CELL / SUB)).astype(np.int64), axis=0)
    voxel, where = sub // SUB, sub % SUB
    reach = int(math.ceil(radius * 1000.0))
    keys = []
    for cls in np.unique(where, axis=0):
        rows = voxel[np.all(where == cls, axis=1)]
        st = _sphere_stencil(reach, (int(cls[0]), int(cls[1]), int(cls[2])))
        keys.append(voxel_keys((rows[:, None, :] + st[None, :, :]).reshape(-1, 3)))
    return np.unique(np.concatenate(keys))


def _box_keys(poses: np.ndarray, half: np.ndarray, pad: float) -> np.ndarray:
    """Keys of the voxels within ``pad`` of boxes of ``half`` extents at ``poses`` (S x 4 x 4)."""
    centres, radii = _cover(half)
    world = np.einsum("sij,nj->sni", poses[:, :3, :3], centres) + poses[:, None, :3, 3]
    return _sphere_keys(world.reshape(-1, 3), float(radii[0]) + pad)


def segment_cells(planner: Any, segments: Sequence[Tuple[str, Any]], *, margin: float,
                  held_size: Optional[Sequence[float]] = None) -> List[Cells]:
    """Per segment, the voxels ``planner``'s robot (and a carried part) may touch along it.

    ``segments`` is a skill's plan: ``(name, trajectory or None)``; between ``grasp`` and
    ``release`` the tool carries a part of ``held_size`` (its tool's boxes grow by the part's
    diagonal: the part touches the tool). Every box is inflated by half the ``margin`` and by
    half the sample spacing. A grasp or a release (no trajectory) occupies nothing of its own.
    """
    with planner.world.lock:    # the planner's kinematics and compiled scene are shared by threads
        return _segment_cells(planner, segments, margin, held_size)


def _segment_cells(planner: Any, segments: Sequence[Tuple[str, Any]], margin: float,
                   held_size: Optional[Sequence[float]]) -> List[Cells]:
    model = _model(planner)
    carry = float(np.linalg.norm(held_size)) if held_size else 0.0
    pad = margin / 2.0 + STEP / 2.0
    out: List[Cells] = []
    carrying = False
    for name, traj in segments:
        if name == "grasp":
            carrying = True
        elif name == "release":
            carrying = False
        if traj is None:
            out.append(frozenset())
            continue
        samples = _samples(model, traj.positions)
        keys = [_link_aabb_keys(planner, model, samples, pad, carry if carrying else 0.0)] if model.fast is None \
            else _oriented_keys(model, samples, pad, carry if carrying else 0.0)
        out.append(frozenset(np.unique(np.concatenate(keys)).tolist()) if keys else frozenset())
    return out


def _oriented_keys(model: _Boxes, samples: np.ndarray, pad: float, carry: float) -> List[np.ndarray]:
    keys = []
    for link, poses in model.link_poses(samples).items():
        local, radii = model.spheres[link]
        world = np.einsum("sij,nj->sni", poses[:, :3, :3], local) + poses[:, None, :3, 3]   # S x n x 3
        extra = pad + (carry if link in model.tool else 0.0)
        for radius in np.unique(radii):
            keys.append(_sphere_keys(world[:, radii == radius].reshape(-1, 3), float(radius) + extra))
    return keys


def _link_aabb_keys(planner: Any, model: _Boxes, samples: np.ndarray, pad: float, carry: float) -> np.ndarray:
    """Fallback without the compiled backend: each link's world-axis box from PyBullet."""
    import pybullet as p

    world = model.world
    body = world.robot.body
    keys = []
    for q in samples:
        planner.kin.set(q)
        for link in model.links:
            lo, hi = p.getAABB(body, link, physicsClientId=world.client)
            extra = pad + _HALF_DIAG + (carry if link in model.tool else 0.0)
            a = np.floor((np.asarray(lo) - extra) / CELL).astype(np.int64)
            b = np.floor((np.asarray(hi) + extra) / CELL).astype(np.int64)
            grid = np.stack(np.meshgrid(*[np.arange(a[i], b[i] + 1) for i in range(3)], indexing="ij"), axis=-1)
            keys.append(voxel_keys(grid.reshape(-1, 3)))
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def swept_cells(planner: Any, segments: Sequence[Tuple[str, Any]], *, margin: float,
                held_size: Optional[Sequence[float]] = None) -> Cells:
    """The voxels ``planner``'s robot may touch along all of ``segments`` (see :func:`segment_cells`)."""
    return frozenset().union(*segment_cells(planner, segments, margin=margin, held_size=held_size))


class _Pose:
    """A one-sample trajectory: a robot standing at ``q``."""

    def __init__(self, q: Sequence[float]) -> None:
        self.positions = [list(q)]


def standing_cells(planner: Any, q: Sequence[float], *, margin: float) -> Cells:
    """The voxels of the robot standing at ``q``, holding nothing."""
    return swept_cells(planner, [("stand", _Pose(q))], margin=margin)


def part_cells(pose: Any, size: Sequence[float], *, margin: float) -> Cells:
    """The voxels within half the ``margin`` of a part (its box of ``size``) lying at ``pose``."""
    from anycell.planners.kinematics import pose_to_matrix

    half = np.asarray(size, float) / 2.0
    return frozenset(np.unique(_box_keys(pose_to_matrix(pose)[None], half, margin / 2.0)).tolist())


class MotionSpace:
    """One robot's reserved motion: what each segment sweeps, and what is left after each.

    :meth:`rest_after` is the space the robot still needs once segment ``i`` is done: every
    later segment, and its body where it stops (the later segments all start where it
    stands; with none left, it stands at the destination).
    """

    def __init__(self, planner: Any, segments: Sequence[Tuple[str, Any]], *, margin: float,
                 held_size: Optional[Sequence[float]] = None) -> None:
        self.per_segment = segment_cells(planner, segments, margin=margin, held_size=held_size)
        ends = [t for _n, t in segments if t is not None]
        if not ends:
            raise ValueError("a reserved motion needs at least one trajectory")
        self.destination: List[float] = [float(v) for v in ends[-1].positions[-1]]
        self.at_rest = standing_cells(planner, self.destination, margin=margin)
        self.whole: Cells = frozenset().union(self.at_rest, *self.per_segment)

    def rest_after(self, index: int) -> Cells:
        """The space still needed once segment ``index`` (0-based) is done."""
        return frozenset().union(self.at_rest, *self.per_segment[index + 1:])
