"""Robots making way for each other.

* A robot that has done its last step while another robot still has motions to start goes home at once,
  out of the way (it would otherwise stay where it finished, often above the shared fixture, until the
  other robot found it in its way and had to wait while it was sent home).
* A robot whose next motion step has started is not sent home: it moves on by itself (the blocked robot
  waits for that, seeing it busy).
* A blocked robot that finds nobody moving tries again to send an idle robot home (one that was ending
  its step a moment before was not idle then).
"""

from __future__ import annotations

from typing import Any

from anycell.agent.cell_runner import MOTION_KINDS, CellRunner, StepRecord, _SharedMotion
from anycell.agent.executor import execution_order
from anycell.cell import load_cell
from anycell.job import load_job
from anycell.planners.durations import MotionDurationModel
from anycell.planners.process import plan_job
from anycell.planners.schedule import schedule_plan
from tests.paths import ROOT


def _runner_and_plan() -> tuple:
    cell = load_cell(f"{ROOT}/cell_configs/two_robot_cell.yaml")
    job = load_job(f"{ROOT}/bench/jobs/engraved_four.yaml")
    plan = plan_job(cell, job, MotionDurationModel(cell))
    schedule_plan(plan, cell, time_limit=5.0)
    robots: Any = {r.id: object() for r in cell.robots}
    runner = CellRunner(cell, job, robots=robots, planners={}, machines={})
    runner._plan = plan
    return runner, plan


def test_only_a_robots_last_step_while_another_has_motions_left_sends_it_home() -> None:
    runner, plan = _runner_and_plan()
    ops = {o.id: o for o in plan.operations}
    order = [ops[i] for i in execution_order(plan)]
    motions = [o for o in order if o.kind in MOTION_KINDS]
    last = {}
    for op in motions:
        last[op.resource] = op                         # each robot's last motion step
    assert len(last) == 2 and last["left"] is not motions[-1]

    def done(ops_done: list) -> list:
        return [StepRecord(o.id, o.kind, o.unit, o.resource, 0.0, 0.0) for o in ops_done]

    for k, op in enumerate(order):                     # the steps before it in the executor's order done
        if op.kind not in MOTION_KINDS:
            continue
        runner.records = done(order[:k])
        expected = op is last[op.resource] and op is not motions[-1]
        assert runner._last_while_others_move(op) == expected, op.id
    # the right robot's motions all done too: the left robot's last step has nobody to make way for
    left = last["left"]
    runner.records = done([o for o in order if o is not left])
    assert not runner._last_while_others_move(left)
    # nor when the right robot's remaining motions have all started (a running one that finds the left
    # robot in its way sends it home anyway)
    runner.records = done(order[:order.index(left)])
    assert runner._last_while_others_move(left)
    runner._started = {o.id for o in order if o.resource == "right"}
    assert not runner._last_while_others_move(left)


def test_a_robot_whose_step_has_started_is_busy_and_not_sent_home() -> None:
    runner, _plan = _runner_and_plan()
    table = runner._reservations
    assert table is not None
    with runner._step_due("left"):
        assert table._busy.get("left") == 1            # others blocked by it wait for it to move on
        # not sent home: (the dummy robot has no joints, so touching it would raise)
        assert runner._park_idle_others("right") is False
    assert "left" not in table._busy and runner._due["left"] == 0


class _Table:
    """A reservation table where nobody moves on."""

    def __init__(self) -> None:
        self.waited = 0

    def wait_for_change(self, rid: str, snapshot: Any) -> bool:
        self.waited += 1
        return False


def test_a_blocked_robot_that_finds_nobody_moving_tries_again_to_send_one_home() -> None:
    calls = []

    def make_way(rid: str) -> bool:
        calls.append(rid)
        return len(calls) == 2        # the other robot's step had just ended: idle on the second look

    table = _Table()
    share = _SharedMotion(table, "right", None, {}, None, 0.02, None, make_way)
    assert share.blocked(RuntimeError("in the way")) is True
    assert calls == ["right", "right"] and table.waited == 1
    never = _SharedMotion(_Table(), "right", None, {}, None, 0.02, None, lambda rid: False)
    assert never.blocked(RuntimeError("in the way")) is False    # bounded: gives up, the step fails
