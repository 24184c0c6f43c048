"""Where parts are in a cell: feeder slots, machine beds, the fixture, tray positions.

A job speaks in part types and product-frame poses; a cell speaks in stations
and station-frame offsets. This module is the one place that turns both into
cell-frame poses of a part's *centre*, as :class:`anycell.plan.Site` values.
The task planner uses it to fill operation params, the simulator to lay out
parts, and inspection to know where each part should be.

Conventions (see cell_configs/demo_cell.yaml): feeder slot offsets and machine
tending poses give the part's *bottom centre* (the cell does not know the job's
part heights); job placements give the part's *centre* in the product frame,
whose origin is the fixture's top-surface centre.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from anycell.cell import CellConfig, MachineConfig, Station
from anycell.errors import InfeasibleError
from anycell.geometry import Pose
from anycell.job import JobSpec, Part
from anycell.plan import Site

log = logging.getLogger(__name__)


def _lift(pose: Pose, dz: float) -> Pose:
    return Pose(xyz=[pose.xyz[0], pose.xyz[1], pose.xyz[2] + dz], rpy=list(pose.rpy))


def _site(kind: str, ref: str, pose: Pose, index: int | None = None) -> Site:
    return Site(kind=kind, ref=ref, xyz=[float(v) for v in pose.xyz], rpy=[float(v) for v in pose.rpy],
                index=index)


def half_height(part: Part) -> float:
    return float(part.geometry.size[2]) / 2.0


def _fixtures(cell: CellConfig) -> List[Station]:
    """The cell's assembly fixtures, in config order; InfeasibleError when it has none."""
    fixtures = cell.stations_of("fixture")
    if not fixtures:
        raise InfeasibleError(f"cell '{cell.cell.id}' has no assembly fixture",
                              hint="add a station of kind 'fixture'")
    return list(fixtures)


def fixture(cell: CellConfig, fixture_id: Optional[str] = None) -> Station:
    """The assembly fixture ``fixture_id``; by default the first station of kind 'fixture'.

    A cell may have several fixtures (the task planner gives each unit one of them, see
    :func:`unit_fixture`); a job's product frame is on whichever fixture holds the unit.
    """
    fixtures = _fixtures(cell)
    if fixture_id is None:
        return fixtures[0]
    for station in fixtures:
        if station.id == fixture_id:
            return station
    raise InfeasibleError(f"cell '{cell.cell.id}' has no assembly fixture '{fixture_id}'",
                          hint=f"its fixtures: {', '.join(s.id for s in fixtures)}")


def unit_fixture(cell: CellConfig, unit: int) -> Station:
    """The fixture unit ``unit`` (from 1) is assembled on: the cell's fixtures in turn.

    Units on different fixtures do not wait for each other's output; units on the same fixture
    follow one another. In turn (not by load) so that which fixture a unit is on does not depend
    on duration estimates.
    """
    fixtures = _fixtures(cell)
    return fixtures[(unit - 1) % len(fixtures)]


def product_frame(cell: CellConfig, fixture_id: Optional[str] = None) -> Pose:
    """The product frame in the cell frame: the fixture's top-surface centre (default: the first fixture)."""
    return fixture(cell, fixture_id).pose


def placement_pose(cell: CellConfig, job: JobSpec, part_id: str, fixture_id: Optional[str] = None) -> Pose:
    """Target pose of a part's centre on the fixture (default: the first), in the cell frame."""
    return product_frame(cell, fixture_id).compose(job.placement(part_id).pose)


def fixture_site(cell: CellConfig, job: JobSpec, part_id: str, fixture_id: Optional[str] = None) -> Site:
    """Where a part goes on fixture ``fixture_id`` (default: the first)."""
    return _site("fixture", fixture(cell, fixture_id).id, placement_pose(cell, job, part_id, fixture_id))


def nearest_station(stations: Sequence[Station], to: Pose) -> Station:
    """The station whose pose is nearest ``to`` in x/y (ties: config order)."""
    return min(stations, key=lambda s: math.hypot(s.pose.xyz[0] - to.xyz[0], s.pose.xyz[1] - to.xyz[1]))


