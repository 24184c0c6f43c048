"""Robot idle time between consecutive moves: planning on demand vs planning ahead, in one run.

The demo job (``demo_cell`` + ``demo_widget``) runs through ``anycell sim`` twice in each mode:

1. ``--realtime`` (the physics paced to the wall clock, as a real robot moves): every segment
   the robot runs (a trajectory, a grasp, a release) is timed in wall seconds. Idle = the gaps
   between consecutive segments while the robot has a step to do (from the step's start to its
   first segment, between segments, from its last segment to the step's end), over the robot's
   motion time after its first move. Goal < 1 %. All gaps between consecutive segments (also
   while the robot waits for a machine or for nothing) are printed beside it.
2. Headless, as fast as possible: the END-TO-END real-time factor (simulated robot-motion seconds
   over the job's whole wall time).
3. Over ROS 2: ``anycell demo`` (the cell up with its ``sim_cell`` node, the job submitted over the
   API, the robot's motions sent to its controller as JointTrajectory and confirmed from
   JointState), the same idle figure from its report. The cell agent always plans ahead.

Reference: the same job planning on demand (each motion planned whole before it moves), in the same run
(for the ROS figure: the in-process on-demand run above).
Run: .venv/bin/python bench/bench_plan_ahead.py   (--no-ros leaves the ROS run out; about 5 minutes in all)
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.agent.simulation.job import run_job_in_sim  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.job import load_job  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idle_figures(report: Dict[str, Any]) -> Dict[str, float]:
    """Idle seconds (with a step to do, and all) and motion seconds after the first move, per the report's steps."""
    steps = sorted((s for s in report["steps"] if s["detail"].get("moves")), key=lambda s: s["start_s"])
    moves: List[Tuple[float, float]] = []
    in_step = 0.0
    for s in steps:
        spans = [(float(a), float(b)) for _n, a, b in s["detail"]["moves"]]
        edges = [s["start_s"]] + [x for span in spans for x in span] + [s["end_s"]]
        gaps = [max(0.0, edges[i + 1] - edges[i]) for i in range(0, len(edges), 2)]
        in_step += sum(gaps[1:]) if not moves else sum(gaps)   # before the very first move: not counted
        moves += spans
    motion = sum(b - a for a, b in moves[1:])
    between = sum(max(0.0, moves[i + 1][0] - moves[i][1]) for i in range(len(moves) - 1))
    return {"idle_with_work_s": in_step, "idle_between_s": between, "motion_s": motion,
            "first_move_s": moves[0][0] - steps[0]["start_s"] if moves else float("nan")}


def main(ros: bool = True) -> None:
    logging.basicConfig(level=logging.WARNING)
    cell = load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml"))
    job = load_job(os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml"))
    rows = {}
    for ahead in (False, True):
        name = "plan-ahead" if ahead else "on demand"
        with tempfile.TemporaryDirectory() as out:
            rt = run_job_in_sim(cell, job, out, realtime=True, plan_ahead=ahead)
        with tempfile.TemporaryDirectory() as out:
            fast = run_job_in_sim(cell, job, out, plan_ahead=ahead)
        f = idle_figures(rt)
        rows[name] = f
        print(f"{name:10s}: realtime {rt['outcome']}: idle with a step to do {f['idle_with_work_s']:.2f} s = "
              f"{100 * f['idle_with_work_s'] / f['motion_s']:.2f} % of {f['motion_s']:.1f} s motion (goal < 1 %); "
              f"all gaps between moves {100 * f['idle_between_s'] / f['motion_s']:.1f} %; "
              f"first move after {f['first_move_s']:.2f} s; planning {rt['planning_s']:.2f} s")
        print(f"{'':10s}  headless {fast['outcome']}: END-TO-END real-time factor "
              f"{fast['robot_motion_s'] / fast['executed_wall_time_s']:.1f}x ({fast['robot_motion_s']:.1f} s motion, "
              f"wall {fast['executed_wall_time_s']:.2f} s)")
    a, b = rows["on demand"], rows["plan-ahead"]
    print(f"idle with a step to do: plan-ahead / on demand = "
          f"{(b['idle_with_work_s'] / b['motion_s']) / (a['idle_with_work_s'] / a['motion_s']):.2f}")
    if ros:
        r = over_ros()
        print(f"{'over ROS':10s}: idle with a step to do {r['idle_with_work_s']:.2f} s = "
              f"{100 * r['idle_with_work_s'] / r['motion_s']:.2f} % of {r['motion_s']:.1f} s motion (goal < 1 %); "
              f"all gaps between moves {100 * r['idle_between_s'] / r['motion_s']:.1f} %; "
              f"first move after {r['first_move_s']:.2f} s")
        print(f"idle with a step to do: over ROS / on demand in-process = "
              f"{(r['idle_with_work_s'] / r['motion_s']) / (a['idle_with_work_s'] / a['motion_s']):.2f}")


def over_ros() -> Dict[str, float]:
    """The demo job through ``anycell demo`` (the cell's ROS 2 nodes), idle figures from its report."""
    from bench.bench_demo import demo_report

    return idle_figures(demo_report())


if __name__ == "__main__":
    from bench.usage import bench_args

    main(ros=not bench_args(__doc__, [("--no-ros", "leave out the run over ROS 2")]).no_ros)
