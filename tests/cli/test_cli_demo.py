"""``anycell demo`` (what ``make demo`` runs): the cell up over ROS 2, a job made, the verdict, a clean shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import ROOT, STACK_JOB

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros   # the demo brings the cell up as ROS 2 nodes


def _demo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycell", "demo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_demo_makes_the_job_and_exits_zero_when_every_unit_passed(tmp_path) -> None:
    # a world saved by an earlier demo in the same folder (its block left where this one's appears) is not restored
    stale = {"parts": {"u1.block": {"size": {"box": [0.035, 0.035, 0.02]}, "mass": 0.04, "color": None,
                                    "pose": {"xyz": [0.25, 0.21, 0.032], "rpy": [0.0, 0.0, 0.0]}}}}
    (tmp_path / "sim_world.json").write_text(json.dumps(stale))
    proc = _demo("--job", STACK_JOB, "--report", str(tmp_path))
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr + (tmp_path / "cell.log").read_text()[-3000:]
    assert "cell up and in Execute" in out and "job 'stack_assembly' complete" in out
    assert "unit 1: passed" in out and "cell shut down (exit 0)" in out
    report = json.loads((tmp_path / "reports" / "stack_assembly" / "report.json").read_text())
    assert report["outcome"] == "complete" and report["all_units_passed"]
    assert os.path.exists(tmp_path / "reports" / "stack_assembly" / "timeline.png")
    log = (tmp_path / "cell.log").read_text()
    assert "cell_agent stopped (code 0)" in log and "sim_cell stopped" in log
    assert "restored" not in log


def test_demo_refuses_bad_input_before_starting_anything(tmp_path) -> None:
    proc = _demo("--job", os.path.join(ROOT, "nope.yaml"), "--report", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cell.log").exists()
