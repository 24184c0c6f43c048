"""The quote: its time and cost arithmetic matches the schedule and the cell's cost model."""

from __future__ import annotations

import json

import pytest

from anycell.cell import load_cell
from anycell.job import load_job
from anycell.planners.process import plan_job
from anycell.planners.quote import quote
from anycell.planners.schedule import schedule_plan

from tests.paths import DEMO_CELL, DEMO_JOB


@pytest.fixture(scope="module")
def demo():  # noqa: ANN201
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    schedule_plan(plan, cell)
    return cell, job, plan, quote(cell, job, plan)


def _busy_seconds(plan, resource: str) -> float:  # noqa: ANN001
    """Busy time recomputed from the schedule entries alone: ops using it, plus load-to-unload holds."""
    when = {e.op: (e.start, e.end) for e in plan.schedule.entries}
    spans = []
    for op in plan.operations:
        if resource in op.holds:
            spans.append((when[op.id][0], when[op.holds[resource]][1]))
        elif resource in op.uses:
            spans.append(when[op.id])
    spans.sort()
    total, cur = 0.0, None
    for s, e in spans:
        if cur is None or s > cur[1]:
            total += 0 if cur is None else cur[1] - cur[0]
            cur = [s, e]
        else:
            cur[1] = max(cur[1], e)
    return total + (cur[1] - cur[0] if cur else 0.0)


def test_time_matches_the_schedule(demo) -> None:  # noqa: ANN001
    cell, job, plan, q = demo
    assert q.makespan == plan.schedule.makespan
    assert q.per_unit == pytest.approx(plan.schedule.makespan / job.quantity, abs=1e-3)
    when = {e.op: e for e in plan.schedule.entries}
    assert q.unit_lead_times[2] == pytest.approx(when["u2.output"].end - min(
        when[o.id].start for o in plan.operations if o.unit == 2))


def test_resource_lines_are_busy_time_times_rate(demo) -> None:  # noqa: ANN001
    cell, job, plan, q = demo
    lines = {ln.item: ln for ln in q.lines}
    rates = {"panda (robot)": 12.0, "printer (3d_printer)": 3.0, "mill (cnc_mill)": 20.0,
             "inspection (inspection)": 2.0}
    for item, rate in rates.items():
        rid = item.split()[0]
        hours = _busy_seconds(plan, rid) / 3600
        assert lines[item].rate == rate
        assert lines[item].quantity == pytest.approx(hours, abs=1e-6)
        assert lines[item].amount == round(hours * rate, 2)
    # The robot's busy time is exactly the sum of its operations (it does one thing at a time).
    robot_s = sum(op.duration for op in plan.operations if "panda" in op.uses)
    assert lines["panda (robot)"].quantity * 3600 == pytest.approx(robot_s, abs=1e-2)


def test_setup_material_and_total(demo) -> None:  # noqa: ANN001
    cell, job, plan, q = demo
    lines = {ln.item: ln for ln in q.lines}
    assert lines["setup"].amount == 5.0
    # block: 0.04 kg aluminium at 9 EUR/kg, cap: 0.01 kg PLA at 25 EUR/kg; two units each.
    assert lines["aluminium for block"].amount == round(0.04 * 2 * 9.0, 2) == 0.72
    assert lines["pla for cap"].amount == round(0.01 * 2 * 25.0, 2) == 0.5
    assert q.total == round(sum(ln.amount for ln in q.lines), 2)
    assert q.currency == "EUR"
    assert any("base" in n and "feeder" in n for n in q.notes)


def test_quote_is_deterministic_json_and_text(demo) -> None:  # noqa: ANN001
    cell, job, _plan, q = demo
    again = quote(cell, job, schedule_plan_and_return(cell, job))
    assert json.dumps(q.to_dict(), sort_keys=True) == json.dumps(again.to_dict(), sort_keys=True)
    text = q.format_text()
    assert f"total (makespan)        {q.makespan:.1f} s" in text
    assert f"= {q.total:9.2f} EUR" in text
    for ln in q.lines:
        assert f"{ln.amount:9.2f} EUR" in text


def schedule_plan_and_return(cell, job):  # noqa: ANN001, ANN201
    plan = plan_job(cell, job)
    schedule_plan(plan, cell)
    return plan
