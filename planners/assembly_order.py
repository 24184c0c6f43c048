"""The assembly order of one unit, inferred from the parts' real shapes where the spec gives none.

Every part is placed top-down (the tool comes from above). The parts' solids
(convex pieces: exact for boxes and cylinders with holes, pockets and slots,
V-HACD for meshes) are compared pairwise in the product frame:

* **overlap**: two solids that interpenetrate (by more than ``OVERLAP``) cannot
  both be where the spec puts them: refused, naming both parts and the depth
  (a peg "inside" a block that has no hole, a clip inside a bracket's wall).
* **inside**: if the bounding boxes interpenetrate but the solids do not, one
  part sits in a hole, pocket or channel of the other (the one whose bottom is
  lower), so it goes after it: "peg after block: peg sits inside block".
* **rests on**: if the footprints overlap and one part's bottom touches the
  other's top (within ``CONTACT``), the upper part rests on the lower one and
  goes after it: "block after base: block rests on base".
* **in the way**: if the footprints overlap and there is a vertical gap, the
  lower part would collide with the upper one on its way in if the upper one
  were placed first, so the lower one goes first: "clip before bridge: placing
  clip top-down after bridge would collide with bridge".

Explicit ``after:`` entries are added as given. The union is checked for
cycles (a cycle is reported with its members and the reason of each edge), and
the geometric edges implied by others are dropped (transitive reduction), so
each reason shown is a direct one.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from anycell.errors import PlanningError
from anycell.geometry import quat_rotate
from anycell.job import JobSpec
from .graph import cycle_members, reachable, topological_order

#: Two faces closer than this (meters) are in contact.
CONTACT = 0.0005
#: Overlaps smaller than this (meters) are treated as touching, not overlapping.
EPS = 1e-6
#: Solids interpenetrating deeper than this (meters) overlap: a spec error, not a fit.
OVERLAP = 0.0005


@dataclass(frozen=True)
class Edge:
    """``after`` must be placed after ``before``, for ``reason``; ``explicit`` if the spec said so."""

    before: str
    after: str
    reason: str
    explicit: bool = False


def part_box(job: JobSpec, part_id: str) -> Tuple[List[float], List[float]]:
    """The axis-aligned bounds (min, max) of a placed part in the product frame, rotation included."""
    pl = job.placement(part_id)
    sx, sy, sz = (v / 2.0 for v in job.part(part_id).geometry.size)
    q = pl.pose.quaternion
    lo = [float("inf")] * 3
    hi = [float("-inf")] * 3
    for cx in (-sx, sx):
        for cy in (-sy, sy):
            for cz in (-sz, sz):
                p = quat_rotate(q, (cx, cy, cz))
                for i in range(3):
                    v = pl.pose.xyz[i] + p[i]
                    lo[i] = min(lo[i], v)
                    hi[i] = max(hi[i], v)
    return lo, hi


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def _area(box) -> float:  # noqa: ANN001
    return (box[1][0] - box[0][0]) * (box[1][1] - box[0][1])


def _contains_xy(outer: Tuple[List[float], List[float]], inner: Tuple[List[float], List[float]]) -> bool:
    return all(outer[0][i] - EPS <= inner[0][i] and inner[1][i] <= outer[1][i] + EPS for i in (0, 1))


def geometric_edges(job: JobSpec) -> List[Edge]:
    """Every pairwise order that the geometry implies (before transitive reduction)."""
    ids = [pl.part for pl in job.assembly.placements]
    boxes = {pid: part_box(job, pid) for pid in ids}
    edges: List[Edge] = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            edge = _pair(job, a, boxes[a], b, boxes[b])
            if edge is not None:
                edges.append(edge)
    return edges


def solid_gap(job: JobSpec, a: str, b: str) -> float:
    """The signed distance between two placed parts' solids (negative: they interpenetrate), meters.

    Measured on the convex pieces in a private PyBullet world (the planners' world model), so it is
    the distance the simulator's bodies have.
    """
    import pybullet as p

    from anycell.sim.shapes import collision_shape, tune_body

    global _CLIENT
    if _CLIENT is None:
        _CLIENT = p.connect(p.DIRECT)
    bodies = []
    try:
        for pid in (a, b):
            shape = job.part(pid).geometry
            pose = job.placement(pid).pose
            body = p.createMultiBody(0.0, collision_shape(_CLIENT, shape), -1, pose.position, pose.quaternion,
                                     physicsClientId=_CLIENT)
            tune_body(_CLIENT, body, shape)
            bodies.append(body)
        points = p.getClosestPoints(bodies[0], bodies[1], 0.05, physicsClientId=_CLIENT)
        return min((float(c[8]) for c in points), default=0.05)
    finally:
        for body in bodies:
            p.removeBody(body, physicsClientId=_CLIENT)


_CLIENT: Optional[int] = None


def _pair(job: JobSpec, a: str, ba, b: str, bb) -> Optional[Edge]:  # noqa: ANN001
    ox = _overlap(ba[0][0], ba[1][0], bb[0][0], bb[1][0])
    oy = _overlap(ba[0][1], ba[1][1], bb[0][1], bb[1][1])
    if ox <= EPS or oy <= EPS:
        return None  # footprints apart: top-down placements cannot interfere
    oz = _overlap(ba[0][2], ba[1][2], bb[0][2], bb[1][2])
    if oz > CONTACT:
        # The bounding boxes interpenetrate: either the solids do too (the spec is wrong), or one
        # part sits in a hole, pocket or channel of the other.
        gap = solid_gap(job, a, b)
        if gap < -OVERLAP:
            raise PlanningError(f"parts '{a}' and '{b}' overlap by {-gap * 1000:.1f} mm where the spec places them: "
                                f"their solids cannot both be there", field="assembly.placements",
                                hint="fix the poses, or give the receiving part the hole or pocket the other "
                                     "goes into (geometry.features, or a mesh)")
        outer, inner = (a, b) if (ba[0][2], -_area(ba), a) <= (bb[0][2], -_area(bb), b) else (b, a)
        return Edge(outer, inner, f"{inner} after {outer}: {inner} sits inside {outer}")
    lower, upper = (a, b) if ba[1][2] <= bb[0][2] + CONTACT else (b, a)
    lo_box, up_box = (ba, bb) if lower == a else (bb, ba)
    if abs(up_box[0][2] - lo_box[1][2]) <= CONTACT:
        return Edge(lower, upper, f"{upper} after {lower}: {upper} rests on {lower}")
    return Edge(lower, upper, f"{lower} before {upper}: placing {lower} top-down after {upper} "
                              f"would collide with {upper} on the way in")


def explicit_edges(job: JobSpec) -> List[Edge]:
    return [Edge(dep, pl.part, f"explicit after: {dep}", explicit=True)
            for pl in job.assembly.placements for dep in pl.after]


def assembly_order(job: JobSpec) -> Tuple[List[str], Dict[str, List[Edge]]]:
    """The placement order of one unit and, per part, the edges that put it after others.

    Returns ``(order, incoming)`` where ``order`` is a topological order (ties
    broken by the spec's placement order, so it is deterministic) and
    ``incoming[part]`` the direct predecessor edges with their reasons.
    Raises :class:`PlanningError` naming the members of a cycle.
    """
    ids = [pl.part for pl in job.assembly.placements]
    all_edges = geometric_edges(job) + explicit_edges(job)
    succ: Dict[str, List[str]] = {n: [] for n in ids}
    preds: Dict[str, List[str]] = {n: [] for n in ids}
    reason: Dict[Tuple[str, str], List[str]] = {}
    for e in all_edges:
        if e.after not in succ[e.before]:
            succ[e.before].append(e.after)
            preds[e.after].append(e.before)
        reason.setdefault((e.before, e.after), []).append(e.reason)
    try:
        order = topological_order(ids, preds)
    except graphlib.CycleError as exc:
        cycle = [str(n) for n in cycle_members(exc)]
        links = [f"{cycle[k]} -> {cycle[(k + 1) % len(cycle)]} ({'; '.join(reason[(cycle[k], cycle[(k + 1) % len(cycle)])])})"
                 for k in range(len(cycle))]
        raise PlanningError(f"the assembly order of job '{job.id}' has a cycle among parts "
                            f"{', '.join(sorted(cycle))}: " + ", ".join(links),
                            field="assembly.placements",
                            hint="remove an 'after:' entry, or fix the poses that make the parts depend on each other")
    # Transitive reduction: drop a geometric edge a->b when b is reachable from a another way.
    reach = _reachability(ids, succ)
    kept: List[Edge] = []
    for e in all_edges:
        implied = any(mid != e.after and e.after in reach[mid] for mid in succ[e.before] if mid != e.after)
        if e.explicit or not implied:
            kept.append(e)
    incoming: Dict[str, List[Edge]] = {n: [] for n in ids}
    for e in kept:
        incoming[e.after].append(e)
    return order, incoming


def _reachability(ids: List[str], succ: Dict[str, List[str]]) -> Dict[str, Set[str]]:
    return {n: reachable(n, succ) for n in ids}
