"""Can this cell make this job? Checked before anything is scheduled.

Each check raises :class:`anycell.errors.InfeasibleError` naming the
operation, the part and the missing capability or the limit, so a person can
act on it. The classes of infeasibility:

* **names and capability** (before planning, :func:`check_resources`): a
  part type or stock no feeder holds, a process no machine offers, no
  inspection station for the job's checks, no output tray, no fixture, no
  reject tray for ``on_fail: reject``; these errors also carry the job
  file's position;
* **program**: a part's machine program is of a kind no capable machine's driver can run (a
  stored program name for a serial G-code machine, G-code for an OPC UA machine that runs
  stored programs), or its G-code (inline or a file, placeholders filled with the job's
  parameters) breaks a machine's rules: allow/forbid lists, line length, words
  (:func:`check_programs`, called by :func:`check_resources`, so ``validate``, ``plan`` and
  submit all run it before anything moves);
* **workspace**: a part pose outside ``cell.safety.workspace`` or inside a
  keep-out box;
* **reach**: the robot cannot reach a pose. With :mod:`anycell.planners.kinematics`
  present, its inverse kinematics decides (top-down grasp); without it, the
  documented fallback is a reach sphere: the flange point (part centre raised
  by the tool's TCP length) must lie within the model's reach of its shoulder
  (:data:`REACH`);
* **accuracy**: a placement tolerance tighter than the robot's declared
  ``accuracy``, or than the inspection station can measure (3 sigma);
* **payload**: a part (or, for ``output``, the whole unit, carried by its
  base) heavier than the tool's ``payload``;
* **gripper**: a part wider than a parallel gripper's ``max_opening``;
* **suction**: a part with no free area as wide as the cup on a face that looks up (a pin
  narrower than the cup, a face all holes).
"""

from __future__ import annotations

import difflib
import logging
import math
from typing import Dict, List, Optional, Tuple

from anycell.cell import CellConfig, MachineConfig, RobotConfig
from anycell.documents import PathKey, format_path
from anycell.errors import AnycellError, InfeasibleError, Location
from anycell.job import JobSpec, Part, Program
from anycell.plan import Operation, Plan, Site

log = logging.getLogger(__name__)

#: Fallback reach model per built-in robot: (shoulder height above the base, reach from the shoulder), m.
#: From the makers' datasheets: Panda 855 mm, LBR iiwa 7 800 mm, xArm6 700 mm.
REACH: Dict[str, Tuple[float, float]] = {
    "franka_panda": (0.333, 0.855),
    "kuka_iiwa": (0.340, 0.800),
    "xarm6": (0.267, 0.700),
}
#: Used for URDF robots without a known figure.
DEFAULT_REACH = (0.3, 0.8)

ROBOT_KINDS = ("pick_place", "load", "unload", "output")


def _serial_dialect(machine: MachineConfig) -> Optional[str]:
    """``grbl``/``marlin`` for a serial G-code machine (real or simulated), None for OPC UA."""
    drv = machine.driver
    if drv.kind == "serial":
        return drv.dialect
    if drv.kind == "sim" and drv.protocol in ("grbl", "marlin"):
        return drv.protocol
    return None


def program_kind_problem(machine: MachineConfig, program: Program) -> Optional[str]:
    """Why ``machine``'s driver cannot run ``program``, or None when it can.

    Serial G-code firmwares have no stored programs; an OPC UA machine runs the programs stored
    on it, selected by name, and is never sent G-code text.
    """
    dialect = _serial_dialect(machine)
    if dialect is not None and program.name is not None:
        return (f"machine '{machine.id}' speaks {dialect} G-code over a serial port and has no stored "
                f"program '{program.name}'")
    if dialect is None and program.name is None:
        return (f"machine '{machine.id}' runs programs stored on it (OPC UA) and cannot be sent G-code "
                + ("file" if program.file is not None else "text"))
    return None


def program_machines(cell: CellConfig, part: Part) -> List[MachineConfig]:
    """The machines offering ``part``'s process whose driver can run its program kind."""
    cands = cell.machines_with(part.source.process or "")
    program = part.source.program
    if program is None:
        return cands
    return [m for m in cands if program_kind_problem(m, program) is None]


