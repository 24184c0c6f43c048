"""The executor: runs a scheduled plan step by step under PackML, journaling every step.

Plain Python, no ROS. The concrete work (move a robot, run a machine program,
inspect a unit) is done by a :class:`StepRunner`; the executor only decides
*when* each step may run and records what happened:

* **Order.** Steps follow the schedule's order on each resource, and never
  before the steps named in their ``after`` list. Steps on different
  resources run concurrently (a machine program runs while the robot does
  other work), each on its own thread.
* **Journal.** ``started`` is on disk before a step's thread begins; ``done``
  or ``failed`` after it returns. A step started but never confirmed (a
  crash, or Stop/Abort cutting it short) is *unconfirmed*: the executor
  refuses to run a job that has one until the operator decided (see
  :meth:`anycell.agent.journal.Journal.resolve_unconfirmed`), so a physical step is
  never silently repeated.
* **PackML.** New steps start only in Execute (the safe points are between
  steps). Holding and Suspending let the running steps finish, then complete
  to Held or Suspended; Unholding and Unsuspending complete back to Execute
  and the steps go on. Stopping and Aborting halt at once: the runner's
  :meth:`StepRunner.halt` stops the robot and puts machines in a safe state.
* **Progress.** Every start and finish is reported to ``on_progress``.
"""

from __future__ import annotations

import graphlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Set

from anycell.errors import AnycellError, ExecutionError, StateError
from anycell.plan import Operation, Plan
from anycell.planners.graph import cycle_members, topological_order

from anycell.agent import packml as pm
from anycell.agent.journal import Journal

log = logging.getLogger(__name__)


class StepRunner(Protocol):
    """What the executor needs from the cell: run one operation, and halt everything at once.

    ``run`` blocks until the operation is finished and returns a small
    JSON-ready dict of what happened (journaled as the step's detail), or
    raises an :class:`~anycell.errors.AnycellError` when it failed. It is
    called from worker threads, one per concurrently running operation, and
    never twice at once for operations that share a resource.

    ``halt`` is called from another thread on Stop, Abort, cancel or a failed
    step: stop robot motion now, put machines in a safe state, and make every
    ``run`` in progress return or raise promptly.
    """

    def run(self, op: Operation, plan: Plan) -> Optional[Dict[str, Any]]: ...

    def halt(self) -> None: ...


Progress = Callable[[Dict[str, Any]], None]

OUTCOMES = ("complete", "failed", "stopped", "aborted", "cancelled")


@dataclass
class ExecResult:
    """How a run ended. ``outcome`` is one of OUTCOMES."""

    outcome: str
    done: List[str] = field(default_factory=list)       # steps completed by this run, in order
    halted: List[str] = field(default_factory=list)     # steps cut short (unconfirmed)
    error: Optional[Dict[str, Any]] = None              # AnycellError.to_dict() of a failed step


def execution_order(plan: Plan) -> List[str]:
    """Operation ids in the order the executor dispatches them.

    The schedule's start order when the plan is scheduled; otherwise a
    topological order over ``after`` that keeps the plan's own order where it can.
    """
    ids = [op.id for op in plan.operations]
    known = set(ids)
    for op in plan.operations:
        for dep in op.after:
            if dep not in known:
                raise ExecutionError(f"operation '{op.id}' waits for unknown operation '{dep}'",
                                     field=f"operations.{op.id}.after")
    if plan.schedule is not None:
        order = plan.schedule.order()
        missing = known - set(order)
        if missing:
            raise ExecutionError(f"the schedule has no entry for {sorted(missing)}",
                                 hint="re-schedule the plan")
        return [o for o in order if o in known]
    try:
        return topological_order(ids, {op.id: op.after for op in plan.operations})
    except graphlib.CycleError as exc:
        raise ExecutionError("the plan's 'after' relations form a cycle",
                             hint="cycle among: " + ", ".join(str(n) for n in cycle_members(exc)))


def _resources(op: Operation) -> List[str]:
    return list(op.uses) if op.uses else [op.resource]


