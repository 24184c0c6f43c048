"""What only a simulated cell needs from the executor: parts appearing, and measuring them.

On the floor, feeders hold real parts, machines make real parts and a camera
measures them. In simulation the same three things must happen in the
PyBullet world, or the robot would reach for nothing. :class:`SimHooks` is
that small seam; :class:`WorldHooks` implements it on an in-process
:class:`sim.world.SimWorld` (``anycell sim``), and the ROS sim node serves the
same calls to a cell agent in another process (``agent.ros_sim``).

Nothing here moves a held part: a part appears only where the cell says a
feeder presents it or a machine made it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Protocol, Sequence

from anycell.geometry import Pose

log = logging.getLogger(__name__)


class SimHooks(Protocol):
    """The simulated world's side of the executor (all poses are part centres, cell frame)."""

    def present(self, uid: str, size: Sequence[float], mass: float, color: Optional[Sequence[float]],
                pose: Pose) -> bool:
        """A feeder presents a part at ``pose`` if none is there yet; True when it appeared now."""

    def machine_made(self, uid: str, size: Sequence[float], mass: float, color: Optional[Sequence[float]],
                     pose: Pose) -> None:
        """A machine finished a part: the stock (same uid) becomes the part, or a new part appears."""

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        """True poses of the parts (None for a part not in the world)."""

    def snapshot(self, path: str, camera: Optional[str] = None) -> str:
        """Write a PNG of the cell."""


class WorldHooks:
    """:class:`SimHooks` on an in-process SimWorld."""

    def __init__(self, world: Any, settle_seconds: float = 0.3) -> None:
        self.world = world
        self.settle_seconds = settle_seconds

    def present(self, uid: str, size: Sequence[float], mass: float, color: Optional[Sequence[float]],
                pose: Pose) -> bool:
        if uid in self.world.parts:
            return False
        self.world.add_part(uid, list(size), mass, pose, color)
        self.world.settle(self.settle_seconds)
        return True

    def machine_made(self, uid: str, size: Sequence[float], mass: float, color: Optional[Sequence[float]],
                     pose: Pose) -> None:
        if uid in self.world.parts:
            log.info("sim: the machine turned the stock %s into the finished part", uid)
            self.world.remove_part(uid)
        self.world.add_part(uid, list(size), mass, pose, color)
        self.world.settle(self.settle_seconds)

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        return {u: (self.world.part_pose(u) if u in self.world.parts else None) for u in uids}

    def snapshot(self, path: str, camera: Optional[str] = None) -> str:
        return self.world.snapshot(path, camera)

    def part_ids(self) -> List[str]:
        return sorted(self.world.parts)
