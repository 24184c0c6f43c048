"""Benchmark: from an e-stop trip or a signal to the arm's controller receiving the stop trajectory.

In one process, over real rclpy pub/sub on loopback (isolated domain): an agent node with a
RosRobot and a CellService watching a std_msgs/Bool e-stop topic, a controller node that records
when each JointTrajectory arrives, and an e-stop publisher.

1. E-stop trip: ``Bool(true)`` published -> the empty (stop) trajectory received by the controller.
2. SIGTERM: ``os.kill(self, SIGTERM)`` -> the stop trajectory received (anycell's own signal
   handler runs the halt before anything shuts down).

Reference: one plain String message, publisher -> subscriber, in the same run and domain: the
floor any halt over ROS has to pay. Goal: trip/signal -> stop commanded under 50 ms (p99).

Run: .venv/bin/python bench/bench_halt.py   (about 15 s)
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from anycell.agent.supervision.nodes import FASTDDS_PROFILE, ros_environment  # noqa: E402

os.environ.update(ros_environment(dict(os.environ), domain_id=150 + os.getpid() % 50, legacy_profile_variable=True))
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = FASTDDS_PROFILE

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from anycell.agent import packml as pm  # noqa: E402
from anycell.agent.cell_service import CellService, wait_until  # noqa: E402
from anycell.agent.journal import Journal  # noqa: E402
from anycell.agent.ros import node_main  # noqa: E402
from anycell.agent.ros.estop import RosTopicEStop  # noqa: E402
from anycell.agent.ros.robot import RosRobot  # noqa: E402
from anycell.agent.safety import halt_devices  # noqa: E402
from anycell.cell import load_cell  # noqa: E402

ROUNDS = 30
NS = "/bench_halt"


def pct(values, q):  # noqa: ANN001, ANN201
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    node_main.init_rclpy([])
    agent, ctrl, button = Node("agent", namespace=NS), Node("controller", namespace=NS), Node("button", namespace=NS)
    robot = RosRobot(agent, "panda", namespace=NS)
    stops, pings = [], []
    ctrl.create_subscription(JointTrajectory, f"{NS}/panda/joint_trajectory",
                             lambda m: stops.append(time.perf_counter()) if not m.points else None, 10)
    ctrl.create_subscription(String, f"{NS}/ping", lambda m: pings.append(time.perf_counter()), 10)
    states = ctrl.create_publisher(JointState, f"{NS}/panda/joint_states", 10)
    ctrl.create_timer(0.02, lambda: states.publish(JointState(name=["j1"], position=[0.0])))
    ping_pub = button.create_publisher(String, f"{NS}/ping", 10)
    pressed = {"v": False}
    estop_pub = button.create_publisher(Bool, f"{NS}/estop", 10)
    button.create_timer(0.05, lambda: estop_pub.publish(Bool(data=pressed["v"])))
    # the controller and the button stand for other processes: each gets its own executor
    executors = [node_main.make_executor(), SingleThreadedExecutor(), SingleThreadedExecutor()]   # agent as it runs
    for ex, n in zip(executors, (agent, ctrl, button)):
        ex.add_node(n)
        threading.Thread(target=ex.spin, daemon=True).start()
    assert robot.wait_ready(20), "controller did not match"
    tmp = tempfile.mkdtemp(prefix="bench_halt-")
    svc = CellService(load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml")), Journal(f"{tmp}/j.db"))
    svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))
    src = RosTopicEStop(agent, f"{NS}/estop")
    src.watch = svc.add_estop("bench", src.read)
    svc.start()
    wait_until(lambda: not src.watch.active, 10)
    node_main.settle_heap()   # as the agent does before it spins

    ref, trip, sig = [], [], []
    for _ in range(ROUNDS):   # reference: one plain message
        n = len(pings)
        t0 = time.perf_counter()
        ping_pub.publish(String(data="x"))
        wait_until(lambda n=n: len(pings) > n, 2, interval=0.0005)
        ref.append(pings[-1] - t0)
        time.sleep(0.01)
    for _ in range(ROUNDS):   # e-stop trips
        if svc.packml.state == pm.ABORTED:
            svc.command("clear")
            svc.packml.wait_for([pm.STOPPED], 5)
        n = len(stops)
        pressed["v"] = True
        t0 = time.perf_counter()
        estop_pub.publish(Bool(data=True))
        wait_until(lambda n=n: len(stops) > n, 2, interval=0.0005)
        trip.append(stops[n] - t0)
        pressed["v"] = False
        wait_until(lambda: not src.watch.active, 2)
    node_main.on_signal(lambda reason: halt_devices({"panda": robot}, {}))
    for _ in range(ROUNDS):   # SIGTERM
        node_main._signalled.clear()
        n = len(stops)
        t0 = time.perf_counter()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        wait_until(lambda n=n: len(stops) > n, 2, interval=0.0005)
        sig.append(stops[n] - t0)
    svc.shutdown()
    src.close()
    for ex in executors:
        ex.shutdown(timeout_sec=2)
    rclpy.shutdown()
    r50 = statistics.median(ref)
    print(f"reference: one message pub->sub        p50 {r50 * 1e3:6.2f} ms  p99 {pct(ref, .99) * 1e3:6.2f} ms")
    for name, vals in (("e-stop trip -> stop at controller", trip), ("SIGTERM -> stop at controller", sig)):
        print(f"{name:38s} p50 {statistics.median(vals) * 1e3:6.2f} ms  p99 {pct(vals, .99) * 1e3:6.2f} ms  "
              f"ratio p50 {statistics.median(vals) / r50:4.1f}x the reference; goal 50 ms: "
              f"{'met' if pct(vals, .99) < 0.05 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    sys.exit(main())
