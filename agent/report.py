"""The report a run leaves behind: what was planned, what happened, and whether the units conform.

Written by ``anycell sim`` and ``anycell demo`` (and by the cell agent when
asked to). A directory with:

* ``report.md``: the summary a person reads, with the pictures inline;
* ``report.json``: the same figures for machines (a cell's proof of what it built);
* ``timeline.png``: the executed timeline under the planned one, one row per resource;
* the PNG snapshots the runner took (start, each placement, each inspection, end).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from anycell.cell import CellConfig
from anycell.job import JobSpec
from anycell.plan import Plan

if TYPE_CHECKING:  # the runner writes reports: no import back at run time
    from anycell.agent.cell_runner import CellRunner

log = logging.getLogger(__name__)


def report_dir_for(journal_path: str, job_id: str) -> str:
    """Where the cell agent writes a job's report: beside its journal, one folder per job."""
    return os.path.join(os.path.dirname(os.path.abspath(journal_path)), "reports", job_id)


def report_summary(directory: str) -> Optional[Dict[str, Any]]:
    """The verdict part of a written report (for the API's job summary), or None if there is none."""
    path = os.path.join(directory, "report.json")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            r = json.load(handle)
    except (OSError, ValueError):
        return None
    return {"path": os.path.join(directory, "report.md"), "outcome": r.get("outcome"),
            "all_units_passed": r.get("all_units_passed"),
            "units": [{"unit": u["unit"], "inspected": u["inspected"], "passed": u["passed"],
                       "failures": [f"{p['part']}: {p['reason']}" for p in (u.get("result") or {}).get("parts", [])
                                    if not p["passed"]]} for u in r.get("units", [])],
            "gcode_lines_acknowledged": r.get("gcode_lines_acknowledged"), "opcua_calls": r.get("opcua_calls")}


