"""``anycell sim CELL JOB --report DIR``: make a job on the simulated cell, without ROS.

The same planner, executor, step runner, drivers and simulated machines as the
cell agent (see :mod:`anycell.agent.simulation.job`): the robot moves in PyBullet, the printer
and the mill are simulated firmware and servers driven over their real
protocols, the inspection station measures each unit. The report directory
gets ``report.md``, ``report.json``, ``timeline.png`` and the snapshots.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from anycell.cli.main import EXIT_FAILED, EXIT_OK, command


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("job", help="job spec (YAML or JSON)")
    p.add_argument("--report", required=True, metavar="DIR", help="directory for the report, pictures and journal")
    p.add_argument("--gui", action="store_true", help="show the PyBullet window")
    p.add_argument("--realtime", action="store_true", help="pace the robot simulation to the wall clock")
    p.add_argument("--machine-time-scale", type=float, default=None, metavar="X",
                   help="simulated machines run their modelled times (heating, cutting) times X "
                        "(default 0.02; 1 is real time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.add_argument("--plan", choices=("auto", "ahead", "on-demand"), default="auto",
                   help="plan each robot motion while the one before runs (ahead), or whole at its turn "
                        "(on-demand); auto: ahead with --realtime or --gui, on demand headless, where the "
                        "robot waits for nothing in simulated time and one process cannot overlap the two")


@command("sim", "make a job on the simulated cell (robots, machines, inspection) and write a report", _args)
def _sim(args: argparse.Namespace) -> int:
    from anycell.agent.simulation.job import run_job_in_sim
    from anycell.agent.simulation.runtime import DEFAULT_MACHINE_TIME_SCALE

    from anycell.cell import load_cell
    from anycell.job import load_job
    from anycell.cli.progress import ProgressDisplay

    cell = load_cell(args.cell)
    job = load_job(args.job)
    display = ProgressDisplay(sys.stderr, enabled=not args.no_progress)

    def on_event(info: Dict[str, Any]) -> None:
        if "total" in info:
            display.show(info)

    scale = DEFAULT_MACHINE_TIME_SCALE if args.machine_time_scale is None else args.machine_time_scale
    try:
        r = run_job_in_sim(cell, job, args.report, gui=args.gui, realtime=args.realtime,
                           machine_time_scale=scale, on_event=on_event,
                           plan_ahead=None if args.plan == "auto" else args.plan == "ahead")
    finally:
        display.close()
    inspected = [u for u in r["units"] if u["inspected"]]
    verdict = (f"{sum(u['passed'] for u in inspected)}/{len(inspected)} unit(s) passed inspection"
               if inspected else "no inspection in this job")
    print(f"{r['outcome']}: {len(r['steps'])} step(s), {verdict}; {r['gcode_lines_acknowledged']} G-code lines, "
          f"{r['opcua_calls']} OPC UA calls; {r['executed_wall_time_s']:.1f} s; report in {args.report}/report.md")
    if r.get("error"):
        print(f"error: {r['error'].get('op')}: {r['error'].get('message')}", file=sys.stderr)
    ok = r["outcome"] == "complete" and (r["all_units_passed"] or not inspected)
    return EXIT_OK if ok else EXIT_FAILED
