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

from typing import Optional

from anycell.cell import CellConfig, Machine, Robot, Station
from anycell.job import JobSpec, Part
from anycell.plan import Site


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

    def robot_move(self, kind: str, robot: Robot, part: Optional[Part], source: Site, target: Site) -> float:
        """A robot moving a part from ``source`` to ``target``; ``kind`` is pick_place, load, unload or output."""
        d = self.cell.durations
        if kind == "load":
            return float(d.load)
        if kind == "unload":
            return float(d.unload)
        return float(d.pick_place)

    def program(self, machine: Machine, part: Part) -> float:
        """A machine running the program that makes ``part``: the job's figure, else the machine's."""
        if part.source.duration is not None:
            return float(part.source.duration)
        return float(machine.cycle_time)

    def inspect(self, station: Station, job: JobSpec) -> float:
        """Inspecting one finished unit."""
        return float(self.cell.durations.inspect)

    def describe_program(self, machine: Machine, part: Part) -> str:
        """Where a program duration came from, for the plan's reasons."""
        if part.source.duration is not None:
            return f"{part.source.duration:g} s from the job (source.duration)"
        return f"{machine.cycle_time:g} s from machine '{machine.id}' cycle_time"