def slot_site(station: Station, index: int, part: Part) -> Site:
    """The centre of ``part`` resting in slot ``index`` of a feeder."""
    bottom = station.pose.compose(station.slots[index].offset)
    return _site("feeder", station.id, _lift(bottom, half_height(part)), index)


def machine_site(machine: MachineConfig, part: Part, *, unload: bool = False) -> Site:
    """The centre of ``part`` on a machine's bed (load pose, or unload pose when given)."""
    bottom = machine.tending.unload_pose if unload else machine.tending.load
    return _site("machine", machine.id, _lift(bottom, half_height(part)))


def base_part(job: JobSpec) -> Part:
    """The part a finished unit is carried by: the one whose bottom is lowest in the product frame."""
    def bottom(pl) -> Tuple[float, str]:  # noqa: ANN001
        return (pl.pose.xyz[2] - half_height(job.part(pl.part)), pl.part)

    return job.part(min(job.assembly.placements, key=bottom).part)


def unit_footprint(job: JobSpec) -> Tuple[float, float]:
    """The x/y extent of a finished unit (product frame, axis-aligned, ignoring yaw)."""
    xs: List[float] = []
    ys: List[float] = []
    for pl in job.assembly.placements:
        size = job.part(pl.part).geometry.size
        xs += [pl.pose.xyz[0] - size[0] / 2, pl.pose.xyz[0] + size[0] / 2]
        ys += [pl.pose.xyz[1] - size[1] / 2, pl.pose.xyz[1] + size[1] / 2]
    return (max(xs) - min(xs), max(ys) - min(ys))


#: m between units on a tray: room for a gripper's fingers beside a unit (they close outside its footprint).
TRAY_GAP = 0.03


def tray_positions(tray: Station, job: JobSpec, gap: float = TRAY_GAP) -> List[Pose]:
    """Where units go on a tray (product-frame origins, cell frame), row by row, within its footprint."""
    fx, fy = unit_footprint(job)
    nx = max(1, int(math.floor((tray.size[0] + gap) / (fx + gap))))
    ny = max(1, int(math.floor((tray.size[1] + gap) / (fy + gap))))
    out: List[Pose] = []
    for j in range(ny):
        for i in range(nx):
            local = Pose(xyz=[(i - (nx - 1) / 2) * (fx + gap), (j - (ny - 1) / 2) * (fy + gap), 0.0])
            out.append(tray.pose.compose(local))
    return out[: tray.capacity]


def tray_site(tray: Station, job: JobSpec, index: int, turn: int = 0) -> Site:
    """Where the unit's base part goes when the unit is put at position ``index`` of a tray.

    ``turn`` quarter turns the unit about the position's centre (a tool that cannot reach a position
    clear of the cell's machines one way may reach it the other way).
    """
    positions = tray_positions(tray, job)
    if index >= len(positions):
        raise InfeasibleError(f"tray '{tray.id}' holds {len(positions)} unit(s) of '{job.product}', "
                              f"unit {index + 1} does not fit", hint="use a larger tray or a smaller quantity")
    base = base_part(job)
    origin = positions[index].compose(Pose(rpy=[0.0, 0.0, turn * math.pi / 2]))
    return _site(tray.kind, tray.id, origin.compose(job.placement(base.id).pose), index)


