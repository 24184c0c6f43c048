"""Sharing space in time between robots that move at once: a reservation table of swept volumes.

Why it is safe
--------------
A robot that is about to run a planned motion (a whole pick-and-place: every
segment, grasp and release included) first reserves the space its links (and
the part it carries) sweep over the whole motion, as a set of ``cell``-sized
voxels inflated by the robot-robot ``margin``. The table grants a reservation
only when

1. no other robot's *granted* reservation shares a voxel with it, and
2. no other robot has started or finished a motion since the requester read
   where the others stand (each robot has a version number, bumped at both).

The plan itself was made with every other robot where it stood (the planner's
collision world puts them there, checked with the margin). So during the
motion, every other robot is either standing where the plan saw it (condition
2), or moving inside its own reservation, which is disjoint from ours
(condition 1) and also holds its end pose. Two robots therefore never come
closer than the margin, up to the planner's sampling.

Why it cannot deadlock
----------------------
A robot waits only for robots that hold a granted reservation, and a robot
that holds one never waits for anything: it runs its motion and releases (also
on failure). The wait-for graph has no cycle. A request refused because the
others moved is not a wait: the requester replans with the others where they
now are.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from anycell.errors import PlanningError

log = logging.getLogger(__name__)

Voxel = Tuple[int, int, int]

CELL = 0.05        # m: voxel edge of the reservation grid
JOINT_STEP = 0.03  # rad: the swept volume is sampled at least this finely along each trajectory


class SpaceReservations:
    """The cell's table of granted motion reservations (thread-safe); one per cell run."""

    def __init__(self, robot_ids: Iterable[str]) -> None:
        self._cond = threading.Condition()
        self.version: Dict[str, int] = {rid: 0 for rid in robot_ids}
        self.granted: Dict[str, FrozenSet[Voxel]] = {}
        self.waits = 0           # how many times a robot waited for another (for reports and tests)

    def snapshot(self) -> Dict[str, int]:
        """Every robot's version now: take it *before* reading where the other robots stand."""
        with self._cond:
            return dict(self.version)

    def acquire(self, robot_id: str, cells: FrozenSet[Voxel], snapshot: Dict[str, int], *,
                timeout: float = 600.0) -> bool:
        """Reserve ``cells`` for ``robot_id``'s next motion.

        True when granted. False when another robot started or finished a motion since
        ``snapshot``: replan with the others where they are now, then ask again. Waits
        while a granted reservation overlaps (its holder is moving and will release).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            waited = False
            while True:
                if any(self.version[o] != v for o, v in snapshot.items() if o != robot_id):
                    return False
                blockers = sorted(o for o, c in self.granted.items() if o != robot_id and not c.isdisjoint(cells))
                if not blockers:
                    self.granted[robot_id] = cells
                    self.version[robot_id] += 1
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

    def wait_for_change(self, robot_id: str, snapshot: Dict[str, int], *, timeout: float = 600.0) -> bool:
        """After a plan failed with the others where they stood: wait until one of them moves on.

        True when another robot started or finished a motion since ``snapshot`` (plan again);
        False at once when none holds a reservation and none moved: the failure is not theirs.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(self.version[o] != v for o, v in snapshot.items() if o != robot_id):
                    return True
                if not any(o != robot_id for o in self.granted):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.waits += 1
                self._cond.wait(min(left, 1.0))

    def release(self, robot_id: str) -> None:
        """The motion ended (or failed): the robot stands still inside what it had reserved."""
        with self._cond:
            if self.granted.pop(robot_id, None) is not None:
                self.version[robot_id] += 1
            self._cond.notify_all()


def _samples(positions: Sequence[Sequence[float]]) -> List[np.ndarray]:
    pts = [np.asarray(q, float) for q in positions]
    out = [pts[0]] if pts else []
    for a, b in zip(pts, pts[1:]):
        n = max(1, int(math.ceil(float(np.max(np.abs(b - a))) / JOINT_STEP)))
        out += [a + (b - a) * (k / n) for k in range(1, n + 1)]
    return out


def _box_cells(lo: Sequence[float], hi: Sequence[float], pad: float) -> Iterable[Voxel]:
    a = [int(math.floor((v - pad) / CELL)) for v in lo]
    b = [int(math.floor((v + pad) / CELL)) for v in hi]
    for i in range(a[0], b[0] + 1):
        for j in range(a[1], b[1] + 1):
            for k in range(a[2], b[2] + 1):
                yield (i, j, k)


def swept_cells(planner: Any, segments: Sequence[Tuple[str, Any]], *, margin: float,
                held_size: Optional[Sequence[float]] = None) -> FrozenSet[Voxel]:
    """The voxels ``planner``'s robot (and a carried part) occupies along ``segments``, padded by ``margin``.

    ``segments`` is a skill's plan: ``(name, trajectory or None)``; between ``grasp`` and
    ``release`` the tool carries a part of ``held_size`` (its tool links get that much more pad).
    Every link's axis-aligned box is taken at samples no more than ``JOINT_STEP`` apart, and
    half a voxel more is added for what happens between samples.
    """
    import pybullet as p  # lazily: pybullet only where the world model is

    world = planner.world
    rb = world.robot
    links = [-1] + list(range(p.getNumJoints(rb.body, physicsClientId=world.client)))
    tool = set(rb.tool_links) | {rb.flange_link}
    carry_pad = float(max(held_size)) if held_size else 0.0
    pad = margin + CELL / 2
    cells: set = set()
    carrying = False
    for name, traj in segments:
        if name == "grasp":
            carrying = True
            continue
        if name == "release":
            carrying = False
            continue
        if traj is None:
            continue
        for q in _samples(traj.positions):
            planner.kin.set(q)
            for link in links:
                lo, hi = p.getAABB(rb.body, link, physicsClientId=world.client)
                extra = carry_pad if carrying and link in tool else 0.0
                cells.update(_box_cells(lo, hi, pad + extra))
    return frozenset(cells)


def standing_cells(planner: Any, q: Sequence[float], *, margin: float) -> FrozenSet[Voxel]:
    """The voxels of the robot standing at ``q`` (for reports and tests)."""
    return swept_cells(planner, [("stand", type("T", (), {"positions": [list(q)]})())], margin=margin)
