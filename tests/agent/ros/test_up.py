"""`anycell up` as a real process: the cell comes up, answers, and Ctrl-C / a crash end it properly."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.agent.ros.client import CellClient, find_cells  # noqa: E402
from tests.paths import DEMO_JOB  # noqa: E402


def _up(processes, tmp_path, *extra):
    argv = [sys.executable, "-c", "import sys; from anycell.cli.main import main; sys.exit(main())", "up", "demo_cell", "--runner", "dry_run",
            "--dry-run-scale", "0.005", "--journal", str(tmp_path / "j.db"), "--no-color"] + list(extra)
    return processes.start(argv, "up")


def _agent_pid(up_log: str) -> int:
    for line in up_log.splitlines():
        if "started cell_agent (pid " in line:
            return int(line.split("(pid ")[1].split(")")[0])
    raise AssertionError("no cell_agent pid in:\n" + up_log)


def test_up_submit_and_ctrl_c_shuts_down_cleanly(processes, rclpy_context, tmp_path) -> None:
    up = _up(processes, tmp_path, "--startup", "execute")
    client = CellClient("demo_cell")
    try:
        assert client.wait_ready(30), processes.log(up)
        assert client.wait_state(["Execute"], 20)
        assert find_cells(5.0) == ["demo_cell"]
        job = client.submit_file(DEMO_JOB)
        assert client.wait_job(job["job_id"], 60)["status"] == "complete"
    finally:
        client.destroy()
    agent_pid = _agent_pid(processes.log(up))
    t0 = time.monotonic()
    os.killpg(up.pid, signal.SIGINT)      # what Ctrl-C in the terminal does (the timeout wrapper forwards it too)
    try:
        code = up.wait(timeout=40)
    except Exception:
        raise AssertionError(processes.log(up))
    log = processes.log(up) + f"\n(shutdown took {time.monotonic() - t0:.1f} s)"
    assert code == 0, log
    assert "Ctrl-C: shutting the cell down" in log and "cell_agent stopped (code 0)" in log
    assert "[cell_agent] " in log                                  # prefixed child output
    assert "Error adding profile" not in log                      # the discovery profile loads once, cleanly
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)


def test_up_reports_a_crashed_agent_and_exits_non_zero(processes, rclpy_context, tmp_path) -> None:
    up = _up(processes, tmp_path, "--startup", "idle")
    client = CellClient("demo_cell")
    try:
        assert client.wait_ready(30), processes.log(up)
        assert client.wait_state(["Idle"], 20)
    finally:
        client.destroy()
    os.kill(_agent_pid(processes.log(up)), signal.SIGKILL)
    assert up.wait(timeout=30) == 1
    log = processes.log(up)
    assert "cell_agent exited unexpectedly with code -9" in log
    assert "a required node is gone" in log


def _child_pid(up_log: str, name: str) -> int:
    for line in up_log.splitlines():
        if f"started {name} (pid " in line:
            return int(line.split("(pid ")[1].split(")")[0])
    raise AssertionError(f"no {name} pid in:\n" + up_log)


def test_up_sim_a_crashed_sim_node_sends_the_cell_to_aborted(processes, rclpy_context, tmp_path) -> None:
    from sensor_msgs.msg import JointState

    up = _up(processes, tmp_path, "--sim", "--startup", "execute")
    client = CellClient("demo_cell")
    states = []
    client.node.create_subscription(JointState, "/demo_cell/panda/joint_states", states.append, 10)
    try:
        assert client.wait_ready(60), processes.log(up)
        assert client.wait_state(["Execute"], 20)
        deadline = time.monotonic() + 60
        while not states and time.monotonic() < deadline:
            time.sleep(0.05)
        assert states and list(states[-1].name) == [f"panda_joint{i}" for i in range(1, 8)]
        os.kill(_child_pid(processes.log(up), "sim_cell"), signal.SIGKILL)
        assert client.wait_state(["Aborted"], 30), processes.log(up)
    finally:
        client.destroy()
    log = processes.log(up)
    assert "sim_cell exited unexpectedly with code -9" in log
    assert "cell sent to Aborted after sim_cell crashed" in log
    assert up.poll() is None                  # the agent stays up, in Aborted, for the operator
    os.killpg(up.pid, signal.SIGINT)
    assert up.wait(timeout=30) == 0


def test_up_sim_starts_the_simulated_machines_ahead_and_the_agent_takes_them_over(processes, rclpy_context,
                                                                                   tmp_path) -> None:
    """They boot while the agent imports; a lost one is reported; Ctrl-C leaves none running."""
    from anycell.childproc import running

    argv = [sys.executable, "-c", "import sys; from anycell.cli.main import main; sys.exit(main())", "up",
            "demo_cell", "--sim", "--startup", "idle", "--journal", str(tmp_path / "j.db"), "--no-color"]
    up = processes.start(argv, "up")
    client = CellClient("demo_cell")
    try:
        assert client.wait_ready(60), processes.log(up)
        assert client.wait_state(["Idle"], 60), processes.log(up)
    finally:
        client.destroy()
    log = processes.log(up)
    assert "took over the simulated machine(s) mill, printer that anycell up started" in log
    pids = {mid: int(log.split(f"simulated machine {mid} (pid ")[1].split(",")[0]) for mid in ("mill", "printer")}
    workdir = os.path.dirname(log.split("simulated machine mill (pid ")[1].split(", log ")[1].split(")")[0])
    assert os.path.isdir(workdir)
    assert all(running(pid) for pid in pids.values())
    os.kill(pids["printer"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "sim:printer exited unexpectedly" not in processes.log(up) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "sim:printer exited unexpectedly" in processes.log(up)
    assert up.poll() is None                       # not a required node: the agent reports it on /diagnostics
    os.killpg(up.pid, signal.SIGINT)
    assert up.wait(timeout=60) == 0, processes.log(up)
    assert not running(pids["mill"])
    assert not os.path.exists(workdir)             # a clean stop leaves no simulator files behind