def allocate_feeder_slots(cell: CellConfig, job: JobSpec,
                          serves: Optional[Callable[[int, Part, Site], bool]] = None) -> Dict[Tuple[int, str], Site]:
    """Which feeder slot each (unit, part id) takes from: the feeder-sourced parts and the stock.

    Slots holding the same part type are used in turn; when a job needs more
    parts than there are slots, a slot is used again (the feeder presents the
    next part there, like a gravity feeder or an operator refill). Keys are
    ``(unit, part_id)``; units count from 1.

    ``serves(unit, part, slot site)`` (optional) says whether a slot suits that unit's part (the task
    planner: a robot that reaches the unit's fixture reaches the slot). The turn then skips to the next
    slot that suits it; when none does, the slot in turn is taken.

    Only slots whose parts keep :data:`SLOT_GAP` from each other are used (:func:`feeder_slots_in_use`):
    a part that touches another drags it when it is picked.
    """
    usable = feeder_slots_in_use(cell, job)
    counters: Dict[str, int] = {}
    out: Dict[Tuple[int, str], Site] = {}
    for unit in range(1, job.quantity + 1):
        for part in job.parts:
            part_type = part.source.feeder or part.source.stock
            if part_type is None:
                continue
            slots = usable[part_type]
            k = counters.get(part_type, 0)
            where = [slot_site(station, index, part) for station, index, _slot in slots]
            turn = [(k + j) % len(slots) for j in range(len(slots))]
            pick = next((i for i in turn if serves is None or serves(unit, part, where[i])), turn[0])
            counters[part_type] = pick + 1
            out[(unit, part.id)] = where[pick]
    return out


#: m: the least gap between the parts standing in a job's feeder slots. A part that touches another
#: drags it (or turns it) when it is picked, and the simulated one creeps against it, so the other is no
#: longer where its slot says when its turn comes.
SLOT_GAP = 0.002


def feeder_slots_in_use(cell: CellConfig, job: JobSpec) -> Dict[str, List[tuple]]:
    """The feeder slots (``(station, index, slot)``, config order) each of the job's part types is taken from.

    Every slot holding a part type the job needs is filled at once. Where two slots' parts would come
    closer than :data:`SLOT_GAP` (their footprints from above, at the slots' poses), one of the two is
    left empty, so long as its part type keeps another slot (the slot in most such conflicts first, then
    the later one in the config); the part type's remaining slots are then used again. When both are a
    part type's last slot, raises :class:`InfeasibleError` naming the two slots, their parts and the gap.
    """
    from anycell.shapes import footprint, polygon_gap

    by_type: Dict[str, List[Part]] = {}
    for part in job.parts:
        part_type = part.source.feeder or part.source.stock
        if part_type is not None:
            by_type.setdefault(part_type, []).append(part)
    cands: List[Tuple[str, Station, int, object]] = []
    for part_type, parts in by_type.items():
        slots = cell.feeder_slots(part_type)
        if not slots:
            raise InfeasibleError(f"no feeder of cell '{cell.cell.id}' holds part type '{part_type}' "
                                  f"(needed by part '{parts[0].id}')", hint="add a slot for it to a feeder")
        cands += [(part_type, st, i, slot) for st, i, slot in slots]
    shapes: Dict[str, List[Tuple[str, List[Tuple[float, float]]]]] = {
        t: [(p.id, footprint(p.geometry)) for p in parts] for t, parts in by_type.items()}

    def placed(k: int) -> List[Tuple[str, List[Tuple[float, float]]]]:
        part_type, station, index, _slot = cands[k]
        pose = station.pose.compose(station.slots[index].offset)
        c, s = math.cos(pose.rpy[2]), math.sin(pose.rpy[2])
        return [(pid, [(pose.xyz[0] + c * x - s * y, pose.xyz[1] + s * x + c * y) for x, y in poly])
                for pid, poly in shapes[part_type]]

    outlines = [placed(k) for k in range(len(cands))]
    clashes: List[Tuple[int, int, str, str, float]] = []
    for a in range(len(cands)):
        for b in range(a + 1, len(cands)):
            for pa, poly_a in outlines[a]:
                for pb, poly_b in outlines[b]:
                    gap = polygon_gap(poly_a, poly_b)
                    if gap < SLOT_GAP:
                        clashes.append((a, b, pa, pb, gap))
    keep = set(range(len(cands)))
    while True:
        live = [c for c in clashes if c[0] in keep and c[1] in keep]
        if not live:
            break
        spare = [k for k in dict.fromkeys(i for c in live for i in c[:2])
                 if sum(1 for j in keep if cands[j][0] == cands[k][0]) > 1]
        if not spare:
            a, b, pa, pb, gap = live[0]
            (ta, sa, ia, _), (tb, sb, ib, _) = cands[a], cands[b]
            raise InfeasibleError(
                f"feeder slots too close for job '{job.id}': part '{pa}' in slot {ia} of feeder '{sa.id}' "
                f"({ta}) and part '{pb}' in slot {ib} of feeder '{sb.id}' ({tb}) would stand "
                f"{gap * 1000:.1f} mm apart (0: touching or overlapping); they need {SLOT_GAP * 1000:g} mm, or "
                f"picking one drags the other", field=f"stations[{sb.id}].slots[{ib}].offset",
                hint="move the slots apart, or give one of the part types a slot of its own elsewhere")
        drop = max(spare, key=lambda k: (sum(1 for c in live if k in c[:2]), k))
        log.debug("feeder slot %d of '%s' (%s) stays empty: its part would touch another slot's",
                  cands[drop][2], cands[drop][1].id, cands[drop][0])
        keep.discard(drop)
    out: Dict[str, List[tuple]] = {}
    for k in sorted(keep):
        part_type, station, index, slot = cands[k]
        out.setdefault(part_type, []).append((station, index, slot))
    return out


