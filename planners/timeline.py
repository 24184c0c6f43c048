"""The plan and its schedule as text a person can follow in a terminal.

:func:`format_plan` lists the operations in schedule order with their
resources, times and the reasons for their order; :func:`format_timeline`
draws one row per resource (``#`` busy, ``=`` held between a load and an
unload, ``.`` idle), scaled to a fixed width.
"""

from __future__ import annotations

from typing import List

from anycell.plan import Plan

from .schedule import resource_intervals


def format_plan(plan: Plan) -> str:
    """Operations (in schedule order when scheduled), each with its resources, timing and reasons."""
    rows = [f"Plan for job '{plan.job_id}' on cell '{plan.cell_id}': {plan.quantity} unit(s), "
            f"{len(plan.operations)} operations"]
    rows += [f"  note: {n}" for n in plan.notes]
    rows.append("")
    when = {e.op: e for e in plan.schedule.entries} if plan.schedule else {}
    ops = sorted(plan.operations, key=lambda o: (when[o.id].start, o.id)) if when else list(plan.operations)
    for k, op in enumerate(ops, 1):
        t = f"{when[op.id].start:7.1f}-{when[op.id].end:7.1f} s" if when else f"{op.duration:7.1f} s"
        extra = [u for u in op.uses if u != op.resource]
        head = f"{k:3d}. {t}  {op.id:<22} {op.kind:<12} on {op.resource}"
        if extra:
            head += f" (+{', '.join(extra)})"
        rows.append(head)
        if op.after:
            rows.append(f"       after: {', '.join(op.after)}")
        for r in op.reasons:
            rows.append(f"       why: {r}")
        for res, until in op.holds.items():
            rows.append(f"       holds {res} until {until} ends")
    return "\n".join(rows)


def format_timeline(plan: Plan, width: int = 72) -> str:
    """One row per resource over the makespan, plus the schedule's figures."""
    if plan.schedule is None:
        return "(not scheduled)"
    s = plan.schedule
    span = max(s.makespan, 1e-9)
    busy = resource_intervals(plan)
    name_w = max([len(r) for r in busy] + [8])
    rows: List[str] = [f"Schedule: makespan {s.makespan:.1f} s, lower bound {s.lower_bound:.1f} s, "
                       f"gap {100 * s.gap:.1f}%, solver {s.solver} ({s.status or '-'}"
                       f"{', optimal' if s.optimal else ''}), {s.solve_time:.2f} s to solve", ""]
    for res in sorted(busy):
        cells = ["."] * width
        for a, b, what in busy[res]:
            mark = "=" if what.startswith("hold:") else "#"
            i0 = int(round(a / span * width))
            i1 = max(i0 + 1, int(round(b / span * width)))
            for i in range(i0, min(i1, width)):
                if cells[i] != "#":
                    cells[i] = mark
        rows.append(f"  {res:<{name_w}} |{''.join(cells)}|")
    rows.append(f"  {'':<{name_w}}  0 s{'':>{width - 8}}{s.makespan:.0f} s")
    rows.append(f"  {'':<{name_w}}  # busy   = held (loaded, between load and unload)   . idle")
    return "\n".join(rows)
