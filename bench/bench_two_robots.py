"""Benchmark: a job on the two-robot cell against the same job on its one-robot version, same run.

Cell: ``cell_configs/two_robot_cell.yaml`` (two KUKA iiwa arms with suction cups, a shared
feeder and fixture, a laser engraver on each side that only its side's robot reaches). Its
one-robot version is the same cell with a single iiwa standing between the two bases, where
it reaches everything. Job: ``bench/jobs/engraved_pair.yaml`` (two tags engraved from
blank stock, laid on a base plate): the two loads can run at once, the fixture takes one
placement at a time. Second job: ``bench/jobs/engraved_four.yaml``, four tags, two per
laser (more of the work is each robot's own).

Third case, parallel by construction: ``bench/jobs/engraved_pairs.yaml`` (two units of a tag
pair) on ``bench/cells/two_fixture_cell.yaml``, the same layout with a fixture and an output
tray on each side, out of the other robot's reach. The task planner gives the fixtures to the
units in turn, so each robot builds one unit wholly on its side; its one-robot version is
again one iiwa between the two bases.

Figure: the makespan in *simulated* seconds, i.e. the physics clock both robots share
(their motions, grasps and releases; two robots moving at once advance it once). Planning
and the machines' cycles are left out (machines run at time scale 0.02), so the figure is
the robots' work and does not depend on how fast this machine computes. Ratio:
one-robot makespan / two-robot makespan (goal: at least 1.6 where the work is parallel).

Safety figure: the closest the two robots' bodies come, measured at every physics step
(240 Hz) of the two-robot run, against ``safety.robot_margin``.

Run: .venv/bin/python bench/bench_two_robots.py   (about five minutes; ``--shared``: the two
shared-fixture cases only, ``--parallel``: the parallel case only)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
import time
from typing import Any, Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from anycell.agent import packml as pm  # noqa: E402
from anycell.agent.executor import Executor  # noqa: E402
from anycell.agent.journal import Journal  # noqa: E402
from anycell.agent.simulation.runtime import SimulatedCell  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.geometry import Pose  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.planners.durations import MotionDurationModel  # noqa: E402
from anycell.planners.process import plan_job  # noqa: E402
from anycell.planners.schedule import schedule_plan  # noqa: E402

CELL = os.path.join(ROOT, "cell_configs", "two_robot_cell.yaml")
JOBS = [os.path.join(ROOT, "bench", "jobs", name) for name in ("engraved_pair.yaml", "engraved_four.yaml")]
#: (cell, job): the work is parallel by construction (a fixture, feeder, laser and tray per robot)
PARALLEL = (os.path.join(ROOT, "bench", "cells", "two_fixture_cell.yaml"),
            os.path.join(ROOT, "bench", "jobs", "engraved_pairs.yaml"))


def run(cell: Any, job: Any, workdir: str) -> Dict[str, Any]:
    """Make the job in the simulated cell; the simulated makespan and the closest robot-robot distance."""
    import pybullet as p

    plan = plan_job(cell, job, MotionDurationModel(cell))   # move times from each robot's kinematics
    schedule_plan(plan, cell, time_limit=5.0)
    journal = Journal(os.path.join(workdir, "journal.db"))
    journal.add_job(job.id, {"job": job.id, "cell": cell.cell.id})
    journal.set_plan(job.id, plan.to_dict())
    sim = SimulatedCell(cell, os.path.join(workdir, "work"), machine_time_scale=0.02)
    closest = [float("inf")]
    try:
        world = sim.world
        bodies = [rb.body for rb in world.robots.values()]
        plain_step = world.step

        def step(n: int = 1) -> None:
            for _ in range(int(n)):
                plain_step(1)
                if len(bodies) == 2:
                    pts = p.getClosestPoints(bodies[0], bodies[1], 1.0, physicsClientId=world.client)
                    if pts:
                        closest[0] = min(closest[0], min(c[8] for c in pts))

        world.step = step  # type: ignore[method-assign]
        runner = sim.runner(job, report_dir=os.path.join(workdir, "report"))
        machine = pm.PackML(pm.IDLE)
        machine.command("start")
        machine.state_complete(pm.STARTING)
        t0_sim, t0_wall = world.sim_time, time.monotonic()
        result = Executor(plan, runner, journal, machine).run()
        report = runner.finish(plan, result.outcome, result.error)
        return {"outcome": result.outcome, "error": result.error, "makespan": world.sim_time - t0_sim,
                "wall": time.monotonic() - t0_wall, "closest": closest[0], "placements": report["placements"],
                "waits": getattr(runner._reservations, "waits", 0), "concurrent": world.stepper.max_concurrent,
                "planned": plan.schedule.makespan if plan.schedule else None, "own": _own_motion(runner)}
    finally:
        sim.close()
        journal.close()


def _own_motion(runner: Any) -> Dict[str, float]:
    """Each robot's own motion time (simulated s, the sum of its steps' motions): the floor of the makespan
    when it never waits for another robot."""
    own: Dict[str, float] = {}
    for rec in runner.records:
        if "motion_s" in rec.detail:
            own[rec.resource] = own.get(rec.resource, 0.0) + float(rec.detail["motion_s"])
    return own


def main(shared: bool = True, parallel: bool = True) -> int:
    logging.basicConfig(level=logging.WARNING)
    cases = ([(CELL, path) for path in JOBS] if shared else []) + ([PARALLEL] if parallel else [])
    ok = True
    for cell_path, path in cases:
        two = load_cell(cell_path)
        # the one-robot version: the same cell with one of its robots standing between the two bases,
        # where it reaches every station and both machines
        centre = dataclasses.replace(two.robot("left"), base=Pose(xyz=[0.0, 0.0, 0.0]))
        one = dataclasses.replace(two, robots=[centre])
        margin = float(two.safety.robot_margin)
        job = load_job(path)
        print(f"== job {job.id} on {two.cell.id}")
        with tempfile.TemporaryDirectory() as tmp:
            r1 = run(one, job, os.path.join(tmp, "one"))
            r2 = run(two, job, os.path.join(tmp, "two"))
        for name, r in (("one robot", r1), ("two robots", r2)):
            placed = all(p["error_m"] <= p["tolerance_m"] for p in r["placements"])
            print(f"{name:>10}: {r['outcome']}, makespan {r['makespan']:.1f} s simulated "
                  f"({r['wall']:.1f} s wall), {len(r['placements'])} placements within tolerance: {placed}")
            if r["error"]:
                print(f"            error: {r['error']}")
        ratio = r1["makespan"] / r2["makespan"] if r2["makespan"] > 0 else float("nan")
        print(f"two robots vs one: {ratio:.2f}x faster (goal >= 1.6x where the work is parallel); "
              f"most robots moving in one physics step: {r2['concurrent']}; reservation waits: {r2['waits']}")
        own = ", ".join(f"{rid} {t:.1f} s" for rid, t in sorted(r2["own"].items()))
        print(f"each robot's own motion time, two robots: {own}; one robot: "
              f"{sum(r1['own'].values()):.1f} s")
        print(f"closest robot-robot distance at any physics step: {r2['closest'] * 1000:.1f} mm "
              f"(margin {margin * 1000:.0f} mm): {'OK' if r2['closest'] >= margin else 'BELOW MARGIN'}")
        ok = ok and r1["outcome"] == r2["outcome"] == "complete" and r2["closest"] >= margin
    return 0 if ok else 1


if __name__ == "__main__":
    from bench.usage import bench_args

    args = bench_args(__doc__, [("--shared", "only the two shared-fixture cases"),
                                ("--parallel", "only the parallel case (a fixture per robot)")])
    both = not args.shared and not args.parallel
    sys.exit(main(shared=both or args.shared, parallel=both or args.parallel))
