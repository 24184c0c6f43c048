"""Small plans and an honest recording step runner for the executor tests.

The runner is the executor's own internal interface (StepRunner), not a
protocol stand-in: each step blocks until the test releases it (or a halt
comes), and the runner records the order in which steps started and finished.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

from anycell.errors import ExecutionError, MachineFault
from anycell.plan import Operation, Plan, Schedule, ScheduledOp


def op(op_id: str, resource: str, after: Optional[List[str]] = None, duration: float = 1.0,
       kind: str = "pick_place") -> Operation:
    return Operation(id=op_id, kind=kind, unit=1, resource=resource, duration=duration,
                     uses=[resource], after=list(after or []))


def tending_plan(scheduled: bool = True) -> Plan:
    """load printer -> print (machine) while the robot places a feeder part -> unload -> output."""
    ops = [
        op("u1.load", "panda", kind="load"),
        op("u1.print", "printer", ["u1.load"], duration=3.0, kind="run_program"),
        op("u1.place.a", "panda", ["u1.load"]),
        op("u1.place.b", "panda", ["u1.place.a"]),
        op("u1.unload", "panda", ["u1.print", "u1.place.b"], kind="unload"),
        op("u1.output", "panda", ["u1.unload"], kind="output"),
    ]
    plan = Plan(job_id="job1", cell_id="demo_cell", quantity=1, operations=ops)
    if scheduled:
        t = {"u1.load": 0, "u1.print": 1, "u1.place.a": 1, "u1.place.b": 2, "u1.unload": 4, "u1.output": 5}
        plan.schedule = Schedule(entries=[ScheduledOp(k, v, v + 1) for k, v in t.items()], makespan=6,
                                 lower_bound=6, solver="list")
    return plan


class GateRunner:
    """Each step waits for release(op_id) (or auto-release), honours halt, records the order."""

    def __init__(self, auto: bool = False, fail: Optional[str] = None) -> None:
        self.auto = auto
        self.fail = fail
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.started: List[str] = []
        self.finished: List[str] = []
        self.running: List[str] = []
        self.released: set = set()
        self.halted = 0
        self.max_concurrent = 0
        self.concurrent_pairs: set = set()

    def run(self, operation: Operation, plan: Plan) -> Optional[Dict[str, Any]]:
        with self.cond:
            self.started.append(operation.id)
            for other in self.running:
                self.concurrent_pairs.add(frozenset((other, operation.id)))
            self.running.append(operation.id)
            self.max_concurrent = max(self.max_concurrent, len(self.running))
            halts = self.halted
            self.cond.notify_all()
            ok = self.cond.wait_for(lambda: self.auto or operation.id in self.released or self.halted != halts,
                                    timeout=20)
            self.running.remove(operation.id)
            if self.halted != halts or not ok:
                raise ExecutionError(f"{operation.id} halted")
            if operation.id == self.fail:
                raise MachineFault(f"{operation.id}: ALARM:1 hard limit", hint="home the machine")
            self.finished.append(operation.id)
            return {"op": operation.id}

    def halt(self) -> None:
        with self.cond:
            self.halted += 1
            self.cond.notify_all()

    def release(self, op_id: str) -> None:
        with self.cond:
            self.released.add(op_id)
            self.cond.notify_all()

    def wait_running(self, op_id: str, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: op_id in self.running, timeout)
