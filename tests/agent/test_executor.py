"""Executor: schedule order with precedence, concurrency, journal, hold/suspend/stop/abort, failure, resume."""

from __future__ import annotations

import os
import threading

import pytest

from anycell.agent import packml as pm
from anycell.agent.executor import DryRunRunner, Executor, ExecResult, execution_order
from anycell.agent.journal import Journal
from anycell.errors import ExecutionError, StateError
from anycell.plan import Plan

from .helpers import GateRunner, op, tending_plan


def _setup(tmp_path, plan: Plan):
    journal = Journal(os.path.join(str(tmp_path), "journal.db"))
    journal.add_job(plan.job_id, {"id": plan.job_id}, plan=plan.to_dict(), status="running")
    machine = pm.PackML(pm.EXECUTE)
    return journal, machine


def _run_in_thread(ex: Executor):
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = ex.run()
        except Exception as exc:  # surfaced by the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def test_runs_in_order_with_machine_concurrent(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner(auto=True)
    progress = []
    result = Executor(plan, runner, journal, machine, on_progress=progress.append).run()
    assert result.outcome == "complete"
    assert sorted(runner.finished) == sorted(o.id for o in plan.operations)
    # precedence: every step started after its predecessors finished
    for o in plan.operations:
        for dep in o.after:
            assert runner.finished.index(dep) < runner.finished.index(o.id)
    # the robot steps follow the schedule's order on the robot
    robot_steps = [s for s in runner.started if s != "u1.print"]
    assert robot_steps == ["u1.load", "u1.place.a", "u1.place.b", "u1.unload", "u1.output"]
    # every step journaled done
    assert {s.op_id: s.status for s in journal.steps("job1")} == {o.id: "done" for o in plan.operations}
    assert progress[-1]["event"] == "end" and progress[-1]["done"] == progress[-1]["total"] == 6