# ---------------------------------------------------------------------- where the tool may hold a part
#: m: how far beside a part the fingers (and the receiving part's surface they must clear) reach.
FINGER_MARGIN = 0.012


def _footprint(job: JobSpec, part_id: str, frame: Pose) -> List[Tuple[float, float]]:
    """The part's footprint in the x/y of ``frame`` (a pose in the product frame): its outline for a box or
    cylinder, its bounding rectangle for a mesh."""
    import math

    from anycell.shapes import outline, rect

    pl = job.placement(part_id)
    geometry = job.part(part_id).geometry
    local = frame.inverse().compose(pl.pose)
    if geometry.mesh is not None:
        size = geometry.size
        return rect(local.xyz[0], local.xyz[1], size[0], size[1], local.rpy[2])
    c, s = math.cos(local.rpy[2]), math.sin(local.rpy[2])
    return [(local.xyz[0] + c * x - s * y, local.xyz[1] + s * x + c * y) for x, y in outline(geometry)]


def piece_boxes(job: JobSpec, part_id: str) -> List[Tuple[List[float], List[float]]]:
    """The bounds (min, max) of each convex piece of a placed part's solid, in the product frame."""
    from anycell.geometry import quat_rotate
    from anycell.sim.shapes import part_pieces

    pl = job.placement(part_id)
    q = pl.pose.quaternion
    out: List[Tuple[List[float], List[float]]] = []
    for piece in part_pieces(job.part(part_id).geometry):
        plo, phi = piece.bounds()
        lo = [float("inf")] * 3
        hi = [float("-inf")] * 3
        for cx in (plo[0], phi[0]):
            for cy in (plo[1], phi[1]):
                for cz in (plo[2], phi[2]):
                    v = quat_rotate(q, (cx, cy, cz))
                    for i in range(3):
                        lo[i] = min(lo[i], pl.pose.xyz[i] + v[i])
                        hi[i] = max(hi[i], pl.pose.xyz[i] + v[i])
        out.append((lo, hi))
    return out


def receiving_surface(job: JobSpec, part_id: str, margin: float = FINGER_MARGIN) -> Optional[float]:
    """The highest surface (m above the part's centre) of another part around it, below its top; None if none.

    A gripper's fingertips must stay above it when the part goes down: the tray a peg goes into,
    the walls of a pocket. The other parts' real solids count (their convex pieces), not their
    bounding boxes; pieces standing higher than the part's top are things placed on it later, or
    walls the planner steers the fingers around.
    """
    from .assembly_order import assembly_order, part_box
    from .graph import reachable

    _order, incoming = assembly_order(job)
    succ: Dict[str, List[str]] = {pl.part: [] for pl in job.assembly.placements}
    for edges in incoming.values():
        for e in edges:
            succ.setdefault(e.before, []).append(e.after)
    later = reachable(part_id, succ)          # placed after this part: not there yet when it goes in
    pl = job.placement(part_id)
    lo, hi = part_box(job, part_id)
    zc = pl.pose.xyz[2]
    best: Optional[float] = None
    for other in job.assembly.placements:
        if other.part == part_id or other.part in later:
            continue
        for olo, ohi in piece_boxes(job, other.part):
            if olo[0] > hi[0] + margin or ohi[0] < lo[0] - margin or olo[1] > hi[1] + margin \
                    or ohi[1] < lo[1] - margin:
                continue
            if ohi[2] >= hi[2] - 1e-6 or ohi[2] <= lo[2] + 1e-6:
                continue
            top = ohi[2] - zc
            best = top if best is None else max(best, top)
    return best


