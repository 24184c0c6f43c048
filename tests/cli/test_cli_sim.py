"""``anycell sim`` makes a job on the simulated cell through the executor and writes the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import DEMO_CELL, DEMO_JOB, KUKA_CELL, ROOT, STACK_JOB


def _run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "anycell", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("cell", [DEMO_CELL, KUKA_CELL], ids=["panda_gripper", "iiwa_suction"])
@pytest.mark.slow
def test_assembly_job_within_tolerance_with_pictures(tmp_path, cell) -> None:
    out = tmp_path / "report"
    proc = _run(["sim", cell, STACK_JOB, "--report", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[####" in proc.stderr and "1/1 unit(s) passed inspection" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["outcome"] == "complete" and report["all_units_passed"]
    assert {p["part"] for p in report["placements"]} == {"base", "block", "peg"}
    for p in report["placements"]:
        assert p["error_m"] <= p["tolerance_m"] and p["angle_error_rad"] <= p["angle_tolerance_rad"], p
    assert report["snapshots"][0].endswith("_start.png") and report["snapshots"][-1].endswith("_end.png")
    for name in report["snapshots"] + ["timeline.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    md = (out / "report.md").read_text()
    assert "| 1 | peg |" in md and "every unit passed inspection: **yes**" in md


@pytest.mark.slow
def test_demo_job_runs_machines_over_their_protocols(tmp_path) -> None:
    """Printed cap over Marlin serial, milled block over OPC UA, feeder parts, inspection, output tray."""
    from anycell.cell import load_cell
    from anycell.job import load_job
    from anycell.agent.simulation.job import run_job_in_sim
    from anycell.drivers.gcode import prepare_program

    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    r = run_job_in_sim(cell, job, str(tmp_path))
    assert r["outcome"] == "complete", r["error"]
    assert r["all_units_passed"] and [u["unit"] for u in r["units"]] == [1, 2]
    cap = job.part("cap").source
    lines = prepare_program(cap.program.text(), cap.parameters)
    assert r["gcode_lines_acknowledged"] == 2 * len(lines)
    assert r["opcua_calls"] > 0
    outputs = [s for s in r["steps"] if s["kind"] == "output"]
    assert [s["detail"]["to"] for s in outputs] == ["output_tray:out_tray"] * 2
    log = os.path.join(str(tmp_path), "work", "machines", "printer.log")
    received = [ln[3:].rstrip() for ln in open(log) if ln.startswith("RX ")]
    assert [ln for ln in received if ln.startswith("M104 S")][:1] == ["M104 S210"]


def test_sim_refuses_bad_input(tmp_path) -> None:
    proc = _run(["sim", DEMO_CELL, os.path.join(ROOT, "nope.yaml"), "--report", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_relative_report_folder_works_from_any_working_directory(tmp_path) -> None:
    """The demo cell starts simulated machines (their work folders are under the report): no traceback."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "anycell", "sim", "demo_cell", STACK_JOB, "--report", "rel/out"],
                          cwd=str(elsewhere), capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    report = json.loads((elsewhere / "rel" / "out" / "report.json").read_text())
    assert report["outcome"] == "complete"
    assert not (tmp_path.parent / "rel").exists() and not os.path.exists(os.path.join(ROOT, "rel"))
