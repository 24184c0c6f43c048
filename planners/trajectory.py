"""A time-parameterised joint trajectory, the one motion format every layer shares.

It maps one-to-one onto ``trajectory_msgs/JointTrajectory``: ``joint_names`` and,
per point, ``positions``, ``velocities``, ``accelerations`` and
``time_from_start`` (here ``times``). No ROS import: ``to_dict``/``from_dict``
give a JSON form, and the agent's ROS layer converts that to the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

import numpy as np


@dataclass
class Trajectory:
    """Joint positions (rad), velocities (rad/s) and accelerations (rad/s^2) at times (s from start)."""

    joint_names: List[str]
    times: List[float]
    positions: List[List[float]]
    velocities: List[List[float]] = field(default_factory=list)
    accelerations: List[List[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.times)
        if len(self.positions) != n:
            raise ValueError(f"{len(self.positions)} positions for {n} times")
        dof = len(self.joint_names)
        if not self.velocities:
            self.velocities = [[0.0] * dof for _ in range(n)]
        if not self.accelerations:
            self.accelerations = [[0.0] * dof for _ in range(n)]

    @property
    def duration(self) -> float:
        """Time from start of the last point, seconds."""
        return float(self.times[-1]) if self.times else 0.0

    @property
    def start(self) -> List[float]:
        return list(self.positions[0])

    @property
    def end(self) -> List[float]:
        return list(self.positions[-1])

    def sample(self, t: float) -> np.ndarray:
        """Positions at time ``t`` (linear between points, clamped at both ends)."""
        times = np.asarray(self.times)
        pos = np.asarray(self.positions)
        t = min(max(t, 0.0), self.duration)
        return np.array([np.interp(t, times, pos[:, j]) for j in range(pos.shape[1])])

    def concatenate(self, other: "Trajectory") -> "Trajectory":
        """This trajectory followed by ``other`` (whose first point must equal this one's last)."""
        if other.joint_names != self.joint_names:
            raise ValueError("joint names differ")
        t0 = self.duration
        return Trajectory(
            joint_names=list(self.joint_names),
            times=list(self.times) + [t0 + t for t in other.times[1:]],
            positions=[list(p) for p in self.positions] + [list(p) for p in other.positions[1:]],
            velocities=[list(v) for v in self.velocities] + [list(v) for v in other.velocities[1:]],
            accelerations=[list(a) for a in self.accelerations] + [list(a) for a in other.accelerations[1:]],
        )

    def to_dict(self) -> Dict[str, Any]:
        """JSON form, field for field a JointTrajectory (``time_from_start`` in seconds)."""
        return {
            "joint_names": list(self.joint_names),
            "points": [
                {"positions": [float(v) for v in p], "velocities": [float(v) for v in v_],
                 "accelerations": [float(v) for v in a], "time_from_start": float(t)}
                for t, p, v_, a in zip(self.times, self.positions, self.velocities, self.accelerations)
            ],
        }

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "Trajectory":
        pts = data["points"]
        return Trajectory(
            joint_names=list(data["joint_names"]),
            times=[float(p["time_from_start"]) for p in pts],
            positions=[list(p["positions"]) for p in pts],
            velocities=[list(p.get("velocities") or []) for p in pts] if pts and pts[0].get("velocities") else [],
            accelerations=[list(p.get("accelerations") or []) for p in pts]
            if pts and pts[0].get("accelerations") else [],
        )

    @staticmethod
    def hold(joint_names: Sequence[str], q: Sequence[float]) -> "Trajectory":
        """A one-point trajectory that stays at ``q`` (a no-op move)."""
        return Trajectory(list(joint_names), [0.0], [list(map(float, q))])
