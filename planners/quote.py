"""A quote: how long a job takes on this cell and what it costs, line by line.

The cost model is the cell's own and is transparent (``costs`` and each
resource's ``rate_per_hour`` in the cell config):

* **resource time**: for each robot, machine and station with a rate, its busy
  time in the schedule times its rate. Busy time is the union of the
  intervals it is used or held (a machine is held from its load to its unload,
  since it can do nothing else meanwhile), exactly as the scheduled timeline
  shows it (:func:`anycell.planners.schedule.resource_intervals`);
* **setup**: ``costs.setup_per_job``, once per job;
* **material**: for each part made from a priced material,
  ``costs.materials[material]`` (per kg) x the part's mass x the quantity.
  Feeder parts are supplied to the cell and not charged here.

Each line is rounded to cents, and the total is the sum of the rounded lines,
so the printed arithmetic adds up. The same job, cell and schedule always give
the same quote (it is the basis for cells bidding on jobs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from anycell.cell import CellConfig
from anycell.errors import PlanningError
from anycell.job import JobSpec
from anycell.plan import Plan

from .schedule import resource_intervals, schedule_plan


@dataclass
class CostLine:
    """One line of the bill: what, the quantity and unit, the rate, and the amount."""

    item: str
    category: str            # resource, setup or material
    quantity: float
    unit: str                # h, job, kg
    rate: float
    amount: float
    note: str = ""


@dataclass
class Quote:
    """Time and cost of a job on a cell."""

    job_id: str
    cell_id: str
    quantity: int
    currency: str
    makespan: float                       # seconds, whole job
    per_unit: float                       # seconds, makespan / quantity
    unit_lead_times: Dict[int, float]     # unit -> seconds from its first op to its output
    lower_bound: float
    optimal: bool
    solver: str
    lines: List[CostLine] = field(default_factory=list)
    total: float = 0.0
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["unit_lead_times"] = {str(k): v for k, v in self.unit_lead_times.items()}
        return out

    def format_text(self) -> str:
        """The quote for people: the time, then each cost line with its arithmetic, then the total."""
        c = self.currency
        rows = [f"Quote for job '{self.job_id}' on cell '{self.cell_id}' ({self.quantity} unit(s))",
                "",
                "Time",
                f"  total (makespan)   {self.makespan:10.1f} s   ({self.makespan / 60:.1f} min)",
                f"  per unit (average) {self.per_unit:10.1f} s   (makespan / {self.quantity})",
                f"  schedule           {self.solver}, "
                + ("proven optimal" if self.optimal else f"lower bound {self.lower_bound:.1f} s, "
                   f"gap {100 * (self.makespan - self.lower_bound) / self.makespan:.1f}%")]
        for u, t in sorted(self.unit_lead_times.items()):
            rows.append(f"  unit {u} lead time   {t:10.1f} s")
        rows += ["", "Cost"]
        width = max([len(ln.item) for ln in self.lines] + [10])
        for ln in self.lines:
            rows.append(f"  {ln.item:<{width}}  {ln.quantity:10.4f} {ln.unit:<3} x {ln.rate:8.2f} {c}/{ln.unit}"
                        f" = {ln.amount:9.2f} {c}" + (f"   ({ln.note})" if ln.note else ""))
        rows.append(f"  {'total':<{width}}  {'':>10} {'':<3}   {'':>8} {'':>{len(c) + 2}}"
                    f" = {self.total:9.2f} {c}")
        if self.notes:
            rows += ["", "Notes"] + [f"  - {n}" for n in self.notes]
        return "\n".join(rows)


def _union_length(intervals: List[Tuple[float, float, str]]) -> float:
    total = 0.0
    cur_s: Optional[float] = None
    cur_e = 0.0
    for s, e, _ in sorted(intervals):
        if cur_s is None or s > cur_e:
            if cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None:
        total += cur_e - cur_s
    return total


def _rates(cell: CellConfig) -> Dict[str, Tuple[str, float]]:
    out: Dict[str, Tuple[str, float]] = {}
    for r in cell.robots:
        out[r.id] = ("robot", r.rate_per_hour)
    for m in cell.machines:
        out[m.id] = (m.kind, m.rate_per_hour)
    for s in cell.stations:
        out[s.id] = (s.kind, s.rate_per_hour)
    return out


def quote(cell: CellConfig, job: JobSpec, plan: Plan) -> Quote:
    """Quote ``job`` on ``cell`` from ``plan`` (scheduled here first if it is not yet)."""
    if plan.schedule is None:
        schedule_plan(plan, cell)
    sched = plan.schedule
    assert sched is not None
    if plan.job_id != job.id or plan.cell_id != cell.cell.id:
        raise PlanningError(f"plan is for job '{plan.job_id}' on cell '{plan.cell_id}', "
                            f"not job '{job.id}' on cell '{cell.cell.id}'")
    currency = cell.costs.currency
    busy = resource_intervals(plan)
    rates = _rates(cell)
    lines: List[CostLine] = []
    notes: List[str] = []
    for rid in [r.id for r in cell.robots] + [m.id for m in cell.machines] + [s.id for s in cell.stations]:
        if rid not in busy:
            continue
        kind, rate = rates[rid]
        seconds = _union_length(busy[rid])
        if rate <= 0:
            notes.append(f"{rid} ({kind}) is busy {seconds:.1f} s but has no rate_per_hour: not charged")
            continue
        hours = seconds / 3600.0
        holds = sum(1 for _, _, w in busy[rid] if w.startswith("hold:"))
        note = f"{seconds:.1f} s busy" + (f", held until unloaded {holds}x" if holds else "")
        lines.append(CostLine(item=f"{rid} ({kind})", category="resource", quantity=round(hours, 6), unit="h",
                              rate=rate, amount=round(hours * rate, 2), note=note))
    if cell.costs.setup_per_job > 0:
        lines.append(CostLine(item="setup", category="setup", quantity=1.0, unit="job",
                              rate=cell.costs.setup_per_job, amount=round(cell.costs.setup_per_job, 2)))
    for part in job.parts:
        mat = part.source.material
        if mat is None:
            if part.source.feeder is not None:
                notes.append(f"part '{part.id}' comes from the feeder (supplied): no material charged")
            continue
        price = cell.costs.materials.get(mat)
        kg = part.mass * job.quantity
        if price is None:
            notes.append(f"part '{part.id}' is {mat}, which has no price in costs.materials: not charged")
            continue
        lines.append(CostLine(item=f"{mat} for {part.id}", category="material", quantity=round(kg, 6), unit="kg",
                              rate=price, amount=round(kg * price, 2),
                              note=f"{part.mass:g} kg x {job.quantity}"))
    total = round(sum(ln.amount for ln in lines), 2)
    lead: Dict[int, float] = {}
    when = {e.op: e for e in sched.entries}
    for u in range(1, plan.quantity + 1):
        ops = [when[o.id] for o in plan.operations if o.unit == u and o.id in when]
        if ops:
            lead[u] = round(max(e.end for e in ops) - min(e.start for e in ops), 3)
    per_unit = sched.makespan / plan.quantity if plan.quantity else 0.0
    return Quote(job_id=job.id, cell_id=cell.cell.id, quantity=plan.quantity, currency=currency,
                 makespan=sched.makespan, per_unit=round(per_unit, 3), unit_lead_times=lead,
                 lower_bound=sched.lower_bound, optimal=sched.optimal, solver=sched.solver,
                 lines=lines, total=total, notes=notes)
