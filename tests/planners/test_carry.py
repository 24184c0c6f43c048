"""A finished unit travels on its base part: the planner checks the tool can carry it that way."""

from __future__ import annotations

import pytest

from anycell.cell import load_cell
from anycell.errors import InfeasibleError
from anycell.job import load_job
from anycell.planners.feasibility import carry_problem
from anycell.planners.process import plan_job
from tests.paths import DEMO_CELL, DEMO_JOB, KUKA_CELL, STACK_JOB


def test_the_demo_widget_can_be_carried_by_the_panda() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    assert carry_problem(cell.robot("panda"), job) is None
    plan = plan_job(cell, job)
    assert [op.id for op in plan.operations if op.kind == "output"] == ["u1.output", "u2.output"]


def test_a_tall_stack_stays_on_the_fixture_with_a_note() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(STACK_JOB)
    reason = carry_problem(cell.robot("panda"), job)
    # the hand (its links in the Panda model) starts 33 mm above the fingertips' centre; the tower stands
    # 50 mm above the 12 mm base, and the fingers must hold 4 mm of it
    assert reason is not None and "would hit the parts standing 50 mm above base part 'base'" in reason
    plan = plan_job(cell, job)
    assert not [op for op in plan.operations if op.kind == "output"]
    assert any("stays on the fixture" in n for n in plan.notes)


def test_a_suction_cup_cannot_hold_a_covered_base() -> None:
    cell, job = load_cell(KUKA_CELL), load_job(STACK_JOB)
    assert "no free area of 20 mm across" in carry_problem(cell.robot("iiwa"), job)


def test_more_than_one_unit_that_cannot_leave_the_fixture_is_refused(tmp_path) -> None:
    text = open(STACK_JOB).read().replace("quantity: 1", "quantity: 2")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(InfeasibleError) as err:
        plan_job(load_cell(DEMO_CELL), load_job(str(path)))
    assert "can take a finished unit off the fixture" in str(err.value) and err.value.field == "quantity"