def test_machine_program_overlaps_robot_work(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    ex = Executor(plan, runner, journal, machine)
    t, box = _run_in_thread(ex)
    runner.release("u1.load")
    assert runner.wait_running("u1.print") and runner.wait_running("u1.place.a")
    for s in ("u1.place.a", "u1.place.b", "u1.print", "u1.unload", "u1.output"):
        runner.release(s)
    t.join(timeout=20)
    assert box["result"].outcome == "complete"
    assert frozenset(("u1.print", "u1.place.a")) in runner.concurrent_pairs
    # the robot never ran two steps at once
    robot = {"u1.load", "u1.place.a", "u1.place.b", "u1.unload", "u1.output"}
    assert not any(len(p & robot) == 2 for p in runner.concurrent_pairs)


def test_hold_waits_for_safe_point_then_unhold_continues(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    assert runner.wait_running("u1.load")
    machine.command("hold")
    assert machine.state == pm.HOLDING           # the load step is still moving
    runner.release("u1.load")
    assert machine.wait_for([pm.HELD], timeout=10)
    assert runner.started == ["u1.load"]        # nothing new started while held
    machine.command("unhold")
    assert runner.wait_running("u1.place.a")
    assert machine.state == pm.EXECUTE
    for s in ("u1.print", "u1.place.a", "u1.place.b", "u1.unload", "u1.output"):
        runner.release(s)
    t.join(timeout=20)
    assert box["result"].outcome == "complete"


def test_suspend_and_unsuspend(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    assert runner.wait_running("u1.load")
    machine.command("suspend")
    runner.release("u1.load")
    assert machine.wait_for([pm.SUSPENDED], timeout=10)
    assert runner.started == ["u1.load"]
    machine.command("unsuspend")
    for s in ("u1.print", "u1.place.a", "u1.place.b", "u1.unload", "u1.output"):
        runner.release(s)
    t.join(timeout=20)
    assert box["result"].outcome == "complete"


@pytest.mark.parametrize("command,outcome", [("stop", "stopped"), ("abort", "aborted")])
def test_stop_and_abort_halt_at_once(tmp_path, command: str, outcome: str) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    runner.release("u1.load")
    assert runner.wait_running("u1.print") and runner.wait_running("u1.place.a")
    machine.command(command)
    t.join(timeout=20)
    result: ExecResult = box["result"]
    assert result.outcome == outcome
    assert runner.halted >= 1
    assert sorted(result.halted) == ["u1.place.a", "u1.print"]
    assert journal.finished_steps("job1") == ["u1.load"]
    assert sorted(journal.unconfirmed_steps("job1")) == ["u1.place.a", "u1.print"]
    # a run with unconfirmed steps is refused: the executor never repeats a physical step on its own
    with pytest.raises(StateError, match="never confirmed"):
        Executor(plan, GateRunner(auto=True), journal, pm.PackML(pm.EXECUTE)).run()


def test_a_halt_from_outside_leaves_the_cut_steps_unconfirmed_not_failed(tmp_path) -> None:
    """An e-stop or SIGTERM stops the devices while PackML still says Execute: the steps it cuts
    short are unconfirmed (decided at resume), the job is interrupted, and nothing new starts."""
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    ex = Executor(plan, runner, journal, machine)
    t, box = _run_in_thread(ex)
    runner.release("u1.load")
    assert runner.wait_running("u1.print") and runner.wait_running("u1.place.a")
    ex.halting()          # what CellService.halt_now does first
    runner.halt()         # then the devices stop: the running steps raise
    t.join(timeout=20)
    result: ExecResult = box["result"]
    assert result.outcome == "aborted"
    assert sorted(journal.unconfirmed_steps("job1")) == ["u1.place.a", "u1.print"]
    assert journal.failed_steps("job1") == []
    assert sorted(runner.started) == ["u1.load", "u1.place.a", "u1.print"]    # nothing new started


def test_failed_step_halts_the_rest_and_reports_the_error(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner(fail="u1.print")
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    runner.release("u1.load")
    assert runner.wait_running("u1.place.a")
    runner.release("u1.print")
    t.join(timeout=20)
    result = box["result"]
    assert result.outcome == "failed"
    assert result.error["op"] == "u1.print" and result.error["error"] == "MachineFault"
    assert result.error["hint"] == "home the machine"
    steps = {s.op_id: s.status for s in journal.steps("job1")}
    assert steps["u1.print"] == "failed" and steps["u1.place.a"] == "halted"
    assert "u1.unload" not in steps


def test_resume_after_stop_continues_from_next_step(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    runner.release("u1.load")
    assert runner.wait_running("u1.place.a") and runner.wait_running("u1.print")
    machine.command("stop")
    t.join(timeout=20)
    # the operator confirms the unconfirmed steps were completed by hand; continue from the next ones
    assert sorted(journal.resolve_unconfirmed("job1")) == ["u1.place.a", "u1.print"]
    second = GateRunner(auto=True)
    result = Executor(plan, second, journal, pm.PackML(pm.EXECUTE)).run()
    assert result.outcome == "complete"
    assert second.started == ["u1.place.b", "u1.unload", "u1.output"]


def test_resume_with_retry_runs_the_unconfirmed_step_again(tmp_path) -> None:
    plan = tending_plan()
    journal, machine = _setup(tmp_path, plan)
    runner = GateRunner()
    t, box = _run_in_thread(Executor(plan, runner, journal, machine))
    assert runner.wait_running("u1.load")
    machine.command("abort")
    t.join(timeout=20)
    journal.resolve_unconfirmed("job1", retry=True)
    second = GateRunner(auto=True)
    assert Executor(plan, second, journal, pm.PackML(pm.EXECUTE)).run().outcome == "complete"
    assert second.started[0] == "u1.load"
    assert [s.attempts for s in journal.steps("job1") if s.op_id == "u1.load"] == [2]


def test_order_without_schedule_and_bad_plans() -> None:
    plan = tending_plan(scheduled=False)
    order = execution_order(plan)
    for o in plan.operations:
        for dep in o.after:
            assert order.index(dep) < order.index(o.id)
    cyclic = Plan(job_id="j", cell_id="c", quantity=1,
                  operations=[op("a", "r", ["b"]), op("b", "r", ["a"])])
    with pytest.raises(ExecutionError, match="cycle"):
        execution_order(cyclic)
    dangling = Plan(job_id="j", cell_id="c", quantity=1, operations=[op("a", "r", ["zz"])])
    with pytest.raises(ExecutionError, match="unknown operation 'zz'"):
        execution_order(dangling)


def test_dry_run_runner_takes_the_planned_time_and_halts(tmp_path) -> None:
    plan = tending_plan()
    for o in plan.operations:
        o.duration = 0.01
    journal, machine = _setup(tmp_path, plan)
    runner = DryRunRunner(time_scale=1.0)
    assert Executor(plan, runner, journal, machine).run().outcome == "complete"
    assert sorted(runner.ran) == sorted(o.id for o in plan.operations)
    slow = DryRunRunner(time_scale=1000.0)
    threading.Timer(0.1, slow.halt).start()
    with pytest.raises(ExecutionError, match="halted"):
        slow.run(plan.operations[0], plan)
