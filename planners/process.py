"""Task planning: a job spec and a cell config become a process plan.

:func:`plan_job` expands the job into operations bound to the cell's
resources by capability, orders them and says why (``Operation.reasons``):

* a feeder part is one ``pick_place`` (feeder slot -> fixture);
* a part made by a process becomes a tending sequence on a machine offering
  that capability: ``load`` (stock from the feeder, when the part has stock),
  ``run_program``, ``unload`` (machine -> straight into the assembly on the
  fixture). The machine is held from the load (or the program start) until
  the unload (``Operation.holds``), so the scheduler cannot load a machine
  that still holds a part;
* the unit is inspected (when the job has checks) and moved to the output tray
  by its base part.

The assembly order within a unit comes from :mod:`anycell.planners.assembly_order`
(geometry plus explicit ``after:``). There is one fixture, so unit k+1's
placements follow unit k's output; machines may make unit k+1's parts while
unit k is assembled, so units overlap in time. Placements of one unit that the
assembly order leaves free do not hold the fixture as a resource: with several
robots two of them may place at once, and the reservation of shared space
(:mod:`anycell.planners.reservation`) lets them take turns only where their
motions would meet.

Machines and robots are chosen by capability, balancing the work given to
each (deterministically, by estimated busy time, ties by the config's order),
so a cell with two printers prints two units' parts at once. A robot move that
another robot can also do (reach, payload, gripper) lists it in
``Operation.alternatives``; the scheduler may then give the move to it.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

from anycell.cell import CellConfig, MachineConfig, RobotConfig
from anycell.errors import InfeasibleError
from anycell.job import JobSpec, Part
from anycell.plan import Operation, Plan, Site

from . import sites
from .assembly_order import assembly_order
from .durations import DurationModel
from .feasibility import carry_problem, check_operation, check_plan, check_resources, program_machines

log = logging.getLogger(__name__)


def _program_params(part: Part) -> Dict[str, object]:
    prog = part.source.program
    assert prog is not None  # guaranteed by the job spec's checks for process parts
    if prog.file is not None:
        program: Dict[str, str] = {"file": str(prog.file)}
    elif prog.inline is not None:
        program = {"inline": prog.inline}
    else:
        program = {"name": str(prog.name)}
    out: Dict[str, object] = {"program": program, "parameters": dict(part.source.parameters)}
    if part.source.material:
        out["material"] = part.source.material
    return out


class _Builder:
    """Holds the running state of one planning pass (loads per resource, operations so far)."""

    def __init__(self, cell: CellConfig, job: JobSpec, durations: DurationModel) -> None:
        self.cell = cell
        self.job = job
        self.dm = durations
        self.ops: List[Operation] = []
        self.load: Dict[str, float] = {}
        self.fixture = sites.fixture(cell).id
        self.slots = sites.allocate_feeder_slots(cell, job)
        self.slot_taken: Dict[tuple, str] = {}   # (feeder id, slot index) -> the last op that takes a part there

    def machine_for(self, part: Part) -> MachineConfig:
        """The least-loaded machine offering the part's process (ties: config order)."""
        cands = program_machines(self.cell, part) or self.cell.machines_with(part.source.process or "")
        best = min(cands, key=lambda m: (self.load.get(m.id, 0.0), self.cell.machines.index(m)))
        return best

    def robot_for(self, op: Operation) -> Tuple[RobotConfig, List[RobotConfig]]:
        """The least-loaded robot that can do ``op`` (reach, payload, gripper), and all that can; else
        the first robot, whose feasibility check then names the limit."""
        ok: List[RobotConfig] = []
        for robot in self.cell.robots:
            op.resource = robot.id
            try:
                check_operation(self.cell, self.job, op)
                ok.append(robot)
            except InfeasibleError:
                continue
        pool = ok or [self.cell.robots[0]]
        return min(pool, key=lambda r: (self.load.get(r.id, 0.0), self.cell.robots.index(r))), ok

    def _implied(self, op_id: str, after: List[str]) -> bool:
        """``op_id`` already comes before any op in ``after`` (directly or through their own ``after``)."""
        preds = {op.id: op.after for op in self.ops}
        stack, seen = list(after), set()
        while stack:
            cur = stack.pop()
            if cur == op_id:
                return True
            if cur not in seen:
                seen.add(cur)
                stack.extend(preds.get(cur, []))
        return False

    def robot_op(self, op_id: str, kind: str, unit: int, part: Part, source: Site, target: Site,
                 extra_uses: List[str], after: List[str], reasons: List[str],
                 holds: Optional[Dict[str, str]] = None) -> Operation:
        after, reasons = list(after), list(reasons)
        if source.kind == "feeder":
            # a slot holds one part at a time: the next is there once the one before is taken
            slot = (source.ref, source.index)
            prev = self.slot_taken.get(slot)
            if prev is not None and not self._implied(prev, after):
                after.append(prev)
                reasons.append(f"feeder: slot {source.index} of '{source.ref}' presents its next part "
                               f"once {prev} has taken the one before")
            self.slot_taken[slot] = op_id
        op = Operation(id=op_id, kind=kind, unit=unit, resource="", duration=0.0, part=part.id,
                       after=after, reasons=reasons,
                       params={"source": source.__dict__.copy(), "target": target.__dict__.copy()},
                       holds=dict(holds or {}))
        robot, able = self.robot_for(op)
        op.resource = robot.id
        op.uses = [robot.id] + [r for r in extra_uses if r != robot.id]
        op.duration = self.dm.robot_move(kind, robot, part, source, target)
        # Other robots that can do it too: the scheduler may hand it to one of them.
        op.alternatives = {r.id: self.dm.robot_move(kind, r, part, source, target) for r in able if r.id != robot.id}
        self.load[robot.id] = self.load.get(robot.id, 0.0) + op.duration
        self.ops.append(op)
        return op


