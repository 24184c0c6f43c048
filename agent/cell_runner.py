"""The concrete step runner: robot skills, machine programs and inspection, for one job.

:class:`anycell.agent.executor.Executor` decides *when* a step runs; :class:`CellRunner`
does the step. It works the same on a simulated cell and on the floor:

* ``pick_place`` / ``load`` / ``unload`` / ``output``: the pick-and-place skill
  (:func:`anycell.agent.skills.pick_place`) over a :class:`anycell.drivers.robot.Robot` (a
  :class:`anycell.sim.robot.SimRobot`, or :class:`anycell.agent.ros.robot.RosRobot`
  over ROS 2) and the robot's :class:`anycell.planners.motion.MotionPlanner`.
* ``run_program``: :meth:`anycell.drivers.machine.Machine.run_program` over the
  machine's real protocol (serial G-code or OPC UA), simulated or not.
* ``inspect``: the inspection station measures the unit on the fixture and
  :func:`anycell.conformance.check_unit` judges it against the spec. In
  simulation the measurement comes from the simulated world with the noise
  the station declares (seeded, so runs repeat); a cell without a simulator
  needs a measuring driver, which anycell does not have yet, and says so.

In simulation, :class:`anycell.agent.simulation.hooks.SimHooks` makes parts appear where a
feeder presents them or a machine made them. Part ids in the world are
``u<unit>.<part>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from anycell.cell import CellConfig
from anycell.conformance import UnitResult, check_unit
from anycell.errors import (AnycellError, ConfigError, ExecutionError, InspectionFailed, PlacementError,
                            PlanningError)
from anycell.geometry import Pose
from anycell.job import JobSpec, Program
from anycell.plan import Operation, Plan, Site

from anycell.drivers.machine import Machine
from anycell.drivers.robot import Robot

from anycell.agent.simulation.hooks import SimHooks

if TYPE_CHECKING:  # the motion planner brings pybullet: the runner is handed planners, never imports them
    from anycell.planners.motion import MotionPlanner

log = logging.getLogger(__name__)

MOTION_KINDS = ("pick_place", "load", "unload", "output")


#: rad: a robot this close to home in every joint is home (it is not sent there to make way)
AT_HOME = 0.01


def uid(unit: int, part: str) -> str:
    """The id of one unit's part in the (simulated) world."""
    return f"u{unit}.{part}"


def _part(op: Operation) -> str:
    """The part an operation moves or makes (every part-handling operation names one)."""
    if op.part is None:
        raise ExecutionError(f"operation '{op.id}' ({op.kind}) names no part", field=f"operations.{op.id}.part")
    return op.part


def _pose(site: Site) -> Pose:
    return Pose(xyz=list(site.xyz), rpy=list(site.rpy))


@dataclass
class StepRecord:
    """What one step did, for the report."""

    op: str
    kind: str
    unit: int
    resource: str
    started: float          # wall clock, seconds since the runner started
    finished: float
    detail: Dict[str, Any] = field(default_factory=dict)


