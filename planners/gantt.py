"""A Gantt chart of a scheduled plan: one row per resource, drawn with matplotlib (Agg, headless)."""

from __future__ import annotations

import os
from typing import Dict

from anycell.errors import PlanningError
from anycell.plan import Plan

from .schedule import resource_intervals

KIND_COLORS: Dict[str, str] = {
    "pick_place": "#4C72B0", "load": "#DD8452", "unload": "#55A868", "output": "#8172B3",
    "run_program": "#C44E52", "inspect": "#937860",
}


def write_gantt(plan: Plan, path: str, title: str = "") -> str:
    """Draw ``plan``'s schedule to ``path`` (.png or .svg) and return the path."""
    if plan.schedule is None:
        raise PlanningError("the plan is not scheduled yet")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg"):
        raise PlanningError(f"cannot draw a Gantt chart as '{ext or path}'", hint="use a .png or .svg file name")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    busy = resource_intervals(plan)
    kinds = {op.id: op.kind for op in plan.operations}
    resources = sorted(busy)
    fig_h = 0.9 + 0.45 * len(resources)
    fig, ax = plt.subplots(figsize=(10, fig_h), dpi=100)
    for row, res in enumerate(resources):
        for a, b, what in busy[res]:
            if what.startswith("hold:"):
                ax.barh(row, b - a, left=a, height=0.7, color="#dddddd", edgecolor="#999999", hatch="//",
                        linewidth=0.5, zorder=1)
                continue
            ax.barh(row, b - a, left=a, height=0.5, color=KIND_COLORS.get(kinds[what], "#777777"),
                    edgecolor="black", linewidth=0.4, zorder=2)
            if b - a >= plan.schedule.makespan / 40:
                ax.text((a + b) / 2, row, what.split(".")[0], ha="center", va="center", fontsize=6,
                        color="white", zorder=3)
    for op in plan.operations:  # run_program lives inside its machine's hold: draw it on top
        if op.kind == "run_program":
            e = next(x for x in plan.schedule.entries if x.op == op.id)
            row = resources.index(op.resource)
            ax.barh(row, e.end - e.start, left=e.start, height=0.5, color=KIND_COLORS["run_program"],
                    edgecolor="black", linewidth=0.4, zorder=2)
            ax.text((e.start + e.end) / 2, row, op.id.split(".")[0], ha="center", va="center", fontsize=6,
                    color="white", zorder=3)
    ax.set_yticks(range(len(resources)))
    ax.set_yticklabels(resources)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    s = plan.schedule
    ax.set_title(title or f"{plan.job_id} on {plan.cell_id}: makespan {s.makespan:.1f} s "
                          f"({s.solver}, gap {100 * s.gap:.1f}%)", fontsize=9)
    handles = [Patch(color=c, label=k) for k, c in KIND_COLORS.items()]
    handles.append(Patch(facecolor="#dddddd", edgecolor="#999999", hatch="//", label="machine held"))
    ax.legend(handles=handles, fontsize=6, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(resources) < 4 else -0.18),
              frameon=False)
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