#: m the cup's body keeps from the parts standing around the face it holds (their measured poses vary).
CUP_CLEARANCE = 0.002


def suction_spot(job: JobSpec, part_id: str, radius: float, blocked: Sequence[str] = (),
                 body: Optional[float] = None) -> Optional[Tuple[float, float, float]]:
    """Where (part frame x, y, z) a suction cup holds the part, or None when no free area fits.

    The cup's seal (``radius``) must lie on a flat face looking up and off the face's holes and
    pockets; the cup's body (``body``, from the robot model) must keep clear of the part's higher
    faces and of the footprints of the ``blocked`` parts (those standing on it). Every free area of
    every upward face is tried (a grid over the face), highest face first, nearest its middle.
    """
    for spot in suction_spots(job, part_id, radius, blocked, body):
        return spot
    return None


def suction_spots(job: JobSpec, part_id: str, radius: float, blocked: Sequence[str] = (),
                  body: Optional[float] = None) -> Iterator[Tuple[float, float, float]]:
    """Every spot :func:`suction_spot` would accept, best first."""
    from anycell.shapes import cavities, free_spots, up_faces

    geometry = job.part(part_id).geometry
    faces = up_faces(geometry)
    holes = [list(c.polygon) for c in cavities(geometry)]
    frame = job.placement(part_id).pose
    others = [_footprint(job, other, frame) for other in blocked]
    above: List[List[Tuple[float, float]]] = []
    clear = (body if body is not None else radius) + CUP_CLEARANCE
    for z, polys in faces:
        for x, y in free_spots(polys, holes, radius, others + above, clear):
            yield (x, y, z)
        above += polys


def carry_suction_spot(job: JobSpec, radius: float, body: float, hand: float,
                       hand_reach: float) -> Optional[Tuple[float, float, float]]:
    """Where a cup holds a finished unit's base so that the flange passes above the parts standing on it.

    ``hand``: how far below the flange the cup holds (the flange starts this far above the face);
    ``hand_reach``: the flange's radius about the cup. A part counts when its footprint comes within
    that radius of the spot and its top stands higher than the flange would start (less a margin).
    """
    from anycell.shapes import inside

    from .assembly_order import part_box
    from .tool import HAND_MARGIN

    base = base_part(job)
    frame = job.placement(base.id).pose
    others = [pl.part for pl in job.assembly.placements if pl.part != base.id]
    tall = []
    for other in others:
        top = part_box(job, other)[1][2] - frame.xyz[2]
        tall.append((top, _footprint(job, other, frame)))
    for spot in suction_spots(job, base.id, radius, others, body):
        ok = True
        for top, poly in tall:
            if top + HAND_MARGIN <= spot[2] + hand:
                continue
            near = inside(poly, spot[:2]) or any(
                math.hypot(v[0] - spot[0], v[1] - spot[1]) < hand_reach for v in poly) or _edge_within(
                poly, spot[:2], hand_reach)
            if near:
                ok = False
                break
        if ok:
            return spot
    return None


def _edge_within(poly: Sequence[Tuple[float, float]], c: Sequence[float], r: float) -> bool:
    from anycell.shapes import segment_near

    return segment_near(poly, (float(c[0]), float(c[1])), r)


def carried_top(job: JobSpec) -> Optional[float]:
    """The top of the parts standing on a finished unit's base, from the base's centre (None: base only)."""
    from .assembly_order import part_box

    base = base_part(job)
    zc = job.placement(base.id).pose.xyz[2]
    tops = [part_box(job, pl.part)[1][2] - zc for pl in job.assembly.placements if pl.part != base.id]
    return max(tops) if tops else None