def unit_cycle_times(intervals: Dict[str, tuple], plan: Plan) -> Dict[int, float]:
    """Per unit: from its first step's start to its last step's end (seconds)."""
    out: Dict[int, List[float]] = {}
    for op in plan.operations:
        if op.id not in intervals:
            continue
        start, end = intervals[op.id]
        span = out.setdefault(op.unit, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return {u: round(s[1] - s[0], 3) for u, s in sorted(out.items())}


def build_report(*, cell: CellConfig, job: JobSpec, plan: Plan, runner: "CellRunner", outcome: str, wall_time: float,
                 machine_counters: Dict[str, Dict[str, Any]], error: Optional[Dict[str, Any]] = None,
                 time_scale: Optional[float] = None) -> Dict[str, Any]:
    """The report's figures as JSON-ready data."""
    planned = {e.op: (e.start, e.end) for e in plan.schedule.entries} if plan.schedule else {}
    executed = {r.op: (r.started, r.finished) for r in runner.records}
    units = []
    for unit in range(1, job.quantity + 1):
        res = runner.unit_results.get(unit)
        units.append({"unit": unit, "inspected": res is not None, "passed": bool(res and res.passed),
                      "result": res.to_dict() if res else None})
    gcode = sum(int(r.detail.get("lines_acknowledged", 0)) for r in runner.records if r.kind == "run_program"
                and machine_counters.get(r.resource, {}).get("protocol") in ("grbl", "marlin"))
    opcua = sum(int(c.get("calls", 0)) + int(c.get("reads", 0)) + int(c.get("writes", 0))
                for c in machine_counters.values() if c.get("protocol") == "opcua")
    motion = [r.detail for r in runner.records if "motion_s" in r.detail]
    robot_s = sum(d["motion_s"] for d in motion)
    robot_wall = sum(d.get("moving_wall_s", 0.0) for d in motion)
    return {
        "robot_motion_s": round(robot_s, 3),
        "robot_wall_s": round(robot_wall, 3),
        "planning_s": round(sum(d.get("planning_s", 0.0) for d in motion), 3),
        "robot_real_time_factor": round(robot_s / robot_wall, 2) if robot_wall > 0 else None,
        "cell": cell.cell.id, "job": job.id, "product": job.product, "quantity": job.quantity,
        "outcome": outcome, "error": error,
        "all_units_passed": all(u["passed"] for u in units),
        "planned_makespan_s": plan.schedule.makespan if plan.schedule else None,
        "executed_wall_time_s": round(wall_time, 3),
        "machine_time_scale": time_scale,
        "planned_unit_cycle_s": unit_cycle_times(planned, plan),
        "executed_unit_cycle_s": unit_cycle_times(executed, plan),
        "steps": [{"op": r.op, "kind": r.kind, "unit": r.unit, "resource": r.resource,
                   "start_s": round(r.started, 3), "end_s": round(r.finished, 3),
                   "planned_start_s": planned.get(r.op, (None, None))[0],
                   "planned_end_s": planned.get(r.op, (None, None))[1], "detail": r.detail} for r in runner.records],
        "placements": runner.placements,
        "units": units,
        "gcode_lines_acknowledged": gcode,
        "opcua_calls": opcua,
        "machines": machine_counters,
        "snapshots": list(runner.snapshots),
    }


def write_timeline(plan: Plan, runner: "CellRunner", path: str) -> str:
    """Planned (top) and executed (bottom) timelines, one row per resource."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anycell.planners.gantt import KIND_COLORS

    ops = {op.id: op for op in plan.operations}
    resources = sorted({op.resource for op in plan.operations})
    fig, axes = plt.subplots(2, 1, figsize=(10, 1.2 + 0.55 * len(resources) * 2), squeeze=False)
    panels = [("planned (modelled seconds)", [(e.op, e.start, e.end) for e in (plan.schedule.entries if plan.schedule else [])]),
              ("executed (wall-clock seconds)", [(r.op, r.started, r.finished) for r in runner.records])]
    for ax, (title, bars) in zip(axes[:, 0], panels):
        for op_id, start, end in bars:
            op = ops.get(op_id)
            if op is None:
                continue
            row = resources.index(op.resource)
            ax.barh(row, max(end - start, 1e-3), left=start, color=KIND_COLORS.get(op.kind, "#999999"),
                    edgecolor="black", linewidth=0.4)
            if end - start > 0:
                ax.text(start + (end - start) / 2, row, f"u{op.unit}", ha="center", va="center", fontsize=6)
        ax.set_yticks(range(len(resources)))
        ax.set_yticklabels(resources)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_markdown(r: Dict[str, Any]) -> str:
    """The report a person reads."""
    lines = [f"# {r['quantity']} x {r['product']} (job `{r['job']}`) on cell `{r['cell']}`", "",
             f"- outcome: **{r['outcome']}**" + (f" ({r['error'].get('message')})" if r.get("error") else ""),
             f"- every unit passed inspection: **{'yes' if r['all_units_passed'] else 'NO'}**",
             f"- planned makespan: {r['planned_makespan_s']:.1f} s (modelled); executed in "
             f"{r['executed_wall_time_s']:.1f} s wall clock"
             + (f" (simulated machines at {r['machine_time_scale']}x their modelled times, the robot faster "
                "than real time)" if r.get("machine_time_scale") else ""),
             "- cycle time per unit (planned / executed): " + ", ".join(
                 f"unit {u}: {r['planned_unit_cycle_s'].get(u, float('nan')):.1f} s / "
                 f"{r['executed_unit_cycle_s'].get(u, float('nan')):.1f} s"
                 for u in sorted(set(r["planned_unit_cycle_s"]) | set(r["executed_unit_cycle_s"]))),
             f"- robot motion: {r['robot_motion_s']:.1f} s" + (
                 f", simulated {r['robot_real_time_factor']:.0f}x faster than real time"
                 if r.get("robot_real_time_factor") else "") + f"; motion planning {r['planning_s']:.2f} s",
             f"- G-code lines acknowledged by the firmware: {r['gcode_lines_acknowledged']}; "
             f"OPC UA calls (method calls, reads, writes): {r['opcua_calls']}", "",
             "![timeline](timeline.png)", "", "## Inspection", "",
             "| unit | part | position error (mm) | tolerance (mm) | angle error (deg) | tolerance (deg) | pass |",
             "|---|---|---|---|---|---|---|"]
    import math

    for u in r["units"]:
        res = u["result"]
        if res is None:
            lines.append(f"| {u['unit']} | (not inspected) | | | | | NO |")
            continue
        for p in res["parts"]:
            pe = "-" if p["position_error"] is None else f"{p['position_error'] * 1000:.2f}"
            ae = "-" if p["angle_error"] is None else f"{math.degrees(p['angle_error']):.2f}"
            lines.append(f"| {u['unit']} | {p['part']} | {pe} | {p['position_tolerance'] * 1000:.1f} | {ae} | "
                         f"{math.degrees(p['angle_tolerance']):.1f} | {'yes' if p['passed'] else 'NO: ' + p['reason']} |")
    lines += ["", "## Steps", "", "| step | resource | planned (s) | executed (s) | detail |", "|---|---|---|---|---|"]
    for s in r["steps"]:
        planned = "" if s["planned_start_s"] is None else f"{s['planned_start_s']:.1f}-{s['planned_end_s']:.1f}"
        detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["detail"].items()
                           if k not in ("checks", "failures", "moves"))
        lines.append(f"| {s['op']} | {s['resource']} | {planned} | {s['start_s']:.1f}-{s['end_s']:.1f} | {detail} |")
    lines += ["", "## Machines", ""]
    for mid, c in r["machines"].items():
        lines.append(f"- `{mid}`: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    lines += ["", "## Snapshots", ""] + [f"![{n}]({n})" for n in r["snapshots"]]
    return "\n".join(lines) + "\n"


def write_report(directory: str, report: Dict[str, Any], plan: Plan, runner: Any) -> str:
    """Write report.json, report.md and timeline.png into ``directory``; returns report.md's path."""
    os.makedirs(directory, exist_ok=True)
    try:
        write_timeline(plan, runner, os.path.join(directory, "timeline.png"))
    except Exception as exc:  # noqa: BLE001 - a missing chart never loses the report
        log.warning("timeline chart failed: %s", exc)
    with open(os.path.join(directory, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    path = os.path.join(directory, "report.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(report_markdown(report))
    return path


def append_recovery(directory: str, recovery: List[Dict[str, Any]]) -> None:
    """Add the job's recovery (crash, resumes, per-step decisions, retries) to a written report."""
    if not recovery or not os.path.isdir(directory):
        return
    path = os.path.join(directory, "report.json")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return
    data["recovery"] = recovery
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    lines = ["", "## Recovery", ""]
    for r in recovery:
        if r["event"] == "resume":
            lines.append(f"* resumed after: {r.get('error') or r.get('from')}")
        elif r["event"] == "decision":
            why = f" ({r['reason']})" if r.get("reason") else ""
            lines.append(f"* step {r.get('op')}: {r.get('action')}{why}")
        elif r["event"] == "retries":
            lines.append("* steps run more than once: " + ", ".join(f"{s['op']} x{s['attempts']}" for s in r["steps"]))
        else:
            lines.append(f"* {r['event']}: {r.get('reason', '')}")
    with open(os.path.join(directory, "report.md"), "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
