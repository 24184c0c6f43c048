"""CellService: the JSON API (validation, idempotent request ids), the queue, PackML and recovery, no ROS.

Jobs are planned by the real planners (planners.process + planners.schedule)
and run by the DryRunRunner at a small time scale (no hardware moves).
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from anycell.agent import packml as pm
from anycell.agent.api import inline_program_files
from anycell.agent.cell_service import CellService, wait_until
from anycell.agent.executor import DryRunRunner
from anycell.agent.journal import Journal
from anycell.cell import load_cell
from tests.paths import DEMO_CELL, DEMO_JOB

from .helpers import GateRunner


@pytest.fixture(scope="module")
def cell():
    return load_cell(DEMO_CELL)


@pytest.fixture(scope="module")
def job_doc():
    with open(DEMO_JOB, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["quantity"] = 1
    return inline_program_files(data, os.path.dirname(DEMO_JOB))


def _service(cell, tmp_path, runner_factory, **kw) -> CellService:
    svc = CellService(cell, Journal(str(tmp_path / "journal.db")), runner_factory, **kw)
    svc.start()
    return svc


def _to_execute(svc: CellService) -> None:
    svc.command("reset")
    assert svc.packml.wait_for([pm.IDLE], 5)
    svc.command("start")
    assert svc.packml.wait_for([pm.EXECUTE], 5)


def test_bad_requests_get_errors_and_the_cell_keeps_serving(cell, tmp_path, job_doc) -> None:
    svc = _service(cell, tmp_path, lambda plan, job: DryRunRunner(0.0))
    try:
        r = svc.handle("{not json")
        assert r["ok"] is False and r["request_id"] is None and "not JSON" in r["error"]["message"]
        r = svc.handle(json.dumps({"op": "list"}))
        assert r["ok"] is False and r["error"]["field"] == "request_id"
        r = svc.handle(json.dumps({"request_id": "a", "op": "explode"}))
        assert r["error"]["field"] == "op" and "submit" in r["error"]["hint"]
        r = svc.handle(json.dumps({"request_id": "b", "op": "submit"}))
        assert r["error"]["field"] == "job"
        bad = copy.deepcopy(job_doc)
        bad["quantity"] = 0
        r = svc.handle(json.dumps({"request_id": "c", "op": "submit", "job": bad}))
        assert r["ok"] is False and r["error"]["error"] == "ConfigError" and r["error"]["field"] == "job.quantity"
        wrong = copy.deepcopy(job_doc)
        wrong["parts"][0]["source"] = {"feeder": "unobtainium"}
        r = svc.handle(json.dumps({"request_id": "d", "op": "submit", "job": wrong}))
        assert r["error"]["error"] == "InfeasibleError" and "unobtainium" in r["error"]["message"]
        assert r["error"]["hint"]
        r = svc.handle(json.dumps({"request_id": "e", "op": "get", "job_id": "nope"}))
        assert r["ok"] is False and r["error"]["field"] == "job_id"
        # still serving
        r = svc.handle(json.dumps({"request_id": "f", "op": "submit", "job": job_doc}))
        assert r["ok"] is True and r["job_id"] == "demo_widget" and r["steps"] > 5
        assert svc.handle({"request_id": "g", "op": "list"})["jobs"][0]["status"] == "queued"
    finally:
        svc.shutdown()


def test_repeated_request_id_same_response_no_second_job(cell, tmp_path, job_doc) -> None:
    svc = _service(cell, tmp_path, lambda plan, job: DryRunRunner(0.0))
    try:
        req = json.dumps({"request_id": "same", "op": "submit", "job": job_doc})
        first = svc.handle(req)
        second = svc.handle(req)
        assert first["ok"] and second == first
        assert len(svc.journal.jobs()) == 1
        # a new request id for the same job id is refused with a reason
        again = svc.handle(json.dumps({"request_id": "other", "op": "submit", "job": job_doc}))
        assert again["ok"] is False and "already submitted" in again["error"]["message"]
        svc.shutdown()
        # the stored response survives a restart of the agent
        svc2 = CellService(cell, Journal(str(tmp_path / "journal.db")), lambda plan, job: DryRunRunner(0.0))
        assert svc2.handle(req) == first
        assert len(svc2.journal.jobs()) == 1
    finally:
        svc.shutdown()


def test_job_runs_to_complete_in_plan_order(cell, tmp_path, job_doc) -> None:
    runners = []

    def factory(plan, job):
        assert job.id == plan.job_id
        runners.append(DryRunRunner(0.001))
        return runners[-1]

    seen = []
    svc = _service(cell, tmp_path, factory, complete_when_empty=True, on_progress=seen.append)
    try:
        r = svc.handle({"request_id": "1", "op": "submit", "job": job_doc})
        assert r["ok"]
        _to_execute(svc)
        assert svc.packml.wait_for([pm.COMPLETE], 30), svc.status()
        job = svc.handle({"request_id": "2", "op": "get", "job_id": "demo_widget"})["job"]
        assert job["status"] == "complete" and job["done"] == job["total"] == r["steps"]
        assert job["rehearsal"] is True            # a dry run says so: nothing was made
        assert all(s["status"] == "done" for s in job["steps"])
        plan = svc.journal.job("demo_widget").plan
        ops = {o["id"]: o for o in plan["operations"]}
        ran = runners[0].ran
        for o in ops.values():
            for dep in o["after"]:
                assert ran.index(dep) < ran.index(o["id"])
        assert seen[-1]["event"] == "end"
        # Complete -> reset -> Idle
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
    finally:
        svc.shutdown()


def test_priority_then_submit_order_and_cancel(cell, tmp_path, job_doc) -> None:
    svc = _service(cell, tmp_path, lambda plan, job: DryRunRunner(0.0))
    try:
        for i, prio in enumerate((0, 9, 0)):
            doc = dict(job_doc, id=f"j{i}", priority=prio)
            assert svc.handle({"request_id": f"s{i}", "op": "submit", "job": doc})["ok"]
        assert [j["job_id"] for j in svc.handle({"request_id": "l", "op": "list"})["jobs"]] == ["j1", "j0", "j2"]
        assert svc.handle({"request_id": "c", "op": "cancel", "job_id": "j0"})["status"] == "cancelled"
        r = svc.handle({"request_id": "c2", "op": "cancel", "job_id": "j0"})
        assert r["ok"] is False and "already cancelled" in r["error"]["message"]
        assert [j["job_id"] for j in svc.handle({"request_id": "l2", "op": "list"})["jobs"]] == ["j1", "j2"]
    finally:
        svc.shutdown()


def test_illegal_commands_refused_and_hold_mid_job(cell, tmp_path, job_doc) -> None:
    gates = GateRunner()
    svc = _service(cell, tmp_path, lambda plan, job: gates)
    try:
        from anycell.errors import StateError

        with pytest.raises(StateError, match="start needs Idle"):
            svc.command("start")
        assert svc.handle({"request_id": "1", "op": "submit", "job": job_doc})["ok"]
        _to_execute(svc)
        plan = svc.journal.job("demo_widget").plan
        first = plan["schedule"]["entries"][0]["op"]
        assert gates.wait_running(first)
        svc.command("hold")
        assert not svc.packml.wait_for([pm.HELD], 0.2)   # steps in flight finish first
        for op_id in list(gates.running):
            gates.release(op_id)
        assert svc.packml.wait_for([pm.HELD], 10)
        with pytest.raises(StateError):
            svc.command("start")
        started = list(gates.started)
        svc.command("unhold")
        assert svc.packml.wait_for([pm.EXECUTE], 5)
        # the job goes on after unhold: the next step starts
        assert wait_until(lambda: len(gates.started) > len(started), 10)
        svc.command("abort")
        assert svc.packml.wait_for([pm.ABORTED], 10)
        assert gates.halted >= 1
        rec = svc.journal.job("demo_widget")
        assert rec.status == "interrupted"
    finally:
        svc.shutdown()


def test_failed_step_aborts_the_cell(cell, tmp_path, job_doc) -> None:
    svc = _service(cell, tmp_path, lambda plan, job: GateRunner(auto=True, fail=plan.operations[0].id))
    try:
        assert svc.handle({"request_id": "1", "op": "submit", "job": job_doc})["ok"]
        _to_execute(svc)
        assert svc.packml.wait_for([pm.ABORTED], 10)
        rec = svc.journal.job("demo_widget")
        assert rec.status == "failed" and "ALARM" in rec.error
        svc.health_sources.append(lambda: [{"name": "printer", "level": "error", "message": "ALARM:1"}])
        svc.health_sources.append(lambda: 1 / 0)
        health = {h["name"]: h for h in svc.health()}
        assert health["demo_cell/packml"]["level"] == 2 and health["demo_cell/packml"]["message"] == "Aborted"
        assert health["printer"]["message"] == "ALARM:1"
        assert "division by zero" in health["demo_cell/health"]["message"]
    finally:
        svc.shutdown()


def test_restart_after_crash_reports_and_resumes_without_repeating(cell, tmp_path, job_doc) -> None:
    """An agent that died mid-job (its journal left 'running'): the new agent waits for the operator."""
    gates = GateRunner()
    svc = _service(cell, tmp_path, lambda plan, job: gates)
    assert svc.handle({"request_id": "1", "op": "submit", "job": job_doc})["ok"]
    _to_execute(svc)
    order = [e["op"] for e in svc.journal.job("demo_widget").plan["schedule"]["entries"]]
    assert gates.wait_running(order[0])
    gates.release(order[0])
    assert wait_until(lambda: len(gates.started) >= 2, 10)
    # the next step may start (beside it) before the first one's end is journaled: wait for that too
    assert wait_until(lambda: svc.journal.finished_steps("demo_widget") == [order[0]], 10)
    # simulate the crash: the journal is what a kill -9 leaves (status running, a step started)
    svc._stop.set()
    done_before = svc.journal.finished_steps("demo_widget")
    unconfirmed = svc.journal.unconfirmed_steps("demo_widget")
    assert done_before == [order[0]] and unconfirmed
    svc2 = CellService(cell, Journal(svc.journal.path), lambda plan, job: DryRunRunner(0.0), complete_when_empty=True)
    ran = []
    svc2.on_progress = lambda info: ran.append(info["op"]) if info["event"] == "started" else None
    svc2.start()
    try:
        st = svc2.handle({"request_id": "s", "op": "status"})
        assert st["interrupted"] == ["demo_widget"]
        job = svc2.handle({"request_id": "g", "op": "get", "job_id": "demo_widget"})["job"]
        assert job["interruption"]["last_completed"] == order[0]
        assert job["interruption"]["unconfirmed"] == unconfirmed
        _to_execute(svc2)
        # nothing runs until the operator decides
        assert not svc2.packml.wait_for([pm.COMPLETE], 0.3)
        assert ran == []
        r = svc2.handle({"request_id": "r", "op": "resume", "job_id": "demo_widget"})
        assert r["ok"] and r["resolved"] == unconfirmed
        assert svc2.packml.wait_for([pm.COMPLETE], 30)
        assert svc2.journal.job("demo_widget").status == "complete"
        assert not set(ran) & set(done_before + unconfirmed)     # nothing repeated
        assert sorted(ran + done_before + unconfirmed) == sorted(order)
    finally:
        svc2.shutdown()
        gates.halt()


def test_agent_shutdown_mid_job_leaves_it_interrupted_not_cancelled(cell, tmp_path, job_doc) -> None:
    gates = GateRunner()
    svc = _service(cell, tmp_path, lambda plan, job: gates)
    assert svc.handle({"request_id": "1", "op": "submit", "job": job_doc})["ok"]
    _to_execute(svc)
    assert wait_until(lambda: gates.running, 10)
    svc.shutdown()
    rec = svc.journal.job("demo_widget")
    assert rec.status == "interrupted" and "shut down" in rec.error
    assert gates.halted >= 1
    assert svc.journal.unconfirmed_steps("demo_widget")


def test_quote_plans_without_queueing(cell, tmp_path, job_doc) -> None:
    svc = CellService(cell, Journal(str(tmp_path / "journal.db")), lambda plan, job: DryRunRunner(0.0))
    r = svc.handle({"request_id": "q", "op": "quote", "job": job_doc})
    assert r["ok"], r
    q = r["quote"]
    assert q["job_id"] == "demo_widget" and q["makespan"] > 0 and q["total"] > 0 and q["lines"]
    assert svc.journal.jobs() == []
    bad = svc.handle({"request_id": "q2", "op": "quote", "job": dict(job_doc, quantity=-1)})
    assert bad["ok"] is False and bad["error"]["field"] == "job.quantity"


def test_reset_resets_the_devices_and_a_device_that_cannot_reset_aborts_the_cell(cell, tmp_path) -> None:
    from anycell.errors import MachineFault

    calls = []
    svc = _service(cell, tmp_path, lambda plan, job: DryRunRunner(0.0))
    try:
        svc.reset_hooks.append(lambda: calls.append("reset"))
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5) and calls == ["reset"]

        def broken() -> None:
            raise MachineFault("mill is Aborted and its alarm does not clear")

        svc.reset_hooks.append(broken)
        svc.command("stop")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.ABORTED], 5), svc.packml.state
        assert calls == ["reset", "reset"]
    finally:
        svc.shutdown()
