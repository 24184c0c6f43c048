"""The cell agent's core, in plain Python: PackML, the job queue, the journal, planning and the executor.

The ROS node (:mod:`anycell.agent.ros.cell_agent_node`) only wraps this class: it turns
messages into :meth:`CellService.handle` and :meth:`CellService.command`
calls and publishes what the callbacks report. Everything here runs and is
tested without rclpy.

How the cell runs work:

* ``submit`` validates the job document (:func:`anycell.job.job_from_document`,
  :func:`anycell.planners.feasibility.check_resources`), plans and schedules it
  (:func:`anycell.planners.pipeline.plan_and_schedule`) and journals the job with its plan *before* it answers ``ok``. A job that was
  answered ``ok`` is on disk.
* One worker thread owns the acting states when no job runs, and runs jobs
  when the cell is in Execute: partly-done (resumed) jobs first, then by
  priority (high first), then by submit order.
* When a job was interrupted (a crash, Stop or Abort mid-job), the cell runs
  nothing else until the operator decides: ``resume`` (the unconfirmed steps
  count as done, or ``retry: true`` runs them again) or ``cancel``.
* A failed step (a machine alarm, a failed grasp) sends the cell to Aborting.

Safety (see :mod:`anycell.agent.safety`): :meth:`CellService.halt_now` is the one halt path
(every robot stopped at once, then the machines), used by an e-stop trip
(:meth:`CellService.emergency_stop`), a signal, a crash of the worker and a failed journal
write. None of it needs ROS. Reset does not reach Idle while an e-stop is active or a
configured machine is unreachable (``reset_checks``); Stop does not reach Stopped before the
machines report a stopped state (``stop_hooks``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from anycell.cell import CellConfig
from anycell.documents import from_data
from anycell.errors import AnycellError, ConfigError, StateError
from anycell.job import JobSpec, job_from_document
from anycell.plan import Plan

from anycell.agent import api
from anycell.agent import packml as pm
from anycell.agent.executor import Executor, StepRunner
from anycell.agent.journal import ACTIVE, FINAL, Journal, JournalError
from anycell.agent.safety import EStopWatch

log = logging.getLogger(__name__)

#: API ops that change the cell: serialised, and their responses kept by request_id
MUTATING = ("submit", "cancel", "resume")
#: the largest quantity one job may ask for unless the agent is configured otherwise
DEFAULT_MAX_QUANTITY = 100

#: (cell, job) -> a scheduled Plan
Planner = Callable[[CellConfig, JobSpec], Plan]
#: (plan, job spec) -> the StepRunner that executes it
RunnerFactory = Callable[[Plan, JobSpec], StepRunner]


def default_planner(time_limit: float = 2.0) -> Planner:
    """:func:`anycell.planners.pipeline.plan_and_schedule`, with a short scheduler search (a cell answers fast)."""

    def plan(cell: CellConfig, job: JobSpec) -> Plan:
        from anycell.planners.pipeline import PlanOptions, plan_and_schedule

        return plan_and_schedule(cell, job, PlanOptions(time_limit=time_limit))

    return plan


class CellService:
    """One cell's agent: call :meth:`start` to run the worker, :meth:`shutdown` to stop it."""

    def __init__(self, cell: CellConfig, journal: Journal, runner_factory: Optional[RunnerFactory] = None, *,
                 planner: Optional[Planner] = None, complete_when_empty: bool = False,
                 on_jobs: Optional[Callable[[Dict[str, Any]], None]] = None,
                 on_progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                 health_sources: Optional[List[Callable[[], List[Dict[str, Any]]]]] = None,
                 max_quantity: int = DEFAULT_MAX_QUANTITY, program_dir: Optional[str] = None) -> None:
        self.cell = cell
        self.cell_id = cell.cell.id
        self.journal = journal
        self.runner_factory = runner_factory
        self.planner = planner or default_planner()
        self.complete_when_empty = complete_when_empty
        self.on_jobs = on_jobs
        self.on_progress = on_progress
        #: callables returning more /diagnostics entries (machines, drivers): {name, level, message, values}
        self.health_sources = list(health_sources or [])
        #: called while the cell is Resetting (e.g. reset the machines to Idle); an error keeps the
        #: cell from reaching Idle: it aborts, with the reason logged and on /diagnostics
        self.reset_hooks: List[Callable[[], None]] = []
        #: called before the reset hooks; raising AnycellError keeps the cell out of Idle (an active
        #: e-stop, an unreachable machine)
        self.reset_checks: List[Callable[[], None]] = []
        #: called while the cell is Stopping, after the halt: return when the machines are stopped
        self.stop_hooks: List[Callable[[], None]] = []
        #: called first on every halt (e-stop, signal, worker crash): stop every robot and machine now
        self.halt_hooks: List[Callable[[], None]] = []
        #: called after every confirmed step with (job_id, op_id): e.g. save the simulated world
        self.step_hooks: List[Callable[[str, str], None]] = []
        #: the e-stop watches (started with the service)
        self.estops: List[EStopWatch] = []
        self.max_quantity = max_quantity
        #: the cell's program folder: API jobs may name files inside it (``program: {file: NAME}``)
        self.program_dir = program_dir
        self.safety_faults: Dict[str, str] = {}
        self._published_state: Optional[str] = None
        journal.on_write_error = self._on_journal_failure
        self.packml = pm.PackML(pm.STOPPED)
        self._lock = threading.RLock()
        self._api_lock = threading.Lock()
        self._kick = threading.Event()   # set on every PackML transition and queue change
        self._executor: Optional[Executor] = None
        self._running_job: Optional[str] = None
        self._runner: Optional[StepRunner] = None
        self._progress: Dict[str, Dict[str, Any]] = {}
        self._ran_since_start = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.packml.add_listener(self._on_state)
        # a crash left jobs "running": they are interrupted now, and the operator decides
        for rec in journal.jobs(["running"]):
            intr = journal.interruption(rec.job_id)
            journal.set_status(rec.job_id, "interrupted",
                               error=f"agent restarted; last completed step {intr.last_completed}, "
                                     f"unconfirmed {intr.unconfirmed}")
            journal.log_event("crash", {"job_id": rec.job_id, "reason": "the agent stopped mid-job (crash or kill)",
                                        "last_completed": intr.last_completed, "unconfirmed": intr.unconfirmed})
            log.warning("job %s was interrupted: last completed step %s, started but not confirmed: %s",
                        rec.job_id, intr.last_completed, ", ".join(intr.unconfirmed) or "none")

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded_loop, name=f"cell-{self.cell_id}", daemon=True)
        self._thread.start()
        for watch in self.estops:
            watch.start()
        self._publish_jobs()

    # ------------------------------------------------------------ safety
    def add_estop(self, name: str, read: Callable[[], Any], period: float = 0.01) -> EStopWatch:
        """Watch an e-stop source (``read()`` truthy = tripped, raising = lost); trips call :meth:`emergency_stop`."""
        watch = EStopWatch(name, read, self.emergency_stop, period=period)
        self.estops.append(watch)
        if self._thread is not None:
            watch.start()
        return watch

    def halt_now(self, reason: str) -> None:
        """Stop every robot and machine now, on the caller's thread; never raises, needs no ROS.

        The running job's executor hears of it first, so the steps the halt cuts short are
        journaled unconfirmed (the operator decides at resume), not failed.
        """
        executor = self._executor
        if executor is not None:
            executor.halting()
        for hook in list(self.halt_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - halting must reach every device
                log.exception("halt hook failed (%s)", reason)
        runner = self._runner
        if runner is not None:
            try:
                runner.halt()
            except Exception:  # noqa: BLE001
                log.exception("runner halt failed (%s)", reason)

    def emergency_stop(self, reason: str) -> None:
        """An e-stop trip (or a lost source): halt everything, Abort the cell, journal it."""
        self.halt_now(reason)
        self.safety_faults["estop"] = reason
        try:
            self.packml.command("abort")
        except StateError:
            pass   # already Aborting/Aborted
        try:
            self.journal.log_event("estop", {"reason": reason, "state": self.packml.state})
        except Exception:  # noqa: BLE001 - a journal failure is reported by its own path
            log.exception("could not journal the e-stop")
        self._kick.set()

    def _on_journal_failure(self, exc: BaseException) -> None:
        """A journal write failed: halt the cell to Aborted (on another thread: the writer may hold locks)."""
        if "journal" in self.safety_faults:
            return
        reason = f"journal write failed: {exc}"
        self.safety_faults["journal"] = reason
        log.error("%s; halting the cell", reason)

        def halt() -> None:
            self.halt_now(reason)
            try:
                self.packml.command("abort")
            except StateError:
                pass

        threading.Thread(target=halt, name="journal-failure", daemon=True).start()

    def _guarded_loop(self) -> None:
        """The worker; if it crashes, the devices are halted and the cell aborts before the thread ends."""
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - a crashed worker must leave the cell safe
            reason = f"cell worker crashed: {type(exc).__name__}: {exc}"
            log.exception("%s", reason)
            self.safety_faults["worker"] = reason
            self.halt_now(reason)
            try:
                self.packml.command("abort")
            except StateError:
                pass
            self.packml.try_complete(pm.ABORTING)   # no worker is left to complete it

    def shutdown(self, timeout: float = 10.0) -> None:
        """Halt whatever runs (as Stop does: the job is left interrupted, to resume) and end the worker."""
        self._stop.set()
        for watch in self.estops:
            watch.close()
        with self._lock:
            ex = self._executor
        self._kick.set()
        if ex is not None:
            ex.cancel(outcome="stopped")
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------ PackML
    def command(self, name: str) -> str:
        """A PackML command from the operator; returns the new state or raises StateError."""
        return self.packml.command(name)

    def _on_state(self, old: str, new: str, cause: str) -> None:
        self._kick.set()

    # ------------------------------------------------------------ the JSON API
    def handle(self, raw: Any) -> Dict[str, Any]:
        """Answer one API request. Never raises: a bad request gets an error response.

        A repeated request_id gets the stored response of the first one.
        """
        if isinstance(raw, api.Request):
            req = raw
        else:
            try:
                req = api.parse_request(raw)
            except AnycellError as exc:
                return api.error(api.request_id_of(raw), None, exc)
        if req.op not in MUTATING:
            return self._dispatch(req)   # reads are answered fresh each time, concurrently
        # what changes the cell runs one request at a time and is remembered by request_id
        with self._api_lock:
            stored = self.journal.response_for(req.request_id)
            if stored is not None:
                if stored.get("op") != req.op:
                    return api.error(req.request_id, req.op, ConfigError(
                        f"request_id '{req.request_id}' was already used for a '{stored.get('op')}' request",
                        field="request_id", hint="give every request its own id"))
                return stored
            response = self._dispatch(req)
            try:
                return self.journal.record_response(req.request_id, response)
            except JournalError as exc:
                return api.error(req.request_id, req.op, exc)

    def _dispatch(self, req: api.Request) -> Dict[str, Any]:
        try:
            return getattr(self, "_op_" + req.op)(req)
        except AnycellError as exc:
            return api.error(req.request_id, req.op, exc)
        except Exception as exc:  # a bug must not take the cell down; the response says what broke
            log.exception("request %s (%s) failed", req.request_id, req.op)
            return api.error(req.request_id, req.op, exc)

    def _job_from(self, req: api.Request) -> JobSpec:
        from anycell.planners.feasibility import check_resources

        req.args["job"] = self._inline_programs(req.args["job"])
        try:
            job = job_from_document(from_data(req.args["job"], file="<api:job>"))
        except AnycellError as exc:
            # the error's field path is inside the job document; say so in the request's terms
            if not exc.field or exc.field.startswith("<"):
                exc.field = "job"
            elif not exc.field.startswith("job"):
                exc.field = "job." + exc.field
            raise
        if job.quantity > self.max_quantity:
            raise ConfigError(f"quantity {job.quantity} is more than this cell takes in one job ({self.max_quantity})",
                              field="job.quantity", hint="split the order into several jobs")
        try:
            check_resources(self.cell, job)   # programs (placeholders, allowed codes) included
        except AnycellError as exc:           # the field in the request's terms
            if exc.field and not exc.field.startswith("job"):
                exc.field = "job." + exc.field
            raise
        return job

    def _inline_programs(self, doc: Any) -> Any:
        """Programs named by file come from the cell's program folder only; the journal keeps their text.

        Errors name the file as the client wrote it, never a path on this machine.
        """
        if not isinstance(doc, dict):
            return doc
        named = [i for i, p in enumerate(doc.get("parts") or [])
                 if isinstance(p, dict) and isinstance(p.get("source"), dict)
                 and isinstance(p["source"].get("program"), dict) and "file" in p["source"]["program"]]
        if not named:
            return doc
        if not self.program_dir:
            raise ConfigError("this cell takes programs inline only", field=f"job.parts[{named[0]}].source.program.file",
                              hint="send program: {inline: ...} (anycell submit does this for you)")
        try:
            return api.inline_program_files(doc, self.program_dir)
        except ConfigError as exc:
            exc.message = exc.message.replace(os.path.realpath(self.program_dir), "<program folder>")
            exc.args = (exc.message,)
            exc.field = "job." + exc.field if exc.field else "job"
            raise

    def _op_submit(self, req: api.Request) -> Dict[str, Any]:
        if "journal" in self.safety_faults:
            raise StateError(f"the cell takes no job: {self.safety_faults['journal']}",
                             hint="free disk space (or fix the journal file), then Clear and Reset")
        job = self._job_from(req)
        job_id = req.args.get("job_id") or job.id
        api.check_job_id(job_id, "job_id" if req.args.get("job_id") else "job.id")
        if self.journal.job(job_id) is not None:
            raise ConfigError(f"a job with id '{job_id}' was already submitted to this cell",
                              field="job.id", hint="give the job a new id, or pass job_id in the request")
        plan = self.planner(self.cell, job)
        plan.job_id = job_id
        self.journal.add_job(job_id, req.args["job"], priority=job.priority, plan=plan.to_dict(), status="queued")
        log.info("accepted job %s (%d steps)", job_id, len(plan.operations))
        self._publish_jobs()
        self._kick.set()
        sched = plan.schedule
        return api.ok(req.request_id, req.op, job_id=job_id, steps=len(plan.operations),
                      makespan=sched.makespan if sched else None, state=self.packml.state)

    def _op_quote(self, req: api.Request) -> Dict[str, Any]:
        job = self._job_from(req)
        plan = self.planner(self.cell, job)
        from anycell.planners.quote import quote

        return api.ok(req.request_id, req.op, quote=quote(self.cell, job, plan).to_dict())

    def _op_cancel(self, req: api.Request) -> Dict[str, Any]:
        job_id = req.args["job_id"]
        rec = self._record(job_id)
        with self._lock:
            if self._running_job == job_id and self._executor is not None:
                self._executor.cancel()
                return api.ok(req.request_id, req.op, job_id=job_id, status="cancelling")
            if rec.status in FINAL:
                raise StateError(f"job '{job_id}' is already {rec.status}", field="job_id")
            self.journal.set_status(job_id, "cancelled", error="cancelled by request")
        self._publish_jobs()
        self._kick.set()
        return api.ok(req.request_id, req.op, job_id=job_id, status="cancelled")

    def _op_resume(self, req: api.Request) -> Dict[str, Any]:
        job_id = req.args["job_id"]
        rec = self._record(job_id)
        if rec.status not in ("interrupted", "failed"):
            raise StateError(f"job '{job_id}' is {rec.status}, not interrupted", field="job_id",
                             hint="only an interrupted (or a failed, once its cause is fixed) job is resumed")
        retry = req.args.get("retry", False)
        given = req.args.get("decisions") or {}
        unconfirmed = self.journal.unconfirmed_steps(job_id)
        failed = self.journal.failed_steps(job_id)
        pending = unconfirmed + [op for op in failed if op not in unconfirmed]
        for op_id in given:
            if op_id not in pending:
                raise ConfigError(f"step '{op_id}' waits for no decision (pending: {', '.join(pending) or 'none'})",
                                  field=f"decisions.{op_id}")
        decisions = {}
        for op_id in pending:
            if op_id in given:
                decisions[op_id] = (given[op_id]["action"], given[op_id].get("reason", ""))
            else:   # the default: the retry flag for unconfirmed steps; a failed step runs again
                decisions[op_id] = ("retry" if retry or op_id in failed else "done", "")
        self.journal.decide(job_id, decisions)
        steps = list(decisions)
        self.journal.log_event("resume", {"job_id": job_id, "from": rec.status, "error": rec.error})
        self.journal.set_status(job_id, "queued")
        log.info("operator resumed job %s: %s", job_id,
                 ", ".join(f"{k} {v[0]}" for k, v in decisions.items()) or "no pending steps")
        self._publish_jobs()
        self._kick.set()
        return api.ok(req.request_id, req.op, job_id=job_id, resolved=steps, retry=retry,
                      decisions={k: {"action": a, "reason": r} for k, (a, r) in decisions.items()},
                      state=self.packml.state)

    def _op_get(self, req: api.Request) -> Dict[str, Any]:
        return api.ok(req.request_id, req.op, job=self.job_summary(self._record(req.args["job_id"]).job_id,
                                                                   steps=True))

    def _op_list(self, req: api.Request) -> Dict[str, Any]:
        statuses = None if req.args.get("all") else list(ACTIVE)
        return api.ok(req.request_id, req.op,
                      jobs=[self.job_summary(r.job_id) for r in self.journal.jobs(statuses)])

    def _op_status(self, req: api.Request) -> Dict[str, Any]:
        return api.ok(req.request_id, req.op, **self.status())

    def _record(self, job_id: str):
        rec = self.journal.job(job_id)
        if rec is None:
            raise ConfigError(f"no job '{job_id}' on cell '{self.cell_id}'", field="job_id",
                              hint="'list' shows the jobs")
        return rec

    # ------------------------------------------------------------ views
    def job_summary(self, job_id: str, steps: bool = False) -> Dict[str, Any]:
        rec = self._record(job_id)
        total = len((rec.plan or {}).get("operations", []))
        done = self.journal.finished_steps(job_id)
        out: Dict[str, Any] = {
            "job_id": job_id, "status": rec.status, "priority": rec.priority, "done": len(done),
            "total": total, "error": rec.error, "submitted": rec.submitted, "updated": rec.updated,
            "running": list(self._progress.get(job_id, {}).get("running", [])) if rec.status == "running" else [],
        }
        if rec.status == "interrupted":
            out["interruption"] = self.journal.interruption(job_id).to_dict()
        if any(_is_dry_run(s.detail) for s in self.journal.steps(job_id)):
            out["rehearsal"] = True   # a dry run: the steps took their time, nothing was made
        from anycell.agent.report import report_dir_for, report_summary

        report = report_summary(report_dir_for(self.journal.path, job_id))
        if report is not None:
            out["report"] = report
        recovery = self.recovery(job_id)
        if recovery:
            out["recovery"] = recovery
        if steps:
            out["steps"] = [{"op": s.op_id, "status": s.status, "attempts": s.attempts}
                            for s in self.journal.steps(job_id)]
            sched = (rec.plan or {}).get("schedule")
            out["makespan"] = sched.get("makespan") if sched else None
        return out

    def recovery(self, job_id: str) -> List[Dict[str, Any]]:
        """The job's crashes, resumes, per-step decisions and retried steps (for the report and ``get``)."""
        out: List[Dict[str, Any]] = []
        for ev in self.journal.events():
            d = ev.get("detail") or {}
            if d.get("job_id") == job_id:
                out.append({"at": ev["at"], "event": ev["kind"], **{k: v for k, v in d.items() if k != "job_id"}})
        retried = [{"op": s.op_id, "attempts": s.attempts} for s in self.journal.steps(job_id) if s.attempts > 1]
        if retried:
            out.append({"event": "retries", "steps": retried})
        return out

    def status(self) -> Dict[str, Any]:
        jobs = self.journal.jobs(list(ACTIVE))
        return {"cell_id": self.cell_id, "state": self.packml.state, "allowed": self.packml.allowed(),
                "running": self._running_job, "queued": sum(1 for j in jobs if j.status == "queued"),
                "interrupted": [j.job_id for j in jobs if j.status == "interrupted"]}

    def jobs_snapshot(self) -> Dict[str, Any]:
        """What the ``jobs`` topic carries: the state and every active (and the last few final) jobs."""
        active = [self.job_summary(r.job_id) for r in self.journal.jobs(list(ACTIVE))]
        final = sorted(self.journal.jobs(list(FINAL)), key=lambda r: r.updated)[-5:]
        return {"cell_id": self.cell_id, "state": self.packml.state, "jobs": active,
                "recent": [self.job_summary(r.job_id) for r in final]}

    def health(self) -> List[Dict[str, Any]]:
        """Diagnostics: one entry per component; level 0 OK, 1 WARN, 2 ERROR (diagnostic_msgs levels)."""
        state = self.packml.state
        level = 2 if state in (pm.ABORTING, pm.ABORTED) else (1 if state in (pm.HELD, pm.SUSPENDED) else 0)
        st = self.status()
        out = [{"name": f"{self.cell_id}/packml", "level": level, "message": state,
                "values": {"queued": str(st["queued"]), "running": str(st["running"] or ""),
                           "interrupted": ",".join(st["interrupted"])}}]
        if "journal" in self.safety_faults:
            out.append({"name": f"{self.cell_id}/journal", "level": 2, "message": self.safety_faults["journal"],
                        "values": {"path": self.journal.path}})
        elif st["interrupted"]:
            out.append({"name": f"{self.cell_id}/journal", "level": 1,
                        "message": "interrupted job(s) wait for the operator: resume or cancel",
                        "values": {"jobs": ",".join(st["interrupted"])}})
        else:
            out.append({"name": f"{self.cell_id}/journal", "level": 0, "message": "ok",
                        "values": {"path": self.journal.path}})
        for watch in self.estops:
            h = watch.health()
            out.append({"name": f"{self.cell_id}/safety/estop", "level": h["level"], "message": h["message"],
                        "hardware_id": watch.name, "values": h["values"]})
        for what, reason in self.safety_faults.items():
            if what != "estop":
                out.append({"name": f"{self.cell_id}/safety/{what}", "level": 2, "message": reason, "values": {}})
        sources = list(self.health_sources)
        runner = self._runner
        if runner is not None and hasattr(runner, "health"):
            sources.append(runner.health)  # type: ignore[attr-defined]
        for source in sources:
            try:
                out.extend(source())
            except Exception as exc:  # a broken health source is itself an error to report
                out.append({"name": f"{self.cell_id}/health", "level": 2, "message": f"health check failed: {exc}",
                            "values": {}})
        return out

    def _publish_jobs(self) -> None:
        if self.on_jobs is not None:
            try:
                self.on_jobs(self.jobs_snapshot())
            except Exception:
                log.exception("jobs callback failed")

    def _progress_cb(self, info: Dict[str, Any]) -> None:
        self._progress[info["job_id"]] = info
        if info["event"] == "done" and info.get("op"):
            for hook in list(self.step_hooks):
                try:
                    hook(info["job_id"], info["op"])
                except Exception:  # noqa: BLE001 - a failed save is logged, the step stays done
                    log.exception("step hook failed after %s", info["op"])
        if self.on_progress is not None:
            try:
                self.on_progress(info)
            except Exception:
                log.exception("progress callback failed")
        if info["event"] in ("started", "done", "failed", "begin", "resumed"):
            self._publish_jobs()

    # ------------------------------------------------------------ the worker
    def _next_job(self) -> Optional[str]:
        jobs = self.journal.jobs(["queued", "interrupted"])
        if any(j.status == "interrupted" for j in jobs):
            return None   # the operator decides first; nothing runs over a half-done job
        if not jobs:
            return None
        partly = [j for j in jobs if self.journal.finished_steps(j.job_id)]
        return (partly or jobs)[0].job_id

    def _halt_idle(self) -> None:
        runner = self._runner
        if runner is not None:
            try:
                runner.halt()
            except Exception:
                log.exception("halt failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            state = self.packml.state
            if state != self._published_state:
                self._published_state = state
                self._publish_jobs()    # the snapshot carries the state: never a stale one
            if state in (pm.STOPPING, pm.ABORTING):
                self._halt_idle()
                if state == pm.STOPPING:
                    self._wait_machines_stopped()
                self.packml.try_complete(state)
                continue
            if state == pm.STARTING:
                self._ran_since_start = 0
            if state == pm.RESETTING and not self._reset_devices():
                continue
            if state in (pm.RESETTING, pm.CLEARING, pm.STARTING, pm.HOLDING, pm.UNHOLDING, pm.SUSPENDING,
                         pm.UNSUSPENDING, pm.COMPLETING):
                self.packml.try_complete(state)
                continue
            if state == pm.EXECUTE:
                job_id = self._next_job()
                if job_id is not None:
                    self._run_job(job_id)
                    continue
                if self.complete_when_empty and self._ran_since_start:
                    self.packml.try_complete(pm.EXECUTE)
                    continue
            # wait for a change without holding our lock while PackML's is taken (its listeners
            # run under PackML's lock and kick us: taking both in two orders would deadlock)
            self._kick.clear()
            if self.packml.state == state and not self._stop.is_set():
                self._kick.wait(timeout=1.0)

    def _wait_machines_stopped(self) -> None:
        for hook in self.stop_hooks:
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - Stopped is still declared, with the reason logged
                log.error("a machine did not confirm its stop: %s", exc)

    def _reset_devices(self) -> bool:
        """Run the reset hooks; on an error the cell aborts instead of reaching Idle (returns False)."""
        active = [w for w in self.estops if w.active]
        if active:
            log.error("reset refused: %s (release the e-stop, then Clear and Reset)", active[0].reason)
            try:
                self.packml.command("abort")
            except StateError:
                pass
            return False
        try:
            self.journal.log_event("reset", {"faults": dict(self.safety_faults)})
        except JournalError as exc:
            log.error("reset refused: %s", exc)
            try:
                self.packml.command("abort")
            except StateError:
                pass
            return False
        self.safety_faults.pop("estop", None)
        self.safety_faults.pop("journal", None)
        for hook in list(self.reset_checks) + list(self.reset_hooks):
            try:
                hook()
            except AnycellError as exc:
                log.error("reset failed: %s", exc)
                try:
                    self.packml.command("abort")
                except StateError:
                    pass
                return False
        return True

    def _run_job(self, job_id: str) -> None:
        rec = self.journal.job(job_id)
        if rec is None or rec.plan is None:
            return
        plan = Plan.from_dict(rec.plan)
        if self.runner_factory is None:
            self.journal.set_status(job_id, "interrupted", error="this agent has no step runner configured")
            log.error("job %s cannot run: no step runner configured", job_id)
            self.packml.command("abort")
            return
        try:
            from anycell.job import job_from_document

            job = job_from_document(from_data(rec.document, file=f"<journal:{job_id}>"))
            runner = self.runner_factory(plan, job)
        except AnycellError as exc:
            self.journal.set_status(job_id, "failed", error=str(exc))
            self.packml.command("abort")
            return
        executor = Executor(plan, runner, self.journal, self.packml, on_progress=self._progress_cb)
        with self._lock:
            self._runner = runner
            self._executor = executor
            self._running_job = job_id
        self.journal.set_status(job_id, "running")
        self._publish_jobs()
        try:
            result = executor.run()
        except AnycellError as exc:
            log.error("job %s could not run: %s", job_id, exc)
            self.journal.set_status(job_id, "interrupted", error=str(exc))
            result = None
        finally:
            with self._lock:
                self._executor = None
                self._running_job = None
        finish = getattr(runner, "finish", None)
        if result is not None and callable(finish):
            try:
                finish(plan, result.outcome, result.error)
                from anycell.agent.report import append_recovery, report_dir_for

                append_recovery(report_dir_for(self.journal.path, job_id), self.recovery(job_id))
            except Exception:  # noqa: BLE001 - a report failure never changes the job's outcome
                log.exception("job %s: writing the report failed", job_id)
        if result is not None:
            self._ran_since_start += 1
            if result.outcome == "complete":
                self.journal.set_status(job_id, "complete")
            elif result.outcome == "cancelled":
                self.journal.set_status(job_id, "cancelled", error="cancelled by request")
            elif result.outcome == "failed":
                err = result.error or {}
                self.journal.set_status(job_id, "failed", error=f"step {err.get('op')}: {err.get('message')}")
                self.journal.log_event("step_failed", {"job_id": job_id, "op": err.get("op"),
                                                       "reason": err.get("message")})
                try:
                    self.packml.command("abort")
                except StateError:
                    pass
            else:  # stopped or aborted mid-job, or the agent shut down: the operator decides how to go on
                intr = self.journal.interruption(job_id)
                why = "the agent shut down" if self._stop.is_set() else f"{result.outcome} by the operator"
                self.journal.set_status(job_id, "interrupted", error=f"{why}; unconfirmed: {intr.unconfirmed}")
        self._publish_jobs()


def _is_dry_run(detail: Optional[str]) -> bool:
    """Whether a journaled step detail comes from the dry-run (rehearsal) runner."""
    import json

    try:
        return bool(detail) and bool(json.loads(detail).get("dry_run"))  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return False


def default_journal_path(cell_id: str) -> str:
    """``$ANYCELL_STATE_DIR/<cell>/journal.db`` (default ``~/.local/state/anycell``)."""
    base = os.environ.get("ANYCELL_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".local", "state", "anycell")
    return os.path.join(base, cell_id, "journal.db")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (for clients and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