class Executor:
    """Runs one plan to the end, or until Stop, Abort, cancel or a failed step.

    ``run()`` may be called again after it returned "stopped" (a later resume):
    it skips the steps the journal has as finished, and refuses while any
    step is unconfirmed.
    """

    def __init__(self, plan: Plan, runner: StepRunner, journal: Journal, packml: pm.PackML, *,
                 on_progress: Optional[Progress] = None, halt_wait: float = 15.0) -> None:
        self.plan = plan
        self.runner = runner
        self.journal = journal
        self.packml = packml
        self.on_progress = on_progress
        self.halt_wait = halt_wait
        self._order = execution_order(plan)
        self._ops = {op.id: op for op in plan.operations}
        self._events: "queue.Queue[tuple]" = queue.Queue()
        self._cancel = threading.Event()
        self._cancel_outcome = "cancelled"
        self._halted_by_us = False
        self._halting = threading.Event()

    def halting(self) -> None:
        """A halt from outside (e-stop, SIGTERM) is cutting the steps short: call *before* the devices stop.

        The steps it cuts short end unconfirmed (halted), not failed: the operator decides on
        them at resume, as after a crash. No new step starts, and :meth:`run` returns
        "stopped" or "aborted" (the job is interrupted).
        """
        self._halted_by_us = True
        self._halting.set()

    # ------------------------------------------------------------ control
    def cancel(self, outcome: str = "cancelled") -> None:
        """Stop this job at once (halt the runner); run() returns ``outcome``.

        "cancelled" gives the job up; "stopped" (the agent shutting down) leaves
        it interrupted, to be resumed later like after a Stop.
        """
        self._cancel_outcome = outcome
        self._cancel.set()
        self._events.put(("cancel",))

    # ------------------------------------------------------------ running
    def run(self) -> ExecResult:
        job_id = self.plan.job_id
        unconfirmed = self.journal.unconfirmed_steps(job_id)
        if unconfirmed:
            raise StateError(
                f"job '{job_id}' has steps started but never confirmed: {', '.join(unconfirmed)}",
                hint="the operator must resume (treat them as done, or retry them) or abort the job")
        finished: Set[str] = set(self.journal.finished_steps(job_id))
        pending: List[str] = [o for o in self._order if o not in finished]
        running: Dict[str, threading.Thread] = {}
        result = ExecResult(outcome="complete")

        def on_state(old: str, new: str, cause: str) -> None:
            self._events.put(("state", new))

        self.packml.add_listener(on_state)
        try:
            self._report("resumed" if finished else "begin", None, finished, running)
            while True:
                state = self.packml.state
                if self._cancel.is_set() or self._halting.is_set() or \
                        state in (pm.STOPPING, pm.ABORTING, pm.STOPPED, pm.ABORTED):
                    result.outcome = self._cancel_outcome if self._cancel.is_set() else (
                        "stopped" if state in (pm.STOPPING, pm.STOPPED) else "aborted")
                    self._halt(running, finished, result)
                    return result
                if state in (pm.HOLDING, pm.SUSPENDING) and not running:
                    self.packml.try_complete(state)
                    continue
                if state in (pm.UNHOLDING, pm.UNSUSPENDING):
                    self.packml.try_complete(state)
                    continue
                if not pending and not running:
                    self._report("end", None, finished, running)
                    return result
                if state == pm.EXECUTE:
                    started = self._dispatch(pending, running, finished)
                    if not started and not running:
                        raise ExecutionError(
                            f"no step of job '{job_id}' can start: the schedule's order contradicts 'after'",
                            hint="waiting: " + ", ".join(pending[:5]))
                try:
                    event = self._events.get(timeout=1.0)
                except queue.Empty:
                    continue
                if event[0] in ("done", "failed"):
                    self._finished(event, pending, running, finished, result)
                    if result.outcome == "failed":
                        self._halt(running, finished, result)
                        return result
        finally:
            self.packml.remove_listener(on_state)

    def _dispatch(self, pending: List[str], running: Dict[str, threading.Thread], finished: Set[str]) -> int:
        """Start every step whose turn it is on all its resources and whose predecessors are done."""
        heads: Dict[str, str] = {}
        for op_id in pending:
            for res in _resources(self._ops[op_id]):
                heads.setdefault(res, op_id)
        count = 0
        for op_id in pending:
            if op_id in running:
                continue
            op = self._ops[op_id]
            if not all(d in finished for d in op.after):
                continue
            if not all(heads.get(r) == op_id for r in _resources(op)):
                continue
            with self.packml.locked():   # a safe point: Hold/Stop cannot slip in between check and start
                if self.packml.state != pm.EXECUTE or self._cancel.is_set() or self._halting.is_set():
                    return count
                self.journal.step_started(self.plan.job_id, op_id)
                thread = threading.Thread(target=self._work, args=(op,), name=f"step-{op_id}", daemon=True)
                running[op_id] = thread
                thread.start()
            count += 1
            self._report("started", op_id, finished, running)
        return count

    def _work(self, op: Operation) -> None:
        try:
            detail = self.runner.run(op, self.plan)
            self._events.put(("done", op.id, detail))
        except AnycellError as exc:
            self._events.put(("failed", op.id, exc))
        except Exception as exc:  # a bug in a runner is still a failed step, with its text
            log.exception("step %s raised", op.id)
            self._events.put(("failed", op.id, ExecutionError(f"{type(exc).__name__}: {exc}")))

    def _finished(self, event: tuple, pending: List[str], running: Dict[str, threading.Thread],
                  finished: Set[str], result: ExecResult) -> None:
        kind, op_id, payload = event
        running.pop(op_id, None)
        if kind == "done":
            self.journal.step_done(self.plan.job_id, op_id, payload)
            finished.add(op_id)
            pending.remove(op_id)
            result.done.append(op_id)
            self._report("done", op_id, finished, running)
            return
        err = payload.to_dict() if isinstance(payload, AnycellError) else {"message": str(payload)}
        if self._halted_by_us:
            # cut short by our own halt: unconfirmed, not a failure of the step itself
            self.journal.step_halted(self.plan.job_id, op_id, err)
            result.halted.append(op_id)
            return
        self.journal.step_failed(self.plan.job_id, op_id, err)
        log.error("step %s failed: %s", op_id, payload)
        result.outcome = "failed"
        result.error = dict(err, op=op_id)
        self._report("failed", op_id, finished, running)

    def _halt(self, running: Dict[str, threading.Thread], finished: Set[str], result: ExecResult) -> None:
        """Halt the runner and wait for the steps in flight; they end done (if they made it) or halted."""
        if running:
            self._halted_by_us = True
            try:
                self.runner.halt()
            except Exception:
                log.exception("runner halt failed")
        else:
            # nothing in flight, but machines may still hold state: halt anyway on Stop/Abort
            if result.outcome in ("stopped", "aborted", "cancelled"):
                try:
                    self.runner.halt()
                except Exception:
                    log.exception("runner halt failed")
        deadline = time.monotonic() + self.halt_wait
        while running and time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event[0] in ("done", "failed"):
                kind, op_id, payload = event
                running.pop(op_id, None)
                if kind == "done":
                    self.journal.step_done(self.plan.job_id, op_id, payload)
                    finished.add(op_id)
                    result.done.append(op_id)
                else:
                    err = payload.to_dict() if isinstance(payload, AnycellError) else {"message": str(payload)}
                    if result.error and result.error.get("op") == op_id:
                        continue
                    self.journal.step_halted(self.plan.job_id, op_id, err)
                    result.halted.append(op_id)
        for op_id in list(running):
            log.error("step %s did not return within %.0f s of halt; left unconfirmed", op_id, self.halt_wait)
            self.journal.step_halted(self.plan.job_id, op_id, {"message": "did not return after halt"})
            result.halted.append(op_id)
            running.pop(op_id)
        self._report(result.outcome, None, finished, running)

    def _report(self, event: str, op_id: Optional[str], finished: Set[str], running: Dict[str, threading.Thread]) -> None:
        if self.on_progress is None:
            return
        info = {
            "job_id": self.plan.job_id,
            "event": event,
            "op": op_id,
            "done": len(finished),
            "total": len(self.plan.operations),
            "running": [{"op": o, "what": self._ops[o].describe()} for o in running],
        }
        try:
            self.on_progress(info)
        except Exception:
            log.exception("progress callback failed")


class DryRunRunner:
    """A rehearsal runner: each step takes its planned duration (times ``time_scale``) and touches no hardware.

    Operators use it to rehearse a job's flow on the agent (queue, PackML,
    journal, progress) before anything moves; ``halt`` cuts the wait short.
    It is selected explicitly (``runner: dry_run``) and every step's journal
    detail says ``dry_run: true``, so a dry run is never mistaken for production.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._halt = threading.Event()   # replaced after each halt, so the next run starts fresh
        self.ran: List[str] = []

    def run(self, op: Operation, plan: Plan) -> Optional[Dict[str, Any]]:
        with self._lock:
            halt = self._halt
        seconds = max(0.0, op.duration * self.time_scale)
        if halt.wait(seconds):
            raise ExecutionError(f"step '{op.id}' halted", hint="dry run: nothing moved")
        with self._lock:
            self.ran.append(op.id)
        return {"dry_run": True, "seconds": round(seconds, 4)}

    def halt(self) -> None:
        with self._lock:
            self._halt.set()
            self._halt = threading.Event()
