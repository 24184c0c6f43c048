"""How long each operation takes: the estimates the scheduler and the quote work from.

Today every figure comes from the cell config: ``cell.durations`` for robot
moves and inspection, ``source.duration`` for a machine program when the job
gives one, else the machine's ``cycle_time``. The planner asks this model
through a few narrow methods (one per operation kind), so a motion-based
estimator can replace the robot figures later by subclassing
:class:`DurationModel` and overriding :meth:`DurationModel.robot_move` (it gets
both sites and the robot), without the task planner or the scheduler changing.
"""

from __future__ import annotations

import logging
from typing import Optional

from anycell.cell import CellConfig, MachineConfig, RobotConfig, Station
from anycell.job import JobSpec, Part
from anycell.plan import Site

log = logging.getLogger(__name__)


class DurationModel:
    """Duration estimates (seconds) from the cell's config defaults.

    Subclasses may override any method; each returns a positive number of
    seconds and should be deterministic, because quotes are built on them.
    """

    def __init__(self, cell: CellConfig) -> None:
        self.cell = cell

    @property
    def name(self) -> str:
        """A short name shown in plan notes, so people know where the figures came from."""
        return "config defaults"

    def robot_move(self, kind: str, robot: RobotConfig, part: Optional[Part], source: Site, target: Site) -> float:
        """A robot moving a part from ``source`` to ``target``; ``kind`` is pick_place, load, unload or output."""
        d = self.cell.durations
        if kind == "load":
            return float(d.load)
        if kind == "unload":
            return float(d.unload)
        return float(d.pick_place)

    def program(self, machine: MachineConfig, part: Part) -> float:
        """A machine running the program that makes ``part``: the job's figure, else the machine's."""
        if part.source.duration is not None:
            return float(part.source.duration)
        return float(machine.cycle_time)

    def inspect(self, station: Station, job: JobSpec) -> float:
        """Inspecting one finished unit."""
        return float(self.cell.durations.inspect)

    def describe_program(self, machine: MachineConfig, part: Part) -> str:
        """Where a program duration came from, for the plan's reasons."""
        if part.source.duration is not None:
            return f"{part.source.duration:g} s from the job (source.duration)"
        return f"{machine.cycle_time:g} s from machine '{machine.id}' cycle_time"


class MotionDurationModel(DurationModel):
    """Robot moves timed from the robot's own kinematics and joint limits; the rest from the config.

    For each move it solves IK (top-down grasp, as :mod:`anycell.planners.feasibility`
    checks it) for the pre-grasp, grasp, pre-place and place poses, and sums
    the per-segment time of a straight joint move under the joint limits
    scaled by ``safety.max_speed_fraction`` (``MotionPlanner.estimate_duration``,
    a trapezoid per joint, the slowest joint deciding): home -> pre-grasp,
    down and up at the source, pre-grasp -> pre-place, down and up at the
    target, plus :attr:`GRIPPER_S` per grasp and per release; an ``output``
carries a whole unit at :attr:`CARRY_SPEED`. The robot's real
    start is wherever its previous move ended, which is only known once
    scheduled; home is the stand-in. The figure is a lower estimate of a
    collision-free plan (detours around obstacles are slower). A move whose
    IK fails falls back to the config default (feasibility reports it anyway).
    """

    GRIPPER_S = 0.5          # s to close or open the tool
    APPROACH = 0.08          # m above grasp and place poses, as the pick-and-place skill uses
    CARRY_SPEED = 0.35       # fraction of the limits used while carrying a whole unit (as the skill does)

    def __init__(self, cell: CellConfig) -> None:
        super().__init__(cell)
        self._planners: dict = {}
        self._cache: dict = {}

    @property
    def name(self) -> str:
        return ("motion estimates (IK and joint-limit timing) for robot moves; config defaults for "
                "machines and inspection")

    def _planner(self, robot_id: str):  # noqa: ANN202
        mp = self._planners.get(robot_id)
        if mp is None:
            from .motion import MotionPlanner  # lazily: it needs pybullet

            mp = MotionPlanner(self.cell, robot_id)
            self._planners[robot_id] = mp
        return mp

    def robot_move(self, kind: str, robot: RobotConfig, part: Optional[Part], source: Site, target: Site) -> float:
        key = (kind, robot.id, tuple(round(v, 5) for v in source.xyz + source.rpy),
               tuple(round(v, 5) for v in target.xyz + target.rpy))
        if key not in self._cache:
            self._cache[key] = self._estimate(kind, robot, part, source, target)
        return self._cache[key]

    def _estimate(self, kind: str, robot: RobotConfig, part: Optional[Part], source: Site, target: Site) -> float:
        import math

        from anycell.errors import PlanningError
        from anycell.geometry import Pose

        mp = self._planner(robot.id)
        kin = mp.kin

        def pose(site: Site, dz: float) -> Pose:
            return Pose(xyz=[site.xyz[0], site.xyz[1], site.xyz[2] + dz], rpy=[math.pi, 0.0, site.rpy[2]])

        try:
            home = list(kin.home)
            q_pre_g = kin.ik(pose(source, self.APPROACH), home)
            q_g = kin.ik(pose(source, 0.0), q_pre_g)
            q_pre_p = kin.ik(pose(target, self.APPROACH), q_pre_g)
            q_p = kin.ik(pose(target, 0.0), q_pre_p)
        except PlanningError as exc:
            log.warning("no motion estimate for a %s by %s (%s); using the config default", kind, robot.id, exc)
            return super().robot_move(kind, robot, part, source, target)
        est = mp.estimate_duration
        # A finished unit (output) is carried slowly so its loose parts stay put: time scales by 1/speed.
        slow = 1.0 / self.CARRY_SPEED if kind == "output" else 1.0
        empty = est(home, q_pre_g) + est(q_pre_g, q_g) + est(q_p, q_pre_p)
        loaded = est(q_g, q_pre_g) + est(q_pre_g, q_pre_p) + est(q_pre_p, q_p)
        t = empty + slow * loaded + 2 * self.GRIPPER_S
        return round(float(t), 2)

    def close(self) -> None:
        """Release the planners' PyBullet clients."""
        for mp in self._planners.values():
            mp.close()
        self._planners.clear()
