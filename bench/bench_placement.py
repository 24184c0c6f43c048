"""Placement error of real part shapes against the robot's declared accuracy.

Every example job with shaped parts runs headless through ``anycell sim`` (planner, executor,
step runner, simulated machines) on the two example cells with different tools: the Panda with
its parallel gripper (demo cell) and the LBR iiwa with a suction cup (kuka cell). After every
placement the step runner measures the part in the simulated world; this prints the median and
the largest position error over all placements of all units, next to the robot's declared
``accuracy.position`` (the reference), as a ratio. Goal: median <= 1 (the cell places as well as
its robot is declared to), and every placement within its tolerance (else the step fails).

Run: .venv/bin/python bench/bench_placement.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.agent.simulation.job import run_job_in_sim  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.job import load_job  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = [("demo_cell", "peg_in_hole"), ("demo_cell", "bracket_clip"),
        ("kuka_cell", "peg_in_hole_flush"), ("kuka_cell", "bracket_clip")]


def main() -> int:
    errors: Dict[str, List[float]] = {}
    accuracy: Dict[str, float] = {}
    failed = 0
    print(f"{'cell':<10} {'job':<18} {'units':>5} {'outcome':<9} {'placements':>10} {'median mm':>10} "
          f"{'max mm':>8} {'accuracy mm':>12} {'ratio':>6}")
    for cell_id, job_id in RUNS:
        cell = load_cell(os.path.join(ROOT, "cell_configs", f"{cell_id}.yaml"))
        job = load_job(os.path.join(ROOT, "examples", "jobs", f"{job_id}.yaml"))
        with tempfile.TemporaryDirectory() as tmp:
            report = run_job_in_sim(cell, job, os.path.join(tmp, "report"))
        errs = [p["error_m"] for p in report["placements"]]
        acc = cell.robots[0].accuracy.position
        accuracy[cell_id] = acc
        errors.setdefault(cell_id, []).extend(errs)
        failed += report["outcome"] != "complete"
        med = statistics.median(errs) if errs else float("nan")
        print(f"{cell_id:<10} {job_id:<18} {job.quantity:>5} {report['outcome']:<9} {len(errs):>10} "
              f"{med * 1000:>10.3f} {max(errs, default=float('nan')) * 1000:>8.3f} {acc * 1000:>12.3f} "
              f"{med / acc:>6.2f}")
    every = [e for errs in errors.values() for e in errs]
    acc = max(accuracy.values())
    med = statistics.median(every)
    print(f"\nall placements ({len(every)}): median {med * 1000:.3f} mm, max {max(every) * 1000:.3f} mm; "
          f"declared accuracy {acc * 1000:.3f} mm; ratio median/accuracy {med / acc:.2f}, "
          f"max/accuracy {max(every) / acc:.2f}; {failed} job(s) not complete")
    return 1 if failed else 0


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    raise SystemExit(main())
