"""``anycell demo``: the main job, as an operator would run it, in one command (``make demo``).

1. Check the cell and the job, and plan the job, before anything starts: bad
   input stops here with its file and line.
2. Start the cell with ``anycell up CELL --sim`` in an isolated ROS 2 domain:
   the cell agent, the PyBullet ``sim_cell`` node, and (started by the agent)
   each machine's simulator on its real transport.
3. Submit the job over the cell's ROS 2 API and show live progress.
4. Shut the cell down cleanly, and print where the report is: snapshots, the
   executed against the planned timeline, cycle time per unit, inspection
   results against the spec's tolerances, G-code lines and OPC UA calls.

Exit 0 only when the job completed and every unit passed inspection.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List

from anycell.cli.main import EXIT_FAILED, EXIT_OK, command



def _default(*parts: str) -> str:
    """An installed example (share/anycell/...), or the relative path when none is installed."""
    from anycell.resources import data_path

    return data_path(*parts) or os.path.join(*parts)


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cell", default=_default("cell_configs", "demo_cell.yaml"), help="cell config")
    p.add_argument("--job", default=_default("examples", "jobs", "demo_widget.yaml"), help="job spec")
    p.add_argument("--report", default="reports/demo", metavar="DIR",
                   help="directory for the journal, the cell's log and the report (default reports/demo)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the job (default 900)")
    p.add_argument("--domain", type=int, default=None,
                   help="ROS_DOMAIN_ID for the demo cell (default: one picked from the process id)")


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """Ctrl-C the cell (its supervisor stops every node cleanly); kill it if it hangs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(5)
    return proc.returncode


@command("demo", "start the simulated demo cell, make the demo job over ROS 2, and write a report", _args)
def _demo(args: argparse.Namespace) -> int:
    from anycell.agent.supervision.nodes import ros_environment
    from anycell.planners.pipeline import PlanOptions, plan_and_schedule

    from anycell.cell import load_cell
    from anycell.job import load_job
    from anycell.cli.progress import follow_job

    cell = load_cell(args.cell)
    job = load_job(args.job)
    plan = plan_and_schedule(cell, job, PlanOptions(solver="list"))  # bad input is refused before the cell starts
    report = os.path.abspath(args.report)
    os.makedirs(report, exist_ok=True)
    # the journal and the simulated world saved beside it (CellDevices.world_file) go together: a world
    # left from the last demo would be restored into this one, its parts where this job's appear
    for stale in ("journal.db", "journal.db-wal", "journal.db-shm", "sim_world.json", "cell.log"):
        if os.path.exists(os.path.join(report, stale)):
            os.unlink(os.path.join(report, stale))
    shutil.rmtree(os.path.join(report, "reports"), ignore_errors=True)
    domain = args.domain if args.domain is not None else 201 + os.getpid() % 31   # tests use 1..200
    env = ros_environment(domain_id=domain)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FAST"))})
    cell_id = cell.cell.id
    print(f"demo: {job.quantity} x {job.product} on cell '{cell_id}' ({len(plan.operations)} steps); "
          f"ROS_DOMAIN_ID={domain}; the cell's log: {os.path.join(report, 'cell.log')}")
    log = open(os.path.join(report, "cell.log"), "w", encoding="utf-8")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "anycell", "up", os.path.abspath(args.cell), "--sim",
                             "--startup", "execute", "--journal", os.path.join(report, "journal.db"),
                             "--domain", str(domain), "--no-color"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = None
    try:
        from anycell.agent.ros.client import CellClient

        client = CellClient(cell_id)
        if not client.wait_ready(60.0) or not client.wait_state(["Execute"], 60.0):
            print(f"error: the cell did not come up (state {client.state(1.0)}); see {log.name}", file=sys.stderr)
            return EXIT_FAILED
        print(f"demo: cell up and in Execute after {time.monotonic() - t0:.1f} s; submitting {args.job}")
        r = client.submit_file(args.job, timeout=120.0)
        if not r["ok"]:
            from anycell.cli.operations import print_api_error

            print_api_error(r)
            return EXIT_FAILED
        return _conclude(follow_job(client, r["job_id"], args.timeout), time.monotonic() - t0)
    finally:
        if client is not None:
            client.destroy()
        rc = _stop(proc)
        log.close()
        print(f"demo: cell shut down (exit {rc})")


def _conclude(job: Dict[str, Any], wall: float) -> int:
    """Print the verdict; 0 only if the job completed and every unit passed inspection."""
    status = job.get("status")
    rep = job.get("report") or {}
    print(f"demo: job '{job.get('job_id')}' {status} in {wall:.1f} s" + (f" ({job['error']})" if job.get("error") else ""))
    units: List[Dict[str, Any]] = rep.get("units", [])
    for u in units:
        verdict = "passed" if u["passed"] else ("FAILED: " + "; ".join(u["failures"]) if u["inspected"] else
                                                "not inspected")
        print(f"  unit {u['unit']}: {verdict}")
    if rep:
        print(f"  G-code lines acknowledged: {rep.get('gcode_lines_acknowledged')}, "
              f"OPC UA calls: {rep.get('opcua_calls')}")
        print(f"  report: {rep.get('path')}")
    ok = status == "complete" and bool(rep.get("all_units_passed")) and bool(units)
    return EXIT_OK if ok else EXIT_FAILED
