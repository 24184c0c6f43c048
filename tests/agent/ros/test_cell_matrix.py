"""Every shipped cell with every shipped job it can make, in both paths: whatever `anycell sim`
completes, `anycell up --sim` + submit completes too, with the same parts placed within tolerance.

A combination the planner refuses (a job that needs a machine the cell lacks) is skipped, with
the planner's reason; anything it accepts must complete in both paths.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.agent.ros.client import CellClient  # noqa: E402
from anycell.cell import load_cell  # noqa: E402
from anycell.errors import ConfigError, InfeasibleError  # noqa: E402
from anycell.job import load_job  # noqa: E402
from tests.paths import ROOT  # noqa: E402

CELLS = sorted(glob.glob(os.path.join(ROOT, "cell_configs", "*.yaml")))
JOBS = sorted(glob.glob(os.path.join(ROOT, "examples", "jobs", "*.yaml")))
#: Each combination runs the robots in real time over ROS (a minute or two each): `make test` runs
#: one job per cell and one per kind of part shape; ANYCELL_FULL_MATRIX=1 runs every combination.
#: (demo_cell with peg_in_hole and bracket_clip over ROS: tests/agent/ros/test_sim_cell.py, in more detail.)
DEFAULT = {("demo_cell", "stack_assembly"), ("kuka_cell", "stack_assembly"), ("ur_cell", "stack_assembly"),
           ("two_robot_cell", "stack_assembly"), ("kuka_cell", "bracket_clip"), ("ur_gripper_cell", "stack_assembly")}
#: Combinations the planner accepts that do not complete yet; named in the README as unfinished.
#: (ur_cell cannot make peg_in_hole: its 20 mm cup finds no face that wide on the 16 mm pin, and the plan says
#: so, so it is skipped as not makeable below.)
KNOWN_FAILING: set = set()   # none: two_robot_cell + stack_assembly passes since pictures render apart (sim.pictures)


def _name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _combos() -> list:
    full = os.environ.get("ANYCELL_FULL_MATRIX") == "1"
    out = []
    for c in CELLS:
        for j in JOBS:
            key = (_name(c), _name(j))
            if not full and key not in DEFAULT:
                continue
            marks = [pytest.mark.xfail(reason="known unfinished: this shaped part on this cell", strict=False)] \
                if key in KNOWN_FAILING else []
            out.append(pytest.param(c, j, id=f"{key[0]}-{key[1]}", marks=marks))
    return out


def _makeable(cell, job) -> None:
    from anycell.planners.feasibility import check_resources
    from anycell.planners.process import plan_job

    try:
        check_resources(cell, job)
        plan_job(cell, job)
    except (InfeasibleError, ConfigError) as exc:
        pytest.skip(f"{cell.cell.id} cannot make {job.id}: {exc}")


def _placed_ok(placements: list) -> set:
    for p in placements:
        assert p["error_m"] <= p["tolerance_m"] and p["angle_error_rad"] <= p["angle_tolerance_rad"], p
    return {(p["unit"], p["part"]) for p in placements}


@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.timeout(600)
@pytest.mark.parametrize("cell_path,job_path", _combos())
def test_shipped_cell_makes_shipped_job_in_process_and_over_ros(cell_path, job_path, processes, rclpy_context,
                                                                tmp_path) -> None:
    from anycell.agent.simulation.job import run_job_in_sim

    cell, job = load_cell(cell_path), load_job(job_path)
    _makeable(cell, job)
    local = run_job_in_sim(cell, job, str(tmp_path / "local"))
    assert local["outcome"] == "complete", local.get("error")
    in_process = _placed_ok(local["placements"])

    up = processes.start([sys.executable, "-m", "anycell", "up", cell_path, "--sim", "--startup", "execute",
                          "--journal", str(tmp_path / "journal.db"), "--no-color"], "up", timeout=400.0)
    client = CellClient(cell.cell.id)
    try:
        assert client.wait_ready(60), processes.log(up)
        assert client.wait_state(["Execute"], 60), processes.log(up)
        r = client.submit_file(job_path)
        assert r["ok"], r
        final = client.wait_job(r["job_id"], 400)
        assert final["status"] == "complete", (final, processes.log(up)[-3000:])
        report = json.loads((tmp_path / "reports" / r["job_id"] / "report.json").read_text())
        assert _placed_ok(report["placements"]) == in_process
    finally:
        client.destroy()
