"""Check, plan, schedule: the one way from a job spec and a cell config to a scheduled plan.

Every door that turns a job into a plan goes through :func:`plan_and_schedule`:
the cell's job service (submit and quote over the API), ``anycell sim``,
``anycell plan`` and ``anycell quote``, ``anycell demo`` and the benchmarks. So
a job is refused for the same reasons with the same words everywhere, and a
makespan means the same thing in a quote and on the cell.

The steps:

1. :func:`anycell.planners.process.plan_job`, which first runs
   :func:`anycell.planners.feasibility.check_resources`, the one set of
   pre-planning checks (names resolve, every operation has a resource; with
   the job file's position where the job came from a file), then makes the
   operations, picks their resources and orders them, checking each robot
   operation's limits (reach, payload, accuracy);
2. :func:`anycell.planners.schedule.schedule_plan`: start times on every
   resource (stored in ``plan.schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from anycell.cell import CellConfig
from anycell.errors import PlanningError
from anycell.job import JobSpec
from anycell.plan import Plan

from .durations import DurationModel, MotionDurationModel
from .process import plan_job
from .schedule import schedule_plan

#: Where robot move times come from (``PlanOptions.durations``).
DURATIONS = ("config", "motion")


@dataclass
class PlanOptions:
    """How to plan and schedule a job.

    ``durations``: ``config`` takes robot move times from the cell config's
    defaults (fast, what the cell agent uses); ``motion`` estimates them from
    the robot's kinematics and joint limits (slower, closer to the real
    trajectories). ``time_limit``: seconds the CP-SAT scheduler may search.
    ``solver``: ``auto``, ``cp-sat`` or ``list`` (see
    :func:`anycell.planners.schedule.schedule_plan`). ``machine_time_scale``:
    machine programs take this fraction of their planned time (a simulated
    cell that runs its machines faster than real time).
    """

    durations: str = "config"
    time_limit: float = 10.0
    solver: str = "auto"
    machine_time_scale: float = 1.0


def duration_model(cell: CellConfig, options: PlanOptions) -> Optional[DurationModel]:
    """The duration model ``options`` ask for (None: the planner's default, the config's figures)."""
    if options.durations not in DURATIONS:
        raise PlanningError(f"unknown durations '{options.durations}'", field="durations",
                            hint="one of: " + ", ".join(DURATIONS))
    return MotionDurationModel(cell) if options.durations == "motion" else None


def plan_and_schedule(cell: CellConfig, job: JobSpec, options: Optional[PlanOptions] = None) -> Plan:
    """Check ``job`` against ``cell``, plan it and schedule it; the plan carries its schedule.

    Raises :class:`~anycell.errors.InfeasibleError` when the cell cannot make
    the job (naming the operation, and the job file's position where there is
    one) and :class:`~anycell.errors.PlanningError` when no plan can be made.
    """
    opts = options or PlanOptions()
    plan = plan_job(cell, job, duration_model(cell, opts))
    if opts.machine_time_scale != 1.0:
        for op in plan.operations:
            if op.kind == "run_program":
                op.duration *= opts.machine_time_scale
    schedule_plan(plan, cell, time_limit=opts.time_limit, solver=opts.solver)
    return plan
