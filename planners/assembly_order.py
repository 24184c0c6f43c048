"""The assembly order of one unit, inferred from geometry where the spec gives none.

Every part is placed top-down (the gripper comes from above). Comparing the
parts' boxes in the product frame pairwise gives these rules, in this order:

* **inside**: if two boxes interpenetrate and one's footprint contains the
  other's, the contained part sits inside the container (a peg in a hole, a
  part in a pocket), so it goes after it: "peg after block: peg sits inside block".
* **rests on**: if the footprints overlap and one box's bottom touches the
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


def _contains_xy(outer: Tuple[List[float], List[float]], inner: Tuple[List[float], List[float]]) -> bool:
    return all(outer[0][i] - EPS <= inner[0][i] and inner[1][i] <= outer[1][i] + EPS for i in (0, 1))


def geometric_edges(job: JobSpec) -> List[Edge]:
    """Every pairwise order that the geometry implies (before transitive reduction)."""
    ids = [pl.part for pl in job.assembly.placements]
    boxes = {pid: part_box(job, pid) for pid in ids}
    edges: List[Edge] = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            edge = _pair(a, boxes[a], b, boxes[b])
            if edge is not None:
                edges.append(edge)
    return edges


def _pair(a: str, ba, b: str, bb) -> Optional[Edge]:  # noqa: ANN001
    ox = _overlap(ba[0][0], ba[1][0], bb[0][0], bb[1][0])
    oy = _overlap(ba[0][1], ba[1][1], bb[0][1], bb[1][1])
    if ox <= EPS or oy <= EPS:
        return None  # footprints apart: top-down placements cannot interfere
    oz = _overlap(ba[0][2], ba[1][2], bb[0][2], bb[1][2])
    if oz > CONTACT:
        # Interpenetrating boxes: one sits inside the other.
        if _contains_xy(ba, bb) and not _contains_xy(bb, ba):
            return Edge(a, b, f"{b} after {a}: {b} sits inside {a}")
        if _contains_xy(bb, ba) and not _contains_xy(ba, bb):
            return Edge(b, a, f"{a} after {b}: {a} sits inside {b}")
        lower, upper = (a, b) if (ba[0][2], a) <= (bb[0][2], b) else (b, a)
        return Edge(lower, upper, f"{upper} after {lower}: {upper} overlaps {lower} and reaches lower, "
                                  f"so {lower} goes in first")
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