def _gcode_problem(machine: MachineConfig, program: Program, parameters: Dict[str, float]) -> Optional[AnycellError]:
    """The first reason ``machine`` would refuse the G-code of ``program`` (None: it accepts it)."""
    from anycell.gcode import prepare_program

    drv = machine.driver
    allowed = list(getattr(drv, "allowed_gcodes", []) or [])
    forbidden = list(getattr(drv, "forbidden_gcodes", []) or [])
    try:
        text = program.text()
    except OSError as exc:
        return InfeasibleError(f"cannot read program file {program.file}: {exc}")
    if text is None:
        return None
    try:
        prepare_program(text, parameters, allowed=allowed, forbidden=forbidden,
                        source=str(program.file) if program.file is not None else None,
                        dialect=_serial_dialect(machine))
    except AnycellError as exc:
        return exc
    return None


def check_programs(cell: CellConfig, job: JobSpec) -> None:
    """Every part made by a process has a program some capable machine can run, whole.

    The program kind must fit the driver (:func:`program_kind_problem`) and G-code must pass the
    machine's checks with the job's parameters, exactly as the serial driver checks it before
    sending (:func:`anycell.gcode.prepare_program`). Raises :class:`InfeasibleError` naming the
    part's program field, the machine and the line.
    """
    for i, part in enumerate(job.parts):
        program = part.source.program
        if part.source.process is None or program is None:
            continue
        field = f"parts[{i}].source.program"
        capable = cell.machines_with(part.source.process)
        if not capable:
            continue  # check_resources names the missing capability
        runnable = program_machines(cell, part)
        if not runnable:
            why = "; ".join(p for p in (program_kind_problem(m, program) for m in capable) if p)
            hint = ("give the program as G-code (file: or inline:)" if program.name is not None else
                    "give the name of a program stored on the machine (name: PROGRAM_01)")
            raise InfeasibleError(f"part '{part.id}': {why}", field=field, location=_job_location(job, i),
                                  hint=hint)
        problems = [(m, _gcode_problem(m, program, dict(part.source.parameters))) for m in runnable]
        if all(p is not None for _, p in problems):
            machine, exc = problems[0]
            assert exc is not None
            where = exc.location if exc.location is not None and exc.location.file else _job_location(job, i)
            raise InfeasibleError(f"part '{part.id}': machine '{machine.id}' would refuse the program: {exc.message}",
                                  field=field, location=where, hint=exc.hint)


def _job_location(job: JobSpec, index: int) -> Optional[Location]:
    doc = getattr(job, "document", None)
    if doc is None:
        return Location(file=getattr(job, "source_file", None))
    try:
        return doc.location(("parts", index, "source", "program"))
    except Exception:  # noqa: BLE001 - a location is a courtesy, never a second error
        return Location(file=getattr(job, "source_file", None))


def _refused(job: JobSpec, path: PathKey, message: str, hint: str) -> InfeasibleError:
    """The error for ``path`` in the job: with its file position when the job came from a file."""
    doc = job.document
    location = doc.location(path) if doc is not None and doc.file else None
    if location is None and job.source_file:
        location = Location(job.source_file)
    return InfeasibleError(message, field=format_path(path), location=location, hint=hint)


