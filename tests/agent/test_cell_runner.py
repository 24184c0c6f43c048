"""The concrete step runner on a simulated cell: machines over their protocols, inspection, resuming."""

from __future__ import annotations

import pytest

from anycell.cell import load_cell
from anycell.errors import InspectionFailed
from anycell.job import load_job
from anycell.agent.executor import execution_order
from anycell.agent.simulation.runtime import SimulatedCell
from anycell.planners.process import plan_job
from anycell.planners.schedule import schedule_plan
from tests.paths import DEMO_CELL, STACK_JOB


@pytest.fixture
def stack(tmp_path):
    cell, job = load_cell(DEMO_CELL), load_job(STACK_JOB)
    plan = plan_job(cell, job)
    schedule_plan(plan, cell, time_limit=2.0)
    sim = SimulatedCell(cell, str(tmp_path / "work"))
    yield cell, job, plan, sim
    sim.close()


@pytest.mark.slow
def test_a_restarted_runner_finds_the_parts_where_they_are_and_finishes(stack, tmp_path) -> None:
    """After an agent restart (fresh planners, same cell), the job goes on from the next step."""
    from anycell.planners.motion import MotionPlanner

    cell, job, plan, sim = stack
    order = [plan.op(o) for o in execution_order(plan)]
    first = sim.runner(job, report_dir=str(tmp_path / "before"))
    first.run(order[0], plan)                                  # the base is on the fixture
    sim.planners = {r.id: MotionPlanner(cell, r.id) for r in cell.robots}   # what a restart loses
    second = sim.runner(job, report_dir=str(tmp_path / "after"))
    for op in order[1:]:
        second.run(op, plan)
    report = second.finish(plan, "complete")
    assert report["all_units_passed"]
    measured = sim.hooks.measure(["u1.base"])["u1.base"]
    assert abs(measured.xyz[2] - 0.026) < 0.002                # the base was not presented (or moved) again
    assert [p["part"] for p in second.placements] == ["block", "peg"]


@pytest.mark.slow
def test_a_unit_out_of_tolerance_stops_the_job_when_the_spec_says_stop(stack, tmp_path) -> None:
    """on_fail: stop (the stack job): a unit measured out of tolerance raises, naming the part."""
    from anycell.geometry import Pose

    cell, job, plan, sim = stack
    runner = sim.runner(job, report_dir=str(tmp_path))
    order = [plan.op(o) for o in execution_order(plan)]
    for op in order:
        if op.kind == "inspect":
            pose = sim.world.part_pose("u1.peg")              # knock the peg 8 mm aside before inspection
            sim.world.remove_part("u1.peg")
            sim.world.add_part("u1.peg", job.part("peg").geometry.size, job.part("peg").mass,
                               Pose(xyz=[pose.xyz[0] + 0.008, pose.xyz[1], pose.xyz[2]]))
            sim.world.settle(0.3)
            with pytest.raises(InspectionFailed) as err:
                runner.run(op, plan)
            assert "unit 1 failed inspection: peg: position off by" in str(err.value)
            assert runner.unit_results[1].passed is False
            return
        runner.run(op, plan)
    raise AssertionError("the plan has no inspection")


@pytest.mark.slow
def test_a_failed_unit_goes_to_the_reject_tray_when_the_spec_says_reject(tmp_path) -> None:
    """demo_widget (on_fail: reject) with a cap tolerance the station cannot prove: the unit is rejected."""
    import os

    import yaml

    from anycell.documents import from_data
    from anycell.job import job_from_document
    from tests.paths import DEMO_JOB

    data = yaml.safe_load(open(DEMO_JOB))
    data["quantity"] = 1
    for pl in data["assembly"]["placements"]:
        if pl["part"] == "cap":
            pl["tolerance"]["position"] = 0.0007   # feasible for the robot (0.5 mm), too tight to prove here
    cell = load_cell(DEMO_CELL)
    job = job_from_document(from_data(data), base_dir=os.path.dirname(DEMO_JOB))
    plan = plan_job(cell, job)
    schedule_plan(plan, cell, time_limit=2.0)
    sim = SimulatedCell(cell, str(tmp_path / "work"))
    try:
        runner = sim.runner(job, report_dir=str(tmp_path))
        details = {op: runner.run(plan.op(op), plan) for op in execution_order(plan)}
        assert details["u1.inspect"]["passed"] is False
        assert any(f.startswith("cap: position off") for f in details["u1.inspect"]["failures"])
        assert details["u1.output"]["to"] == "reject_tray:reject_tray"
        reject = cell.station("reject_tray").pose.xyz
        base = sim.world.part_pose("u1.base").xyz
        assert abs(base[0] - reject[0]) < 0.05 and abs(base[1] - reject[1]) < 0.05
        report = runner.finish(plan, "complete")
        assert report["all_units_passed"] is False and report["units"][0]["inspected"]
    finally:
        sim.close()