def plan_job(cell: CellConfig, job: JobSpec, durations: Optional[DurationModel] = None) -> Plan:
    """Expand ``job`` into a feasible process plan on ``cell`` (not yet scheduled).

    Raises :class:`~anycell.errors.InfeasibleError` naming the operation, part
    and missing capability or limit, and :class:`~anycell.errors.PlanningError`
    for a cycle in the assembly order.
    """
    dm = durations or DurationModel(cell)
    check_resources(cell, job)
    order, incoming = assembly_order(job)
    b = _Builder(cell, job, dm)
    tray = cell.stations_of("output_tray")[0]
    tray_slots = len(sites.tray_positions(tray, job))
    inspection = cell.stations_of("inspection")[0] if job.quality else None
    base = sites.base_part(job)
    notes = [f"durations: {dm.name}",
             f"assembly order of one unit: {' -> '.join(order)}",
             f"one fixture ('{b.fixture}'): units are assembled one after another; machines make "
             f"later units' parts meanwhile"]
    for part_type, used in sites.feeder_slots_in_use(cell, job).items():
        empty = [f"slot {i} of '{st.id}'" for st, i, _s in cell.feeder_slots(part_type)
                 if (st.id, i) not in {(u.id, k) for u, k, _x in used}]
        if empty:
            notes.append(f"feeder {', '.join(empty)} ({part_type}) left empty: its part would touch another "
                         f"slot's (under {sites.SLOT_GAP * 1000:g} mm apart)")
    if job.quantity > tray_slots:
        notes.append(f"output tray '{tray.id}' holds {tray_slots} unit(s): the operator empties it every "
                     f"{tray_slots} unit(s) (positions are reused)")

    problems = [carry_problem(r, job) for r in cell.robots]
    carry = None if any(p is None for p in problems) else problems[0]
    if carry is not None:
        if job.quantity > 1:
            raise InfeasibleError(f"no robot of cell '{cell.cell.id}' can take a finished unit off the fixture: "
                                  f"{carry}", field="quantity",
                                  hint="with quantity 1 the unit stays on the fixture for the operator; "
                                       "otherwise change the product or the tool")
        notes.append(f"the finished unit stays on the fixture for the operator: {carry}")

    prev_output: Optional[str] = None
    for u in range(1, job.quantity + 1):
        placed: Dict[str, str] = {}   # part id -> the op that puts it on the fixture
        for pid in order:
            part = job.part(pid)
            target = sites.fixture_site(cell, job, pid)
            after: List[str] = []
            reasons: List[str] = []
            for e in incoming[pid]:
                after.append(placed[e.before])
                reasons.append(e.reason)
            move = job.placement(pid).insertion_move()
            if move is not None:
                reasons.append(f"{pid} is inserted: a straight move along {list(move.axis)} for the last "
                               f"{move.depth * 1000:g} mm (params.insertion)")
            if prev_output is not None and not incoming[pid]:
                after.append(prev_output)
                reasons.append(f"fixture: unit {u - 1} leaves the fixture first")
            if part.source.feeder is not None:
                src = b.slots[(u, pid)]
                op = b.robot_op(f"u{u}.place.{pid}", "pick_place", u, part, src, target, [], after,
                                reasons or ["no part must be placed before it"])
                _mark_insertion(op, job, pid)
                placed[pid] = op.id
                continue
            machine = b.machine_for(part)
            run_id, unload_id = f"u{u}.run.{pid}", f"u{u}.unload.{pid}"
            run_after: List[str] = []
            run_reasons: List[str] = []
            run_holds: Dict[str, str] = {machine.id: unload_id}
            if part.source.stock is not None:
                load = b.robot_op(f"u{u}.load.{pid}", "load", u, part, b.slots[(u, pid)],
                                  sites.machine_site(machine, part), [machine.id], [],
                                  [f"tending: fetch stock '{part.source.stock}' for {pid} from the feeder",
                                   f"machine '{machine.id}' offers '{part.source.process}'"],
                                  holds={machine.id: unload_id})
                run_after, run_reasons, run_holds = [load.id], ["tending: load before run"], {}
            else:
                run_reasons = [f"machine '{machine.id}' offers '{part.source.process}'; no stock to load"]
            run_d = dm.program(machine, part)
            params = _program_params(part)
            b.ops.append(Operation(id=run_id, kind="run_program", unit=u, resource=machine.id, duration=run_d,
                                   part=pid, uses=[machine.id], after=run_after,
                                   reasons=run_reasons + [f"duration {dm.describe_program(machine, part)}"],
                                   params=params, holds=run_holds))
            b.load[machine.id] = b.load.get(machine.id, 0.0) + run_d
            op = b.robot_op(unload_id, "unload", u, part, sites.machine_site(machine, part, unload=True), target,
                            [machine.id], [run_id] + after,
                            ["tending: run before unload"] + reasons
                            + [f"the machine holds {pid} until this unload"])
            _mark_insertion(op, job, pid)
            placed[pid] = op.id
        sinks = [placed[p] for p in order if not any(e.before == p for q in order for e in incoming[q])]
        last = sinks
        if inspection is not None:
            ins = Operation(id=f"u{u}.inspect", kind="inspect", unit=u, resource=inspection.id,
                            duration=dm.inspect(inspection, job), part=None,
                            uses=[inspection.id, b.fixture], after=list(sinks),
                            reasons=["inspect after all placements of the unit"],
                            params={"checks": [q.id for q in job.quality]})
            b.ops.append(ins)
            b.load[inspection.id] = b.load.get(inspection.id, 0.0) + ins.duration
            last = [ins.id]
        if carry is not None:
            continue   # quantity 1: the unit stays on the fixture (see the note)
        out = b.robot_op(f"u{u}.output", "output", u, base, sites.fixture_site(cell, job, base.id),
                         sites.tray_site(tray, job, (u - 1) % tray_slots), [b.fixture], last,
                         [("after inspection" if inspection is not None else "after all placements")
                          + f"; the unit is carried by its base part '{base.id}'"])
        prev_output = out.id

    plan = Plan(job_id=job.id, cell_id=cell.cell.id, quantity=job.quantity, operations=b.ops, notes=notes)
    check_plan(cell, job, plan)
    log.debug("planned job %s: %d operations", job.id, len(b.ops))
    return plan


def _mark_insertion(op: Operation, job: JobSpec, part_id: str) -> None:
    """An inserted placement carries its insertion move in its params (axis in the product frame)."""
    move = job.placement(part_id).insertion_move()
    if move is not None:
        op.params["insert"] = True
        op.params["insertion"] = {"axis": list(move.axis), "depth": move.depth, "speed": move.speed}