class CellRunner:
    """Runs the operations of one job's plan on a cell's robots, machines and (optionally) simulator."""

    def __init__(self, cell: CellConfig, job: JobSpec, *, robots: Mapping[str, Robot],
                 planners: Mapping[str, "MotionPlanner"], machines: Mapping[str, Machine], sim: Optional[SimHooks] = None,
                 on_event: Optional[Callable[[Dict[str, Any]], None]] = None,
                 program_timeout: Optional[float] = None, report_dir: Optional[str] = None,
                 machine_time_scale: Optional[float] = None, plan_ahead: bool = True) -> None:
        self.cell = cell
        self.plan_ahead = plan_ahead   # plan a motion's rest while it runs (False: plan it whole first)
        self.job = job
        self.robots = robots
        self.planners = planners
        self.machines = machines
        self.sim = sim
        self.on_event = on_event
        self.program_timeout = program_timeout
        self.report_dir = report_dir
        self.machine_time_scale = machine_time_scale
        self.records: List[StepRecord] = []
        self.unit_results: Dict[int, UnitResult] = {}
        self.placements: List[Dict[str, Any]] = []
        self.snapshots: List[str] = []
        self._rejects = 0
        # the simulated world's part bookkeeping (present, made, measure, hold): one call at a time; never
        # held while planning, moving or rendering (the robot steps the physics through the world's stepper)
        self._world_lock = threading.RLock()
        self._pictures: Optional[Any] = None    # the background renderer, made at the first picture
        self._pending_pictures: List[tuple] = []
        self._lookahead: Optional[Any] = None   # one thread planning each robot's next motion ahead of its turn
        self._ahead: Dict[str, tuple] = {}      # robot id -> (op id, future of its Planned motion)
        self._plan: Optional[Plan] = None
        self._ahead_lock = threading.Lock()
        self._current: Dict[str, str] = {}      # robot id -> the motion step it runs (or ran last)
        self._last_planned: Dict[str, tuple] = {}   # robot id -> (that step, the configuration it ends in)
        self._reservations = None
        if len(self.robots) > 1:
            from anycell.planners.reservation import SpaceReservations

            self._reservations = SpaceReservations(self.robots)
        # held by whichever thread moves that robot: its own step, or another robot's that parks it
        self._moving: Dict[str, threading.Lock] = {rid: threading.Lock() for rid in self.robots}
        self._due: Dict[str, int] = {}          # robot id -> its motion steps started and not yet done
        self._started: set = set()              # ids of the steps started so far
        self._due_lock = threading.Lock()
        self._halted = threading.Event()
        self._t0 = time.monotonic()
        self._prepared = False
        self._snap_count = 0
        self._held_by: Dict[str, str] = {}      # fixture id -> the part its clamp or vacuum holds
        self._tray_used: set = set()            # (tray id, position) taken by a unit this job
        from anycell.planners import sites

        self._base_id = sites.base_part(job).id

    # ------------------------------------------------------------------ set-up
    def prepare(self, plan: Plan) -> None:
        """Tell the planners about parts already in the cell; in simulation, fill the feeders.

        In simulation the world knows where every part is, also when a job is
        resumed after a crash, so the planners get the measured poses. On the
        floor the planners assume the feeder parts are in their slots.
        """
        seen_slots = set()
        for op in plan.operations:
            src = op.params.get("source")
            if op.kind not in ("pick_place", "load") or not src or src.get("kind") != "feeder":
                continue
            key = (src["ref"], src.get("index"))
            if key in seen_slots:
                continue   # the slot is re-used by a later unit: presented when it is empty
            seen_slots.add(key)
            self._present(op)
        if self.sim is not None:
            wanted = sorted({(op.unit, op.part) for op in plan.operations if op.part})
            with self._world_lock:
                where = self.sim.measure([uid(u, p) for u, p in wanted])
            for (unit, part_id) in wanted:
                pose = where.get(uid(unit, part_id))
                if pose is not None:
                    shape, _mass, _color = self._part_geometry(part_id)
                    for planner in self.planners.values():
                        planner.add_obstacle(uid(unit, part_id), shape, pose)
        self._prepared = True
        self._snap("start")

    def _part_geometry(self, part_id: str) -> tuple:
        """(shape, mass, colour) of a part: the shape is its Geometry, the real solid everyone uses."""
        part = self.job.part(part_id)
        return part.geometry, part.mass, part.color

    def _present(self, op: Operation) -> None:
        """Make sure the op's feeder part is in its slot: in the planners' model (and in the simulated world)."""
        src = Site.from_dict(op.params["source"])
        shape, mass, color = self._part_geometry(_part(op))
        wid = uid(op.unit, _part(op))
        if self.sim is not None:
            with self._world_lock:
                if not self.sim.present(wid, shape, mass, color, _pose(src)):
                    return   # already in the world (maybe moved on by an earlier step): prepare() measured it
        for planner in self.planners.values():
            planner.add_obstacle(wid, shape, _pose(src))

    # ------------------------------------------------------------------ StepRunner
    def run(self, op: Operation, plan: Plan) -> Optional[Dict[str, Any]]:
        self._plan = plan
        with self._world_lock:
            if not self._prepared:
                self.prepare(plan)
        if self._halted.is_set():
            raise ExecutionError(f"step {op.id} not started: the cell is halting")
        started = time.monotonic() - self._t0
        self._started.add(op.id)
        self._event({"event": "step", "op": op.id, "text": op.describe()})
        if op.kind in MOTION_KINDS:
            with self._step_due(op.resource):
                detail = self._motion(op)
        elif op.kind == "run_program":
            detail = self._program(op)
        elif op.kind == "inspect":
            detail = self._inspect(op)
        else:
            raise ExecutionError(f"operation '{op.id}' has unknown kind '{op.kind}'")
        self.records.append(StepRecord(op.id, op.kind, op.unit, op.resource, started,
                                       time.monotonic() - self._t0, detail))
        return detail

    def halt(self) -> None:
        """Stop every robot now; stop machine programs (the machines' safe state)."""
        self._halted.set()
        for rid, robot in self.robots.items():
            try:
                robot.stop()
            except Exception as exc:  # noqa: BLE001 - halting must reach every device
                log.error("robot %s did not stop cleanly: %s", rid, exc)
        for mid, machine in self.machines.items():
            try:
                machine.stop()
            except Exception as exc:  # noqa: BLE001
                log.error("machine %s did not stop cleanly: %s", mid, exc)

    # ------------------------------------------------------------------ motion
    def _motion(self, op: Operation) -> Dict[str, Any]:
        from anycell.agent.skills import pick_place

        robot, planner = self.robots[op.resource], self.planners[op.resource]
        src = Site.from_dict(op.params["source"])
        target = Site.from_dict(op.params["target"])
        carried: List[str] = []
        if op.kind == "output":
            carried = [uid(op.unit, pl.part) for pl in self.job.assembly.placements if pl.part != op.part]
            target = self._output_target(op, target)
            self._release_fixture(src.ref)
        elif src.kind == "feeder":
            self._present(op)
        shape, _mass, _color = self._part_geometry(_part(op))
        size = shape.size
        wid = uid(op.unit, _part(op))
        insert, hints = self._grasp_plan(op, target, carried)
        candidates = self._tray_candidates(target) if carried else [target]
        if self._reservations is None:
            w0 = time.monotonic()
            ahead: Dict[str, Any] = {}
            waited = 0.0     # for the motion planned ahead of its turn to be ready
            if self.plan_ahead:
                ahead = {"planned": self._planned_ahead(op, candidates[0]),
                         "on_planned": self._plan_next_after(op, wid, shape, src, carried)}
                waited = time.monotonic() - w0
            res, target = self._pick_place_first(pick_place, op, candidates, robot, planner, wid, size, src,
                                                 carried=carried, shape=shape, insert=insert, hints=hints,
                                                 plan_ahead=self.plan_ahead, **ahead)
            res.planning_wait += waited
            moving_wall = time.monotonic() - w0 - res.planning_wait
            with self._world_lock:
                measured = self.sim.measure([wid]) if self.sim is not None else {}
        else:
            # several robots: move while the others move, in space reserved for this motion
            w0 = time.monotonic()
            share = self._share_space(op.resource, planner, size)
            placed_at: Optional[Pose] = None
            with self._moving[op.resource]:
                try:
                    res, target = self._pick_place_first(pick_place, op, candidates, robot, planner, wid, size, src,
                                                         carried=carried, shape=shape, insert=insert, hints=hints,
                                                         **share.hooks())
                    placed_at = Pose(xyz=list(target.xyz), rpy=list(target.rpy))
                    self._show_others(op.resource, wid, shape, placed_at)   # before the space is released
                finally:
                    share.end(placed_at is not None, placed_at, shape)
                if self._last_while_others_move(op) and not self._at_home(op.resource):
                    log.info("robot %s has no more steps: it goes home, out of the other robots' way", op.resource)
                    self._park(op.resource)
            moving_wall = time.monotonic() - w0 - res.planning_wait
            with self._world_lock:
                measured = self.sim.measure([wid]) if self.sim is not None else {}
        if carried and target.index is not None:
            self._tray_used.add((target.ref, target.index))
        placed = Pose(xyz=list(target.xyz), rpy=list(target.rpy))
        if self._reservations is None:
            self._show_others(op.resource, wid, shape, placed)
        if carried:
            self._move_obstacles(carried, src, target)
        detail: Dict[str, Any] = {"part": wid, "from": f"{src.kind}:{src.ref}", "to": f"{target.kind}:{target.ref}",
                                  "motion_s": round(res.duration, 3), "planning_s": round(res.planning_time, 4),
                                  "moving_wall_s": round(moving_wall, 4),
                                  "planning_wait_s": round(res.planning_wait, 4),
                                  # when each segment ran (seconds since the runner started): for idle-time figures
                                  "moves": [[n, round(a - self._t0, 4), round(b - self._t0, 4)]
                                            for n, a, b in res.moves]}
        if insert is not None:
            detail["insertion_depth_m"] = insert.depth
        got = measured.get(wid)
        placing = op.kind in ("pick_place", "unload") and target.kind == "fixture"
        if got is not None:
            detail.update(self._deviation(got, target, insert))
            if placing:
                tol = self.job.placement(_part(op)).tolerance
                self.placements.append({"unit": op.unit, "part": op.part, "error_m": detail["error_m"],
                                        "angle_error_rad": detail["angle_error_rad"],
                                        "tolerance_m": tol.position, "angle_tolerance_rad": tol.angle,
                                        "robot": op.resource})
                for pl in self.planners.values():
                    pl.add_obstacle(wid, shape, got)   # plan around where the part really is
        elif placing:
            log.debug("no measurement of %s after its placement (no simulator and no measuring driver)", wid)
        self._snap(op.id, close_up=target.kind == "fixture")
        if got is not None and placing:
            self._confirm(op, got, detail)
        return detail

    def _show_others(self, rid: str, wid: str, shape: Any, placed: Pose) -> None:
        """Every other robot's model: part ``wid`` is where ``rid`` put it (plans made from now see it)."""
        for other_id, other in self.planners.items():
            if other_id != rid:
                other.add_obstacle(wid, shape, placed)

    # ------------------------------------------------------------------ the next motion, ahead of its turn
    def _next_motion(self, op: Operation) -> Optional[Operation]:
        """The robot's next step in the executor's order, when it is a motion this runner can plan ahead."""
        from anycell.agent.executor import execution_order

        if self._plan is None:
            return None
        ops = {o.id: o for o in self._plan.operations}
        order = execution_order(self._plan)
        for op_id in order[order.index(op.id) + 1:]:
            nxt = ops[op_id]
            if op.resource in (list(nxt.uses) if nxt.uses else [nxt.resource]):
                return nxt if nxt.kind in MOTION_KINDS else None
        return None

    def _plan_next_after(self, op: Operation, wid: str, shape: Any, src: Site,
                         carried: List[str]) -> Callable[[List[float], Site], None]:
        """What pick_place calls once ``op``'s motion is planned: plan the robot's next motion from its end.

        The next motion is planned on a thread of its own while ``op``'s motion (and any machine cycle)
        runs, with ``op``'s part (and a carried unit) already where it is being put;
        :func:`anycell.agent.skills.pick_place` checks it against the cell as it is when its turn
        comes, else plans it again. An ``output`` is planned to the output tray while its unit is not
        known to have failed inspection (a failed unit's reject-tray target differs, so that plan is
        not used); when an inspection ends with no motion planned ahead, :meth:`_inspect` asks again.
        """
        def on_planned(q_end: List[float], target: Site) -> None:
            planner = self.planners[op.resource]
            # this motion's part (and the unit it carries) where it is being put
            planner.add_obstacle(wid, shape, _pose(target))
            if carried:
                self._move_obstacles(carried, src, target, [planner])
            with self._ahead_lock:
                self._last_planned[op.resource] = (op, q_end)
                self._plan_next_from(op, q_end)

        return on_planned

    def _plan_next_from(self, op: Operation, q_end: List[float]) -> None:
        """Start planning the robot's step after ``op`` from ``q_end`` (with ``_ahead_lock`` held)."""
        from concurrent.futures import ThreadPoolExecutor

        from anycell.agent.skills import plan_next

        nxt = self._next_motion(op)
        if nxt is None or self._halted.is_set() or self._current.get(op.resource) != op.id:
            return
        nsrc, ntarget = Site.from_dict(nxt.params["source"]), Site.from_dict(nxt.params["target"])
        ncarried: List[str] = []
        if nxt.kind == "output":
            result = self.unit_results.get(nxt.unit)
            if result is not None and not result.passed:
                return   # to the reject tray: its position is chosen when its turn comes
            ncarried = [uid(nxt.unit, pl.part) for pl in self.job.assembly.placements if pl.part != nxt.part]
        nshape, _mass, _color = self._part_geometry(_part(nxt))
        try:
            insert, hints = self._grasp_plan(nxt, ntarget, ncarried)
        except AnycellError:
            return   # refused when its turn comes, with the robot at rest
        if self._lookahead is None:
            self._lookahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookahead")
        future = self._lookahead.submit(plan_next, self.planners[op.resource], q_end, uid(nxt.unit, _part(nxt)),
                                        nshape.size, nsrc, ntarget, carried=ncarried, shape=nshape, insert=insert,
                                        hints=hints)
        self._ahead[op.resource] = (nxt.id, ntarget, future)
        log.debug("planning %s ahead while %s runs", nxt.id, op.id)

    def _planned_ahead(self, op: Operation, target: Site) -> Any:
        """``op``'s motion to ``target`` planned ahead of its turn, if there is one (None: plan it now)."""
        from concurrent.futures import wait

        with self._ahead_lock:
            self._current[op.resource] = op.id     # from here no motion is planned ahead from the last one
            entry = self._ahead.pop(op.resource, None)
        if entry is None or entry[0] != op.id or entry[1] != target:
            if entry is not None:
                log.debug("%s was planned ahead of %s: not used", entry[0], op.id)
                wait([entry[2]])   # the planner is this step's again only when that planning is over
            return None
        try:
            return entry[2].result()
        except Exception as exc:  # noqa: BLE001 - planned again now, where a refusal is raised for real
            log.debug("%s planned ahead failed (%s): planned now", op.id, exc)
            return None

    @staticmethod
    def _pick_place_first(pick_place: Callable[..., Any], op: Operation, candidates: List[Site], *args: Any,
                          **kwargs: Any) -> Any:
        """Pick and place at the first candidate target the robot reaches (the next free tray position
        when the planned one is blocked); returns (result, the target used)."""
        first: Optional[PlanningError] = None
        for k, candidate in enumerate(candidates):
            try:
                return pick_place(*args, candidate, **kwargs), candidate
            except PlanningError as exc:
                # a tray position the tool cannot reach clear of its surroundings: the next free one
                if k == 0:
                    first = exc
                log.info("unit %d cannot go to %s position %s: %s", op.unit, candidate.ref, candidate.index, exc)
        assert first is not None
        if len(candidates) == 1:
            raise first
        target = candidates[0]
        raise PlanningError(f"unit {op.unit} finds no free position on tray '{target.ref}' that robot "
                            f"'{op.resource}' reaches clear of the cell and of the units already there "
                            f"(tried {len(candidates)}); the planned one: {first.message}",
                            hint="empty the tray, or give the cell a larger tray")

    def _share_space(self, rid: str, planner: Any, size: Optional[Sequence[float]]) -> "_SharedMotion":
        """The hooks :func:`pick_place` takes to move beside other robots (see planners.reservation)."""
        assert self._reservations is not None
        return _SharedMotion(self._reservations, rid, planner, self.robots, size,
                             float(self.cell.safety.robot_margin), self._sim_clock(), self._park_idle_others)

    def _last_while_others_move(self, op: Operation) -> bool:
        """``op`` is its robot's last step of the job, and another robot has motion steps not started
        yet: the robot, which would otherwise stay where it finished (often above a shared station),
        goes home at once, while the others' next motions start (rather than being sent home only when
        one of them finds it in the way and has to wait for it). Not when the others' motions have all
        started: a trip home then only lengthens the job (a running one that finds it in its way sends
        it home anyway)."""
        if self._plan is None or self._reservations is None:
            return False
        done = {rec.op for rec in self.records}
        rest = [o for o in self._plan.operations if o.id != op.id and o.id not in done]
        if any(op.resource in (list(o.uses) if o.uses else [o.resource]) for o in rest):
            return False
        return any(o.kind in MOTION_KINDS and o.resource != op.resource and o.id not in self._started for o in rest)

    def _at_home(self, rid: str) -> bool:
        """``rid`` stands at its home configuration (within :data:`AT_HOME` in every joint)."""
        home = self.planners[rid].kin.home
        return max(abs(a - b) for a, b in zip(self.robots[rid].joint_positions(), home)) <= AT_HOME

    @contextlib.contextmanager
    def _step_due(self, rid: str) -> Iterator[None]:
        """While a motion step of ``rid`` runs, from the moment the executor starts it: the robot is
        about to move on by itself, so another robot it stands in the way of waits for that
        (:meth:`SpaceReservations.wait_for_change` sees it busy) rather than send it home first."""
        if self._reservations is None:
            yield
            return
        with self._due_lock:
            self._due[rid] = self._due.get(rid, 0) + 1
        self._reservations.busy(rid, True)
        try:
            yield
        finally:
            self._reservations.busy(rid, False)
            with self._due_lock:
                self._due[rid] -= 1

    def _park_idle_others(self, rid: str) -> bool:
        """``rid`` cannot plan with the other robots where they stand: send every other robot that is
        idle and away from home back home (robots stay where they finished, out of the way or not,
        until one is in another's way). A robot whose next motion step has started is not idle: it
        moves on by itself, to where its step takes it, which is usually nearer than home (the
        caller waits for that). True when one moved, so ``rid`` plans again."""
        moved = False
        for other in sorted(self.robots):
            if other == rid or self._halted.is_set():
                continue
            with self._due_lock:
                if self._due.get(other, 0) > 0:
                    continue
            if self._at_home(other):
                continue
            if not self._moving[other].acquire(blocking=False):
                continue            # it is running a step of its own: it moves on anyway
            try:
                moved = self._park(other) or moved
            finally:
                self._moving[other].release()
        return moved

    def _park(self, rid: str) -> bool:
        """Move ``rid`` home under the reservation of shared space (the caller holds its lock)."""
        planner, robot = self.planners[rid], self.robots[rid]
        share = self._share_space(rid, planner, None)
        ran = False
        try:
            for _attempt in range(20):
                share.before_plan()
                try:
                    traj = planner.plan_joint(robot.joint_positions(), planner.kin.home.tolist())
                except PlanningError as exc:
                    log.info("robot %s cannot go home to make way: %s", rid, exc)
                    return False
                if share.gate([("park", traj)]):
                    break
            else:
                return False
            log.info("robot %s goes home to make way for another robot", rid)
            robot.execute(traj)
            share.moved(0)
            ran = True
            return True
        finally:
            share.end(ran)

    def _sim_clock(self) -> Any:
        """The simulated world's shared clock (its stepper), when the robots move in one in this process."""
        return getattr(getattr(self.sim, "world", None), "stepper", None)

    @staticmethod
    def _deviation(got: Pose, target: Site, insert: Any) -> Dict[str, float]:
        """How far a part is from its target: position, orientation, tilt of its z axis, and depth error."""
        from anycell.geometry import distance, quat_angle, quat_rotate

        goal = _pose(target)
        out = {"error_m": distance(got.position, target.xyz),
               "angle_error_rad": quat_angle(got.quaternion, goal.quaternion)}
        z_got, z_goal = quat_rotate(got.quaternion, (0, 0, 1)), quat_rotate(goal.quaternion, (0, 0, 1))
        dot = max(-1.0, min(1.0, sum(a * b for a, b in zip(z_got, z_goal))))
        import math

        out["tilt_rad"] = math.acos(dot)
        if insert is not None:
            # how much short of its depth the part stopped (positive: not in far enough)
            out["depth_error_m"] = -sum((g - t) * a for g, t, a in zip(got.position, target.xyz, insert.axis))
        return out

    def _confirm(self, op: Operation, got: Pose, detail: Dict[str, Any]) -> None:
        """A placement is done only when the world says so: out of tolerance fails the step with the deviation.

        A part put on the fixture first (the unit's base) is then held by the fixture's clamp or vacuum.
        """
        tol = self.job.placement(_part(op)).tolerance
        err, ang = detail["error_m"], detail["angle_error_rad"]
        if err > tol.position or ang > tol.angle:
            where = ", ".join(f"{v * 1000:+.2f}" for v in (got.xyz[i] - op.params["target"]["xyz"][i] for i in range(3)))
            raise PlacementError(
                f"step {op.id}: part '{op.part}' of unit {op.unit} was measured {err * 1000:.2f} mm "
                f"(dx, dy, dz = {where} mm) and {ang:.3f} rad from its target; the tolerance is "
                f"{tol.position * 1000:.2f} mm and {tol.angle:.3f} rad",
                hint="the part did not seat: check the shapes, the insertion depth and the grasp",
                deviation={"position_m": err, "angle_rad": ang, "tilt_rad": detail.get("tilt_rad"),
                           "depth_error_m": detail.get("depth_error_m")})
        fixture_id = op.params["target"].get("ref")
        if self.sim is not None and op.part == self._base_id and fixture_id:
            with self._world_lock:
                if self.sim.hold(uid(op.unit, op.part), fixture_id):
                    self._held_by[fixture_id] = uid(op.unit, op.part)
                    detail["held_by"] = f"{self.cell.station(fixture_id).hold.kind}:{fixture_id}"

    def _release_fixture(self, fixture_id: str) -> None:
        """Open the clamp (vacuum) of the fixture the finished unit is taken from; a unit on another
        fixture stays held."""
        if self.sim is None or fixture_id not in self._held_by:
            return
        with self._world_lock:
            self.sim.release_hold(fixture_id)
        self._held_by.pop(fixture_id, None)

    def _grasp_plan(self, op: Operation, target: Site, carried: List[str]) -> tuple:
        """The insertion move (placements that name one) and where the tool holds the part, from the shapes."""
        from anycell.agent.skills import GraspHints, Insert
        from anycell.errors import PlanningError
        from anycell.geometry import quat_rotate
        from anycell.planners import sites
        from anycell.planners.tool import cup_radius, tool_figures

        tool = self.cell.robot(op.resource).tool
        insert = None
        clear = None
        if op.kind in ("pick_place", "unload") and target.kind == "fixture":
            move = self.job.placement(_part(op)).insertion_move()
            if move is not None:
                axis = quat_rotate(sites.product_frame(self.cell, target.ref).quaternion, move.axis)
                insert = Insert(tuple(axis), float(move.depth), float(move.speed))  # type: ignore[arg-type]
            clear = sites.receiving_surface(self.job, _part(op))
        spot: tuple = (0.0, 0.0, None)
        hand_clear = sites.carried_top(self.job) if carried else None
        if tool.kind == "suction":
            blocked = [c.split(".", 1)[1] for c in carried]
            radius = tool.cup_radius
            robot_cfg = self.cell.robot(op.resource)
            if carried:
                _reach, hand, body, sideways = tool_figures(robot_cfg)
                found = sites.carry_suction_spot(self.job, radius, body, hand, sideways)
                hand_clear = None     # the spot was chosen with the flange clear of the standing parts
            else:
                found = sites.suction_spot(self.job, _part(op), radius, blocked, cup_radius(robot_cfg))
            if found is None:
                raise PlanningError(f"step {op.id}: the suction cup ({radius * 1000:g} mm radius) finds no "
                                    f"free area on the top faces of part '{op.part}'",
                                    hint="leave a free area on the part's top face, or use a gripper")
            spot = found
        return insert, GraspHints(clear_above=clear, suction_xy=(spot[0], spot[1]), top=spot[2],
                                  hand_clear=hand_clear)

    def _tray_candidates(self, planned: Site) -> List[Site]:
        """The planned tray position first, then it turned a quarter, then the tray's other free positions.

        A tray position next to a machine may be out of reach one way round: the hand of a gripper
        spans far along its fingers. The first that plans end to end is used.
        """
        from anycell.planners import sites

        out = [planned]
        try:
            tray = self.cell.station(planned.ref)
        except AnycellError:
            return out
        free = [i for i in range(len(sites.tray_positions(tray, self.job)))
                if i != planned.index and (tray.id, i) not in self._tray_used]
        if planned.index is not None:
            out.append(sites.tray_site(tray, self.job, planned.index, turn=1))
        for i in free:
            out += [sites.tray_site(tray, self.job, i), sites.tray_site(tray, self.job, i, turn=1)]
        return out

    def _output_target(self, op: Operation, planned: Site) -> Site:
        """The output tray, or the reject tray for a unit that failed inspection."""
        result = self.unit_results.get(op.unit)
        if result is None or result.passed:
            return planned
        from anycell.planners import sites

        trays = self.cell.stations_of("reject_tray")
        if not trays:
            raise InspectionFailed(f"unit {op.unit} failed inspection and the cell has no reject tray",
                                   hint="add a reject_tray station, or set on_fail: stop in the job")
        site = sites.tray_site(trays[0], self.job, self._rejects)
        self._rejects += 1
        log.warning("unit %d failed inspection: it goes to the reject tray '%s'", op.unit, trays[0].id)
        return site

    def _move_obstacles(self, carried: List[str], src: Site, target: Site, planners: Optional[List[Any]] = None) -> None:
        """Carried parts moved with the base: re-register them where the unit now stands (in ``planners``,
        default every robot's)."""
        moved = _pose(target).compose(_pose(src).inverse())
        for wid in carried:
            part_id = wid.split(".", 1)[1]
            shape, _mass, _color = self._part_geometry(part_id)
            from anycell.planners import sites

            old = sites.placement_pose(self.cell, self.job, part_id, src.ref)
            for planner in (self.planners.values() if planners is None else planners):
                planner.add_obstacle(wid, shape, moved.compose(old))

    # ------------------------------------------------------------------ machines
    def _program(self, op: Operation) -> Dict[str, Any]:
        machine = self.machines.get(op.resource)
        if machine is None:
            raise ConfigError(f"no driver for machine '{op.resource}'")
        prog = op.params["program"]
        program = Program(file=prog.get("file"), inline=prog.get("inline"), name=prog.get("name"))
        parameters = {k: float(v) for k, v in op.params.get("parameters", {}).items()}
        last = [0.0]

        def progress(p: Any) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or p.done >= p.total:
                last[0] = now
                self._event({"event": "machine", "op": op.id, "machine": op.resource, "done": p.done,
                             "total": p.total, "unit": p.unit})

        result = machine.run_program(program, parameters, progress=progress, timeout=self.program_timeout)
        if not result.completed:
            raise ExecutionError(f"machine '{op.resource}' did not complete {op.id}: {result.status}")
        machine_site = self._machine_site(op)
        shape, mass, color = self._part_geometry(_part(op))
        wid = uid(op.unit, _part(op))
        if self.sim is not None:
            with self._world_lock:
                self.sim.machine_made(wid, shape, mass, color, _pose(machine_site))
        for planner in self.planners.values():
            planner.add_obstacle(wid, shape, _pose(machine_site))
        return {"machine": op.resource, "status": result.status, "lines_total": result.lines_total,
                "lines_acknowledged": result.lines_acknowledged, "lines_executed": result.lines_executed,
                "lines_flushed": result.details.get("lines_flushed"), "duration_s": round(result.duration, 3)}

    def _machine_site(self, op: Operation) -> Site:
        from anycell.planners import sites

        return sites.machine_site(self.cell.machine(op.resource), self.job.part(_part(op)))

    # ------------------------------------------------------------------ inspection
    def _inspect(self, op: Operation) -> Dict[str, Any]:
        if self.sim is None:
            raise ExecutionError("this cell has no measuring driver for its inspection station",
                                 hint="inspection runs in simulation; on the floor, anycell has no camera "
                                      "driver yet")
        from anycell.planners import sites

        station = self.cell.station(op.resource)
        frame = sites.product_frame(self.cell, op.params.get("fixture"))   # the unit's fixture
        frame_inv = frame.inverse()
        uids = {pl.part: uid(op.unit, pl.part) for pl in self.job.assembly.placements}
        with self._world_lock:
            truth = self.sim.measure(list(uids.values()))
        rng = random.Random(int(hashlib.sha256(f"{self.job.id}/{op.unit}".encode()).hexdigest()[:8], 16))
        measured: Dict[str, Optional[Pose]] = {}
        for part_id, wid in uids.items():
            pose = truth.get(wid)
            if pose is None:
                measured[part_id] = None
                continue
            local = frame_inv.compose(pose)
            sp, sa = station.uncertainty.position, station.uncertainty.angle
            noisy = Pose(xyz=[v + rng.gauss(0.0, sp) for v in local.xyz],
                         rpy=[v + rng.gauss(0.0, sa) for v in local.rpy])
            measured[part_id] = noisy
        # what the station saw is the best model of the unit now: the planners plan around it
        for part_id, seen in measured.items():
            if seen is not None:
                shape, _mass, _color = self._part_geometry(part_id)
                for planner in self.planners.values():
                    planner.add_obstacle(uids[part_id], shape, frame.compose(seen))
        result = check_unit(self.job, op.unit, measured, station.uncertainty.position, station.uncertainty.angle)
        self.unit_results[op.unit] = result
        if result.passed and self.plan_ahead:
            with self._ahead_lock:   # a robot whose next step is this unit's output may plan it now
                for rid, (last, q_end) in list(self._last_planned.items()):
                    if rid not in self._ahead:
                        self._plan_next_from(last, q_end)
        self._snap(op.id, close_up=True)
        self._event({"event": "inspection", "op": op.id, "unit": op.unit, "passed": result.passed,
                     "failures": result.failures()})
        if not result.passed and self.job.on_fail == "stop":
            raise InspectionFailed(f"unit {op.unit} failed inspection: " + "; ".join(result.failures()),
                                   hint="the job says on_fail: stop; fix the cause, then reset the cell")
        return {"unit": op.unit, "passed": result.passed, "checks": result.checks,
                "failures": result.failures()}

    # ------------------------------------------------------------------ the end
    def finish(self, plan: Plan, outcome: str, error: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The job ended: take a last picture, and write the report (when there is a report_dir)."""
        from anycell.agent.report import build_report, write_report

        self._snap("end")
        self.wait_for_pictures()
        if self._lookahead is not None:
            self._lookahead.shutdown(wait=True)
            self._lookahead = None
        self._ahead.clear()
        counters = {}
        for mid, drv in self.machines.items():
            try:
                counters[mid] = {"protocol": drv.protocol, **drv.counters()}
            except AnycellError as exc:
                counters[mid] = {"protocol": drv.protocol, "error": str(exc)}
        report = build_report(cell=self.cell, job=self.job, plan=plan, runner=self, outcome=outcome,
                              wall_time=time.monotonic() - self._t0, machine_counters=counters, error=error,
                              time_scale=self.machine_time_scale)
        if self.report_dir:
            write_report(self.report_dir, report, plan, self)
        return report

    # ------------------------------------------------------------------ helpers
    def _camera(self, close_up: bool) -> Optional[str]:
        """The cell's first camera; for work on the fixture, a camera named after the fixture if there is one."""
        ids = [c.id for c in self.cell.cameras]
        if close_up:
            for station in self.cell.stations_of("fixture"):
                if station.id in ids:
                    return station.id
        return ids[0] if ids else None

    def _snap(self, name: str, close_up: bool = False) -> None:
        """Take a picture for the report without holding up the robots.

        The scene is copied under the world lock (milliseconds) and rendered on a background
        thread (:meth:`anycell.sim.world.SimWorld.snapshot_later`); hooks that cannot copy a
        scene (the ROS sim bridge renders in the simulator's process) are called on that thread.
        """
        directory = self.report_dir
        if self.sim is None or directory is None:
            return
        import os
        from concurrent.futures import ThreadPoolExecutor

        camera = self._camera(close_up)
        with self._world_lock:
            self._snap_count += 1
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"{self._snap_count:02d}_{name}.png")
            later = getattr(self.sim, "snapshot_later", None)
            try:
                render = later(path, camera) if later is not None else None
            except AnycellError as exc:
                log.warning("snapshot %s failed: %s", name, exc)
                return
        sim = self.sim
        if render is None:
            def render() -> str:
                return sim.snapshot(path, camera)
        if self._pictures is None:
            self._pictures = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pictures")
        self._pending_pictures.append((name, path, self._pictures.submit(render)))

    def wait_for_pictures(self) -> None:
        """Wait until every picture asked for is written (in the order they were taken)."""
        import os

        for name, path, future in self._pending_pictures:
            try:
                future.result()
                self.snapshots.append(os.path.basename(path))
            except AnycellError as exc:  # a picture is never worth failing a step
                log.warning("snapshot %s failed: %s", name, exc)
        self._pending_pictures = []
        if self._pictures is not None:
            self._pictures.shutdown(wait=True)
            self._pictures = None

    def _event(self, info: Dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(info)
            except Exception:  # noqa: BLE001 - a display callback never breaks a step
                log.exception("progress callback failed")


class _SharedMotion:
    """One robot's pick-and-place beside other moving robots: read where the others will stand,
    reserve the space the planned pick sweeps (with a claim on the place), then the place from
    the hold above the picked part, give it back segment by segment, release.

    The protocol and why it is safe are in :mod:`anycell.planners.reservation`.
    """

    def __init__(self, table: Any, rid: str, planner: Any, robots: Mapping[str, Robot],
                 size: Optional[Sequence[float]], margin: float, clock: Any,
                 make_way: Optional[Callable[[str], bool]] = None) -> None:
        self.table, self.rid, self.planner, self.robots = table, rid, planner, robots
        self.size, self.margin, self.clock, self.make_way = size, margin, clock, make_way
        self.snapshot: Dict[str, int] = {}
        self.space: Any = None
        self.offset = 0         # segment i of the motion is segment i - offset of ``space``
        self.split: Optional[int] = None   # while in the pick: the number of segments it has
        self.busy = False       # told the table it is planning or running a motion

    def hooks(self) -> Dict[str, Callable[..., Any]]:
        return {"before_plan": self.before_plan, "gate": self.gate, "blocked": self.blocked, "moved": self.moved,
                "place_phase": self.place_phase}

    def before_plan(self) -> None:
        if not self.busy:
            self.busy = True
            self.table.busy(self.rid, True)
        if self.clock is not None:
            self.clock.pause(self.rid)                    # in simulation, planning takes no simulated time
        self.snapshot = self.table.snapshot()             # first: a robot that moves on after this is noticed
        for other_id, other in self.robots.items():
            if other_id != self.rid:                      # where it stands, or where its motion ends
                where = self.table.destination(other_id)
                self.planner.set_robot_position(other_id, where if where is not None else other.joint_positions())

    def _space(self, segments: List[Any]) -> Any:
        from anycell.planners.swept import MotionSpace

        space = MotionSpace(self.planner, segments, margin=self.margin, held_size=self.size)
        if self.clock is not None:
            self.clock.resume(self.rid)
        return space

    def gate(self, segments: List[Any]) -> bool:
        """Reserve the motion: a pick-and-place its pick, with a claim on its place; anything else whole."""
        self.space, self.offset = self._space(segments), 0
        names = [name for name, _t in segments]
        self.split = names.index("retreat_pick") + 1 if "retreat_pick" in names[:-1] else None
        if self.split is None:
            return bool(self.table.acquire(self.rid, self.space.whole, self.snapshot,
                                           destination=self.space.destination))
        hold = self.space.per_segment[self.split - 1]    # the retreat above the part, where it may wait
        pick = frozenset().union(*self.space.per_segment[:self.split])
        return bool(self.table.acquire(self.rid, pick, self.snapshot, destination=self.space.destination,
                                       claim=(hold, self.space.rest_after(self.split - 1))))

    def moved(self, index: int) -> None:
        if self.space is None:
            return
        if self.split is not None:        # in the pick: what is left of it, down to the hold
            per = self.space.per_segment
            self.table.shrink(self.rid, frozenset().union(per[self.split - 1], *per[index + 1:self.split]))
        else:
            self.table.shrink(self.rid, self.space.rest_after(index - self.offset))

    def place_phase(self, rest: List[Any], replan: Callable[[], List[Any]]) -> List[Any]:
        """At the hold, holding the part: reserve the place (planned again from here when a robot
        that moved since stands in its way); returns the segments to run."""
        assert self.split is not None and self.space is not None
        space, offset = self.space, 0
        self.table.waits_at(self.rid, self.robots[self.rid].joint_positions())
        for _attempt in range(50):
            cells = space.rest_after(self.split - 1 - offset)
            if self.table.acquire(self.rid, cells, self.snapshot, destination=space.destination):
                self.space, self.offset, self.split = space, offset, None
                return rest
            log.info("robot %s: the cell changed under its place; planned again from above the part", self.rid)
            for _try in range(50):
                self.before_plan()
                try:
                    rest = replan()
                    break
                except PlanningError as exc:
                    if not self.blocked(exc):
                        raise
            else:
                break
            space, offset = self._space([("grasp", None), *rest]), self.split - 1
        raise ExecutionError(f"the other robots kept moving while robot '{self.rid}' waited to place its part",
                             hint="the cell is too busy to share space; retry")

    def blocked(self, exc: Exception) -> bool:
        log.info("robot %s: %s; waiting for the other robots to move on", self.rid, exc)
        if self.clock is not None:
            self.clock.resume(self.rid)
        for _round in range(3):
            if self.make_way is not None and self.make_way(self.rid):
                return True
            if self.table.wait_for_change(self.rid, self.snapshot):
                return True
            # nobody moved on: a robot that was ending its step (not sent home then) may be idle now
        return False

    def end(self, as_planned: bool, placed: Optional[Pose] = None, shape: Any = None) -> None:
        """The motion is over (``as_planned``: it ran to its destination, having put its part at
        ``placed``). The part is part of what the robot leaves standing: a plan another robot
        made before without it is refused where it would meet it."""
        from anycell.planners.swept import part_cells

        if self.clock is not None:
            self.clock.resume(self.rid)
        standing = None
        if as_planned and self.space is not None:
            standing = self.space.at_rest
            if placed is not None:
                standing = standing | part_cells(placed, shape.size, margin=self.margin)
        self.table.release(self.rid, standing=standing)
        if self.busy:
            self.busy = False
            self.table.busy(self.rid, False)
