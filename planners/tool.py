"""What the tool on a planner's robot looks like, read from the robot's model in the planner's world.

The skills choose grasps from these figures (which way the fingers close, how far
they reach below the TCP), so the geometry comes from the same bodies the
collision checks use, not from separate settings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Tuple

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
    """How far the tool reaches past the TCP along the approach direction (fingertips below the TCP),
    the deepest over the fingers' travel: hinged fingertips swing lower as they close (:func:`tool_figures`)."""
    return tool_figures(planner.cell.robot(planner.robot_id))[0]


#: m: fingertips stay this far above the surface under them; a gripper holds at least GRIP of a part;
#: the hand passes this far above the parts standing on a carried base.
FLOOR_GAP = 0.002
GRIP = 0.004
HAND_MARGIN = 0.003


def hand_height(planner: Any) -> float:
    """How far above the TCP (against the approach direction) the tool's body begins: the hand above the
    fingers of a gripper, the flange above a suction cup. Read from the robot model's links
    (:func:`tool_figures`, the lowest over the fingers' travel).

    Parts standing higher than this above the TCP would hit the hand when the tool holds a part below them.
    """
    return tool_figures(planner.cell.robot(planner.robot_id))[1]


def _hand(client: int, rb: Any, t: "np.ndarray") -> Tuple[float, float]:
    """(height above the TCP where the hand starts, the hand's radius about the TCP axis)."""
    import pybullet as p  # lazily: pybullet only where the world model is

    inv = np.linalg.inv(t)
    fingers = set(rb.finger_links) | set(rb.finger_parts)   # a hinged finger's links swing beside the part
    if rb.cup_link is not None:
        fingers.add(rb.cup_link)
    best = math.inf
    radius = 0.0
    hand = {link for link in set(rb.tool_links) | {rb.flange_link}
            if link not in fingers and _solid(client, rb.body, link)}
    if not hand:   # a bare flange frame (a UR's tool0) and a cup alone: the wrist behind it is the hand
        hand = {_first_solid_above(client, rb.body, rb.flange_link)} - {-1}
    for link in hand:
        lo, hi = p.getAABB(rb.body, link, physicsClientId=client)
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        local = inv @ corners.T
        z_tcp = local[2]          # the TCP's z points along the approach (towards the part)
        best = min(best, float(-z_tcp.max()))
        radius = max(radius, float(np.max(np.hypot(local[0], local[1]))))
    if not math.isfinite(best):
        return 1.0, 0.0
    return max(0.0, best), radius


def _solid(client: int, body: int, link: int) -> bool:
    """Whether a link has a collision shape (a frame without one, a flange or a grasp target, hits nothing)."""
    import pybullet as p  # lazily: pybullet only where the world model is

    return bool(p.getCollisionShapeData(body, link, physicsClientId=client))


def _first_solid_above(client: int, body: int, link: int) -> int:
    """The nearest link with a collision shape from ``link`` towards the base (-1: none)."""
    import pybullet as p  # lazily: pybullet only where the world model is

    while link >= 0 and not _solid(client, body, link):
        link = p.getJointInfo(body, link, physicsClientId=client)[16]   # the parent link's index
    return link


def _reach(client: int, rb: Any, t: "np.ndarray") -> float:
    import pybullet as p  # lazily: pybullet only where the world model is

    if not rb.finger_links:
        return 0.0
    inv = np.linalg.inv(t)
    deepest = 0.0
    for link in rb.finger_links:
        lo, hi = p.getAABB(rb.body, link, physicsClientId=client)
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        deepest = max(deepest, float((inv @ corners.T)[2].max()))
    return deepest


_FIGURES: dict = {}

#: Finger positions (open to closed, evenly) at which the tool's figures are measured.
FINGER_SAMPLES = 9


def cup_radius(robot: Any) -> float:
    """The radius of the suction cup's body: the robot model's cup link, or the configured seal radius when
    that is wider. The body must keep clear of what stands around the face the cup holds."""
    return max(float(robot.tool.cup_radius), tool_figures(robot)[2])


def hand_radius(robot: Any) -> float:
    """How far from the TCP axis the hand (or flange) reaches sideways: parts within it are under the hand."""
    return tool_figures(robot)[3]


