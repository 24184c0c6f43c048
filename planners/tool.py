"""What the tool on a planner's robot looks like, read from the robot's model in the planner's world.

The skills choose grasps from these figures (which way the fingers close, how far
they reach below the TCP), so the geometry comes from the same bodies the
collision checks use, not from separate settings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .motion import MotionPlanner


def finger_axis_yaw(planner: "MotionPlanner") -> float:
    """The yaw of the TCP at which the fingers close along the cell's x axis (0 for suction)."""
    import pybullet as p  # lazily: pybullet only where the world model is

    rb = planner.world.robot
    if len(rb.finger_links) < 2:
        return 0.0
    q = planner.kin.home
    t = planner.kin.fk_matrix(q)
    a, b = (np.asarray(p.getLinkState(rb.body, link, computeForwardKinematics=True,
                                      physicsClientId=planner.world.client)[4]) for link in rb.finger_links[:2])
    d_tcp = t[:3, :3].T @ (b - a)           # finger axis in the TCP frame
    # A top-down TCP is Rz(yaw) Rx(pi): Rx(pi) mirrors the axis' angle to -atan2(dy, dx), so the yaw
    # that turns it onto x is +atan2(dy, dx) (the opposite sign closed the fingers along y).
    return math.atan2(d_tcp[1], d_tcp[0])


def tool_reach(planner: "MotionPlanner") -> float:
    """How far the tool reaches past the TCP along the approach direction (fingertips below the TCP)."""
    import pybullet as p  # lazily: pybullet only where the world model is

    rb = planner.world.robot
    q = planner.kin.home
    t = planner.kin.fk_matrix(q)
    if abs(t[2, 2] + 1.0) > 1e-3 or not rb.finger_links:
        return 0.0
    low = min(p.getAABB(rb.body, link, physicsClientId=planner.world.client)[0][2] for link in rb.finger_links)
    return max(0.0, float(t[2, 3] - low))
