"""sim_cell with two robots: both move at the same time, and a failed motion tells the driver why."""

from __future__ import annotations

import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from anycell.agent.ros.robot import RosRobot  # noqa: E402
from anycell.errors import ExecutionError  # noqa: E402
from anycell.planners.trajectory import Trajectory  # noqa: E402
from tests.paths import ROOT  # noqa: E402

TWO_ROBOT_CELL = f"{ROOT}/cell_configs/two_robot_cell.yaml"
NAMES = [f"lbr_iiwa_joint_{i}" for i in range(1, 8)]


@pytest.fixture
def arms(processes, rclpy_context):
    processes.start([sys.executable, "-m", "anycell.agent.ros.sim_node", "--ros-args", "-r",
                     "__ns:=/two_robot_cell", "-p", f"cell:={TWO_ROBOT_CELL}"], "sim_cell")
    node = Node("test_two_arms", namespace="/two_robot_cell")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    robots = {rid: RosRobot(node, rid, namespace="/two_robot_cell", tolerance=0.01, ready_timeout=60.0)
              for rid in ("left", "right")}
    for rid, arm in robots.items():
        assert arm.wait_ready(), f"{rid}: " + "\n".join(processes.log(p) for p in processes.procs)
    yield robots
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
        s = 3 * s * s - 2 * s * s * s
        q = list(q0)
        q[joint] += delta * s
        positions.append(q)
    return Trajectory(joint_names=NAMES, times=times, positions=positions)


@pytest.mark.ros
@pytest.mark.slow
def test_two_robots_move_at_the_same_time_and_a_crash_reaches_the_driver(arms) -> None:
    left, right = arms["left"], arms["right"]
    q_left, q_right = left.joint_positions(), right.joint_positions()
    duration = 2.0
    done: dict = {}

    def run(name: str, arm: RosRobot, traj: Trajectory) -> None:
        t0 = time.monotonic()
        arm.execute(traj)
        done[name] = (t0, time.monotonic())

    # each arm turns away from the other about its base: both trajectories take 2 s
    threads = [threading.Thread(target=run, args=("left", left, _move(q_left, 0, -0.4, duration))),
               threading.Thread(target=run, args=("right", right, _move(q_right, 0, 0.4, duration)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(done) == {"left", "right"}
    start = min(t0 for t0, _ in done.values())
    end = max(t1 for _, t1 in done.values())
    assert end - start < 1.6 * duration, f"the two 2 s motions took {end - start:.1f} s together: not at once"
    assert abs(left.joint_positions()[0] - (q_left[0] - 0.4)) <= 0.01
    assert abs(right.joint_positions()[0] - (q_right[0] + 0.4)) <= 0.01

    # drive the left arm down through the table: the driver raises with the two bodies, not a timeout
    q = left.joint_positions()
    with pytest.raises(ExecutionError, match=r"robot 'left': (unexpected contact between left/\S+ and \S+|.*tracking error)"):
        left.execute(_move(q, 1, 1.6, 2.0))


@pytest.mark.ros
@pytest.mark.slow
def test_a_part_presented_while_a_robot_moves_does_not_silence_its_joint_states(arms) -> None:
    """A feeder presenting a part settles it for 0.3 simulated seconds (real time in sim_cell).
    Meanwhile the other robot keeps moving and its joint states keep coming: the hook used to
    step the world around the node, so for the whole settle no joint state went out, no motion
    advanced and no stop was taken, and a robot moving then read as a frozen controller
    (two_robot_cell + bracket_clip over ROS, after one robot was sent home while the other's
    next step presented its part)."""
    from sensor_msgs.msg import JointState

    from anycell.agent.ros.sim_bridge import RosSimHooks
    from anycell.geometry import Pose

    right = arms["right"]
    hooks = RosSimHooks(right.node, timeout=20.0)
    assert hooks.wait_ready(30.0)
    arrivals: list = []
    right.node.create_subscription(JointState, right.joint_states_topic,
                                   lambda _m: arrivals.append(time.monotonic()), 50)
    q0 = right.joint_positions()
    errors: list = []

    def run() -> None:
        try:
            right.execute(_move(q0, 0, 0.5, 4.0))
        except ExecutionError as exc:   # a false "controller frozen" lands here
            errors.append(exc)

    mover = threading.Thread(target=run)
    mover.start()
    deadline = time.monotonic() + 10.0
    while abs(right.joint_positions()[0] - q0[0]) < 0.02 and time.monotonic() < deadline and mover.is_alive():
        time.sleep(0.01)                 # wait until the arm really moves
    t0 = time.monotonic()
    assert hooks.present("probe.block", [0.03, 0.03, 0.02], 0.02, None, Pose(xyz=[0.55, -0.30, 0.05])) is True
    t1 = time.monotonic()
    mover.join(30)
    assert not errors, errors
    during = [t for t in arrivals if t0 <= t <= t1]
    # at 50 Hz a 0.3 s settle sends ~15; without the fix none went out while it ran (only the odd
    # state published just before the hook started or just after it ended)
    assert len(during) >= 5, f"{len(during)} joint states of the moving arm while a part settled for {t1 - t0:.2f} s"