def tool_figures(robot: Any) -> Tuple[float, float, float, float]:
    """(reach, hand height, cup body radius, hand radius) of a robot's tool, from its model alone (no cell).

    For the feasibility checks and the grasp choice.

    The robot (with its tool, as the simulator builds it) is loaded in a private PyBullet world at its
    home configuration; the figures are measured in its TCP frame, so they hold in any grasp pose.
    A gripper's fingers (and the joints that mimic them) are swept from open to closed: the reach is the
    deepest and the hand the lowest over that travel (hinged fingertips swing lower as they close).
    Cached per robot configuration.
    """
    key = repr(robot)
    if key in _FIGURES:
        return _FIGURES[key]
    import pybullet as p  # lazily: pybullet only where the world model is

    from anycell.planners.kinematics import pose_to_matrix, quat_to_matrix
    from anycell.sim.builder import home_configuration, load_robot

    client = p.connect(p.DIRECT)
    try:
        rb = load_robot(client, robot)
        for j, q in zip(rb.arm_joints, home_configuration(rb)):
            p.resetJointState(rb.body, j, q, physicsClientId=client)
        for j, q in zip(*rb.finger_targets(rb.finger_open)):
            p.resetJointState(rb.body, j, q, physicsClientId=client)
        state = p.getLinkState(rb.body, rb.flange_link, computeForwardKinematics=True, physicsClientId=client)
        flange = np.eye(4)
        flange[:3, :3] = quat_to_matrix(state[5])
        flange[:3, 3] = state[4]
        t = flange @ pose_to_matrix(robot.tool.tcp)
        radius = 0.0
        if rb.cup_link is not None:
            lo, hi = p.getAABB(rb.body, rb.cup_link, physicsClientId=client)
            inv = np.linalg.inv(t)
            corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                                for z in (lo[2], hi[2])])
            local = (inv @ corners.T)[:2]
            # the AABB of a cylinder about the TCP axis: its half-width is the radius (less AABB padding)
            radius = float(min(local[0].max() - local[0].min(), local[1].max() - local[1].min())) / 2 - 0.001
        reach, (hand, sideways) = _reach(client, rb, t), _hand(client, rb, t)
        if rb.finger_joints:
            opened, closed = np.asarray(rb.finger_open, float), np.asarray(rb.finger_closed, float)
            for s in np.linspace(0.0, 1.0, FINGER_SAMPLES)[1:]:
                for j, q in zip(*rb.finger_targets(list(opened + s * (closed - opened)))):
                    p.resetJointState(rb.body, j, q, physicsClientId=client)
                h, w = _hand(client, rb, t)
                reach, hand, sideways = max(reach, _reach(client, rb, t)), min(hand, h), max(sideways, w)
        figures = (reach, hand, max(0.0, radius), sideways)
    finally:
        p.disconnect(physicsClientId=client)
    _FIGURES[key] = figures
    return figures


def gripper_tcp_height(reach: float, hand: float, height: float, floor: float,
                       hand_clear: "float | None" = None) -> float:
    """Height of a gripper's TCP above a part's centre for a grasp, or raise why there is none.

    ``reach``: fingertips below the TCP; ``hand``: the hand's start above the TCP (:func:`hand_height`);
    ``height``: the part's height; ``floor``: the highest surface under the fingers (from the part's
    centre); ``hand_clear``: the top of the parts standing on the part (a carried unit), which the hand
    must pass above. The grasp is as low as allowed (most grip), never with less than ``GRIP`` held.
    """
    from anycell.errors import PlanningError

    highest = height / 2 + reach - GRIP
    want = max(0.0, reach + FLOOR_GAP + floor)
    why = "the surface under the fingers"
    if hand_clear is not None:
        need = hand_clear + HAND_MARGIN - hand
        if need > want:
            want, why = need, "the parts standing on it (the hand must pass above them)"
    if want > highest + 1e-9:
        raise PlanningError(f"the gripper cannot hold the part clear of {why}: it would hold "
                            f"{(height / 2 + reach - want) * 1000:.1f} mm of the part, it needs {GRIP * 1000:g} mm",
                            hint="use a taller base part, a longer-fingered gripper, or a suction tool")
    return min(want, highest)
