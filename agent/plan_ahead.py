"""Plan the rest of a pick-and-place while the robot already moves (the ``plan_ahead`` of the skill).

A planning thread works through the grasp yaws in the same order as planning on demand
(:func:`anycell.agent.skills.plan_pick_place`) and hands each planned segment to the robot's
thread through a :class:`SegmentFeed`. The robot's thread runs a segment as soon as it is there.
What keeps this as safe as planning everything first:

* Nothing moves before the yaw is *committed*: every segment but the transfer is planned (the
  pick, the pre-place configuration, the place or insertion from it, the retreat). A target the
  robot cannot reach or that collides is therefore still refused with the robot at rest, with the
  same error; only the joint-space transfer between the two (the longest search) is planned
  while the robot moves to the pick.
* The robot does not close its tool before the whole motion, to the retreat from the place,
  is planned: it never holds a part it has no planned way to put down.
* A segment that fails after the commit (a transfer the planner finds no path for) stops the
  sequence before the grasp; the robot, holding nothing, goes back up to the pre-grasp and the
  planner's error is raised.

Planning is deterministic (the planner is seeded per call), and every segment is planned from
the previous segment's planned end in both modes, so the committed yaw's trajectories are the
same as planning on demand. They differ only when a yaw fails after its commit: on demand would
have tried the next yaw before moving, plan-ahead refuses (the robot is clear of the part).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from anycell.errors import AnycellError

if TYPE_CHECKING:
    from anycell.agent.skills import Segment, _Job
    from anycell.planners.motion import MotionPlanner

log = logging.getLogger(__name__)


class SegmentFeed:
    """Segments handed from the planning thread to the robot's thread, in order.

    The planner side calls :meth:`put` for each segment, :meth:`finish` when the whole motion is
    planned, or :meth:`fail` with the error that ends planning. The robot side calls :meth:`get`
    and :meth:`wait_whole`; both raise the planning error once it is known. ``waited`` sums the
    seconds the robot's side spent waiting for the planner.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: List["Segment"] = []
        self._whole = False
        self._error: Optional[BaseException] = None
        self.yaw: Optional[float] = None
        self.cancelled = threading.Event()
        self.waited = 0.0
        self.planning_time = 0.0

    # -------------------------------------------------------------- planning side
    def put(self, segment: "Segment") -> None:
        with self._cond:
            self._items.append(segment)
            self._cond.notify_all()

    def finish(self, yaw: float) -> None:
        with self._cond:
            self.yaw, self._whole = yaw, True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # -------------------------------------------------------------- robot side
    def get(self, index: int) -> Optional["Segment"]:
        """Segment ``index`` once planned; None when the motion has no more segments."""
        with self._cond:
            t0 = time.perf_counter()
            while len(self._items) <= index and not self._whole and self._error is None:
                self._cond.wait()
            self.waited += time.perf_counter() - t0
            if len(self._items) > index:
                return self._items[index]
            if self._error is not None:
                raise self._error
            return None

    def wait_whole(self) -> None:
        """Block until every segment is planned; raise the planning error if there is one."""
        with self._cond:
            t0 = time.perf_counter()
            while not self._whole and self._error is None:
                self._cond.wait()
            self.waited += time.perf_counter() - t0
            if self._error is not None:
                raise self._error

    def segments(self) -> List["Segment"]:
        with self._cond:
            return list(self._items)


def start_planning(planner: "MotionPlanner", job: "_Job", q_start: List[float],
                   on_planned: Optional[Callable[[List[float]], None]] = None) -> Tuple[SegmentFeed, threading.Thread]:
    """Start the planning thread for ``job`` from ``q_start``; segments arrive in the returned feed.

    ``on_planned`` is called on the planning thread, with the configuration the motion ends in,
    once the whole motion is planned (the runner plans the next motion then).
    """
    feed = SegmentFeed()
    thread = threading.Thread(target=_plan, args=(planner, job, q_start, feed, on_planned),
                              name=f"plan-{job.part_id}", daemon=True)
    thread.start()
    return feed, thread


def _plan(planner: "MotionPlanner", job: "_Job", q_start: List[float], feed: SegmentFeed,
          on_planned: Optional[Callable[[List[float]], None]]) -> None:
    """The planning thread: the yaws in order; stream a yaw's segments from its commit on."""
    import math

    from anycell.agent.skills import COMMIT

    t0 = time.perf_counter()
    errors: List[AnycellError] = []
    try:
        for k in job.turns:
            if feed.cancelled.is_set():
                return
            pending: List[Any] = []
            committed = False
            try:
                for name, traj in _iterate(planner, job, q_start, k):
                    if feed.cancelled.is_set():
                        return
                    if name == COMMIT:
                        committed = True
                        for seg in pending:
                            feed.put(seg)
                        pending = []
                    elif committed:
                        feed.put((name, traj))
                    else:
                        pending.append((name, traj))
            except AnycellError as exc:
                if committed:
                    feed.fail(exc)   # the robot may be on its way to the pick: no other yaw from here
                    return
                log.debug("grasp yaw %d failed: %s", k, exc)
                errors.append(exc)
                continue
            for seg in pending:
                feed.put(seg)
            feed.finish(job.yaw0 + k * math.pi / 2)
            feed.planning_time = time.perf_counter() - t0
            if on_planned is not None:
                last = [traj for _n, traj in feed.segments() if traj is not None][-1]
                try:
                    on_planned(list(last.end))
                except Exception:  # noqa: BLE001 - planning the next motion early is only a head start
                    log.exception("planning ahead of the next motion failed to start")
            return
        feed.fail(errors[0])   # the same error as planning on demand: the refusal of the first yaw
    except BaseException as exc:  # noqa: BLE001 - handed to the robot's thread, which raises it
        feed.fail(exc)
    finally:
        if not feed.planning_time:
            feed.planning_time = time.perf_counter() - t0


def _iterate(planner: "MotionPlanner", job: "_Job", q_start: List[float], k: int) -> Any:
    from anycell.agent.skills import _yaw_segments

    return _yaw_segments(planner, job, q_start, k)