def _suggest(name: str, known: List[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"this cell's {what}: " + (", ".join(known) or "none")


def check_resources(cell: CellConfig, job: JobSpec) -> None:
    """The pre-planning checks: every name the job uses resolves on ``cell``, and every operation has a resource.

    Program checks (:func:`check_programs`) run last. The one set of checks that ``anycell validate``, the cell's job service
    and :func:`anycell.planners.pipeline.plan_and_schedule` run before any
    planning. Each error names the operation that could not be planned (the
    first unit's, ``u1.run.<part>``) and the job field at fault, with the job
    file's line and column when the job came from a file.
    """
    cid = cell.cell.id
    part_types = cell.part_types
    for i, part in enumerate(job.parts):
        src = part.source
        path: PathKey = ("parts", i, "source")
        if src.feeder is not None and src.feeder not in part_types:
            raise _refused(job, path + ("feeder",), f"operation 'u1.place.{part.id}' (part '{part.id}') needs part "
                           f"type '{src.feeder}', which no feeder of cell '{cid}' holds",
                           _suggest(src.feeder, part_types, "part types"))
        if src.stock is not None and src.stock not in part_types:
            raise _refused(job, path + ("stock",), f"operation 'u1.load.{part.id}' (part '{part.id}') needs stock "
                           f"'{src.stock}', which no feeder of cell '{cid}' holds",
                           _suggest(src.stock, part_types, "part types"))
        if src.process is not None and not cell.machines_with(src.process):
            raise _refused(job, path + ("process",), f"operation 'u1.run.{part.id}' (part '{part.id}') needs "
                           f"process '{src.process}', which no machine of cell '{cid}' offers",
                           _suggest(src.process, cell.capabilities, "capabilities"))
    if not cell.stations_of("fixture"):
        raise _refused(job, ("assembly",), f"operation 'u1.place.*' needs an assembly fixture, which cell '{cid}' "
                       "lacks", "add a station of kind 'fixture' to the cell config")
    if not cell.stations_of("output_tray"):
        raise _refused(job, ("assembly",), f"operation 'u1.output' needs an output tray, which cell '{cid}' lacks",
                       "add a station of kind 'output_tray' to the cell config")
    if job.quality and not cell.stations_of("inspection"):
        raise _refused(job, ("quality",), f"operation 'u1.inspect' needs capability 'inspection' for checks "
                       f"{', '.join(q.id for q in job.quality)}, which cell '{cid}' lacks",
                       "add a station of kind 'inspection', or drop the checks")
    if job.on_fail == "reject" and job.quality and not cell.stations_of("reject_tray"):
        raise _refused(job, ("on_fail",), f"on_fail is 'reject' but cell '{cid}' has no reject tray",
                       "add a station of kind 'reject_tray', or set on_fail: stop")
    check_programs(cell, job)


def flange_point(robot: RobotConfig, site: Site) -> List[float]:
    """Where the flange is when the fingertips (TCP) hold a part's centre from above."""
    tcp = math.sqrt(sum(v * v for v in robot.tool.tcp.xyz))
    return [site.xyz[0], site.xyz[1], site.xyz[2] + tcp]


_IK_CACHE: Dict[Tuple[str, Tuple[float, ...]], Optional[str]] = {}
_SOLVERS: Dict[str, object] = {}


def _import_pybullet_quietly() -> None:
    """Import pybullet with its C-level banner sent to stderr, so `anycell plan --json` stays pure JSON."""
    import os
    import sys

    if "pybullet" in sys.modules:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        import pybullet  # noqa: F401
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _ik_check(cell: CellConfig, robot: RobotConfig, site: Site) -> Optional[str]:
    """IK verdict for a top-down grasp at ``site`` (None: reachable), or raise ImportError if absent.

    Results are cached per robot configuration (by value) and pose, because
    the planner asks about the same feeder slots and fixture poses many times.
    """
    _import_pybullet_quietly()
    from anycell.planners.kinematics import Kinematics  # lazily: it needs pybullet

    from anycell.errors import PlanningError
    from anycell.geometry import Pose

    target = (round(site.xyz[0], 5), round(site.xyz[1], 5), round(site.xyz[2], 5), round(site.rpy[2], 4))
    who = repr(robot)  # by value: the robot's model, base, tool and limits decide the answer
    key = (who, target)
    if key in _IK_CACHE:
        return _IK_CACHE[key]
    solver = _SOLVERS.get(who)
    if solver is None:
        solver = Kinematics(cell, robot.id)
        _SOLVERS[who] = solver
    try:
        solver.ik(Pose(xyz=list(target[:3]), rpy=[math.pi, 0.0, target[3]]))  # type: ignore[attr-defined]
        verdict = None
    except PlanningError as exc:
        verdict = f"inverse kinematics finds no top-down grasp there ({exc.message})"
    _IK_CACHE[key] = verdict
    return verdict


def reach_check(cell: CellConfig, robot: RobotConfig, site: Site) -> Optional[str]:
    """None when ``robot`` can grasp a part at ``site`` from above, else why not.

    Uses :mod:`anycell.planners.kinematics` (IK, top-down grasp) when it can be
    imported; else the reach sphere of :data:`REACH`.
    """
    try:
        return _ik_check(cell, robot, site)
    except ImportError as exc:
        log.debug("no kinematics (%s): using the reach sphere", exc)
    shoulder_h, reach = REACH.get(robot.model or "", DEFAULT_REACH)
    base = robot.base.xyz
    shoulder = [base[0], base[1], base[2] + shoulder_h]
    p = flange_point(robot, site)
    dist = math.sqrt(sum((p[i] - shoulder[i]) ** 2 for i in range(3)))
    if dist > reach:
        return (f"flange point {[round(v, 3) for v in p]} is {dist:.3f} m from the shoulder, "
                f"beyond the {reach:.3f} m reach of {robot.model or 'the robot'}")
    return None


def _pose_checks(cell: CellConfig, op: Operation, role: str, site: Site) -> None:
    where = f"{role} {site.kind} '{site.ref}' at {[round(v, 4) for v in site.xyz]}"
    if not cell.safety.workspace.contains(site.xyz):
        raise InfeasibleError(f"operation '{op.id}' (part '{op.part}'): {where} is outside the cell "
                              f"workspace {cell.safety.workspace.min}..{cell.safety.workspace.max}",
                              field="safety.workspace", hint="move the station or enlarge the workspace")
    for ko in cell.safety.keep_out:
        if ko.box.contains(site.xyz):
            raise InfeasibleError(f"operation '{op.id}' (part '{op.part}'): {where} is inside keep-out "
                                  f"zone '{ko.id}'", field="safety.keep_out",
                                  hint="move the station out of the zone")
    robot = cell.robot(op.resource)
    why = reach_check(cell, robot, site)
    if why is not None:
        raise InfeasibleError(f"operation '{op.id}' (part '{op.part}'): robot '{robot.id}' cannot reach "
                              f"the {where}: {why}", hint="move the station closer to the robot")


def check_operation(cell: CellConfig, job: JobSpec, op: Operation) -> None:
    """Workspace, reach, accuracy, payload and gripper limits of one robot operation."""
    if op.kind not in ROBOT_KINDS:
        return
    robot = cell.robot(op.resource)
    for role in ("source", "target"):
        _pose_checks(cell, op, role, Site.from_dict(op.params[role]))
    part = job.part(op.part) if op.part else None
    if part is None:
        return
    if op.kind != "load":  # the finished part is placed into the assembly
        tol = job.placement(part.id).tolerance
        acc = robot.accuracy
        if tol.position < acc.position:
            raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): position tolerance "
                                  f"{tol.position * 1000:g} mm is tighter than robot '{robot.id}' accuracy "
                                  f"{acc.position * 1000:g} mm", field=f"placements[{part.id}].tolerance.position",
                                  hint="loosen the tolerance or use a more accurate robot")
        if tol.angle < acc.angle:
            raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): angle tolerance {tol.angle:g} rad "
                                  f"is tighter than robot '{robot.id}' accuracy {acc.angle:g} rad",
                                  field=f"placements[{part.id}].tolerance.angle",
                                  hint="loosen the tolerance or use a more accurate robot")
        for st in cell.stations_of("inspection") if job.quality else []:
            if tol.position < 3 * st.uncertainty.position:
                raise InfeasibleError(
                    f"operation '{op.id}' (part '{part.id}'): position tolerance {tol.position * 1000:g} mm "
                    f"is tighter than inspection station '{st.id}' can verify "
                    f"(3 x {st.uncertainty.position * 1000:g} mm)", field=f"placements[{part.id}].tolerance",
                    hint="loosen the tolerance or use a finer inspection station")
    mass = part.mass
    what = f"part '{part.id}'"
    if op.kind == "output":
        mass = sum(p.mass for p in job.parts)
        what = f"the unit ({len(job.parts)} parts, carried by its base '{part.id}')"
    if mass > robot.tool.payload:
        raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): {what} weighs {mass:g} kg, over the "
                              f"{robot.tool.payload:g} kg payload of robot '{robot.id}' tool",
                              field=f"robots[{robot.id}].tool.payload", hint="use a stronger tool or a lighter part")
    if robot.tool.kind == "suction" and op.kind in ("pick_place", "load", "unload"):
        why = _cup_problem(robot, job, part.id)
        if why is not None:
            raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): {why}",
                                  field=f"robots[{robot.id}].tool.cup_radius",
                                  hint="use a smaller cup or a gripper, or give the part a wider top face")
    if robot.tool.kind == "parallel_gripper" and op.kind in ("pick_place", "unload"):
        why = _gripper_clear(robot, job, part.id)
        if why is not None:
            raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): {why}",
                                  field=f"assembly.placements[{part.id}]",
                                  hint="let the part stand higher out of the receiving part, or use a suction tool")
    if robot.tool.kind == "parallel_gripper":
        width = min(part.geometry.size[0], part.geometry.size[1])
        if width > robot.tool.max_opening:
            raise InfeasibleError(f"operation '{op.id}' (part '{part.id}'): the part is {width * 1000:g} mm "
                                  f"wide, over the {robot.tool.max_opening * 1000:g} mm max_opening of robot "
                                  f"'{robot.id}' gripper", field=f"robots[{robot.id}].tool.max_opening",
                                  hint="use a wider gripper or a suction tool")


