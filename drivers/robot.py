"""The one robot interface everything above the drivers uses (skills, executor, agent).

A ``Robot`` executes time-parameterised joint trajectories
(:class:`anycell.planners.trajectory.Trajectory`-like objects: ``joint_names``,
``times``, ``positions``, ``velocities``), reports its joint positions, and
works its tool: ``grasp`` closes a gripper or switches suction on, ``release``
lets go. Implementations: :class:`anycell.sim.robot.SimRobot` (PyBullet) and,
in the agent, a ROS 2 JointTrajectory controller client.
"""

from __future__ import annotations

import abc
from typing import List, Optional, Protocol, Sequence


class TrajectoryLike(Protocol):
    joint_names: List[str]
    times: List[float]
    positions: List[List[float]]
    velocities: List[List[float]]


class Robot(abc.ABC):
    """An arm with a tool. Every method blocks until done; failures raise ``ExecutionError``."""

    @property
    @abc.abstractmethod
    def joint_names(self) -> List[str]:
        """The arm's joint names, in the order of every position list."""

    @abc.abstractmethod
    def execute(self, trajectory: TrajectoryLike) -> None:
        """Run a trajectory to its end (blocking). Raises ``ExecutionError`` on a tracking error or contact."""

    @abc.abstractmethod
    def joint_positions(self) -> List[float]:
        """Current joint positions, radians (meters for prismatic joints)."""

    @abc.abstractmethod
    def grasp(self, part_id: Optional[str] = None) -> bool:
        """Close the gripper / switch suction on; True when the part is held."""

    @abc.abstractmethod
    def release(self) -> None:
        """Open the gripper / switch suction off."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop moving now and hold the current position."""

    def expect_contact(self, part_id: Optional[str]) -> None:
        """Announce that the coming motions may touch ``part_id`` (the approach to grasp it); None clears it.

        Drivers that watch for unexpected contacts use it; others ignore it.
        """
        return None

    def holding(self) -> Optional[str]:
        """The id of the part held, when the robot knows it (None otherwise)."""
        return None


def check_joint_names(robot: Robot, trajectory: TrajectoryLike) -> None:
    """Refuse a trajectory for other joints before anything moves."""
    from anycell.errors import ExecutionError

    if list(trajectory.joint_names) != list(robot.joint_names):
        raise ExecutionError(f"trajectory joints {trajectory.joint_names} do not match the robot's "
                             f"{robot.joint_names}", hint="plan for this robot")


def max_abs_diff(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))
