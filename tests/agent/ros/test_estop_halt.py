"""E-stop over a ROS topic and the signal halt, with real rclpy pub/sub: the arm's controller receives the
stop trajectory within the goal (50 ms), the cell goes to Aborted, the trip is journaled, a lost source
trips too, and SIGTERM sends the stop while the ROS context still works.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import List, Tuple

import pytest

from anycell.agent import packml as pm
from anycell.agent.cell_service import CellService, wait_until
from anycell.agent.journal import Journal
from anycell.agent.safety import halt_devices
from anycell.cell import load_cell
from tests.paths import DEMO_CELL

pytestmark = pytest.mark.ros

NS = "/estop_cell"


class Rig:
    """An agent node with a RosRobot, a controller node recording trajectories, an e-stop publisher.

    The controller and the button each get an executor and thread of their own, as the separate
    processes they stand for would have: the latency measured is the agent's, not a shared queue's.
    """

    def __init__(self) -> None:
        from rclpy.executors import SingleThreadedExecutor

        from anycell.agent.ros.node_main import make_executor
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool
        from trajectory_msgs.msg import JointTrajectory

        from anycell.agent.ros.robot import RosRobot

        self.agent = Node("agent", namespace=NS)
        self.robot = RosRobot(self.agent, "panda", namespace=NS)
        self.ctrl = Node("controller", namespace=NS)
        self.received: List[Tuple[float, int]] = []
        self.ctrl.create_subscription(JointTrajectory, f"{NS}/panda/joint_trajectory",
                                      lambda m: self.received.append((time.monotonic(), len(m.points))), 10)
        self.state_pub = self.ctrl.create_publisher(JointState, f"{NS}/panda/joint_states", 10)

        self.frozen = False
        self.q = [0.0, 0.0]

        def tick() -> None:
            if not self.frozen:
                self.state_pub.publish(JointState(name=["j1", "j2"], position=list(self.q)))

        self.ctrl.create_timer(0.02, tick)
        self.button = Node("button", namespace=NS)
        self.pressed = False
        self.estop_pub = self.button.create_publisher(Bool, f"{NS}/estop", 10)
        self.button_timer = self.button.create_timer(0.05, lambda: self.estop_pub.publish(Bool(data=self.pressed)))
        self.executors = [make_executor(), SingleThreadedExecutor(), SingleThreadedExecutor()]   # agent as it runs
        for ex, n in zip(self.executors, (self.agent, self.ctrl, self.button)):
            ex.add_node(n)
            threading.Thread(target=ex.spin, daemon=True).start()
        assert self.robot.wait_ready(15), "controller never matched"

    def press(self) -> float:
        from std_msgs.msg import Bool

        self.pressed = True
        t0 = time.monotonic()
        self.estop_pub.publish(Bool(data=True))
        return t0

    def stops_after(self, t0: float) -> List[float]:
        return [t - t0 for t, points in self.received if points == 0 and t >= t0]

    def close(self) -> None:
        for ex in self.executors:
            ex.shutdown(timeout_sec=2)
        for n in (self.agent, self.ctrl, self.button):
            n.destroy_node()


@pytest.fixture
def rig(rclpy_context):
    import gc

    from anycell.agent.ros.node_main import settle_heap

    r = Rig()
    settle_heap()   # as a node does before it spins: the test process's heap must not pause the stop path
    yield r
    gc.unfreeze()
    r.close()


def test_estop_topic_stops_the_arm_within_the_goal_and_aborts(rig, tmp_path) -> None:
    from anycell.agent.ros.estop import RosTopicEStop

    cell = load_cell(DEMO_CELL)
    svc = CellService(cell, Journal(str(tmp_path / "j.db")))
    svc.halt_hooks.append(lambda: halt_devices({"panda": rig.robot}, {}))
    src = RosTopicEStop(rig.agent, f"{NS}/estop")
    src.watch = svc.add_estop("ros_topic", src.read)
    svc.start()
    try:
        assert wait_until(lambda: not src.watch.active, 10), src.watch.reason   # the heartbeat arrived
        # before the first heartbeat the source counted as lost: the cell aborted; clear it now
        if svc.packml.state == pm.ABORTED:
            svc.command("clear")
            assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        t0 = rig.press()
        assert wait_until(lambda: rig.stops_after(t0), 2.0), "no stop trajectory reached the controller"
        latency = rig.stops_after(t0)[0]
        assert latency < 0.05, f"stop commanded {latency * 1000:.1f} ms after the trip"
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert svc.journal.events("estop")
        # a lost source (the e-stop publisher gone) trips as well
        rig.pressed = False
        assert wait_until(lambda: not src.watch.active, 5)
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        rig.button.destroy_timer(rig.button_timer)
        rig.button.destroy_publisher(rig.estop_pub)
        t1 = time.monotonic()
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert time.monotonic() - t1 < 2.0
        assert "lost" in src.watch.reason
    finally:
        svc.shutdown()
        src.close()


def test_sigterm_sends_the_stop_while_the_context_still_works(rig) -> None:
    import rclpy

    from anycell.agent.ros import node_main

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    node_main.install_signal_handlers()
    node_main.on_signal(lambda reason: halt_devices({"panda": rig.robot}, {}))
    try:
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)   # the handler interrupts this
        assert rclpy.ok()
        assert wait_until(lambda: rig.stops_after(t0), 2.0)
        assert rig.stops_after(t0)[0] < 0.05
        assert node_main.last_signal["signal"] == "SIGTERM"
    finally:
        node_main._halt.clear()
        node_main._signalled.clear()
        for s, h in old.items():
            signal.signal(s, h)


def test_frozen_controller_is_detected_within_a_second_and_stops_the_arm(rig) -> None:
    from types import SimpleNamespace

    from anycell.errors import ExecutionError

    assert rig.robot.health()["level"] == 0
    traj = SimpleNamespace(joint_names=["j1", "j2"], times=[0.0, 5.0], positions=[[0.0, 0.0], [0.5, 0.5]],
                           velocities=[[0.0, 0.0], [0.0, 0.0]])
    errors = []

    def run() -> None:
        try:
            rig.robot.execute(traj)
        except ExecutionError as exc:
            errors.append((time.monotonic(), str(exc)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    rig.frozen = True                       # the controller stops answering mid-motion
    t.join(5)
    assert errors, "a frozen controller was not noticed"
    assert errors[0][0] - t0 < 1.0 and "frozen" in errors[0][1]
    assert wait_until(lambda: rig.stops_after(t0), 2.0), rig.received   # and the arm was told to stop
    health = rig.robot.health()
    assert health["level"] == 2 and "frozen" in health["message"]


def test_a_stall_of_the_agent_process_is_not_read_as_a_frozen_controller(rig) -> None:
    """Another thread holds the GIL for 0.8 s (PyBullet in a planner thread does; an overloaded
    machine gives the process no CPU alike) while the controller goes on publishing: the watch
    wakes first, before the spin thread has read the states that came meanwhile, and used to
    call the controller frozen every time (a false failure of two_robot_cell over ROS)."""
    import ctypes
    from types import SimpleNamespace

    from anycell.errors import ExecutionError

    traj = SimpleNamespace(joint_names=["j1", "j2"], times=[0.0, 2.0], positions=[[0.0, 0.0], [0.0, 0.0]],
                           velocities=[[0.0, 0.0], [0.0, 0.0]])
    errors: List[str] = []

    def run() -> None:
        try:
            rig.robot.execute(traj)
        except ExecutionError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert wait_until(lambda: rig.robot.executing, 5.0)
    ctypes.PyDLL(None).usleep(800_000)      # a C call that keeps the GIL (ctypes.PyDLL does not release it)
    t.join(10)
    assert not t.is_alive() and not errors, errors


def test_state_topic_keeps_the_transitions() -> None:
    from anycell.agent.ros.cell_agent_node import API_QOS, STATE_QOS
    from anycell.agent.ros.client import STATE_QOS as CLIENT_STATE_QOS

    assert STATE_QOS.depth >= 10 and CLIENT_STATE_QOS.depth >= 10 and API_QOS.depth >= 1000
