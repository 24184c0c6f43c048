"""Robot skills on top of the Robot interface and the motion planner (plain Python, no ROS).

``pick_place`` moves one part (or a unit carried by its base part) from a
source :class:`~anycell.plan.Site` to a target Site: approach, grasp, retreat,
transfer, approach, place, release, retreat. The pick and the target are
planned before the robot moves, so an unreachable or colliding target is
refused with the robot still at rest; the rest is planned while the robot
moves (:mod:`anycell.agent.plan_ahead`), or first with ``plan_ahead=False``.
The executor calls it for the plan's
``pick_place``, ``load``, ``unload`` and ``output`` operations.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from anycell.errors import AnycellError, ExecutionError, PlanningError
from anycell.geometry import Pose
from anycell.plan import Site
from anycell.planners.tool import HAND_MARGIN, finger_axis_yaw, gripper_tcp_height, hand_height, tool_reach

if TYPE_CHECKING:  # the motion planner brings pybullet: imported where it is used
    from anycell.planners.motion import MotionPlanner
    from anycell.planners.trajectory import Trajectory

#: A site, or its dict form from a plan's params.
SiteLike = Union[Site, Dict[str, Any]]
#: A named step of a pick-and-place: a trajectory, or None for the grasp and the release.
Segment = Tuple[str, Optional["Trajectory"]]
#: When the robot ran a segment: (name, start, end), ``time.monotonic()`` seconds.
Move = Tuple[str, float, float]

log = logging.getLogger(__name__)

APPROACH = 0.08         # m above the grasp/place pose where straight lines start
PLACE_GAP = 0.001       # m: a part is released this far above its resting pose
PRESS = 0.0005          # m: a suction cup presses this far into the face it picks
CARRY_SPEED = 0.35      # fraction of the planner's limits while carrying a stack of loose parts
INSERT_ENTRY = 0.005    # m: an insertion starts this far before the part enters the receiving part


@dataclass
class PlaceResult:
    """What a pick-and-place did: the planned segments, the time the robot took and the grasp used."""

    part_id: str
    source: Site
    target: Site
    duration: float                       # sum of the trajectories' durations, seconds
    grasp_yaw: float
    segments: List[Segment] = field(default_factory=list)
    planning_time: float = 0.0            # seconds spent planning (on the planning thread with plan-ahead)
    planning_wait: float = 0.0            # seconds the robot stood waiting for the planner
    moves: List["Move"] = field(default_factory=list)


def _as_site(s: SiteLike) -> Site:
    return s if isinstance(s, Site) else Site.from_dict(dict(s))


def _top_down(xyz: Sequence[float], yaw: float) -> Pose:
    return Pose(xyz=[float(v) for v in xyz], rpy=[math.pi, 0.0, float(yaw)])


def _lift(pose: Pose, dz: float) -> Pose:
    return Pose(xyz=[pose.xyz[0], pose.xyz[1], pose.xyz[2] + dz], rpy=list(pose.rpy))


@dataclass(frozen=True)
class Insert:
    """A straight insertion at the target: along ``axis`` (cell frame, unit), for the last ``depth`` meters.

    The part is carried to ``APPROACH`` beyond the entry, moved along the axis to the entry, then
    pushed the ``depth`` at ``speed`` (a fraction of the planner's limits) and released at depth.
    """

    axis: Tuple[float, float, float] = (0.0, 0.0, -1.0)
    depth: float = 0.01
    speed: float = 0.2


@dataclass(frozen=True)
class GraspHints:
    """What the part's real geometry says about where the tool may hold it.

    ``clear_above``: height (m, from the part's centre) of the receiving part's surface around the
    target: a gripper's fingertips must stay above it, so they never go into the pocket with the part.
    ``suction_xy``: where on the top face (part frame x, y) the cup holds: a free area, off holes and
    pockets. ``top``: the height of the face the cup holds above the part's centre (default: half the
    height). ``hand_clear``: the top (from the part's centre) of the parts standing on it when it
    carries a finished unit: the hand must pass above them.
    """

    clear_above: Optional[float] = None
    suction_xy: Tuple[float, float] = (0.0, 0.0)
    top: Optional[float] = None
    hand_clear: Optional[float] = None


def grasp_offset(planner: Any, part_size: Sequence[float], hints: Optional[GraspHints] = None) -> float:
    """Height of the TCP above the part's centre at the grasp.

    A gripper holds the part as low as the surface it rests on allows (fingertips 2 mm above it),
    higher when the part goes into another one (the fingertips stay above the receiving part's
    surface) and higher again when parts stand on it (the hand passes above them). A suction cup
    holds the top face. Raises :class:`PlanningError` when the tool cannot hold the part that way.
    """
    h = float(part_size[2])
    hints = hints or GraspHints()
    if planner.cell.robot(planner.robot_id).tool.kind == "suction":
        top = hints.top if hints.top is not None else h / 2
        if hints.hand_clear is not None and hints.hand_clear + HAND_MARGIN > top + hand_height(planner):
            raise PlanningError(f"the suction tool's flange would hit the parts standing "
                                f"{(hints.hand_clear - top) * 1000:.1f} mm above the face the cup holds "
                                f"(the cup is {hand_height(planner) * 1000:.0f} mm long)",
                                hint="use a longer cup or carry the unit another way")
        return top - PRESS
    floor = -h / 2 if hints.clear_above is None else max(-h / 2, float(hints.clear_above))
    return gripper_tcp_height(tool_reach(planner), hand_height(planner), h, floor, hints.hand_clear)


@dataclass
class _Job:
    """What every grasp yaw of one pick-and-place shares (computed once, before any yaw is tried)."""

    part_id: str
    part_size: Sequence[float]
    source: Site
    target: Site
    offset: Pose
    approach: float
    loaded: float
    ignore: Tuple[str, ...]
    shape: Any
    insert: Optional[Insert]
    yaw0: float
    turns: List[int]


#: A marker in a yaw's segment stream: all but the transfer is planned, so the robot may start.
COMMIT = "commit"


def _prepare(planner: "MotionPlanner", part_id: str, part_size: Sequence[float], source: Site, target: Site, *,
             carried: Sequence[str], approach: float, speed: Optional[float], shape: Any,
             insert: Optional[Insert], hints: Optional[GraspHints]) -> _Job:
    """Refusals that hold for every yaw (the part does not fit the tool), and what the yaws share."""
    tool = planner.cell.robot(planner.robot_id).tool
    hints = hints or GraspHints()
    dz = grasp_offset(planner, part_size, hints)
    loaded = float(speed if speed is not None else (CARRY_SPEED if carried else 1.0))
    if tool.kind == "parallel_gripper":
        opening = tool.max_opening
        widths = [part_size[0], part_size[1]]
        turns = [k for k in range(4) if widths[k % 2] < opening - 0.004]
        if not turns:
            raise PlanningError(f"part '{part_id}' ({min(widths):.3f} m) does not fit the gripper's "
                                f"{opening:.3f} m opening", hint="use a wider gripper or a suction tool")
    else:
        turns = [0, 1, 2, 3]
    offset = Pose(xyz=[float(hints.suction_xy[0]), float(hints.suction_xy[1]), dz]) if tool.kind == "suction" \
        else Pose(xyz=[0.0, 0.0, dz])
    return _Job(part_id, part_size, source, target, offset, approach, loaded, tuple([part_id, *carried]), shape,
                insert, finger_axis_yaw(planner), turns)


def _held(job: _Job, k: int) -> Any:
    """The part in the tool (for the collision checks of the loaded moves) when grasped at yaw ``k``."""
    from anycell.planners.collision import Held
    from anycell.planners.kinematics import matrix_to_pose

    src_pose = Pose(xyz=list(job.source.xyz), rpy=list(job.source.rpy))
    grasp = _top_down(src_pose.compose(job.offset).xyz, float(job.source.rpy[2]) + job.yaw0 + k * math.pi / 2)
    tcp_grasp = np.linalg.inv(_mat(grasp)) @ _mat(src_pose)
    return Held(job.part_id, list(job.part_size), matrix_to_pose(tcp_grasp), job.shape)


def _place_poses(job: _Job, k: int) -> Tuple[Pose, Pose, Optional[Pose]]:
    """(place, pre-place, insertion entry or None): the TCP poses of the place at grasp yaw ``k``."""
    target, insert = job.target, job.insert
    dst_pose = Pose(xyz=list(target.xyz), rpy=list(target.rpy))
    gd = dst_pose.compose(job.offset)
    gap = 0.0 if insert is not None else PLACE_GAP
    place = _top_down([gd.xyz[0], gd.xyz[1], gd.xyz[2] + gap], float(target.rpy[2]) + job.yaw0 + k * math.pi / 2)
    if insert is not None:
        ax = insert.axis
        return place, _shift(place, ax, -(insert.depth + INSERT_ENTRY + job.approach)), \
            _shift(place, ax, -(insert.depth + INSERT_ENTRY))
    return place, _lift(place, job.approach), None


def _place_side(planner: "MotionPlanner", job: _Job, k: int, q_from: Sequence[float]) -> Tuple[Any, List[Segment]]:
    """The place of grasp yaw ``k`` for a robot holding the part at ``q_from``: (the configuration the
    transfer ends in, the segments after the transfer). The transfer itself is left to plan."""
    insert, ignore, loaded, part_id = job.insert, job.ignore, job.loaded, job.part_id
    held = _held(job, k)
    place, pre_place, entry = _place_poses(job, k)
    q_pre_place = planner.ik(pre_place, q_from, held, ignore=ignore, name=f"pre-place of '{part_id}'")
    placing: List[Segment] = []
    if entry is not None and insert is not None:
        t = planner.plan_cartesian_line(q_pre_place, entry, held, ignore=ignore, name=f"entry of '{part_id}'",
                                        speed=loaded)
        placing.append(("approach_place", t))
        t = planner.plan_cartesian_line(t.end, place, held, ignore=ignore,
                                        name=f"insertion of '{part_id}'", speed=min(loaded, insert.speed))
        placing.append(("insert", t))
    else:
        t = planner.plan_cartesian_line(q_pre_place, place, held, ignore=ignore, name=f"place of '{part_id}'",
                                        speed=loaded)
        placing.append(("approach_place", t))
    planner.check_fingers(t.end, ignore=ignore, what=f"place of '{part_id}'")
    placing.append(("release", None))
    t = planner.plan_cartesian_line(t.end, pre_place, ignore=ignore, name="place retreat")
    placing.append(("retreat_place", t))
    return q_pre_place, placing


def plan_place(planner: "MotionPlanner", job: _Job, k: int, q_from: Sequence[float]) -> List[Segment]:
    """Transfer and place for a robot that holds the part (grasped at yaw ``k``) at ``q_from``: the
    place side of a pick-and-place planned again where the robot waits (the cell changed meanwhile)."""
    q_pre_place, placing = _place_side(planner, job, k, q_from)
    transfer = planner.plan_joint(list(q_from), q_pre_place, _held(job, k), ignore=job.ignore, speed=job.loaded)
    return [("transfer", transfer), *placing]


def _yaw_segments(planner: "MotionPlanner", job: _Job, q_start: Sequence[float], k: int) -> Iterator[Segment]:
    """The segments of one grasp yaw, in the order the robot runs them, planned as the consumer asks.

    Raises when one cannot be planned. Every segment but the transfer is planned before
    ``(COMMIT, None)`` is yielded: from there the robot may start moving while the transfer is
    planned (:func:`pick_place` with ``plan_ahead``). Planning on demand ignores the marker; the
    segments are the same either way.
    """
    source, ignore, loaded, part_id = job.source, job.ignore, job.loaded, job.part_id
    src_pose = Pose(xyz=list(source.xyz), rpy=list(source.rpy))
    gs = src_pose.compose(job.offset)
    grasp = _top_down(gs.xyz, float(source.rpy[2]) + job.yaw0 + k * math.pi / 2)
    pre_grasp = _lift(grasp, job.approach)
    held = _held(job, k)
    t = planner.plan_to_pose(list(q_start), pre_grasp, name=f"pre-grasp of '{part_id}'")
    yield "to_pick", t
    # the tool must reach the grasp without touching what is stacked on the part
    t = planner.plan_cartesian_line(t.end, grasp, ignore=(part_id,), name=f"grasp of '{part_id}'")
    planner.check_fingers(t.end, ignore=ignore, what=f"grasp of '{part_id}'")
    yield "approach_pick", t
    yield "grasp", None
    lift = planner.plan_cartesian_line(t.end, pre_grasp, held, ignore=ignore, name="pick retreat", speed=loaded)
    yield "retreat_pick", lift
    # the place side is planned from the pre-place configuration (where the transfer ends) before the
    # transfer: only the transfer is left to plan once the robot may move
    q_pre_place, placing = _place_side(planner, job, k, lift.end)
    yield COMMIT, None
    yield "transfer", planner.plan_joint(lift.end, q_pre_place, held, ignore=ignore, speed=loaded)
    yield from placing


def plan_pick_place(planner: "MotionPlanner", q_start: Sequence[float], part_id: str, part_size: Sequence[float],
                    source: Site, target: Site, *, carried: Sequence[str] = (),
                    approach: float = APPROACH, speed: Optional[float] = None, shape: Any = None,
                    insert: Optional[Insert] = None,
                    hints: Optional[GraspHints] = None) -> Tuple[List[Segment], float]:
    """Plan every segment of a pick-and-place from ``q_start``; returns (segments, grasp yaw).

    ``carried`` names parts stacked on the grasped one (an ``output`` of a finished unit); they
    move with it and are ignored as obstacles; the loaded moves then run at ``speed`` (default
    :data:`CARRY_SPEED` when carrying, else full speed) so friction keeps the stack together. Tries grasp yaws in quarter turns (half turns
    for suction are equivalent) and keeps the first that plans end to end. ``shape`` is the part's
    Geometry (the planner checks the held part's real solid); ``insert`` makes the last move a
    straight insertion; ``hints`` place the grasp on the part's real geometry (see :class:`GraspHints`).
    """
    job = _prepare(planner, part_id, part_size, source, target, carried=carried, approach=approach, speed=speed,
                   shape=shape, insert=insert, hints=hints)
    segs, k = _plan_whole(planner, job, q_start)
    return segs, job.yaw0 + k * math.pi / 2


def _plan_whole(planner: "MotionPlanner", job: _Job, q_start: Sequence[float]) -> Tuple[List[Segment], int]:
    """The first grasp yaw that plans end to end: (its segments, its quarter turn)."""
    errors: List[AnycellError] = []
    for k in job.turns:
        try:
            return [seg for seg in _yaw_segments(planner, job, q_start, k) if seg[0] != COMMIT], k
        except AnycellError as exc:
            log.debug("grasp yaw %d failed: %s", k, exc)
            errors.append(exc)
    # the most telling error: a refusal of the target itself
    raise errors[0]


@dataclass
class Planned:
    """A pick-and-place planned ahead of its turn (while the motion before it ran): see :func:`plan_next`."""

    segments: List[Segment]
    yaw: float
    q_start: List[float]
    held: Any
    ignore: Tuple[str, ...]
    part_id: str
    planning_time: float = 0.0


#: Robot joints (rad) may be this far from where a motion planned ahead starts (the robot settles within 2 mrad).
START_TOLERANCE = 0.01


def plan_next(planner: "MotionPlanner", q_start: Sequence[float], part_id: str, part_size: Sequence[float],
              source: SiteLike, target: SiteLike, **kw: Any) -> Planned:
    """Plan a whole pick-and-place from where the robot *will* be (``q_start``), before its turn.

    :func:`pick_place` given the result (``planned=``) runs it without planning, after checking
    that the robot stands at ``q_start`` and that no segment collides with the cell as the planner
    knows it then (:func:`still_free`); otherwise it plans as usual.
    """
    job = _prepare(planner, part_id, part_size, _as_site(source), _as_site(target), carried=kw.get("carried", ()),
                   approach=kw.get("approach", APPROACH), speed=kw.get("speed"), shape=kw.get("shape"),
                   insert=kw.get("insert"), hints=kw.get("hints"))
    t0 = time.perf_counter()
    segs, k = _plan_whole(planner, job, q_start)
    return Planned(segs, job.yaw0 + k * math.pi / 2, list(q_start), _held(job, k), job.ignore, part_id,
                   time.perf_counter() - t0)


def still_free(planner: "MotionPlanner", planned: Planned) -> bool:
    """Every segment of ``planned`` is clear of the cell as the planner knows it now (parts placed, made,
    measured since it was planned), with the same part in the tool and the same parts ignored."""
    ignore: Tuple[str, ...]
    for name, traj in planned.segments:
        if traj is None:
            continue
        if name == "to_pick":
            held, ignore = None, ()
        elif name == "approach_pick":
            held, ignore = None, (planned.part_id,)
        elif name == "retreat_place":
            held, ignore = None, planned.ignore
        else:
            held, ignore = planned.held, planned.ignore
        bad = planner.trajectory_collisions(traj, held, ignore=ignore)
        if bad:
            log.info("the motion of '%s' planned ahead now meets %s: planned again", planned.part_id, bad[0])
            return False
    return True


def _shift(pose: Pose, axis: Sequence[float], dist: float) -> Pose:
    return Pose(xyz=[pose.xyz[i] + float(axis[i]) * dist for i in range(3)], rpy=list(pose.rpy))


def _mat(pose: Pose) -> np.ndarray:
    from anycell.planners.kinematics import pose_to_matrix

    return pose_to_matrix(pose)


def pick_place(robot: Any, planner: Any, part_id: str, part_size: Sequence[float], source: Any, target: Any, *,
               carried: Sequence[str] = (), approach: float = APPROACH, speed: Optional[float] = None,
               shape: Any = None, insert: Optional[Insert] = None,
               hints: Optional[GraspHints] = None,
               before_plan: Optional[Callable[[], None]] = None,
               gate: Optional[Callable[[List[Tuple[str, Any]]], bool]] = None,
               park: Optional[Sequence[float]] = None,
               blocked: Optional[Callable[[Exception], bool]] = None,
               moved: Optional[Callable[[int], None]] = None,
               place_phase: Optional[Callable[[List[Segment], Callable[[], List[Segment]]], List[Segment]]] = None,
               plan_ahead: bool = True, planned: Optional[Planned] = None,
               on_planned: Optional[Callable[[List[float], Site], None]] = None) -> PlaceResult:
    """Pick ``part_id`` at ``source`` and place it at ``target`` (Sites or their dicts); blocking.

    With ``plan_ahead`` (the default) the robot starts as soon as the pick is planned and the
    target is confirmed reachable, and the rest is planned while it moves
    (:mod:`anycell.agent.plan_ahead` says what keeps that safe); without it every segment is
    planned first. Either way an unreachable or colliding target is refused before any motion.
    The planner's obstacle for the part moves to the target afterwards. Raises ``ExecutionError``
    when the grasp fails or the robot reports a tracking error or contact.

    With several robots moving at once, ``before_plan`` puts the other robots where they
    stand in the planner, and ``gate`` reserves the space the planned segments sweep: it
    returns False when the others moved meanwhile, and the motion is planned again; ``park``
    (the robot's home) ends the motion out of the other robots' way; when planning fails with
    the others where they stand, ``blocked`` waits for one of them to move on (True: plan again).
    The reservation needs the whole swept space, so with a ``gate`` the motion is planned whole;
    ``moved(i)`` is called once segment ``i`` has run (the robot gives back the space it left).
    ``place_phase(rest, replan)`` is called at the hold, above the picked part, before the transfer:
    it returns the segments to run from there (``rest`` once the space they sweep is reserved, or
    what ``replan()`` plans from the hold when the cell changed under ``rest``).

    ``planned`` is this motion planned ahead (:func:`plan_next`): it runs without planning when the
    robot stands where it starts and it is still clear of the cell (else it is planned as usual).
    ``on_planned`` (with ``plan_ahead``) is called on the planning thread with the configuration the
    motion ends in and the target, as soon as the whole motion is planned: the caller may plan the
    next motion then.
    """
    source, target = _as_site(source), _as_site(target)
    if planned is not None and gate is None and before_plan is None and park is None:
        ran = _run_planned(robot, planner, planned, source, target, on_planned)
        if ran is not None:
            _placed(robot, planner, part_id, part_size, shape, target, carried)
            return PlaceResult(part_id, source, target, ran[0], planned.yaw, planned.segments,
                               planned.planning_time, 0.0, ran[1])
        log.info("the motion of '%s' planned ahead no longer fits: planned again", part_id)
    if plan_ahead and gate is None and before_plan is None and park is None:
        return _pick_place_ahead(robot, planner, part_id, part_size, source, target, carried=carried,
                                 approach=approach, speed=speed, shape=shape, insert=insert, hints=hints,
                                 on_planned=on_planned)
    t0 = time.perf_counter()
    job = _prepare(planner, part_id, part_size, source, target, carried=carried, approach=approach, speed=speed,
                   shape=shape, insert=insert, hints=hints)
    for _attempt in range(50):
        if before_plan is not None:
            before_plan()
        try:
            segs, k = _plan_whole(planner, job, robot.joint_positions())
            yaw = job.yaw0 + k * math.pi / 2
            segs = _then_park(planner, segs, park, part_id, part_size, shape, target)
        except PlanningError as exc:
            if blocked is not None and blocked(exc):
                continue
            raise
        if gate is None or gate(segs):
            break
    else:
        raise ExecutionError(f"the other robots kept moving while '{part_id}' was being planned",
                             hint="the cell is too busy to share space; retry")
    planning = time.perf_counter() - t0
    moves: List[Move] = []
    duration = 0.0
    index = 0
    while index < len(segs):
        seg = segs[index]
        duration += _run_segment(robot, part_id, source, seg, moves)
        if moved is not None:
            moved(index)
        if seg[0] == "retreat_pick" and place_phase is not None:
            hold = seg[1]
            assert hold is not None
            w0 = time.perf_counter()
            segs = segs[:index + 1] + place_phase(segs[index + 1:], functools.partial(
                _replan_place, planner, job, k, hold.end, park, target))
            planning += time.perf_counter() - w0
        index += 1
    _placed(robot, planner, part_id, part_size, shape, target, carried)
    return PlaceResult(part_id, source, target, duration, yaw, segs, planning, planning, moves)


def _replan_place(planner: Any, job: _Job, k: int, q_hold: Sequence[float], park: Optional[Sequence[float]],
                  target: Site) -> List[Segment]:
    """The place planned again from the hold (the robot holds the part above where it picked it)."""
    return _then_park(planner, plan_place(planner, job, k, q_hold), park, job.part_id, job.part_size, job.shape,
                      target)


def _then_park(planner: Any, segs: List[Segment], park: Optional[Sequence[float]], part_id: str,
               part_size: Sequence[float], shape: Any, target: Site) -> List[Segment]:
    """``segs`` ending with a move to ``park`` (planned around the part where it is being put), if given."""
    if park is None:
        return segs
    last = segs[-1][1]
    assert last is not None, "a pick-and-place ends with the retreat from the place"
    planner.add_obstacle(part_id, shape if shape is not None else part_size,
                         Pose(xyz=list(target.xyz), rpy=list(target.rpy)))
    return [*segs, ("park", planner.plan_joint(last.end, park, ignore=(part_id,)))]


def _pick_place_ahead(robot: Any, planner: Any, part_id: str, part_size: Sequence[float], source: Site,
                      target: Site, *, carried: Sequence[str], approach: float, speed: Optional[float],
                      shape: Any, insert: Optional[Insert], hints: Optional[GraspHints],
                      on_planned: Optional[Callable[[List[float], Site], None]]) -> PlaceResult:
    """:func:`pick_place` with the planning thread of :mod:`anycell.agent.plan_ahead`."""
    from anycell.agent.plan_ahead import start_planning

    job = _prepare(planner, part_id, part_size, source, target, carried=carried, approach=approach, speed=speed,
                   shape=shape, insert=insert, hints=hints)
    then = None if on_planned is None else (lambda q_end: on_planned(q_end, target))
    feed, thread = start_planning(planner, job, robot.joint_positions(), then)
    moves: List[Move] = []
    try:
        duration, done = _run_feed(robot, planner, part_id, source, feed, moves)
    finally:
        feed.cancelled.set()
        thread.join()
    _placed(robot, planner, part_id, part_size, shape, target, carried)
    assert feed.yaw is not None
    return PlaceResult(part_id, source, target, duration, feed.yaw, done, feed.planning_time, feed.waited, moves)


def _run_feed(robot: Any, planner: Any, part_id: str, source: Site, feed: Any,
              moves: List[Move]) -> Tuple[float, List[Segment]]:
    """Run the segments of ``feed`` as they come; the grasp waits until the whole motion is there.

    When the feed fails before the grasp, the robot backs off from the part and the error is raised.
    """
    duration = 0.0
    done: List[Segment] = []
    index = 0
    while True:
        try:
            seg = feed.get(index)
            if seg is None:
                return duration, done
            if seg[0] == "grasp":
                feed.wait_whole()   # never hold a part without a planned way to put it down
        except AnycellError:
            _back_off(robot, planner, part_id, done, moves)
            raise
        duration += _run_segment(robot, part_id, source, seg, moves)
        done.append(seg)
        index += 1


class _Stale(PlanningError):
    """A motion planned ahead meets something that appeared since: it is planned again."""


def _run_planned(robot: Any, planner: Any, planned: Planned, source: Site, target: Site,
                 on_planned: Optional[Callable[[List[float], Site], None]]) -> Optional[Tuple[float, List[Move]]]:
    """Run a motion planned ahead if it still fits; None when it does not (the robot is then at rest,
    at its start or backed off above the part, holding nothing).

    The first segment is checked before the robot moves; the rest on a thread while it runs, and
    the robot grasps only once all of it is checked (as with planning ahead).
    """
    from anycell.agent.plan_ahead import SegmentFeed

    q = np.asarray(robot.joint_positions())
    if float(np.max(np.abs(q - np.asarray(planned.q_start)))) > START_TOLERANCE:
        return None
    first, rest = planned.segments[:1], planned.segments[1:]
    if not still_free(planner, _replace_segments(planned, first)):
        return None
    feed = SegmentFeed()
    feed.put(first[0])

    def check() -> None:
        try:
            if not still_free(planner, _replace_segments(planned, rest)):
                feed.fail(_Stale(f"the motion of '{planned.part_id}' planned ahead meets the cell as it is now"))
                return
            for seg in rest:
                feed.put(seg)
            feed.finish(planned.yaw)
            if on_planned is not None:   # after the check: the planner serves one thread at a time
                end = [traj for _n, traj in planned.segments if traj is not None][-1]
                on_planned(list(end.end), target)
        except BaseException as exc:  # noqa: BLE001 - handed to the robot's thread
            feed.fail(exc)

    thread = threading.Thread(target=check, name=f"check-{planned.part_id}", daemon=True)
    thread.start()
    moves: List[Move] = []
    try:
        duration, _done = _run_feed(robot, planner, planned.part_id, source, feed, moves)
    except _Stale:
        return None
    finally:
        thread.join()
    return duration, moves


def _replace_segments(planned: Planned, segments: List[Segment]) -> Planned:
    from dataclasses import replace

    return replace(planned, segments=segments)


def _back_off(robot: Any, planner: Any, part_id: str, done: List[Segment], moves: List[Move]) -> None:
    """Planning failed after the robot started (before the grasp): out of the part's way, holding nothing."""
    if not done or done[-1][0] != "approach_pick":
        return
    down = done[-1][1]
    assert down is not None
    back = planner.plan_cartesian_line(down.end, planner.fk(down.start), ignore=(part_id,), name="back off")
    log.warning("planning '%s' failed with the robot at the grasp: it goes back up and stops", part_id)
    _run_segment(robot, part_id, None, ("back_off", back), moves)
    robot.expect_contact(None)


def _run_segment(robot: Any, part_id: str, source: Optional[Site], seg: Segment, moves: List[Move]) -> float:
    """Run one segment on the robot; returns its planned seconds; records when it ran in ``moves``."""
    name, traj = seg
    start = time.monotonic()
    if name == "approach_pick":
        robot.expect_contact(part_id)
    if name == "grasp":
        if not robot.grasp(part_id):
            robot.stop()
            where = f" at {source.kind} '{source.ref}'" if source is not None else ""
            raise ExecutionError(f"grasp of '{part_id}' failed{where}",
                                 hint="the part is missing or not where the cell expects it")
    elif name == "release":
        robot.release()
        robot.expect_contact(part_id)   # the open tool leaves the part it just placed
    elif traj is not None:
        robot.execute(traj)
    moves.append((name, start, time.monotonic()))
    return float(traj.duration) if traj is not None else 0.0


def _placed(robot: Any, planner: Any, part_id: str, part_size: Sequence[float], shape: Any, target: Site,
            carried: Sequence[str]) -> None:
    """The part is at its target: the planner's obstacle follows it."""
    robot.expect_contact(None)
    planner.add_obstacle(part_id, shape if shape is not None else part_size,
                         Pose(xyz=list(target.xyz), rpy=list(target.rpy)))
    for other in carried:
        planner.remove_obstacle(other)   # the carried parts' new poses are the caller's to register


def estimate_pick_place(planner: Any, q_start: Sequence[float], part_id: str, part_size: Sequence[float],
                        source: Any, target: Any, *, carried: Sequence[str] = (), shape: Any = None,
                        insert: Optional[Insert] = None, hints: Optional[GraspHints] = None) -> float:
    """Seconds a pick-and-place would take (its planned trajectories), without moving anything.

    For the scheduler: the same planning as :func:`pick_place`, so it refuses the same targets.
    """
    segs, _yaw = plan_pick_place(planner, q_start, part_id, part_size, _as_site(source), _as_site(target),
                                 carried=carried, shape=shape, insert=insert, hints=hints)
    return float(sum(t.duration for _n, t in segs if t is not None))
