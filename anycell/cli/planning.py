"""The ``plan`` and ``quote`` commands: try a job on a cell before any hardware moves.

Both go through :func:`anycell.planners.pipeline.plan_and_schedule`: the
pre-planning checks (the job's names resolve on the cell), task planning with
the per-operation limits, then scheduling. The planners are imported inside the
handlers so ``anycell --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging

from anycell.cli.main import EXIT_OK, command

log = logging.getLogger("anycell")


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("job", help="job spec (YAML or JSON)")
    p.add_argument("--gantt", metavar="OUT", help="also draw a Gantt chart to OUT (.png or .svg)")
    p.add_argument("--json", action="store_true", help="print the plan (with its schedule) as JSON")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S",
                   help="seconds the CP-SAT scheduler may search (default 10)")
    p.add_argument("--solver", choices=["auto", "cp-sat", "list"], default="auto",
                   help="scheduler: CP-SAT warm-started by the list scheduler (auto), or one of them")
    _durations_arg(p)


def _durations_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--durations", choices=["config", "motion"], default="config",
                   help="robot move times from the cell config's defaults, or estimated from the robot's "
                        "kinematics and joint limits (motion)")


def _planned(args: argparse.Namespace):  # noqa: ANN202
    from anycell.cell import load_cell
    from anycell.job import load_job
    from anycell.planners.pipeline import PlanOptions, plan_and_schedule

    cell = load_cell(args.cell)
    job = load_job(args.job)
    plan = plan_and_schedule(cell, job, PlanOptions(durations=getattr(args, "durations", "config"),
                                                    time_limit=getattr(args, "time_limit", 10.0),
                                                    solver=getattr(args, "solver", "auto")))
    return cell, job, plan


@command("plan", "plan and schedule a job on a cell; print the operations, their reasons and a timeline",
         _plan_args)
def _plan(args: argparse.Namespace) -> int:
    from anycell.planners.timeline import format_plan, format_timeline

    _cell, _job, plan = _planned(args)
    if args.gantt:
        from anycell.planners.gantt import write_gantt

        write_gantt(plan, args.gantt)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(format_plan(plan))
        print()
        print(format_timeline(plan))
        if args.gantt:
            print(f"\nGantt chart written to {args.gantt}")
    return EXIT_OK


def _quote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("job", help="job spec (YAML or JSON)")
    p.add_argument("--json", action="store_true", help="print the quote as JSON")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S",
                   help="seconds the CP-SAT scheduler may search (default 10)")
    _durations_arg(p)


@command("quote", "quote a job on a cell: time (makespan, per unit) and cost line by line", _quote_args)
def _quote(args: argparse.Namespace) -> int:
    from anycell.planners.quote import quote

    cell, job, plan = _planned(args)
    q = quote(cell, job, plan)
    if args.json:
        print(json.dumps(q.to_dict(), indent=2, sort_keys=True))
    else:
        print(q.format_text())
    return EXIT_OK
