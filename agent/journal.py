"""The cell's journal: every accepted job and every step, on disk, before and after it runs.

SQLite in WAL mode with ``synchronous=FULL``: a row is on disk when the call
returns, so a ``kill -9`` (or a power cut) at any moment leaves a journal that
says exactly which jobs were accepted, which steps completed, and which step
was *started but not confirmed*. That last one is the step a restarted agent
must not repeat on its own: the robot may already have moved the part. The
operator decides (resume from the next step, or abort the job).

Three tables:

``jobs``       the accepted job document, its plan (JSON), its status, priority
               and submit order. Status is one of JOB_STATUSES.
``steps``      one row per (job, operation): ``started`` before the step runs,
               ``done`` or ``failed`` after, ``halted`` when Stop/Abort cut it
               short, ``resolved`` when an operator confirmed an unconfirmed
               step on resume, ``retry`` when the operator asked to run it again.
``requests``   request_id -> the response sent, so a repeated request (a
               client retrying after a lost response) gets the same answer and
               never makes a second job.
``events``     safety and recovery events (an e-stop trip, a halt on a signal, an
               operator's per-step decision), for the report and the audit.

A journal that cannot be opened raises :class:`~anycell.errors.ConfigError` naming
its path, with a hint. A write that fails (disk full, file gone read-only) raises
:class:`JournalError` after calling ``on_write_error``: the cell service halts to
Aborted then, and nothing is acknowledged that was not written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from anycell.errors import AnycellError

#: Job statuses. ``queued`` waits, ``running`` executes, ``interrupted`` was
#: cut short (crash or Stop) and waits for the operator's resume or cancel.
JOB_STATUSES = ("queued", "running", "interrupted", "complete", "failed", "aborted", "cancelled")
ACTIVE = ("queued", "running", "interrupted")
FINAL = ("complete", "failed", "aborted", "cancelled")

STEP_STARTED = "started"
STEP_DONE = "done"
STEP_FAILED = "failed"
STEP_HALTED = "halted"
STEP_RESOLVED = "resolved"   # operator confirmed an unconfirmed step: treated as done
STEP_RETRY = "retry"         # operator asked to run an unconfirmed step again
STEP_SKIPPED = "skipped"     # operator skipped a step (with a reason): its dependents run
#: Steps that count as finished when resuming.
FINISHED_STEPS = (STEP_DONE, STEP_RESOLVED, STEP_SKIPPED)
#: the operator's per-step decisions on resume, and the step status each leads to
DECISIONS = {"done": STEP_RESOLVED, "retry": STEP_RETRY, "skip": STEP_SKIPPED}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id    TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,
    priority  INTEGER NOT NULL DEFAULT 0,
    document  TEXT NOT NULL,
    plan      TEXT,
    status    TEXT NOT NULL,
    error     TEXT,
    submitted REAL NOT NULL,
    updated   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    job_id   TEXT NOT NULL,
    op_id    TEXT NOT NULL,
    status   TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started  REAL,
    finished REAL,
    detail   TEXT,
    PRIMARY KEY (job_id, op_id)
);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    response   TEXT NOT NULL,
    created    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT
);
"""


class JournalError(AnycellError):
    """The journal cannot be written; the cell cannot promise anything it does not record."""


@dataclass
class JobRecord:
    """One job as the journal knows it."""

    job_id: str
    seq: int
    priority: int
    document: Dict[str, Any]
    plan: Optional[Dict[str, Any]]
    status: str
    error: Optional[str]
    submitted: float
    updated: float


@dataclass
class StepRecord:
    op_id: str
    status: str
    attempts: int
    started: Optional[float]
    finished: Optional[float]
    detail: Optional[str]


@dataclass
class Interruption:
    """A job a crash or a Stop cut short: what completed, and what was started but not confirmed."""

    job_id: str
    status: str
    done: List[str]                     # completed steps, in completion order
    last_completed: Optional[str]       # the last of them (None when none completed)
    unconfirmed: List[str] = field(default_factory=list)   # started (or halted), never confirmed

    def to_dict(self) -> Dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "steps_done": len(self.done),
                "last_completed": self.last_completed, "unconfirmed": list(self.unconfirmed)}


