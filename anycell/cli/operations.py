"""Operator commands: ``anycell up``, ``submit``, ``status``, ``resume``, ``cancel`` and the PackML commands.

They talk to a running cell over ROS 2 (the ``anycell.agent.ros.client.CellClient``), so
they need rclpy: the ROS 2 wheels in a pip install, or a sourced ROS 2 on a
robot machine. Everything is imported lazily inside the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

from anycell.cli.progress import progress_line
from anycell.cli.main import EXIT_FAILED, EXIT_INPUT, EXIT_OK, command

PACKML_HELP = {
    "start": "start the cell (Idle -> Execute): queued jobs begin",
    "stop": "stop the cell (halts motion now; an interrupted job waits for resume or cancel)",
    "hold": "hold at the next safe point (between steps), e.g. to refill a feeder",
    "unhold": "continue after a hold",
    "suspend": "suspend at the next safe point (waiting on something outside the cell)",
    "unsuspend": "continue after a suspend",
    "reset": "reset the cell (Stopped or Complete -> Idle)",
    "abort": "abort now: stop the robot, machines to a safe state",
    "clear": "clear an abort (Aborted -> Stopped)",
}


def _cell_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--cell", required=required, metavar="ID", help="the cell id (its ROS namespace)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the cell (default 15)")


def _client(cell_id: str, timeout: float):
    from anycell.agent.ros.client import CellClient
    from anycell.errors import DriverTimeout

    client = CellClient(cell_id)
    if not client.wait_ready(timeout):
        client.destroy()
        raise DriverTimeout(f"cell '{cell_id}' did not answer within {timeout:.0f} s",
                            hint="start it with 'anycell up CELL.yaml' (same ROS_DOMAIN_ID), or check --cell")
    return client


# ------------------------------------------------------------------ up


def _up_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config: a path, or a name in cell_configs/ (demo_cell)")
    p.add_argument("--sim", action="store_true", help="also start the simulated cell (PyBullet robots)")
    p.add_argument("--runner", default="auto",
                   help="step runner: auto (this install's), dry_run (rehearse, nothing moves) or module:function")
    p.add_argument("--dry-run-scale", type=float, default=1.0, help="time scale of a dry run (0.1 = 10x faster)")
    p.add_argument("--journal", default="", help="journal file (default ~/.local/state/anycell/<cell>/journal.db)")
    p.add_argument("--startup", choices=["stopped", "idle", "execute"], default="stopped",
                   help="PackML state to bring the cell to at launch (default: stopped, as after power-up)")
    p.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID for the cell's nodes")
    p.add_argument("--network", action="store_true", help="discover peers on the network (default: this host only)")
    p.add_argument("--market", action="store_true",
                   help="also start the network bridge: put the cell on the manufacturing network (see 'The "
                        "manufacturing network' in the README)")
    p.add_argument("--market-connect", default="", metavar="ENDPOINTS",
                   help="with --market: Zenoh endpoint(s) of a router or the exchange, comma-separated")
    p.add_argument("--market-keys", default="keys", metavar="DIR", help="with --market: the keys directory")
    p.add_argument("--no-color", action="store_true", help="plain output prefixes")


@command("up", "start a cell's nodes as supervised processes (Ctrl-C stops them)", _up_args)
def _up(args: argparse.Namespace) -> int:
    from anycell.agent.supervision.nodes import cell_nodes, resolve_cell_path, ros_environment
    from anycell.agent.supervision.supervisor import Supervisor

    from anycell.cell import load_cell

    path = resolve_cell_path(args.cell)
    cell = load_cell(path)
    env = ros_environment(domain_id=args.domain, localhost=not args.network)
    # the simulated machines boot first, side by side with the nodes (an OPC UA server takes seconds)
    machines = _start_sim_machines(cell, env) if args.sim and args.runner == "auto" else None
    specs = cell_nodes(path, cell.cell.id, sim=args.sim, journal=args.journal, runner=args.runner,
                       dry_run_scale=args.dry_run_scale, startup=args.startup,
                       network={"keys": os.path.abspath(args.market_keys), "connect": args.market_connect}
                       if args.market else None, sim_machines=machines[0] if machines else "")

    def on_crash(spec, rc: int) -> bool:
        if not spec.required:
            sup.say("anycell", f"{spec.name} exited ({rc}); the cell goes on without it")
            return True
        if spec.name == "cell_agent":
            return False   # nothing left to abort; its journal says what was interrupted
        import os

        os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FAST"))})
        client = _client(cell.cell.id, 10.0)
        try:
            ok, reason = client.command("abort")
            sup.say("anycell", f"cell sent to Aborted after {spec.name} crashed" if ok
                    else f"abort refused: {reason}")
            return True
        finally:
            client.destroy()

    sup = Supervisor(specs, env, on_crash=on_crash, color=False if args.no_color else None)
    for mid, started in (machines[1] if machines else {}).items():
        sup.watch(f"sim:{mid}", started.child.proc)
        sup.say("anycell", f"started the simulated machine {mid} (pid {started.child.proc.pid}, log "
                           f"{started.log_path}) for the agent")
    sup.say("anycell", f"cell '{cell.cell.id}' from {path}" + (" (sim)" if args.sim else "")
            + f"; ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}; Ctrl-C to stop")
    code = sup.run()
    if machines and code == 0:   # the simulators' logs stay for a look after a failure
        import shutil

        shutil.rmtree(os.path.dirname(machines[0]), ignore_errors=True)
    return code


def _start_sim_machines(cell: Any, env: Dict[str, str]) -> "Optional[Tuple[str, Dict[str, Any]]]":
    """Start the cell's simulated machines for the agent to take over: (handover file, the started ones).

    None when the cell has none, or when one would not start: the agent then starts them itself,
    and reports why if it fails there too.
    """
    import logging
    import tempfile

    from anycell.sim.machines import (DEFAULT_MACHINE_TIME_SCALE, sim_machine_settings, start_sim_machines,
                                      write_handover)

    if not cell.machines:
        return None
    try:
        scale, faults = sim_machine_settings(env)
        scale = DEFAULT_MACHINE_TIME_SCALE if scale is None else scale
        workdir = tempfile.mkdtemp(prefix=f"anycell-{cell.cell.id}-machines-")
        started = start_sim_machines(cell.machines, workdir, scale, faults)
        handover = os.path.join(workdir, "handover.json")
        write_handover(handover, started, scale, faults)
        return handover, started
    except Exception as exc:  # noqa: BLE001 - the agent starts them itself and reports a real failure
        logging.getLogger(__name__).warning("the simulated machines did not start ahead of the agent: %s", exc)
        return None


# ------------------------------------------------------------------ submit


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job spec (YAML or JSON); program files are sent inline")
    _cell_arg(p)
    p.add_argument("--job-id", help="submit under this id instead of the spec's id")
    p.add_argument("--wait", action="store_true", help="wait for the job to end, with a live progress bar")
    p.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds to wait with --wait")


@command("submit", "send a job to a running cell (--wait shows progress until it ends)", _submit_args)
def _submit(args: argparse.Namespace) -> int:
    client = _client(args.cell, args.timeout)
    try:
        r = client.submit_file(args.job, job_id=args.job_id, timeout=max(args.timeout, 60.0))
        if not r["ok"]:
            print_api_error(r)
            return EXIT_INPUT
        makespan = f"planned makespan {r['makespan']:.1f} s" if r.get("makespan") is not None else "not scheduled"
        print(f"accepted job '{r['job_id']}' on cell '{args.cell}': {r['steps']} steps, {makespan}; "
              f"cell state {r['state']}")
        if r["state"] != "Execute":
            print(f"  (the cell is {r['state']}: 'anycell reset --cell {args.cell}' and "
                  f"'anycell start --cell {args.cell}' to run it)")
        if not args.wait:
            return EXIT_OK
        from anycell.cli.progress import follow_job

        job = follow_job(client, r["job_id"], args.wait_timeout)
        print(f"job '{r['job_id']}': {job['status']}" + (f" ({job['error']})" if job.get("error") else "")
              + (" (a rehearsal: the cell ran the dry-run runner, nothing was made)" if job.get("rehearsal") else ""))
        if job.get("report"):
            print(f"  report: {job['report']['path']}")
        if job["status"] == "interrupted":
            _print_interruption(job, args.cell)
        return EXIT_OK if job["status"] == "complete" else EXIT_FAILED
    finally:
        client.destroy()


def print_api_error(r: Dict[str, Any]) -> None:
    """An error response of the cell API as one line on standard error (field, message, hint)."""
    e = r.get("error") or {}
    where = f"{e['field']}: " if e.get("field") else ""
    print(f"error: {where}{e.get('message')}" + (f" (hint: {e['hint']})" if e.get("hint") else ""), file=sys.stderr)


def _print_interruption(job: Dict[str, Any], cell_id: str) -> None:
    i = job.get("interruption") or {}
    print(f"  interrupted: {i.get('steps_done')} steps done, last completed: {i.get('last_completed')}")
    if i.get("unconfirmed"):
        print(f"  started but NOT confirmed: {', '.join(i['unconfirmed'])}")
        print("  check the cell, then either:")
        print(f"    anycell resume {job['job_id']} --cell {cell_id}           # they are done; go on from the next step")
        print(f"    anycell resume {job['job_id']} --cell {cell_id} --retry   # run them again")
        print(f"    anycell cancel {job['job_id']} --cell {cell_id}           # give the job up")
    else:
        print(f"  anycell resume {job['job_id']} --cell {cell_id}   # or: anycell cancel ...")


# ------------------------------------------------------------------ status


def _status_args(p: argparse.ArgumentParser) -> None:
    _cell_arg(p, required=False)
    p.add_argument("--json", action="store_true", help="print the raw status and jobs as JSON")


@command("status", "show a cell's PackML state, queue and interrupted jobs (all cells without --cell)", _status_args)
def _status(args: argparse.Namespace) -> int:
    if args.cell:
        cells = [args.cell]
    else:
        from anycell.agent.ros.client import find_cells

        cells = find_cells(args.timeout)
    if not cells:
        print("no cell found (is one up, with the same ROS_DOMAIN_ID?)", file=sys.stderr)
        return EXIT_FAILED
    out = []
    for cell_id in cells:
        client = _client(cell_id, args.timeout)
        try:
            st = client.status()
            jobs = client.list_jobs()
            out.append({"status": st, "jobs": jobs.get("jobs", [])})
        finally:
            client.destroy()
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return EXIT_OK
    for entry in out:
        st = entry["status"]
        print(f"cell {st['cell_id']}: {st['state']}   (allowed: {', '.join(st['allowed'])})")
        if not entry["jobs"]:
            print("  no jobs queued")
        for j in entry["jobs"]:
            print(f"  {j['job_id']:<24} {j['status']:<12} {progress_line(j, 20)}")
            if j["status"] == "interrupted":
                _print_interruption(j, st["cell_id"])
    return EXIT_OK


# ------------------------------------------------------------------ resume / cancel


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", help="the job's id")
    _cell_arg(p)


def _resume_args(p: argparse.ArgumentParser) -> None:
    _job_args(p)
    p.add_argument("--retry", action="store_true",
                   help="run the started-but-unconfirmed steps again (default: treat them as done)")
    p.add_argument("--done", action="append", default=[], metavar="STEP",
                   help="this unconfirmed step was done (repeatable)")
    p.add_argument("--retry-step", action="append", default=[], metavar="STEP",
                   help="run this step again (repeatable; a failed step runs again by default)")
    p.add_argument("--skip", action="append", default=[], metavar="STEP=REASON",
                   help="skip this step, with the reason (repeatable), e.g. --skip 'u1.place.a=placed by hand'")


@command("resume", "resume an interrupted (or failed) job: decide per step, then it goes on", _resume_args)
def _resume(args: argparse.Namespace) -> int:
    client = _client(args.cell, args.timeout)
    try:
        decisions = {op: {"action": "done"} for op in args.done}
        decisions.update({op: {"action": "retry"} for op in args.retry_step})
        for item in args.skip:
            op, _, reason = item.partition("=")
            decisions[op] = {"action": "skip", "reason": reason}
        r = client.resume(args.job_id, retry=args.retry, decisions=decisions or None)
        if not r["ok"]:
            print_api_error(r)
            return EXIT_INPUT
        decided = r.get("decisions") or {}
        what = ", ".join(f"{op} {d['action']}" + (f" ({d['reason']})" if d.get("reason") else "")
                         for op, d in decided.items()) or "no pending steps"
        print(f"job '{args.job_id}' resumed: {what}; cell state {r['state']}")
        return EXIT_OK
    finally:
        client.destroy()


@command("cancel", "cancel a job (a running one is halted at once)", _job_args)
def _cancel(args: argparse.Namespace) -> int:
    client = _client(args.cell, args.timeout)
    try:
        r = client.cancel(args.job_id)
        if not r["ok"]:
            print_api_error(r)
            return EXIT_INPUT
        print(f"job '{args.job_id}': {r['status']}")
        return EXIT_OK
    finally:
        client.destroy()


# ------------------------------------------------------------------ PackML commands


def _register_packml(name: str) -> None:
    def handler(args: argparse.Namespace) -> int:
        client = _client(args.cell, args.timeout)
        try:
            ok, message = client.command(name, timeout=args.timeout)
        finally:
            client.destroy()
        if ok:
            print(f"{name}: cell '{args.cell}' is now {message}")
            return EXIT_OK
        print(f"refused: {message}", file=sys.stderr)
        return EXIT_INPUT

    command(name, PACKML_HELP[name], _cell_arg)(handler)


for _name in ("start", "stop", "hold", "unhold", "suspend", "unsuspend", "reset", "abort", "clear"):
    _register_packml(_name)
