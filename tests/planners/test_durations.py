"""Duration models: config defaults, and the motion-based estimate from the robot's kinematics."""

from __future__ import annotations

import pytest

from anycell.cell import load_cell
from anycell.job import load_job
from anycell.plan import Site
from anycell.planners.durations import DurationModel, MotionDurationModel
from anycell.planners.process import plan_job
from anycell.planners.schedule import schedule_plan

from tests.paths import DEMO_CELL, DEMO_JOB


def test_config_defaults_and_program_durations() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job, DurationModel(cell))
    assert plan.op("u1.place.base").duration == cell.durations.pick_place
    assert plan.op("u1.load.block").duration == cell.durations.load
    assert plan.op("u1.unload.cap").duration == cell.durations.unload
    assert plan.op("u1.inspect").duration == cell.durations.inspect
    assert plan.op("u1.run.cap").duration == 40.0          # the job's source.duration
    assert "duration 40 s from the job (source.duration)" in plan.op("u1.run.cap").reasons


def test_machine_cycle_time_when_the_job_gives_none() -> None:
    import yaml

    from anycell.documents import from_data
    from anycell.job import job_from_document

    data = yaml.safe_load(open(DEMO_JOB))
    del next(p for p in data["parts"] if p["id"] == "cap")["source"]["duration"]
    cell, job = load_cell(DEMO_CELL), job_from_document(from_data(data, file=DEMO_JOB))
    plan = plan_job(cell, job)
    assert plan.op("u1.run.cap").duration == cell.machine("printer").cycle_time == 120.0


@pytest.fixture(scope="module")
def motion():  # noqa: ANN201
    cell = load_cell(DEMO_CELL)
    dm = MotionDurationModel(cell)
    yield cell, dm
    dm.close()


def test_motion_estimate_grows_with_distance_and_load(motion) -> None:  # noqa: ANN001
    cell, dm = motion
    robot = cell.robots[0]
    src = Site(kind="feeder", ref="feeder", xyz=[0.45, -0.2, 0.05])
    near = Site(kind="fixture", ref="fixture", xyz=[0.45, -0.1, 0.05])
    far = Site(kind="fixture", ref="fixture", xyz=[0.3, 0.45, 0.05])
    t_near = dm.robot_move("pick_place", robot, None, src, near)
    t_far = dm.robot_move("pick_place", robot, None, src, far)
    t_carry = dm.robot_move("output", robot, None, src, far)
    assert 2 * dm.GRIPPER_S < t_near < t_far < t_carry
    assert dm.robot_move("pick_place", robot, None, src, far) == t_far  # cached and deterministic


def test_plan_with_motion_estimates_schedules(motion) -> None:  # noqa: ANN001
    cell, dm = motion
    job = load_job(DEMO_JOB)
    plan = plan_job(cell, job, dm)
    assert plan.notes[0].startswith("durations: motion estimates")
    robot_ops = [op for op in plan.operations if op.resource == "panda"]
    assert all(0 < op.duration < 60 for op in robot_ops)
    assert len({op.duration for op in robot_ops}) > 3  # different moves take different times
    sched = schedule_plan(plan, cell)
    assert sched.optimal and sched.makespan >= sum(op.duration for op in robot_ops)
