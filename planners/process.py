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
(geometry plus explicit ``after:``). Each unit is assembled on one fixture,
the cell's fixtures in turn (:func:`anycell.planners.sites.unit_fixture`): a
unit's placements follow the output of the unit before it *on the same
fixture*, so units on different fixtures are built at the same time, and on
one fixture machines may make unit k+1's parts while unit k is assembled. A
machine for a unit's part is chosen among those from which some robot can put
the part on the unit's fixture; a finished unit goes to the output tray
nearest its fixture. Placements of one unit that the
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

from anycell.cell import CellConfig, MachineConfig, RobotConfig, Station
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
        self.slots = sites.allocate_feeder_slots(cell, job, self._slot_serves)
        self.slot_taken: Dict[tuple, str] = {}   # (feeder id, slot index) -> the last op that takes a part there

    def _slot_serves(self, unit: int, part: Part, slot: Site) -> bool:
        """A feeder slot suits ``unit``'s ``part`` when one robot reaches both it and the unit's fixture (with
        several fixtures, the unit's robot fetches its parts from its own side of the cell)."""
        fixture = sites.unit_fixture(self.cell, unit).id
        target = sites.fixture_site(self.cell, self.job, part.id, fixture)
        return self._can_move("pick_place", part, slot, target)

    def _can_move(self, kind: str, part: Part, source: Site, target: Site) -> bool:
        """Some robot can do a ``kind`` move of ``part`` from ``source`` to ``target`` (reach, payload,
        gripper): a trial operation through the feasibility check."""
        trial = Operation(id=f"trial.{kind}.{part.id}", kind=kind, unit=1, resource="", duration=0.0,
                          part=part.id, params={"source": source.__dict__.copy(), "target": target.__dict__.copy()})
        for robot in self.cell.robots:
            trial.resource = robot.id
            try:
                check_operation(self.cell, self.job, trial)
                return True
            except InfeasibleError:
                continue
        return False

    def machine_for(self, part: Part, target: Site) -> MachineConfig:
        """The least-loaded machine offering the part's process (ties: config order), among those from
        which some robot can put the part at ``target`` (all of them when none can: the feasibility
        check then names the limit). With several fixtures a unit's part is made where a robot that
        reaches the unit's fixture can fetch it."""
        cands = program_machines(self.cell, part) or self.cell.machines_with(part.source.process or "")
        served = [m for m in cands if self._can_move("unload", part, sites.machine_site(m, part, unload=True), target)]
        return min(served or cands, key=lambda m: (self.load.get(m.id, 0.0), self.cell.machines.index(m)))

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
    fixtures = cell.stations_of("fixture")
    inspection = cell.stations_of("inspection")[0] if job.quality else None
    base = sites.base_part(job)
    notes = [f"durations: {dm.name}",
             f"assembly order of one unit: {' -> '.join(order)}",
             _fixture_note(fixtures, job.quantity)]
    for part_type, used in sites.feeder_slots_in_use(cell, job).items():
        empty = [f"slot {i} of '{st.id}'" for st, i, _s in cell.feeder_slots(part_type)
                 if (st.id, i) not in {(u.id, k) for u, k, _x in used}]
        if empty:
            notes.append(f"feeder {', '.join(empty)} ({part_type}) left empty: its part would touch another "
                         f"slot's (under {sites.SLOT_GAP * 1000:g} mm apart)")
    tray_sites = _tray_sites(cell, job, notes)

    problems = [carry_problem(r, job) for r in cell.robots]
    carry = None if any(p is None for p in problems) else problems[0]
    if carry is not None:
        if job.quantity > 1:
            raise InfeasibleError(f"no robot of cell '{cell.cell.id}' can take a finished unit off the fixture: "
                                  f"{carry}", field="quantity",
                                  hint="with quantity 1 the unit stays on the fixture for the operator; "
                                       "otherwise change the product or the tool")
        notes.append(f"the finished unit stays on the fixture for the operator: {carry}")

    prev_output: Dict[str, Operation] = {}   # fixture id -> the output of the last unit assembled on it
    for u in range(1, job.quantity + 1):
        fixture = sites.unit_fixture(cell, u).id
        placed: Dict[str, str] = {}   # part id -> the op that puts it on the fixture
        for pid in order:
            part = job.part(pid)
            target = sites.fixture_site(cell, job, pid, fixture)
            after: List[str] = []
            reasons: List[str] = []
            for e in incoming[pid]:
                after.append(placed[e.before])
                reasons.append(e.reason)
            move = job.placement(pid).insertion_move()
            if move is not None:
                reasons.append(f"{pid} is inserted: a straight move along {list(move.axis)} for the last "
                               f"{move.depth * 1000:g} mm (params.insertion)")
            if fixture in prev_output and not incoming[pid]:
                after.append(prev_output[fixture].id)
                reasons.append(f"fixture: unit {prev_output[fixture].unit} leaves fixture '{fixture}' first")
            if part.source.feeder is not None:
                src = b.slots[(u, pid)]
                op = b.robot_op(f"u{u}.place.{pid}", "pick_place", u, part, src, target, [], after,
                                reasons or ["no part must be placed before it"])
                _mark_insertion(op, job, pid)
                placed[pid] = op.id
                continue
            machine = b.machine_for(part, target)
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
                            uses=[inspection.id, fixture], after=list(sinks),
                            reasons=["inspect after all placements of the unit"],
                            params={"checks": [q.id for q in job.quality], "fixture": fixture})
            b.ops.append(ins)
            b.load[inspection.id] = b.load.get(inspection.id, 0.0) + ins.duration
            last = [ins.id]
        if carry is not None:
            continue   # quantity 1: the unit stays on the fixture (see the note)
        out = b.robot_op(f"u{u}.output", "output", u, base, sites.fixture_site(cell, job, base.id, fixture),
                         tray_sites[u], [fixture], last,
                         [("after inspection" if inspection is not None else "after all placements")
                          + f"; the unit is carried by its base part '{base.id}'"])
        prev_output[fixture] = out

    plan = Plan(job_id=job.id, cell_id=cell.cell.id, quantity=job.quantity, operations=b.ops, notes=notes)
    check_plan(cell, job, plan)
    log.debug("planned job %s: %d operations", job.id, len(b.ops))
    return plan


