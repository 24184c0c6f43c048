"""Run one job on a simulated cell without ROS: plan, schedule, execute, inspect, report.

This is ``anycell sim CELL JOB --report DIR``: the same planner, executor, step
runner, drivers and simulated machines as the cell agent uses over ROS 2, in
one command for an engineer trying a job before any hardware moves.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Optional

from anycell.cell import CellConfig
from anycell.job import JobSpec

from anycell.agent import packml as pm
from anycell.agent.executor import Executor
from anycell.agent.journal import Journal
from anycell.agent.simulation.runtime import DEFAULT_MACHINE_TIME_SCALE, SimulatedCell

log = logging.getLogger(__name__)


def run_job_in_sim(cell: CellConfig, job: JobSpec, report_dir: str, *, gui: bool = False, realtime: bool = False,
                   machine_time_scale: float = DEFAULT_MACHINE_TIME_SCALE, time_limit: float = 5.0,
                   machine_faults: Optional[Dict[str, Dict[str, Any]]] = None,
                   on_event: Optional[Callable[[Dict[str, Any]], None]] = None,
                   plan_ahead: Optional[bool] = None) -> Dict[str, Any]:
    """Make ``job`` on a simulated ``cell``; write the report into ``report_dir`` and return its figures.

    Bad input is refused before anything starts (validation and planning run
    first). The outcome is in the returned dict: ``complete`` with every unit
    inspected, or ``failed``/``aborted`` with the error of the step at fault.

    ``plan_ahead``: plan each robot motion while the one before it runs (True), or whole at its
    turn (False). None (the default) plans ahead when the robots move in real time (``realtime``
    or ``gui``). Headless, the simulated robot waits for nothing in simulated time, and PyBullet
    holds the GIL through its calls, so a planning thread cannot overlap the physics in one
    process: it only adds the cost of switching (``bench/bench_plan_ahead.py`` measures both).
    """
    from anycell.planners.pipeline import PlanOptions, plan_and_schedule

    plan = plan_and_schedule(cell, job, PlanOptions(time_limit=time_limit))
    os.makedirs(report_dir, exist_ok=True)
    journal_path = os.path.join(report_dir, "journal.db")
    if os.path.exists(journal_path):
        os.unlink(journal_path)
    journal = Journal(journal_path)
    journal.add_job(job.id, {"job": job.id, "cell": cell.cell.id})
    journal.set_plan(job.id, plan.to_dict())
    if plan_ahead is None:
        plan_ahead = realtime or gui
    sim = SimulatedCell(cell, os.path.join(report_dir, "work"), gui=gui, realtime=realtime,
                        machine_time_scale=machine_time_scale, machine_faults=machine_faults)
    try:
        runner = sim.runner(job, report_dir=report_dir, on_event=on_event, plan_ahead=plan_ahead)
        machine = pm.PackML(pm.IDLE)
        machine.command("start")
        machine.state_complete(pm.STARTING)

        result = Executor(plan, runner, journal, machine, on_progress=on_event).run()
        journal.set_status(job.id, "complete" if result.outcome == "complete" else "failed",
                           error=(result.error or {}).get("message"))
        return runner.finish(plan, result.outcome, result.error)
    finally:
        sim.close()
        journal.close()
