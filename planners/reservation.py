"""Sharing space in time between robots that move at once: a reservation table of swept volumes.

What a robot holds
------------------
A robot that is about to run a planned motion asks for the space its links (and
the part it carries) sweep, as a set of voxels inflated by half the robot-robot
``margin`` (:mod:`anycell.planners.swept`). A pick-and-place is reserved in two
*phases*: the pick (up to the retreat above the part) and the place (the transfer
to the target and what follows). The whole motion is planned before the robot
moves (it never holds a part without a planned way to put it down); the pick is
granted with a *claim* on the place: where it will wait holding the part (its
*hold*, the pick's last segment) and what the place will sweep. At the hold the
robot asks for the place; it may have to wait there while another robot is at
the target. Once granted, a robot *gives space back as it goes*: after each
segment it holds only what the rest of its phase sweeps (:meth:`SpaceReservations.shrink`),
so another robot waiting for a station this one has left may start while this one
is still on its way. At the end it stands at the motion's declared *destination*.

Each robot's plans are made with every other robot at its destination (where it
stands, or where the motion it is running ends), checked with the margin by the
planner. The table grants a reservation only when, for every other robot,

1. it is moving (or waiting at its hold) and the space it still holds shares no
   voxel with the request (otherwise the requester waits: the other gives space
   back as it moves), or
2. it is standing and either the requester's plan saw it as it is (its
   *version*, bumped whenever it starts or ends a motion, is the one the
   requester read before planning) or what it left standing (its body at its
   destination, and the part it put down) is disjoint from the request;

and, for a pick with a claim, the claims close no *cycle of holds*: a robot at its
hold waits for the robots whose hold its place meets, so the claims may not form a
ring of robots each waiting for the next. A pick that would close one waits like
one that meets held space.

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
A robot waits only for robots that hold a granted reservation. One that holds
the place phase (or a single-phase motion) never waits: it runs its motion,
shrinking its holding, and releases (also on failure). One at its hold waits for
its place: for robots that are moving, which reach the end of their phase, and for
robots at their holds whose hold its place meets, which by the claim rule do not
wait for it in return, directly or through others. The wait-for graph has no cycle. A place planned again at the hold (the cell changed under its plan)
is checked against the others' holds when it is asked for: meeting the hold of a
robot that itself waits for this one's space is refused with an error naming both,
never waited on. A request refused because a standing robot's place changed is not
a wait: the requester plans again with it where it now is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, FrozenSet, Hashable, Iterable, List, Optional, Sequence, Tuple

from anycell.errors import PlanningError

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
        # robots in a pick with a place to come: (where it waits holding the part, what the place sweeps)
        self.claims: Dict[str, Tuple[Cells, Cells]] = {}
        self._asking: Dict[str, Cells] = {}   # robots waiting in acquire: what they ask for

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

    def waits_at(self, robot_id: str, q: Sequence[float]) -> None:
        """``robot_id`` stopped at ``q`` holding its part, to wait for its place: plans made from now
        see it there (where its reservation keeps it), not where its place would end."""
        with self._cond:
            self._destination[robot_id] = [float(v) for v in q]
            self._events += 1
            self._cond.notify_all()

    def _refusal(self, robot_id: str, cells: Cells, snapshot: Dict[str, int],
                 claim: Optional[Tuple[Cells, Cells]] = None) -> Tuple[List[str], List[str], bool]:
        """Why ``cells`` cannot be granted now: (the moving robots holding overlapping space, the
        robots whose claims would close a cycle of robots waiting at their holds with ``claim``,
        whether a standing one moved since ``snapshot`` and is in the way)."""
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
        return sorted(blockers), self._hold_cycle(robot_id, claim), stale

    def _hold_cycle(self, robot_id: str, claim: Optional[Tuple[Cells, Cells]]) -> List[str]:
        """The other robots on a cycle of "waits at its hold for the other's hold" that ``robot_id``
        with ``claim`` (hold, place) would close (a robot at its hold waits for robots whose hold its
        place meets); empty when there is none."""
        if claim is None:
            return []
        claims = {rid: c for rid, c in self.claims.items() if rid != robot_id and rid in self.granted}
        claims[robot_id] = claim
        edges = {x: [y for y, cy in claims.items() if y != x and not cx[1].isdisjoint(cy[0])]
                 for x, cx in claims.items()}
        stack = [(y, [y]) for y in edges[robot_id]]
        on_cycle: set = set()
        seen: set = set()
        while stack:
            node, path = stack.pop()
            if node == robot_id:
                on_cycle.update(path[:-1])
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.extend((y, path + [y]) for y in edges[node])
        return sorted(on_cycle)

    def _cycle(self, robot_id: str, blockers: List[str]) -> Optional[List[str]]:
        """A chain of robots waiting for each other's space back to ``robot_id`` (None when there is none)."""
        stack = [(b, [robot_id, b]) for b in blockers]
        seen = set()
        while stack:
            who, path = stack.pop()
            if who in seen:
                continue
            seen.add(who)
            asking = self._asking.get(who)
            if asking is None:
                continue
            for other, held in self.granted.items():
                if other != who and not held.isdisjoint(asking):
                    if other == robot_id:
                        return path
                    stack.append((other, path + [other]))
        return None

    def acquire(self, robot_id: str, cells: Cells, snapshot: Dict[str, int], *,
                destination: Optional[Sequence[float]] = None, claim: Optional[Tuple[Cells, Cells]] = None,
                timeout: float = 600.0) -> bool:
        """Reserve ``cells`` for ``robot_id``'s next motion (or phase of one), which ends at ``destination``.

        ``claim``: this is the pick of a pick-and-place, whose place follows; (the space where the
        robot waits holding the part, the space the place sweeps). Ask for the place later with
        another call, from the hold. True when granted. False when a standing robot's place changed
        since ``snapshot`` and it may be in the way: plan again with the others where they are now,
        then ask again. Waits while a moving robot holds overlapping space (it gives it back as it
        moves). Raises :class:`PlanningError` naming the robots when waiting would close a cycle.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            try:
                return self._acquire(robot_id, cells, snapshot, destination, claim, deadline)
            finally:
                self._asking.pop(robot_id, None)

    def _acquire(self, robot_id: str, cells: Cells, snapshot: Dict[str, int], destination: Optional[Sequence[float]],
                 claim: Optional[Tuple[Cells, Cells]], deadline: float) -> bool:
        """:meth:`acquire` with the lock held."""
        waited = False
        since = time.monotonic()
        while True:
            blockers, cycle, stale = self._refusal(robot_id, cells, snapshot, claim)
            if stale:
                return False
            if not blockers and not cycle:
                self.granted[robot_id] = cells
                if claim is not None:
                    self.claims[robot_id] = claim
                else:
                    self.claims.pop(robot_id, None)
                self.standing.pop(robot_id, None)
                self.version[robot_id] += 1
                self._events += 1
                if destination is not None:
                    self._destination[robot_id] = [float(v) for v in destination]
                else:
                    self._destination.pop(robot_id, None)
                self._cond.notify_all()
                return True
            blockers = sorted(set(blockers) | set(cycle))
            loop = self._cycle(robot_id, blockers) if robot_id in self.granted else None
            if loop is not None:
                raise PlanningError(f"robots {' -> '.join(loop)} would wait for each other's space: "
                                    f"robot '{robot_id}' holds a part where '{loop[1]}' needs to pass, and "
                                    f"the other way round", hint="the two places were planned again into "
                                    "each other's way; halt, clear one robot by hand and resume")
            self._asking[robot_id] = cells
            if not waited:
                self.waits += 1
                waited = True
                log.info("robot %s waits for %s to leave the space it needs", robot_id, ", ".join(blockers))
            left = deadline - time.monotonic()
            if left <= 0:
                raise PlanningError(f"robot '{robot_id}' waited {time.monotonic() - since:.0f} s for "
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
            self.claims.pop(robot_id, None)
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