def _tray_sites(cell: CellConfig, job: JobSpec, notes: List[str]) -> Dict[int, Site]:
    """Where each unit (from 1) goes when it is finished: a position on the output tray nearest its
    fixture (so a robot that builds units on its own fixture does not carry them across the cell),
    positions in turn and reused when the tray is full (noted)."""
    trays = cell.stations_of("output_tray")
    unit_tray = {u: sites.nearest_station(trays, sites.unit_fixture(cell, u).pose) for u in range(1, job.quantity + 1)}
    out: Dict[int, Site] = {}
    for tray in trays:
        units = [u for u, t in unit_tray.items() if t.id == tray.id]
        tray_slots = len(sites.tray_positions(tray, job))
        out.update({u: sites.tray_site(tray, job, k % tray_slots) for k, u in enumerate(units)})
        if len(units) > tray_slots:
            notes.append(f"output tray '{tray.id}' holds {tray_slots} unit(s): the operator empties it every "
                         f"{tray_slots} unit(s) (positions are reused)")
    return out


def _fixture_note(fixtures: List[Station], quantity: int) -> str:
    """What the plan's notes say about the fixture(s) the units are assembled on."""
    if len(fixtures) == 1 or quantity == 1:
        return (f"one fixture ('{fixtures[0].id}'): units are assembled one after another; machines make "
                f"later units' parts meanwhile")
    return (f"{len(fixtures)} fixtures ({', '.join(repr(f.id) for f in fixtures)}): unit k goes on the k-th "
            f"in turn; units on different fixtures are assembled at the same time")


def _mark_insertion(op: Operation, job: JobSpec, part_id: str) -> None:
    """An inserted placement carries its insertion move in its params (axis in the product frame)."""
    move = job.placement(part_id).insertion_move()
    if move is not None:
        op.params["insert"] = True
        op.params["insertion"] = {"axis": list(move.axis), "depth": move.depth, "speed": move.speed}
