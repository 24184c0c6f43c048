"""Program checks before anything moves: kind fits the driver, G-code passes the machine's rules.

``check_programs`` runs in the planners' pre-planning checks, so ``anycell validate``,
``anycell plan`` and a submitted job all refuse a bad program before a robot or machine moves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from anycell.cell import load_cell
from anycell.errors import InfeasibleError
from anycell.job import load_job
from anycell.planners.feasibility import check_programs
from anycell.planners.process import plan_job
from tests.paths import DEMO_CELL, DEMO_JOB, ROOT

GRBL_CELL = os.path.join(ROOT, "tests", "data", "grbl_cam_cell.yaml")
POCKET_JOB = os.path.join(ROOT, "tests", "data", "pocket_job.yaml")


def job_variant(tmp_path, base: str, part_id: str, **source) -> str:
    """A copy of the job ``base`` (with its program files) where part ``part_id``'s source is changed."""
    with open(base, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    for part in data["parts"]:
        if part["id"] == part_id:
            part["source"].update(source)
    progs = os.path.join(os.path.dirname(base), "programs")
    if not os.path.exists(tmp_path / "programs"):
        shutil.copytree(progs, tmp_path / "programs")
    out = tmp_path / "job.yaml"
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(out)


def test_shipped_jobs_pass():
    check_programs(load_cell(DEMO_CELL), load_job(DEMO_JOB))
    check_programs(load_cell(GRBL_CELL), load_job(POCKET_JOB))


def test_stored_program_name_for_a_serial_machine_is_refused(tmp_path):
    job = load_job(job_variant(tmp_path, POCKET_JOB, "tag", program={"name": "POCKET_01"}))
    with pytest.raises(InfeasibleError) as err:
        check_programs(load_cell(GRBL_CELL), job)
    e = err.value
    assert e.field == "parts[1].source.program" and "no stored program 'POCKET_01'" in e.message
    assert "G-code" in (e.hint or "")


def test_gcode_for_an_opcua_machine_that_runs_stored_programs_is_refused(tmp_path):
    job = load_job(job_variant(tmp_path, DEMO_JOB, "block", program={"inline": "G1 X1 F100"}))
    cell = load_cell(DEMO_CELL)
    with pytest.raises(InfeasibleError) as err:
        check_programs(cell, job)
    assert err.value.field == "parts[1].source.program" and "OPC UA" in err.value.message
    with pytest.raises(InfeasibleError, match="OPC UA"):
        plan_job(cell, job)  # plan (and submit, which plans) refuse it before any step


@pytest.mark.parametrize("program,parameters,needle", [
    ({"inline": "G21 G90\nM8\nG1 Z-1 F100"}, {}, "M8 is forbidden"),
    ({"inline": "G21 G90\nM8.5\nG1 Z-1 F100"}, {}, "M8.5 (read as M8) is forbidden"),
    ({"inline": "G21 G90\nM{c}\nG1 Z-1 F100"}, {"c": 8.2}, "read as M8"),
    ({"inline": "G21 G90\nG1 Z-{nope} F100"}, {}, "placeholder {nope} has no value"),
])
def test_gcode_breaking_the_machine_rules_is_refused_at_plan_time(tmp_path, program, parameters, needle):
    job = load_job(job_variant(tmp_path, POCKET_JOB, "tag", program=program, parameters=parameters))
    with pytest.raises(InfeasibleError) as err:
        check_programs(load_cell(GRBL_CELL), job)
    assert needle in err.value.message and "machine 'router'" in err.value.message
    assert err.value.field == "parts[1].source.program"


def test_a_bad_line_in_a_program_file_is_located_in_the_file(tmp_path):
    prog = tmp_path / "bad.nc"
    prog.write_text("G21 G90\nG1 X1 F100\nM8\n", encoding="utf-8")
    job = load_job(job_variant(tmp_path, POCKET_JOB, "tag", program={"file": str(prog)}))
    with pytest.raises(InfeasibleError) as err:
        check_programs(load_cell(GRBL_CELL), job)
    loc = err.value.location
    assert loc is not None and loc.file.endswith("bad.nc") and loc.line == 3


def test_validate_cli_refuses_with_field_and_hint(tmp_path):
    path = job_variant(tmp_path, POCKET_JOB, "tag", program={"name": "POCKET_01"})
    res = subprocess.run([sys.executable, "-m", "anycell", "validate", GRBL_CELL, path], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    out = res.stdout + res.stderr
    assert "parts[1].source.program" in out and "no stored program" in out and "hint" in out


def test_submit_refuses_a_forbidden_code_before_queueing(tmp_path):
    from anycell.agent.cell_service import CellService
    from anycell.agent.journal import Journal

    with open(POCKET_JOB, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    doc["parts"][1]["source"]["program"] = {"inline": "G21 G90\nG1 Z-1 F100\nM{c}\n"}
    doc["parts"][1]["source"]["parameters"] = {"c": 8.5}
    svc = CellService(load_cell(GRBL_CELL), Journal(str(tmp_path / "journal.db")))
    try:
        res = svc.handle({"request_id": "r1", "op": "submit", "job": doc})
        assert res["ok"] is False and "read as M8" in res["error"]["message"]
        assert res["error"]["field"].endswith("parts[1].source.program")
        assert svc.journal.jobs() == []
    finally:
        svc.shutdown()
