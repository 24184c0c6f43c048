"""A GRBL job whose CAM program cuts below the work zero, on a cell whose machine has a work offset.

GRBL's machine space is negative from the homed corner; CAM output puts the work zero on the
stock top and cuts to negative Z. The cell config's ``work_offset`` (G54) is what makes such a
program run inside the travel; without it the same program alarms on the first move.
"""

import dataclasses
import os

import pytest

from anycell.cell import load_cell
from anycell.drivers.gcode import prepare_program
from anycell.drivers.machine import open_machine
from anycell.errors import MachineFault
from anycell.job import load_job
from anycell.planners.feasibility import check_programs
from anycell.sim.machines import launch_sim_machine
from tests.paths import ROOT

CELL = os.path.join(ROOT, "tests", "data", "grbl_cam_cell.yaml")
JOB = os.path.join(ROOT, "tests", "data", "pocket_job.yaml")


def tag_part(job):
    return next(p for p in job.parts if p.id == "tag")


def test_validate_accepts_the_job_on_the_cell():
    from anycell.cli.main import main

    assert main(["validate", CELL, JOB]) == 0


def test_cam_program_below_the_work_zero_runs_with_the_work_offset(tmp_path):
    cell, job = load_cell(CELL), load_job(JOB)
    check_programs(cell, job)
    router = cell.machine("router")
    part = tag_part(job)
    sim = launch_sim_machine(router, str(tmp_path), {"time_scale": 0.001})
    m = open_machine(router, sim.address)
    try:
        m.connect()
        assert m.streaming == "send_response"  # from the cell config
        result = m.run_program(part.source.program, dict(part.source.parameters), timeout=60)
        want = [g.text for g in prepare_program(part.source.program.text(), part.source.parameters)]
        assert result.status == "complete" and result.lines_executed == len(want)
        assert "G1 Z-1.5 F200" in want
        received = sim.received_lines()
        assert received[:2] == ["G10 L2 P1 X-200 Y-150 Z-60", "G54"] and received[2:] == want
        assert not any(ln.startswith("ALARM") for ln in sim.log_lines())
        st = m.query_status()
        assert st["mpos"] == [-200.0, -150.0, -55.0]  # work X0 Y0 Z5 (the program's end)
    finally:
        m.close()
        sim.stop()


@pytest.mark.slow
def test_without_the_work_offset_the_same_program_alarms(tmp_path):
    cell, job = load_cell(CELL), load_job(JOB)
    router = cell.machine("router")
    bare = dataclasses.replace(router, driver=dataclasses.replace(router.driver, work_offset=None))
    part = tag_part(job)
    sim = launch_sim_machine(bare, str(tmp_path), {"time_scale": 0.001})
    m = open_machine(bare, sim.address)
    try:
        m.connect()
        with pytest.raises(MachineFault, match="ALARM:2.*soft limit"):
            m.run_program(part.source.program, dict(part.source.parameters), timeout=60)
    finally:
        m.close()
        sim.stop()


@pytest.mark.slow
def test_anycell_machine_runs_the_cam_program_with_a_chosen_streaming_mode():
    import json
    import subprocess
    import sys

    prog = os.path.join(ROOT, "tests", "data", "programs", "pocket.nc")
    res = subprocess.run([sys.executable, "-m", "anycell", "machine", CELL, "router", "--sim", "--run", prog,
                          "-p", "depth=1.5", "-p", "feed=600", "-p", "plunge=200", "-p", "spindle=10000",
                          "--streaming", "character_counting", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    r = out["result"]
    assert r["status"] == "complete" and r["lines_executed"] == r["lines_total"] == r["lines_acknowledged"]
    assert out["health"]["streaming"] == "character_counting"
    demo = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
    bad = subprocess.run([sys.executable, "-m", "anycell", "machine", demo, "printer", "--sim", "--streaming",
                          "send_response"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode != 0 and "--streaming is a GRBL option" in bad.stderr and "Traceback" not in bad.stderr
