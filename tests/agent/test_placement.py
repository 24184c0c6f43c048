"""A step is done only when the world says so: insertion depth and tilt, misplaced parts, turned fixtures.

These run whole jobs on the simulated cell (PyBullet, the real step runner, the simulated machines
on their real transports), so they are marked slow.
"""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest
import yaml

from anycell.cell import cell_from_document, load_cell
from anycell.documents import from_data
from anycell.job import job_from_document
from anycell.planners import sites
from tests.paths import DEMO_CELL, KUKA_CELL, ROOT, STACK_JOB

pytestmark = pytest.mark.slow

EXAMPLES = os.path.join(ROOT, "examples", "jobs")


def _job(name: str, **changes: Any):
    data = yaml.safe_load(open(os.path.join(EXAMPLES, name)))
    data.update(changes)
    return job_from_document(from_data(data, file=os.path.join(EXAMPLES, name)), base_dir=EXAMPLES)


def _step(report: Dict[str, Any], op: str) -> Dict[str, Any]:
    return next(s for s in report["steps"] if s["op"] == op)


def test_the_pin_goes_in_to_its_depth_and_stands_straight(tmp_path) -> None:
    from anycell.agent.simulation.job import run_job_in_sim

    job = _job("peg_in_hole.yaml", quantity=1)
    report = run_job_in_sim(load_cell(DEMO_CELL), job, str(tmp_path / "r"))
    assert report["outcome"] == "complete", report["error"]
    tol = job.placement("pin").tolerance
    pin = _step(report, "u1.place.pin")["detail"]
    assert pin["insertion_depth_m"] == pytest.approx(0.02)
    assert abs(pin["depth_error_m"]) <= tol.position and pin["tilt_rad"] <= tol.angle
    assert pin["error_m"] <= tol.position
    # the fixture's clamp held the holder while the pin went in
    assert _step(report, "u1.place.holder")["detail"]["held_by"] == "clamp:fixture"
    assert report["all_units_passed"]


def test_a_part_that_does_not_seat_fails_its_step_with_the_deviation(tmp_path) -> None:
    """The spec puts the pin 6 mm above the hole's floor: released there, it drops; the step must fail."""
    from anycell.agent.simulation.job import run_job_in_sim

    data = yaml.safe_load(open(os.path.join(EXAMPLES, "peg_in_hole.yaml")))
    data["quantity"] = 1
    pin = data["assembly"]["placements"][1]
    pin["pose"]["xyz"] = [0.0, 0.0, 0.036]
    pin["insertion"]["depth"] = 0.014
    job = job_from_document(from_data(data, file="misplaced.yaml"), base_dir=EXAMPLES)
    report = run_job_in_sim(load_cell(DEMO_CELL), job, str(tmp_path / "r"))
    assert report["outcome"] != "complete"
    err = report["error"]
    assert err["op"] == "u1.place.pin" and err["error"] == "PlacementError"
    assert "was measured 5." in err["message"] and "tolerance is 1.50 mm" in err["message"]
    assert err["deviation"]["position_m"] == pytest.approx(0.006, abs=0.001)
    # it fell 6 mm past the spec's pose, to the hole's floor (negative: deeper than asked)
    assert err["deviation"]["depth_error_m"] == pytest.approx(-0.006, abs=0.001)
    # nothing after the failed step ran, and it is not reported done
    assert not [s for s in report["steps"] if s["op"] in ("u1.place.pin", "u1.inspect")]


def test_no_drift_on_a_fixture_turned_by_0_4_rad(tmp_path) -> None:
    """The clamp holds the base, so the stack stays within 0.25 mm of its targets to the end."""
    from anycell.agent import packml as pm
    from anycell.agent.executor import Executor
    from anycell.agent.journal import Journal
    from anycell.agent.simulation.runtime import SimulatedCell
    from anycell.planners.process import plan_job
    from anycell.planners.schedule import schedule_plan

    data = yaml.safe_load(open(DEMO_CELL))
    fixture = next(s for s in data["stations"] if s["id"] == "fixture")
    fixture["pose"]["rpy"] = [0.0, 0.0, 0.4]
    data["machines"] = []
    cell = cell_from_document(from_data(data, file="turned.yaml"))
    job = job_from_document(from_data(yaml.safe_load(open(STACK_JOB)), file=STACK_JOB), base_dir=EXAMPLES)
    plan = plan_job(cell, job)
    schedule_plan(plan, cell, time_limit=2.0)
    sim = SimulatedCell(cell, str(tmp_path / "work"))
    journal = Journal(str(tmp_path / "journal.db"))
    try:
        runner = sim.runner(job)
        machine = pm.PackML(pm.IDLE)
        machine.command("start")
        machine.state_complete(pm.STARTING)
        result = Executor(plan, runner, journal, machine).run()
        assert result.outcome == "complete", result.error
        ids = [pl.part for pl in job.assembly.placements]
        final = sim.hooks.measure([f"u1.{p}" for p in ids])
    finally:
        sim.close()
        journal.close()
    from anycell.geometry import distance

    for part_id in ids:
        target = sites.placement_pose(cell, job, part_id)
        assert distance(final[f"u1.{part_id}"].position, target.position) < 0.00025, part_id


@pytest.mark.parametrize("cell_path", [KUKA_CELL, os.path.join(ROOT, "cell_configs", "ur_cell.yaml")],
                         ids=["kuka", "ur"])
def test_a_suction_cell_makes_the_dowel_holders_and_carries_them_out(tmp_path, cell_path) -> None:
    """The carry check accepted the unit (cup beside the dowel); the simulator carries both to the tray.

    The holder is picked beside its hole, off its centre: the cup must not press it into the feeder and
    tilt it, or it lands further off than the hole's 0.3 mm clearance and the dowel shoves it (ur_cell's
    fixture does not clamp): the dowel then stops 1.7 mm off its target.
    """
    from anycell.agent.simulation.job import run_job_in_sim
    from anycell.planners.feasibility import carry_problem

    cell, job = load_cell(cell_path), _job("peg_in_hole_flush.yaml")
    assert carry_problem(cell.robots[0], job) is None
    report = run_job_in_sim(cell, job, str(tmp_path / "r"))
    assert report["outcome"] == "complete", report["error"]
    placed = {(p["unit"], p["part"]): p for p in report["placements"]}
    assert len(placed) == 4 and all(p["error_m"] <= p["tolerance_m"] for p in placed.values())
    assert report["all_units_passed"] and report["quantity"] == 2
    outputs = [s for s in report["steps"] if s["kind"] == "output"]
    assert [s["detail"]["to"] for s in outputs] == ["output_tray:out_tray"] * 2
    assert all(s["detail"]["error_m"] < 0.003 for s in outputs)   # the units arrive where the tray expects them
