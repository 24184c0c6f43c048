"""The plan: operations bound to resources, their order and reasons, and a schedule.

This is the contract between the planners (which build it), the executor
(which runs it step by step), the journal (which records it) and the ROS API
(which ships it as JSON). It is plain data with ``to_dict``/``from_dict`` so it
round-trips through JSON unchanged.

Operation kinds and their ``params``:

``pick_place``  a robot moves a part. ``params``: ``source`` and ``target``,
                each a :class:`Site` as a dict. Used for feeder -> fixture,
                feeder (stock) -> machine (``load``), machine -> fixture
                (``unload``) and fixture -> tray (``output``); ``kind`` names
                which, ``pick_place`` being the plain assembly step.
``load``        as pick_place, target is a machine.
``unload``      as pick_place, source is a machine.
``output``      as pick_place, moving the finished unit (grasped by its base part)
                from the fixture to the output tray (or the reject tray after a
                failed inspection; the executor picks which).
``run_program`` a machine runs a program. ``params``: ``program`` (``{"file"|
                "inline"|"name": ...}``), ``parameters`` (name -> number).
``inspect``     the inspection station measures the unit on the fixture.
                ``params``: ``checks`` (the job's quality check ids).

``Operation.holds`` maps a resource to the op that releases it: a machine is
held from its ``load`` (or, without stock, its ``run_program``) until its
``unload`` ends, so no other part is loaded into it meanwhile. The scheduler
honours it; the executor may use it to know when a machine is free again.

A :class:`Site` is where a part is, with the pose of the part's *centre* in the
cell frame already computed by the planner, so the executor never re-derives
geometry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

OP_KINDS = ("pick_place", "load", "unload", "output", "run_program", "inspect")


@dataclass
class Site:
    """A place a part can be: ``kind`` is feeder, machine, fixture, output_tray, reject_tray."""

    kind: str
    ref: str                      # station or machine id
    xyz: List[float]              # part centre, cell frame, meters
    rpy: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    index: Optional[int] = None   # feeder slot or tray position

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "Site":
        return Site(**data)


@dataclass
class Operation:
    """One step of the plan, bound to the resources it occupies while it runs."""

    id: str                        # unique, readable: "u1.place.block"
    kind: str                      # one of OP_KINDS
    unit: int                      # 1-based product unit
    resource: str                  # the main resource (robot, machine or station id)
    duration: float                # estimated seconds
    part: Optional[str] = None
    uses: List[str] = field(default_factory=list)      # every resource held, main one included
    after: List[str] = field(default_factory=list)     # operation ids that must finish first
    reasons: List[str] = field(default_factory=list)   # why it is ordered so, for people
    params: Dict[str, Any] = field(default_factory=dict)
    # Resources this op takes and keeps until the named op ends (resource -> op id). A machine
    # is held from its load (or its program start) until its unload, so nothing else can be
    # loaded into it meanwhile; the ops in between use it inside that hold.
    holds: Dict[str, str] = field(default_factory=dict)
    # Other resources that could run this op instead (id -> their estimated duration, seconds),
    # e.g. a second robot that reaches both sites. The scheduler may pick one of them; it then
    # rewrites resource, uses and duration, and the one it left moves into alternatives.
    alternatives: Dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for logs and progress bars."""
        what = f"{self.kind} {self.part}" if self.part else self.kind
        return f"unit {self.unit}: {what} on {self.resource}"


@dataclass
class ScheduledOp:
    """When an operation runs (seconds from the job's start)."""

    op: str
    start: float
    end: float


@dataclass
class Schedule:
    """A timeline over the cell's resources, and how good it is."""

    entries: List[ScheduledOp]
    makespan: float
    lower_bound: float
    solver: str                    # "cp-sat" or "list"
    optimal: bool = False
    solve_time: float = 0.0        # wall-clock seconds spent scheduling
    status: str = ""               # the solver's own status word (OPTIMAL, FEASIBLE, ...)

    @property
    def gap(self) -> float:
        """Relative optimality gap, (makespan - bound) / makespan."""
        return 0.0 if self.makespan <= 0 else max(0.0, (self.makespan - self.lower_bound) / self.makespan)

    def order(self) -> List[str]:
        """Operation ids by start time (ties by id, so it is deterministic)."""
        return [e.op for e in sorted(self.entries, key=lambda e: (e.start, e.op))]


@dataclass
class Plan:
    """A job planned for a cell: the operations and (once scheduled) their timeline."""

    job_id: str
    cell_id: str
    quantity: int
    operations: List[Operation]
    schedule: Optional[Schedule] = None
    notes: List[str] = field(default_factory=list)

    def op(self, op_id: str) -> Operation:
        for op in self.operations:
            if op.id == op_id:
                return op
        raise KeyError(op_id)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "Plan":
        ops = [Operation(**o) for o in data["operations"]]
        sched = None
        if data.get("schedule"):
            s = dict(data["schedule"])
            s["entries"] = [ScheduledOp(**e) for e in s["entries"]]
            sched = Schedule(**s)
        return Plan(job_id=data["job_id"], cell_id=data["cell_id"], quantity=data["quantity"],
                    operations=ops, schedule=sched, notes=list(data.get("notes", [])))
