"""The operator CLI against a real cell agent process: submit --wait, status, refused commands, recover."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import agent_argv

pytest.importorskip("rclpy")

from tests.paths import DEMO_CELL, DEMO_JOB  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from anycell.cli.main import main; sys.exit(main())"]


def _cli(env, *args, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def test_operator_workflow_from_the_command_line(processes, ros_env, tmp_path) -> None:
    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db"), scale=0.003), "agent")
    r = _cli(ros_env, "start", "--cell", "demo_cell", "--timeout", "30")
    assert r.returncode == 2 and "refused" in r.stderr and "start needs Idle" in r.stderr
    r = _cli(ros_env, "reset", "--cell", "demo_cell")
    assert r.returncode == 0 and "Resetting" in r.stdout
    r = _cli(ros_env, "submit", DEMO_JOB, "--cell", "demo_cell")
    assert r.returncode == 0, r.stderr
    assert "accepted job 'demo_widget'" in r.stdout and "anycell start --cell demo_cell" in r.stdout
    r = _cli(ros_env, "status", "--cell", "demo_cell", "--json")
    status = json.loads(r.stdout)
    assert status["status"]["state"] == "Idle" and status["jobs"][0]["status"] == "queued"
    r = _cli(ros_env, "start", "--cell", "demo_cell")
    assert r.returncode == 0
    r = _cli(ros_env, "submit", DEMO_JOB, "--cell", "demo_cell", "--job-id", "second", "--wait")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert lines and lines[-1].endswith("complete") and "/18" in lines[-1]
    assert "job 'second': complete" in r.stdout
    r = _cli(ros_env, "status")                          # no --cell: finds the cell in this domain
    assert r.returncode == 0 and "cell demo_cell: Execute" in r.stdout
    r = _cli(ros_env, "submit", str(tmp_path / "missing.yaml"), "--cell", "demo_cell")
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    r = _cli(ros_env, "resume", "second", "--cell", "demo_cell")
    assert r.returncode == 2 and "not interrupted" in r.stderr
    r = _cli(ros_env, "hold", "--cell", "nope", "--timeout", "2")
    assert r.returncode != 0 and "did not answer" in r.stderr
