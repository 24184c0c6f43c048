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

import math
from typing import Dict, List, Tuple

from anycell.cell import CellConfig, MachineConfig, Station
from anycell.errors import InfeasibleError
from anycell.geometry import Pose
from anycell.job import JobSpec, Part
from anycell.plan import Site


def _lift(pose: Pose, dz: float) -> Pose:
    return Pose(xyz=[pose.xyz[0], pose.xyz[1], pose.xyz[2] + dz], rpy=list(pose.rpy))


def _site(kind: str, ref: str, pose: Pose, index: int | None = None) -> Site:
    return Site(kind=kind, ref=ref, xyz=[float(v) for v in pose.xyz], rpy=[float(v) for v in pose.rpy],
                index=index)


def half_height(part: Part) -> float:
    return float(part.geometry.size[2]) / 2.0


def fixture(cell: CellConfig) -> Station:
    """The assembly fixture (the first station of kind 'fixture')."""
    fixtures = cell.stations_of("fixture")
    if not fixtures:
        raise InfeasibleError(f"cell '{cell.cell.id}' has no assembly fixture",
                              hint="add a station of kind 'fixture'")
    return fixtures[0]


def product_frame(cell: CellConfig) -> Pose:
    """The product frame in the cell frame: the fixture's top-surface centre."""
    return fixture(cell).pose


def placement_pose(cell: CellConfig, job: JobSpec, part_id: str) -> Pose:
    """Target pose of a part's centre on the fixture, in the cell frame."""
    return product_frame(cell).compose(job.placement(part_id).pose)


def fixture_site(cell: CellConfig, job: JobSpec, part_id: str) -> Site:
    return _site("fixture", fixture(cell).id, placement_pose(cell, job, part_id))


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


def tray_positions(tray: Station, job: JobSpec, gap: float = 0.01) -> List[Pose]:
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


def tray_site(tray: Station, job: JobSpec, index: int) -> Site:
    """Where the unit's base part goes when the unit is put at position ``index`` of a tray."""
    positions = tray_positions(tray, job)
    if index >= len(positions):
        raise InfeasibleError(f"tray '{tray.id}' holds {len(positions)} unit(s) of '{job.product}', "
                              f"unit {index + 1} does not fit", hint="use a larger tray or a smaller quantity")
    base = base_part(job)
    return _site(tray.kind, tray.id, positions[index].compose(job.placement(base.id).pose), index)


def allocate_feeder_slots(cell: CellConfig, job: JobSpec) -> Dict[Tuple[int, str], Site]:
    """Which feeder slot each (unit, part id) takes from: the feeder-sourced parts and the stock.

    Slots holding the same part type are used in turn; when a job needs more
    parts than there are slots, a slot is used again (the feeder presents the
    next part there, like a gravity feeder or an operator refill). Keys are
    ``(unit, part_id)``; units count from 1.
    """
    counters: Dict[str, int] = {}
    out: Dict[Tuple[int, str], Site] = {}
    for unit in range(1, job.quantity + 1):
        for part in job.parts:
            part_type = part.source.feeder or part.source.stock
            if part_type is None:
                continue
            slots = cell.feeder_slots(part_type)
            if not slots:
                raise InfeasibleError(f"no feeder of cell '{cell.cell.id}' holds part type '{part_type}' "
                                      f"(needed by part '{part.id}')", hint="add a slot for it to a feeder")
            k = counters.get(part_type, 0)
            counters[part_type] = k + 1
            station, index, _slot = slots[k % len(slots)]
            out[(unit, part.id)] = slot_site(station, index, part)
    return out
