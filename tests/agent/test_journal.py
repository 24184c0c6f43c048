"""Journal: durable jobs/steps/responses, queue order, and recovery after kill -9 of a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from anycell.agent import packml as pm
from anycell.agent.executor import Executor
from anycell.agent.journal import Journal
from tests.paths import ROOT

from .helpers import GateRunner, tending_plan


def test_jobs_steps_and_responses_survive_reopen(tmp_path) -> None:
    path = str(tmp_path / "j.db")
    j = Journal(path)
    j.add_job("low", {"id": "low"}, priority=0)
    j.add_job("high", {"id": "high"}, priority=5)
    j.add_job("low2", {"id": "low2"}, priority=0)
    j.step_started("low", "a")
    j.step_done("low", "a", {"ok": True})
    j.step_started("low", "b")
    assert j.record_response("r1", {"ok": True, "job_id": "low"}) == {"ok": True, "job_id": "low"}
    # a second response for the same request id is not stored: the first one stands
    assert j.record_response("r1", {"ok": True, "job_id": "other"}) == {"ok": True, "job_id": "low"}
    with pytest.raises(ValueError, match="already"):
        j.add_job("low", {"id": "low"})
    j.close()
    j = Journal(path)
    assert [r.job_id for r in j.jobs()] == ["high", "low", "low2"]
    assert j.finished_steps("low") == ["a"]
    assert j.unconfirmed_steps("low") == ["b"]
    assert j.response_for("r1") == {"ok": True, "job_id": "low"}
    assert j.response_for("nope") is None
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from anycell.agent import packml as pm
from anycell.agent.executor import DryRunRunner, Executor
from anycell.agent.journal import Journal
from anycell.plan import Plan
plan = Plan.from_dict(json.load(open({plan!r})))
journal = Journal({db!r})
journal.add_job(plan.job_id, {{"id": plan.job_id}}, plan=plan.to_dict(), status="running")
Executor(plan, DryRunRunner(1.0), journal, pm.PackML(pm.EXECUTE)).run()
"""


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_kill_dash_9_mid_job_then_resume_without_repeating(tmp_path) -> None:
    plan = tending_plan()
    for o in plan.operations:
        o.duration = 60.0 if o.id == "u1.place.b" else 0.05   # the process dies during place.b
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_dict()))
    db = str(tmp_path / "journal.db")
    code = _CHILD.format(root=ROOT, plan=str(plan_file), db=db)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def placing() -> bool:
            if not os.path.exists(db):
                return False
            try:
                j = Journal(db)
                try:
                    return j.unconfirmed_steps("job1") == ["u1.place.b"] and len(j.finished_steps("job1")) == 3
                finally:
                    j.close()
            except sqlite3.Error:
                return False

        assert _wait(placing, 30), proc.stdout.read().decode() if proc.poll() is not None else "timeout"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    journal = Journal(db)
    [interrupted] = journal.interrupted()
    assert interrupted.job_id == "job1" and interrupted.status == "running"
    assert sorted(interrupted.done) == ["u1.load", "u1.place.a", "u1.print"]
    assert interrupted.last_completed in ("u1.place.a", "u1.print")
    assert interrupted.unconfirmed == ["u1.place.b"]
    # the executor refuses to carry on by itself
    runner = GateRunner(auto=True)
    with pytest.raises(Exception, match="never confirmed"):
        Executor(plan, runner, journal, pm.PackML(pm.EXECUTE)).run()
    assert runner.started == []
    # the operator resumes from the next step
    journal.resolve_unconfirmed("job1")
    result = Executor(plan, runner, journal, pm.PackML(pm.EXECUTE)).run()
    assert result.outcome == "complete"
    assert runner.started == ["u1.unload", "u1.output"]
    statuses = {s.op_id: s.status for s in journal.steps("job1")}
    assert statuses["u1.place.b"] == "resolved"
    assert all(statuses[o.id] in ("done", "resolved") for o in plan.operations)
