"""sim_cell (the PyBullet cell as a real process) driven through RosRobot: JointTrajectory in,
JointState out, confirmation within tolerance, stop mid-motion, and the gripper service."""

from __future__ import annotations

import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from anycell.agent.ros.robot import RosRobot  # noqa: E402
from anycell.errors import ExecutionError  # noqa: E402
from anycell.planners.trajectory import Trajectory  # noqa: E402
from tests.paths import DEMO_CELL  # noqa: E402


@pytest.fixture
def robot(processes, rclpy_context):
    processes.start([sys.executable, "-m", "anycell.agent.ros.sim_node", "--ros-args", "-r", "__ns:=/demo_cell",
                     "-p", f"cell:={DEMO_CELL}"], "sim_cell")
    node = Node("test_ros_robot", namespace="/demo_cell")   # relative names resolve in the cell
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    arm = RosRobot(node, "panda", namespace="/demo_cell", tolerance=0.01, ready_timeout=60.0)
    assert arm.wait_ready(), "sim_cell did not come up:\n" + "\n".join(processes.log(p) for p in processes.procs)
    yield arm
    spinning.clear()
    thread.join(timeout=5)
    executor.shutdown()
    node.destroy_node()


def _move(q0, joint: int, delta: float, duration: float) -> Trajectory:
    n = 20
    times = [duration * i / n for i in range(n + 1)]
    positions = []
    for i in range(n + 1):
        s = i / n
        s = 3 * s * s - 2 * s * s * s            # smooth start and stop
        q = list(q0)
        q[joint] += delta * s
        positions.append(q)
    return Trajectory(joint_names=[f"panda_joint{i}" for i in range(1, 8)], times=times, positions=positions)


def test_trajectory_confirmed_from_joint_states_and_stop_mid_motion(robot) -> None:
    assert robot.joint_names == [f"panda_joint{i}" for i in range(1, 8)]
    q0 = robot.joint_positions()
    robot.execute(_move(q0, 0, 0.3, 1.0))
    q1 = robot.joint_positions()
    assert abs(q1[0] - (q0[0] + 0.3)) <= 0.01
    assert max(abs(a - b) for a, b in zip(q1[1:], q0[1:])) <= 0.01

    # a long move, stopped after a short while: execute raises and the arm stays short of the goal
    long_move = _move(q1, 0, -1.0, 4.0)
    threading.Timer(0.8, robot.stop).start()
    t0 = time.monotonic()
    with pytest.raises(ExecutionError, match="motion stopped"):
        robot.execute(long_move)
    assert time.monotonic() - t0 < 3.0
    q_stop = robot.joint_positions()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:          # a short while later it has not moved on
        time.sleep(0.05)
    q_later = robot.joint_positions()
    assert q1[0] - 0.95 < q_stop[0] < q1[0] - 0.02        # moved some, stopped well short of the goal
    assert abs(q_later[0] - q_stop[0]) < 0.02


def test_start_mismatch_refused_and_gripper_closes_on_nothing(robot) -> None:
    q0 = robot.joint_positions()
    wrong = _move([x + 0.5 for x in q0], 0, 0.1, 0.5)
    with pytest.raises(ExecutionError, match="not at the trajectory's start"):
        robot.execute(wrong)
    assert robot.grasp() is False          # nothing between the fingers: the service says so
    robot.release()
    assert robot.holding() is None


def test_sim_hooks_over_ros_present_and_measure_a_part(robot) -> None:
    """The runner's sim hooks (anycell.agent.ros.sim_bridge.RosSimHooks) served by sim_cell: a part appears and is measured."""
    from anycell.agent.ros.sim_bridge import RosSimHooks
    from anycell.geometry import Pose

    hooks = RosSimHooks(robot.node, timeout=20.0)
    assert hooks.wait_ready(20.0)
    pose = Pose(xyz=[0.45, -0.25, 0.03])
    hooks.present("probe.block", [0.03, 0.03, 0.02], 0.02, None, pose)
    measured = hooks.measure(["probe.block", "ghost"])
    assert measured["ghost"] is None
    got = measured["probe.block"]
    assert got is not None
    assert abs(got.xyz[0] - 0.45) < 0.01 and abs(got.xyz[1] + 0.25) < 0.01


def test_an_idle_sim_cell_exits_at_once_on_sigterm(robot, processes) -> None:
    """Nothing wakes an idle node's executor: the signal itself must (it used to be ignored until then)."""
    import signal

    proc = next(p for p in processes.procs if p.poll() is None)
    time.sleep(0.5)                  # idle: no trajectory, no service call
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5.0
    assert proc.returncode == 0, processes.log(proc)


def _state_rate(robot, seconds: float) -> float:
    """Joint-state messages per second the robot's driver receives over ``seconds``."""
    got = []
    sub = robot.node.create_subscription(JointState, robot.joint_states_topic, lambda m: got.append(1), 50)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(0.05)
        return len(got) / (time.monotonic() - t0)
    finally:
        robot.node.destroy_subscription(sub)


def test_a_resting_world_is_not_stepped_and_wakes_on_the_next_command(robot) -> None:
    """Idle, the sim node stops stepping and sends joint states at its idle rate; a command moves it at once."""
    from anycell.agent.ros.sim_node import IDLE_RATE

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _state_rate(robot, 1.0) > 2 * IDLE_RATE:
        pass                                   # settling after start-up: the full rate
    idle = _state_rate(robot, 2.0)
    assert 0.5 * IDLE_RATE <= idle <= 2 * IDLE_RATE, idle
    q0 = robot.joint_positions()
    robot.execute(_move(q0, 0, 0.2, 1.0))    # confirmed within tolerance: the world stepped again
    assert abs(robot.joint_positions()[0] - (q0[0] + 0.2)) <= 0.01
    assert _state_rate(robot, 0.3) > 2 * IDLE_RATE   # still settling after the motion: the full rate


def test_pictures_asked_for_mid_motion_are_written_apart_from_the_physics(robot, tmp_path) -> None:
    """The sim node captures a picture at once and renders it in its picture process: the motion
    it was asked during is confirmed as usual, the PNGs are written, an unknown camera is refused."""
    from anycell.agent.ros.sim_bridge import RosSimHooks

    hooks = RosSimHooks(robot.node, timeout=60.0)
    assert hooks.wait_ready(20.0)
    asked = {}

    def ask() -> None:
        asked["waits"] = [hooks.snapshot_later(str(tmp_path / f"{i}.png")) for i in range(3)]

    q0 = robot.joint_positions()
    timer = threading.Timer(0.3, ask)
    timer.start()
    robot.execute(_move(q0, 0, 0.3, 1.5))
    timer.join()
    for wait in asked["waits"]:
        with open(wait(), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ExecutionError, match="overview"):
        hooks.snapshot(str(tmp_path / "x.png"), "ceiling")