_CUP_CACHE: Dict[Tuple[str, float, float], bool] = {}


def _cup_problem(robot: RobotConfig, job: JobSpec, part_id: str) -> Optional[str]:
    """Why ``robot``'s suction cup cannot hold ``part_id`` alone (as it picks it), or None when it can.

    The same search the pick-and-place skill makes (:func:`anycell.planners.sites.suction_spot`): the
    cup's seal on a free area of a face looking up, off holes and pockets, its body clear of higher faces.
    """
    from . import sites
    from .tool import cup_radius

    r = float(robot.tool.cup_radius)
    body = cup_radius(robot)
    key = (repr(job.part(part_id).geometry), r, body)   # with nothing standing on it, only its shape counts
    if key not in _CUP_CACHE:
        _CUP_CACHE[key] = sites.suction_spot(job, part_id, r, (), body) is not None
    if _CUP_CACHE[key]:
        return None
    size = job.part(part_id).geometry.size
    return (f"the suction cup of '{robot.id}' ({r * 2000:.0f} mm across) finds no free area that wide on the "
            f"faces of the part that look up (the part is {size[0] * 1000:.0f} x {size[1] * 1000:.0f} mm)")


def _gripper_clear(robot: RobotConfig, job: JobSpec, part_id: str) -> Optional[str]:
    """Why a gripper cannot hold ``part_id`` with its fingertips above the part it goes into, or None."""
    from anycell.errors import PlanningError

    from . import sites
    from .tool import gripper_tcp_height, tool_figures

    floor = sites.receiving_surface(job, part_id)
    if floor is None:
        return None
    h = float(job.part(part_id).geometry.size[2])
    reach, hand, _r, _w = tool_figures(robot)
    try:
        gripper_tcp_height(reach, hand, h, max(-h / 2, floor))
    except PlanningError as exc:
        return f"the fingers of '{robot.id}' would go into the receiving part: {exc.message}"
    return None


