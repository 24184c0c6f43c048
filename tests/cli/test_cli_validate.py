"""The CLI: validate, schema, --help everywhere, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anycell.cli.main import build_parser
from tests.paths import DEMO_CELL, DEMO_JOB, KUKA_CELL, ROOT, STACK_JOB


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycell", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_validate_summarises_cell_and_job() -> None:
    res = run("validate", DEMO_CELL, DEMO_JOB)
    assert res.returncode == 0, res.stderr
    assert "robot    panda: franka_panda with parallel_gripper" in res.stdout
    assert "machine  printer: 3d_printer [print] via serial marlin" in res.stdout
    assert "machine  mill: cnc_mill [mill] via opcua" in res.stdout
    assert "job demo_widget: 2 x widget" in res.stdout
    assert "OK: job 'demo_widget' fits cell 'demo_cell'" in res.stdout


def test_validate_json_summary() -> None:
    res = run("validate", KUKA_CELL, STACK_JOB, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["cell"]["robots"][0]["model"] == "kuka_iiwa"
    assert data["job"]["quantity"] == 1 and data["cell"]["capabilities"] == ["engrave"]


def test_broken_file_gives_position_and_no_traceback(tmp_path) -> None:
    text = open(DEMO_CELL).read().replace("    tool:\n", "    tol:\n", 1)
    bad = tmp_path / "broken_cell.yaml"
    bad.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l == "    tol:")
    res = run("validate", str(bad))
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {bad}:{line}:5: robots[0].tol: unknown field 'tol'")
    assert "did you mean 'tool'?" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_debug_shows_the_traceback(tmp_path) -> None:
    res = run("--debug", "validate", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "Traceback" in res.stderr and "file not found" in res.stderr


def test_job_that_does_not_fit_the_cell() -> None:
    res = run("validate", KUKA_CELL, DEMO_JOB)
    assert res.returncode == 2
    assert f"{DEMO_JOB}:" in res.stderr   # the job file's position
    assert "parts[1].source.process: operation 'u1.run.block' (part 'block') needs process 'mill'" in res.stderr


def test_schema_command_writes_valid_json(tmp_path) -> None:
    out = tmp_path / "cell.schema.json"
    res = run("schema", "cell", "-o", str(out))
    assert res.returncode == 0, res.stderr
    schema = json.loads(out.read_text())
    assert schema["$defs"]["RobotConfig"]["properties"]["model"]["description"].startswith("built-in model")
    res = run("schema", "job")
    assert json.loads(res.stdout)["title"] == "anycell job spec"


def test_every_command_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public API
    assert {"validate", "schema"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert f"anycell {name}" in text and sub.description, name


@pytest.mark.parametrize("cmd", [["--help"], ["validate", "--help"], ["schema", "--help"]])
def test_help_exits_zero(cmd: list) -> None:
    res = run(*cmd)
    assert res.returncode == 0 and "usage: anycell" in res.stdout


def test_no_command_prints_help_and_fails() -> None:
    res = run()
    assert res.returncode == 2 and "COMMAND" in res.stdout


@pytest.mark.parametrize("args", [["validate", "demo_cell"], ["validate", DEMO_CELL, DEMO_JOB, "--json"],
                                  ["schema", "job"], ["--help"]], ids=["validate", "validate-json", "schema", "help"])
def test_a_closed_pipe_ends_the_command_quietly(args) -> None:
    """`anycell validate ... | head`: the reader goes away; no BrokenPipeError traceback, the pipe's exit code."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)   # the reader is gone before anything is written: every write fails
    try:
        res = subprocess.run([sys.executable, "-m", "anycell", *args], stdout=write_end, stderr=subprocess.PIPE,
                             text=True, timeout=120, cwd=ROOT)
    finally:
        os.close(write_end)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.returncode in (0, 141), res.stderr


def test_validate_shows_a_tool_urdf_and_locates_its_errors(tmp_path) -> None:
    import os
    import shutil

    gripper_cell = os.path.join(ROOT, "cell_configs", "ur_gripper_cell.yaml")
    res = run("validate", gripper_cell)
    assert res.returncode == 0, res.stderr
    assert "tool: parallel_gripper (joints: left_finger_joint; mimic: left_pad_joint, right_finger_joint, " \
           "right_pad_joint)" in res.stdout
    assert "hinge_gripper.urdf.xacro (root link gripper_base fixed to tool0)" in res.stdout
    # a finger joint the tool URDF lacks: file, line, field and the joints it has, before anything moves
    shutil.copytree(os.path.join(ROOT, "cell_configs", "robots"), tmp_path / "robots")
    text = open(gripper_cell).read()
    bad = tmp_path / "cell.yaml"
    bad.write_text(text.replace("joints: [left_finger_joint]", "joints: [finger_joint]"))
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "joints: [left_finger_joint]" in l)
    res = run("validate", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: {bad}:{line}:" in res.stderr, res.stderr   # (after PyBullet's banner)
    assert "robots[0].tool.joints: robot 'ur': tool joint 'finger_joint' is not in the tool URDF" in res.stderr
    assert "hint: the tool's movable joints: left_finger_joint, left_pad_joint" in res.stderr
