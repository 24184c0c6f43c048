"""Sharing space in time between robots that move at once: a reservation table of swept volumes.

What a robot holds
------------------
A robot that is about to run a planned motion (a whole pick-and-place: every
segment, grasp and release included) asks for the space its links (and the
part it carries) sweep over the whole motion, as a set of voxels inflated by half the
robot-robot ``margin`` (:mod:`anycell.planners.swept`). Once granted, it *gives space back as
it goes*: after each segment it holds only what the rest of its motion sweeps
(:meth:`SpaceReservations.shrink`), so another robot waiting for a station this
one has left may start while this one is still on its way home. At the end it
stands at the motion's declared *destination* (the configuration it ends in).

Each robot's plans are made with every other robot at its destination (where it
stands, or where the motion it is running ends), checked with the margin by the
planner. The table grants a reservation only when, for every other robot,

1. it is moving and the space it still holds shares no voxel with the request
   (otherwise the requester waits: the other gives space back as it moves), or
2. it is standing and either the requester's plan saw it as it is (its
   *version*, bumped whenever it starts or ends a motion, is the one the
   requester read before planning) or what it left standing (its body at its
   destination, and the part it put down) is disjoint from the request.

Why it is safe
--------------
During the motion every other robot is either moving inside space disjoint from
ours (which also holds its destination, so it stays clear after it stops), or
standing where the plan saw it or clear of our voxels. Two robots therefore
never come closer than the margin, up to the planner's sampling (half a voxel of
padding covers a link's travel between two samples). A robot that stops short
of its destination (a failure, a halt) bumps its version: every plan made
before is stale and is planned again with it where it really is.

Why it cannot deadlock
----------------------
A robot waits only for robots that hold a granted reservation, and a robot that
holds one never waits for anything: it runs its motion, shrinking its holding,
and releases (also on failure). The wait-for graph has no cycle. A request
refused because a standing robot's place changed is not a wait: the requester
plans again with it where it now is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, FrozenSet, Hashable, Iterable, List, Optional, Sequence, Tuple

from anycell.errors import PlanningError

# the swept volumes themselves (voxels of a robot's motion) live in planners.swept
from .swept import MotionSpace, segment_cells, standing_cells, swept_cells  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

Cells = FrozenSet[Hashable]   # voxels (planners.swept gives ints; anything hashable works)


class SpaceReservations:
    """The cell's table of granted motion reservations (thread-safe); one per cell run."""

    def __init__(self, robot_ids: Iterable[str]) -> None:
        self._cond = threading.Condition()
        self.version: Dict[str, int] = {rid: 0 for rid in robot_ids}
        self.granted: Dict[str, Cells] = {}               # moving robots: the space the rest of the motion sweeps
        self.standing: Dict[str, Cells] = {}              # standing robots whose body's voxels are known
        self._destination: Dict[str, List[float]] = {}    # where each robot stands or will stop (when known)
        self._events = 0         # grants and releases, for robots waiting for any of the others to move on
        self._busy: Dict[str, int] = {}   # robots planning or running a motion (they will move on soon)
        self.waits = 0           # how many times a robot waited for another (for reports and tests)

    def snapshot(self) -> Dict[str, int]:
        """Every robot's version now: take it *before* reading where the other robots stand
        (:meth:`destination`), and hand it to :meth:`acquire`."""
        with self._cond:
            snap = dict(self.version)
            snap["\0events"] = self._events
            return snap

    def destination(self, robot_id: str) -> Optional[List[float]]:
        """Where ``robot_id`` stands or the motion it runs ends; None when not known (read its joints)."""
        with self._cond:
            q = self._destination.get(robot_id)
            return list(q) if q is not None else None

    def _refusal(self, robot_id: str, cells: Cells, snapshot: Dict[str, int]) -> Tuple[List[str], bool]:
        """The moving robots in the way, and whether a standing one moved since ``snapshot`` and is in the way."""
        blockers: List[str] = []
        stale = False
        for other, version in self.version.items():
            if other == robot_id:
                continue
            held = self.granted.get(other)
            if held is not None:
                if not held.isdisjoint(cells):
                    blockers.append(other)
            elif version != snapshot.get(other, version):
                body = self.standing.get(other)
                if body is None or not body.isdisjoint(cells):
                    stale = True
        return sorted(blockers), stale

    def acquire(self, robot_id: str, cells: Cells, snapshot: Dict[str, int], *,
                destination: Optional[Sequence[float]] = None, timeout: float = 600.0) -> bool:
        """Reserve ``cells`` for ``robot_id``'s next motion, which ends at ``destination``.

        True when granted. False when a standing robot's place changed since ``snapshot`` and
        it may be in the way: plan again with the others where they are now, then ask again.
        Waits while a moving robot holds overlapping space (it gives it back as it moves).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            waited = False
            while True:
                blockers, stale = self._refusal(robot_id, cells, snapshot)
                if stale:
                    return False
                if not blockers:
                    self.granted[robot_id] = cells
                    self.standing.pop(robot_id, None)
                    self.version[robot_id] += 1
                    self._events += 1
                    if destination is not None:
                        self._destination[robot_id] = [float(v) for v in destination]
                    else:
                        self._destination.pop(robot_id, None)
                    self._cond.notify_all()
                    return True
                if not waited:
                    self.waits += 1
                    waited = True
                    log.info("robot %s waits for %s to leave the space it needs", robot_id, ", ".join(blockers))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PlanningError(f"robot '{robot_id}' waited {timeout:.0f} s for "
                                        f"{', '.join(blockers)} to leave the space it needs",
                                        hint="a motion of the other robot did not end; check it")
                self._cond.wait(min(left, 1.0))

    def shrink(self, robot_id: str, cells: Cells) -> None:
        """The robot moved on: it now needs only ``cells`` (what the rest of its motion sweeps, its
        destination included). Robots waiting for the space it left are woken."""
        with self._cond:
            held = self.granted.get(robot_id)
            if held is None:
                return
            self.granted[robot_id] = held & cells
            self._cond.notify_all()

    def busy(self, robot_id: str, on: bool) -> None:
        """``robot_id`` starts (``on``) or ends planning and running a motion: robots whose plans it
        blocks wait for it (:meth:`wait_for_change`) rather than give up."""
        with self._cond:
            self._busy[robot_id] = self._busy.get(robot_id, 0) + (1 if on else -1)
            if self._busy[robot_id] <= 0:
                self._busy.pop(robot_id)
            self._cond.notify_all()

    def wait_for_change(self, robot_id: str, snapshot: Dict[str, int], *, timeout: float = 600.0) -> bool:
        """After a plan failed with the others at their destinations: wait until one of them moves on.

        True when another robot started or finished a motion since ``snapshot`` (plan again);
        False when none is moving, planning a motion or about to (a robot waiting here is none of
        these): the failure is not theirs.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            mine = self._busy.pop(robot_id, 0)      # while it waits here, others do not wait for it
            self._cond.notify_all()
            try:
                while True:
                    if self._events != snapshot.get("\0events", self._events):
                        return True
                    if not any(o != robot_id for o in list(self.granted) + list(self._busy)):
                        return False
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.waits += 1
                    self._cond.wait(min(left, 1.0))
            finally:
                if mine:
                    self._busy[robot_id] = mine

    def release(self, robot_id: str, *, standing: Optional[Cells] = None) -> None:
        """The motion ended. ``standing``: what it leaves where it stopped as planned (its body at its
        destination and the part it put down, the one thing a plan made before may not have seen);
        None when it stopped short (a failure, a halt): its place is unknown here. Either way its
        version is bumped: a plan made before that meets ``standing`` (or any plan, when None) is
        stale and made again."""
        with self._cond:
            if self.granted.pop(robot_id, None) is None:
                return
            self._events += 1
            self.version[robot_id] += 1
            if standing is not None:
                self.standing[robot_id] = standing
            else:
                self.standing.pop(robot_id, None)
                self._destination.pop(robot_id, None)
            self._cond.notify_all()