def carry_problem(robot: RobotConfig, job: JobSpec) -> Optional[str]:
    """Why ``robot``'s tool cannot carry a finished unit by its base part, or None when it can.

    The unit is not bonded: it travels on its base part, so the tool holds the base with the other
    parts standing on it. Both answers come from the real geometry, the same figures the
    pick-and-place skill grasps with:

    * a suction cup needs a free area of its radius on a face of the base that looks up: every
      free area is tried (off holes and pockets, off the footprints of the parts standing on the
      base), and the flange above the cup (from the robot model) must pass above those parts;
    * a parallel gripper's fingers must close on the base, holding at least ``tool.GRIP`` of it,
      with the hand (its links from the robot model, above the fingers) passing above every part
      standing on the base.
    """
    from . import sites
    from .tool import GRIP, cup_radius, gripper_tcp_height, tool_figures

    from anycell.errors import PlanningError

    base = sites.base_part(job)
    others = [pl.part for pl in job.assembly.placements if pl.part != base.id]
    top = sites.carried_top(job)
    if robot.tool.kind == "suction":
        r = robot.tool.cup_radius
        if sites.suction_spot(job, base.id, r, others, cup_radius(robot)) is None:
            standing = ", ".join(f"'{o}'" for o in others) or "nothing"
            return (f"the suction cup of '{robot.id}' cannot hold base part '{base.id}': no free area of "
                    f"{r * 2000:.0f} mm across is left on its faces beside {standing} and its features")
        _reach, hand, body, sideways = tool_figures(robot)
        if sites.carry_suction_spot(job, r, body, hand, sideways) is None:
            return (f"the flange of '{robot.id}' would hit the parts standing on base part '{base.id}' wherever "
                    f"its cup holds it: the cup reaches {hand * 1000:.0f} mm below the flange, which spans "
                    f"{sideways * 1000:.0f} mm around it")
        return None
    size = base.geometry.size
    if min(size[0], size[1]) > robot.tool.max_opening - 0.004:
        return (f"the gripper of '{robot.id}' ({robot.tool.max_opening * 1000:.0f} mm) cannot close on base part "
                f"'{base.id}' ({min(size[0], size[1]) * 1000:.0f} mm)")
    reach, hand, _r, _w = tool_figures(robot)
    try:
        gripper_tcp_height(reach, hand, float(size[2]), -float(size[2]) / 2, top)
    except PlanningError:
        rise = (top or 0.0) - float(size[2]) / 2
        return (f"the hand of '{robot.id}' would hit the parts standing {rise * 1000:.0f} mm above base part "
                f"'{base.id}': its hand starts {hand * 1000:.0f} mm above the fingertips' centre and the fingers "
                f"must hold {GRIP * 1000:g} mm of the {size[2] * 1000:.0f} mm base")
    return None


def check_plan(cell: CellConfig, job: JobSpec, plan: Plan) -> None:
    """Every robot operation of ``plan`` is within the cell's limits (raises on the first that is not)."""
    for op in plan.operations:
        check_operation(cell, job, op)
