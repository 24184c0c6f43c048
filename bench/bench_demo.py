"""The demo job's wall time over ROS 2 against its planned makespan, measured in the same run.

Runs ``anycell demo`` (the cell up in sim mode, the job submitted over the ROS 2
API, real drivers and simulated machines), then reads the report: the
executed wall time from the first step's start to the last step's end.

Reference: the makespan the planner predicts for the same job on the same cell
with the same machine speed. The simulated machines run their modelled times at
``DEFAULT_MACHINE_TIME_SCALE``; the reference schedule therefore uses program
durations times that scale, and robot moves timed from the motion model
(``planners.durations.MotionDurationModel``). A ratio near 1 says the plan's
timing predicts what the cell does; above 1 is overhead (planning at run time,
settling, ROS round trips, waits the schedule did not foresee).

Run: .venv/bin/python bench/bench_demo.py   (about two minutes)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from anycell.agent.simulation.runtime import DEFAULT_MACHINE_TIME_SCALE  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.planners.pipeline import PlanOptions, plan_and_schedule  # noqa: E402

CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")


def reference_makespan() -> float:
    cell, job = load_cell(CELL), load_job(JOB)
    plan = plan_and_schedule(cell, job, PlanOptions(durations="motion", time_limit=10.0,
                                                    machine_time_scale=DEFAULT_MACHINE_TIME_SCALE))
    assert plan.schedule is not None
    return plan.schedule.makespan


def demo_report() -> Dict[str, Any]:
    """Run ``anycell demo`` (the cell's ROS 2 nodes, the job over the API) and return its report."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-m", "anycell", "demo", "--report", out], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"the demo over ROS failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        with open(os.path.join(out, "reports", "demo_widget", "report.json"), encoding="utf-8") as fh:
            return json.load(fh)


def main() -> None:
    report = demo_report()
    steps = report["steps"]
    wall = max(s["end_s"] for s in steps) - min(s["start_s"] for s in steps)
    ref = reference_makespan()
    print(f"demo job over ROS 2: {wall:.1f} s from first step to last (units: {report['executed_unit_cycle_s']})")
    print(f"reference: planned makespan at the same machine speed (x{DEFAULT_MACHINE_TIME_SCALE}) with "
          f"motion-timed robot moves: {ref:.1f} s; the config-default plan says {report['planned_makespan_s']:.1f} s")
    print(f"ratio executed / planned: {wall / ref:.2f}")


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    main()
