"""``anycell sim CELL JOB --report DIR``: run a job's pick-and-place work in the simulated cell.

Until the executor runs whole plans, this command derives the pick-and-place
steps itself from the job's placements: per unit, parts go onto the fixture
in order of the bottom height of their placement (then ``after``), each from
its feeder slot (``planners.sites``). Parts made by machines are listed as
SKIPPED (they are not faked), and so are parts that would rest on one. When
the cell has an output tray, the finished unit is carried there by its base
part. The report holds PNG snapshots (start, each placement, end) and
``summary.json`` / ``summary.md`` with the cycle time, each placement's error
against its tolerance and any collision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

from .cli import EXIT_FAILED, EXIT_OK, command


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("job", help="job spec (YAML or JSON)")
    p.add_argument("--report", required=True, metavar="DIR", help="directory for pictures and the summary")
    p.add_argument("--gui", action="store_true", help="show the PyBullet window")
    p.add_argument("--realtime", action="store_true", help="pace the simulation to the wall clock")
    p.add_argument("--robot", help="robot id (default: the cell's first robot)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")


class Progress:
    """A one-line progress bar on standard error (plain lines when it is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = max(1, total), 0, enabled
        self.tty = sys.stderr.isatty()

    def update(self, text: str, advance: int = 1) -> None:
        self.done = min(self.total, self.done + advance)
        if not self.enabled:
            return
        width = 24
        fill = int(width * self.done / self.total)
        line = f"[{'#' * fill}{'-' * (width - fill)}] {self.done}/{self.total} {text}"
        if self.tty:
            sys.stderr.write("\r" + line[:110].ljust(110))
            if self.done >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def derive_steps(cell: Any, job: Any) -> List[Dict[str, Any]]:
    """The pick-and-place steps of every unit (and SKIPPED entries), in execution order."""
    from planners import sites

    slots = sites.allocate_feeder_slots(cell, job)

    def bottom(pl: Any) -> float:
        return float(pl.pose.xyz[2]) - sites.half_height(job.part(pl.part))

    # order: by bottom height, then make sure every 'after' dependency comes first
    ordered = sorted(job.assembly.placements, key=lambda pl: (round(bottom(pl), 6), pl.part))
    placed: List[Any] = []
    pending = list(ordered)
    while pending:
        for pl in pending:
            if all(dep in {q.part for q in placed} for dep in pl.after):
                placed.append(pl)
                pending.remove(pl)
                break
        else:  # a cycle: keep the geometric order
            placed += pending
            pending = []
    tray = (cell.stations_of("output_tray") or [None])[0]
    steps: List[Dict[str, Any]] = []
    for unit in range(1, job.quantity + 1):
        skipped: List[str] = []
        for pl in placed:
            part = job.part(pl.part)
            if part.source.feeder is None:
                skipped.append(pl.part)
                steps.append({"kind": "skipped", "unit": unit, "part": pl.part,
                              "reason": f"made by process '{part.source.process}' on a machine "
                                        "(machines are not run by 'anycell sim' yet)"})
                continue
            below = _rests_on(job, pl, skipped)
            if below:
                skipped.append(pl.part)
                steps.append({"kind": "skipped", "unit": unit, "part": pl.part,
                              "reason": f"rests on '{below}', which was skipped"})
                continue
            steps.append({"kind": "pick_place", "unit": unit, "part": pl.part, "source": slots[(unit, pl.part)],
                          "target": sites.fixture_site(cell, job, pl.part), "tolerance": pl.tolerance})
        if tray is not None:
            base = sites.base_part(job)
            if base.id not in skipped:
                idx = (unit - 1) % max(1, len(sites.tray_positions(tray, job)))
                steps.append({"kind": "output", "unit": unit, "part": base.id,
                              "source": sites.fixture_site(cell, job, base.id),
                              "target": sites.tray_site(tray, job, idx),
                              "carried": [pl.part for pl in placed if pl.part != base.id and pl.part not in skipped]})
    return steps


def _rests_on(job: Any, pl: Any, skipped: List[str]) -> Optional[str]:
    """A skipped part under ``pl``'s footprint and below it, if any."""
    size = job.part(pl.part).geometry.size
    for other_id in skipped:
        o = job.placement(other_id)
        osize = job.part(other_id).geometry.size
        overlap_x = abs(pl.pose.xyz[0] - o.pose.xyz[0]) < (size[0] + osize[0]) / 2 - 1e-6
        overlap_y = abs(pl.pose.xyz[1] - o.pose.xyz[1]) < (size[1] + osize[1]) / 2 - 1e-6
        if overlap_x and overlap_y and o.pose.xyz[2] < pl.pose.xyz[2]:
            return other_id
    return None


def run_sim_job(cell: Any, job: Any, report: str, *, gui: bool = False, realtime: bool = False,
                robot_id: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Run the job's pick-and-place steps in a fresh simulated cell; write the report; return the summary."""
    from agent.skills import pick_place
    from anycell.errors import AnycellError, CollisionError, UnreachableError
    from anycell.geometry import Pose, distance, quat_angle, quat_conj, quat_mul, quat_rotate
    from drivers.sim_robot import SimRobot
    from planners import sites
    from planners.motion import MotionPlanner
    from sim.world import SimWorld

    os.makedirs(report, exist_ok=True)
    rid = robot_id or cell.robots[0].id
    steps = derive_steps(cell, job)
    slots = sites.allocate_feeder_slots(cell, job)
    wall0 = time.perf_counter()
    world = SimWorld(cell, gui=gui, realtime=realtime)
    planner = MotionPlanner(cell, rid)
    robot = SimRobot(world, rid)
    bar = Progress(len(steps), progress)
    camera = cell.cameras[0].id if cell.cameras else None
    # placements are pictured by the camera aimed closest to the fixture (the overview otherwise)
    close_up = camera
    if cell.cameras:
        fx = sites.product_frame(cell).xyz
        close_up = min(cell.cameras, key=lambda c: math.dist(c.target, fx)).id
    pictures: List[str] = []
    placements: List[Dict[str, Any]] = []
    outputs: List[Dict[str, Any]] = []
    skipped: List[Dict[str, Any]] = []
    collisions: List[str] = []
    errors: List[str] = []
    units_started: Dict[int, Dict[str, str]] = {}
    unit_times: Dict[int, List[float]] = {}
    planning = 0.0
    physics_wall = 0.0

    def snap(name: str, cam: Optional[str] = None) -> None:
        path = os.path.join(report, name)
        world.snapshot(path, cam or camera)
        pictures.append(name)

    def start_unit(unit: int) -> Dict[str, str]:
        if unit not in units_started:
            ids = world.populate_job(job, slots, unit)
            world.settle(0.3)
            for pid, wid in ids.items():
                planner.add_obstacle(wid, job.part(pid).geometry.size, world.part_pose(wid))
            units_started[unit] = ids
            unit_times[unit] = [world.sim_time, world.sim_time]
        return units_started[unit]

    start_unit(1)
    snap("00_start.png")
    t_start = world.sim_time
    failed = False
    for i, step in enumerate(steps):
        unit, part_id = step["unit"], step["part"]
        if step["kind"] == "skipped":
            skipped.append({"unit": unit, "part": part_id, "reason": step["reason"]})
            bar.update(f"unit {unit}: SKIPPED {part_id}")
            continue
        ids = start_unit(unit)
        wid = ids.get(part_id, f"u{unit}.{part_id}")
        size = job.part(part_id).geometry.size
        carried = [ids[c] for c in step.get("carried", []) if c in ids]
        sim0, w0 = world.sim_time, time.perf_counter()
        try:
            res = pick_place(robot, planner, wid, size, step["source"], step["target"], carried=carried)
            planning += res.planning_time
            world.settle(0.2)
        except (CollisionError, UnreachableError) as exc:
            if step["kind"] != "output":
                errors.append(f"unit {unit} {step['kind']} {part_id}: refused before moving: {exc}")
                bar.update(f"unit {unit}: REFUSED {part_id}")
                failed = True
                _not_run(steps[i + 1:], skipped)
                break
            # carrying a finished unit by its base part is not always possible (the tool would
            # hit the parts stacked on it); the robot has not moved, so say so and go on
            skipped.append({"unit": unit, "part": f"output of unit {unit}",
                            "reason": f"refused before moving: {exc}"})
            bar.update(f"unit {unit}: output REFUSED")
            if unit < job.quantity:
                for later in steps[i + 1:]:
                    skipped.append({"unit": later["unit"], "part": later["part"],
                                    "reason": f"the fixture still holds unit {unit}"})
                break
            continue
        except AnycellError as exc:
            text = str(exc)
            (collisions if "contact" in text or "hit" in text else errors).append(
                f"unit {unit} {step['kind']} {part_id}: {text}")
            bar.update(f"unit {unit}: FAILED {part_id}")
            failed = True
            _not_run(steps[i + 1:], skipped)
            break
        physics_wall += time.perf_counter() - w0 - res.planning_time
        unit_times[unit][1] = world.sim_time
        target = step["target"]
        want = Pose(xyz=list(target.xyz), rpy=list(target.rpy))
        got = world.part_pose(wid)
        if step["kind"] == "pick_place":
            tol = step["tolerance"]
            err, ang = distance(got.xyz, want.xyz), quat_angle(got.quaternion, want.quaternion)
            placements.append({"unit": unit, "part": part_id, "error_m": err, "angle_error_rad": ang,
                               "tolerance_m": tol.position, "angle_tolerance_rad": tol.angle,
                               "ok": err <= tol.position and ang <= tol.angle,
                               "duration_s": res.duration, "planning_s": res.planning_time})
            snap(f"{i + 1:02d}_u{unit}_{part_id}.png", close_up)
        else:
            # the unit moved as one: every carried part keeps its place relative to the base
            worst = 0.0
            for c in step.get("carried", []):
                if c not in ids:
                    continue
                rel_want = quat_rotate(quat_conj(want.quaternion),
                                       [a - b for a, b in zip(sites.placement_pose(cell, job, c).xyz,
                                                              sites.placement_pose(cell, job, part_id).xyz)])
                now = world.part_pose(ids[c])
                rel_got = quat_rotate(quat_conj(got.quaternion), [a - b for a, b in zip(now.xyz, got.xyz)])
                worst = max(worst, distance(rel_got, rel_want))
            outputs.append({"unit": unit, "tray": target.ref, "position": target.index,
                            "base_error_m": distance(got.xyz, want.xyz), "worst_part_shift_m": worst,
                            "duration_s": res.duration})
            snap(f"{i + 1:02d}_u{unit}_output.png")
        bar.update(f"unit {unit}: {step['kind']} {part_id}")
    snap("99_end.png")
    cycle = world.sim_time - t_start
    wall = time.perf_counter() - wall0
    summary = {
        "cell": cell.cell.id, "job": job.id, "robot": rid, "units": job.quantity,
        "result": "failed" if failed else ("ok" if all(p["ok"] for p in placements) else "out_of_tolerance"),
        "cycle_time_s": cycle,
        "unit_cycle_times_s": {str(u): t[1] - t[0] for u, t in sorted(unit_times.items())},
        "placements": placements, "outputs": outputs, "skipped": skipped,
        "collisions": collisions, "errors": errors,
        "planning_time_s": planning, "wall_time_s": wall,
        "real_time_factor": cycle / wall if wall > 0 else None,
        "physics_real_time_factor": cycle / physics_wall if physics_wall > 0 else None,
        "max_tracking_error_rad": robot.max_tracking_error,
        "snapshots": pictures,
    }
    with open(os.path.join(report, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    with open(os.path.join(report, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(summary_markdown(summary))
    planner.close()
    world.close()
    return summary


def _not_run(rest: List[Dict[str, Any]], skipped: List[Dict[str, Any]]) -> None:
    for later in rest:
        skipped.append({"unit": later["unit"], "part": later["part"] if later["kind"] != "output"
                        else f"output of unit {later['unit']}",
                        "reason": later.get("reason", "not run: the job stopped after a failure")})


def summary_markdown(s: Dict[str, Any]) -> str:
    lines = [f"# Simulation of job `{s['job']}` on cell `{s['cell']}`", "",
             f"- result: **{s['result']}**",
             f"- robot: `{s['robot']}`, units: {s['units']}",
             f"- cycle time (simulated): {s['cycle_time_s']:.2f} s"
             + "".join(f"; unit {u}: {t:.2f} s" for u, t in s["unit_cycle_times_s"].items()),
             f"- wall time: {s['wall_time_s']:.2f} s (real-time factor {s['real_time_factor']:.1f}x; "
             f"planning {s['planning_time_s']:.2f} s)",
             f"- collisions: {len(s['collisions'])}" + "".join(f"\n  - {c}" for c in s["collisions"]), ""]
    if s["errors"]:
        lines += ["## Errors", ""] + [f"- {e}" for e in s["errors"]] + [""]
    lines += ["## Placements", "", "| unit | part | error (mm) | tolerance (mm) | angle error (rad) | "
              "angle tolerance (rad) | within |", "|---|---|---|---|---|---|---|"]
    for p in s["placements"]:
        lines.append(f"| {p['unit']} | {p['part']} | {p['error_m'] * 1000:.2f} | {p['tolerance_m'] * 1000:.1f} | "
                     f"{p['angle_error_rad']:.4f} | {p['angle_tolerance_rad']:.3f} | {'yes' if p['ok'] else 'NO'} |")
    if s["outputs"]:
        lines += ["", "## Units put out", "", "| unit | tray | position | base error (mm) | worst part shift (mm) |",
                  "|---|---|---|---|---|"]
        for o in s["outputs"]:
            lines.append(f"| {o['unit']} | {o['tray']} | {o['position']} | {o['base_error_m'] * 1000:.2f} | "
                         f"{o['worst_part_shift_m'] * 1000:.2f} |")
    if s["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- unit {k['unit']}: SKIPPED {k['part']}: {k['reason']}"
                                           for k in s["skipped"]]
    lines += ["", "## Snapshots", ""] + [f"![{n}]({n})" for n in s["snapshots"]]
    return "\n".join(lines) + "\n"


@command("sim", "run a job's pick-and-place work in the simulated cell and write a report", _args)
def _sim(args: argparse.Namespace) -> int:
    from .cell import load_cell
    from .fit import check_job_fits_cell
    from .job import load_job

    cell = load_cell(args.cell)
    job = load_job(args.job)
    check_job_fits_cell(cell, job)
    if args.robot:
        cell.robot(args.robot)
    s = run_sim_job(cell, job, args.report, gui=args.gui, realtime=args.realtime, robot_id=args.robot,
                    progress=not args.no_progress)
    print(f"{s['result']}: {len(s['placements'])} placement(s), {len(s['skipped'])} skipped, "
          f"{len(s['collisions'])} collision(s); cycle {s['cycle_time_s']:.1f} s simulated in "
          f"{s['wall_time_s']:.1f} s; report in {args.report}")
    return EXIT_OK if s["result"] == "ok" else EXIT_FAILED