class Journal:
    """A durable record of jobs, steps and request responses (one SQLite file, WAL mode).

    Thread-safe: one connection guarded by a lock; every write commits before returning.
    """

    def __init__(self, path: str) -> None:
        from anycell.errors import ConfigError, Location

        self.path = path
        #: called with the error when a write fails (the cell service halts the cell)
        self.on_write_error: Optional[Callable[[BaseException], None]] = None
        self.failed: Optional[str] = None
        self._lock = threading.RLock()
        try:
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM jobs").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the journal: {exc}", location=Location(path), field="journal",
                              hint="check that the directory is writable and the file is an anycell journal; "
                                   "move a damaged file away (the agent starts a new one) or pass another "
                                   "journal path") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ writing
    def _write(self, sql: str, args: tuple) -> int:
        with self._lock:
            try:
                cur = self._db.execute(sql, args)
            except sqlite3.Error as exc:
                self._failed(exc)
                raise JournalError(f"journal write failed ({self.path}): {exc}") from None
            return cur.rowcount

    def _failed(self, exc: BaseException) -> None:
        self.failed = str(exc)
        if self.on_write_error is not None:
            try:
                self.on_write_error(exc)
            except Exception:  # noqa: BLE001 - the write error is raised to the caller anyway
                pass

    def log_event(self, kind: str, detail: Any = None) -> None:
        """Record a safety or recovery event (e-stop trip, signal halt, operator decision)."""
        self._write("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
                    (time.time(), kind, json.dumps(detail) if detail is not None else None))

    def events(self, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, kind, detail FROM events" + (" WHERE kind = ?" if kind else "")
                                    + " ORDER BY at", (kind,) if kind else ()).fetchall()
        return [{"at": r[0], "kind": r[1], "detail": json.loads(r[2]) if r[2] else None} for r in rows]

    def add_job(self, job_id: str, document: Dict[str, Any], *, priority: int = 0,
                plan: Optional[Dict[str, Any]] = None, status: str = "queued") -> JobRecord:
        """Record an accepted job (with its plan when known). Raises KeyError-free ValueError on a duplicate id."""
        now = time.time()
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            try:
                self._db.execute(
                    "INSERT INTO jobs (job_id, seq, priority, document, plan, status, submitted, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, seq, priority, json.dumps(document), json.dumps(plan) if plan is not None else None,
                     status, now, now))
            except sqlite3.IntegrityError:
                raise ValueError(f"job '{job_id}' is already in the journal") from None
            except sqlite3.Error as exc:
                self._failed(exc)
                raise JournalError(f"journal write failed ({self.path}): {exc}") from None
        rec = self.job(job_id)
        assert rec is not None
        return rec

    def set_plan(self, job_id: str, plan: Dict[str, Any]) -> None:
        self._write("UPDATE jobs SET plan = ?, updated = ? WHERE job_id = ?", (json.dumps(plan), time.time(), job_id))

    def set_status(self, job_id: str, status: str, error: Optional[str] = None) -> None:
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status '{status}'")
        self._write("UPDATE jobs SET status = ?, error = ?, updated = ? WHERE job_id = ?",
                    (status, error, time.time(), job_id))

    def step_started(self, job_id: str, op_id: str) -> None:
        """Before a step runs: from here until step_done, a crash leaves it unconfirmed."""
        now = time.time()
        self._write(
            "INSERT INTO steps (job_id, op_id, status, attempts, started) VALUES (?, ?, ?, 1, ?)"
            " ON CONFLICT(job_id, op_id) DO UPDATE SET status = excluded.status,"
            " attempts = steps.attempts + 1, started = excluded.started, finished = NULL, detail = NULL",
            (job_id, op_id, STEP_STARTED, now))

    def _finish(self, job_id: str, op_id: str, status: str, detail: Any) -> None:
        self._write("UPDATE steps SET status = ?, finished = ?, detail = ? WHERE job_id = ? AND op_id = ?",
                    (status, time.time(), None if detail is None else json.dumps(detail), job_id, op_id))

    def step_done(self, job_id: str, op_id: str, detail: Any = None) -> None:
        self._finish(job_id, op_id, STEP_DONE, detail)

    def step_failed(self, job_id: str, op_id: str, detail: Any = None) -> None:
        self._finish(job_id, op_id, STEP_FAILED, detail)

    def step_halted(self, job_id: str, op_id: str, detail: Any = None) -> None:
        self._finish(job_id, op_id, STEP_HALTED, detail)

    def resolve_unconfirmed(self, job_id: str, retry: bool = False) -> List[str]:
        """The operator's decision on unconfirmed steps: treat as done (resolved) or run again (retry)."""
        ids = self.unconfirmed_steps(job_id)
        self.decide(job_id, {op: ("retry" if retry else "done", "") for op in ids})
        return ids

    def failed_steps(self, job_id: str) -> List[str]:
        with self._lock:
            rows = self._db.execute("SELECT op_id FROM steps WHERE job_id = ? AND status = ? ORDER BY rowid",
                                    (job_id, STEP_FAILED)).fetchall()
        return [r[0] for r in rows]

    def decide(self, job_id: str, decisions: Dict[str, tuple]) -> None:
        """Per-step decisions ``{op_id: (done|retry|skip, reason)}``, each journaled as an event."""
        with self._lock:
            for op_id, (action, reason) in decisions.items():
                self._finish(job_id, op_id, DECISIONS[action],
                             {"operator": action, "reason": reason} if reason else {"operator": action})
                self.log_event("decision", {"job_id": job_id, "op": op_id, "action": action, "reason": reason})

    def record_response(self, request_id: str, response: Dict[str, Any]) -> Dict[str, Any]:
        """Store the response for request_id; if one is already stored, return that one instead."""
        with self._lock:
            old = self.response_for(request_id)
            if old is not None:
                return old
            self._write("INSERT INTO requests (request_id, response, created) VALUES (?, ?, ?)",
                        (request_id, json.dumps(response), time.time()))
            return response

    # ------------------------------------------------------------ reading
    def response_for(self, request_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            row = self._db.execute("SELECT response FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def job(self, job_id: str) -> Optional[JobRecord]:
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, seq, priority, document, plan, status, error, submitted, updated FROM jobs"
                " WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_row(row)

    def jobs(self, statuses: Optional[List[str]] = None) -> List[JobRecord]:
        """Jobs in queue order: priority (high first), then submit order."""
        sql = "SELECT job_id, seq, priority, document, plan, status, error, submitted, updated FROM jobs"
        args: tuple = ()
        if statuses:
            sql += " WHERE status IN (%s)" % ",".join("?" * len(statuses))
            args = tuple(statuses)
        sql += " ORDER BY priority DESC, seq ASC"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_job_row(r) for r in rows]

    def steps(self, job_id: str) -> List[StepRecord]:
        """A job's steps in the order they were first started."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op_id, status, attempts, started, finished, detail FROM steps WHERE job_id = ?"
                " ORDER BY rowid", (job_id,)).fetchall()
        return [StepRecord(*r) for r in rows]

    def finished_steps(self, job_id: str) -> List[str]:
        """Completed (done or operator-resolved) steps, in completion order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op_id FROM steps WHERE job_id = ? AND status IN (?, ?, ?) ORDER BY finished, rowid",
                (job_id,) + FINISHED_STEPS).fetchall()
        return [r[0] for r in rows]

    def unconfirmed_steps(self, job_id: str) -> List[str]:
        """Steps started (or halted mid-way) and never confirmed done: the ones not to repeat silently."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op_id FROM steps WHERE job_id = ? AND status IN (?, ?) ORDER BY rowid",
                (job_id, STEP_STARTED, STEP_HALTED)).fetchall()
        return [r[0] for r in rows]

    def interruption(self, job_id: str) -> Interruption:
        rec = self.job(job_id)
        done = self.finished_steps(job_id)
        return Interruption(job_id=job_id, status=rec.status if rec else "unknown", done=done,
                            last_completed=done[-1] if done else None,
                            unconfirmed=self.unconfirmed_steps(job_id))

    def interrupted(self) -> List[Interruption]:
        """Jobs left running (a crash) or interrupted (Stop), with their last completed and unconfirmed steps."""
        return [self.interruption(r.job_id) for r in self.jobs(["running", "interrupted"])]


def _job_row(row: tuple) -> JobRecord:
    job_id, seq, priority, document, plan, status, error, submitted, updated = row
    return JobRecord(job_id=job_id, seq=seq, priority=priority, document=json.loads(document),
                     plan=json.loads(plan) if plan else None, status=status, error=error,
                     submitted=submitted, updated=updated)
