"""One exception hierarchy for every layer of anycell.

Every error a person can act on derives from :class:`AnycellError`. It carries
where the problem is (file, line, column, field path) and a hint for the fix, so
that the CLI, the ROS API and the logs can all print the same one paragraph
without a traceback. Lower layers raise the most specific subclass; callers
that only want to report catch ``AnycellError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Location:
    """Where in an input document a problem sits (1-based line and column)."""

    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class AnycellError(Exception):
    """Base of all anycell errors.

    ``message`` says what is wrong, ``field`` is the dotted path of the field at
    fault (``machines[1].driver.port``), ``location`` where it is in a file, and
    ``hint`` what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        field: Optional[str] = None,
        location: Optional[Location] = None,
        hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        head = ""
        if self.location is not None:
            head = f"{self.location}: "
        text = head + (f"{self.field}: " if self.field else "") + self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def to_dict(self) -> dict:
        """A JSON-ready form, used by the ROS API's error responses."""
        out: dict = {"error": type(self).__name__, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.location is not None:
            out["file"] = self.location.file
            out["line"] = self.location.line
            out["column"] = self.location.column
        if self.hint:
            out["hint"] = self.hint
        return out


class ConfigError(AnycellError):
    """An input document (cell config, job spec, request) is malformed or inconsistent."""


class UnresolvedReference(ConfigError):
    """A reference to an id (station, machine, part, capability) does not resolve."""


class InfeasibleError(AnycellError):
    """The job cannot be made on this cell: a missing capability, an unreachable pose, a limit."""


class PlanningError(AnycellError):
    """Planning (task, schedule or motion) failed for a valid, feasible input."""


class UnreachableError(PlanningError):
    """Inverse kinematics found no joint solution for a target pose."""


class CollisionError(PlanningError):
    """A target or path collides; names the two bodies when known."""


class DriverError(AnycellError):
    """A driver could not talk to its device, or the device reported a fault."""


class DriverTimeout(DriverError):
    """A device did not answer within the allowed time."""


class ConnectionLost(DriverError):
    """The device disappeared (serial port gone, TCP connection dropped)."""


class MachineFault(DriverError):
    """The machine raised an alarm or error (GRBL ALARM, Marlin Error, OPC UA alarm)."""


class ProgramRejected(DriverError):
    """A machine program failed validation before any byte was sent."""


class ExecutionError(AnycellError):
    """Executing a plan step failed (tracking error, unexpected contact, a failed grasp)."""


class PlacementError(ExecutionError):
    """A placed part was measured outside its tolerance: the step is not done. ``deviation`` holds the figures."""

    def __init__(self, message: str, *, deviation: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.deviation = dict(deviation or {})

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["deviation"] = self.deviation
        return out


class StateError(AnycellError):
    """A command is not allowed in the current state (PackML)."""


class InspectionFailed(AnycellError):
    """A unit was measured outside the spec's tolerances."""
