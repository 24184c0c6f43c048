"""Benchmark: the cell agent's start-up and API latency on loopback, against bare rclpy in the same run.

1. ``anycell up`` to Idle: wall time from starting ``anycell up demo_cell --sim --startup idle`` (the
   whole simulated cell: the agent, the PyBullet sim node and each simulated machine on its real
   transport) until a client sees the latched ``state`` say Idle. Reference: a bare rclpy process (init, one node, one
   latched String publisher) from start until the same kind of client receives its message.
   Goal: < 3 s.
2. API latency: request-to-response time of ``status`` requests (JSON over api/request ->
   api/response), p50 and p99. Reference: a bare rclpy String echo node, round trip measured the
   same way by the same client. Goal: p99 < 50 ms.
3. Idle CPU: the share of one core the whole idle cell (``anycell up`` and every child: agent,
   sim node, simulated machines) uses over ``IDLE_WINDOW`` seconds once it has been Idle for a few
   seconds. Reference: a bare rclpy node spinning over the same window. Goal: <= 3 % of a core.

Run: .venv/bin/python bench/bench_api.py   (about a minute; isolated ROS domain, loopback only)
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from anycell.agent.supervision.nodes import ros_environment  # noqa: E402
from bench.proc_cpu import idle_cpu_share  # noqa: E402

DOMAIN = 150 + os.getpid() % 50
ENV = ros_environment(domain_id=DOMAIN)
os.environ.update({k: v for k, v in ENV.items() if k.startswith(("ROS_", "FAST"))})

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
N_REQUESTS = 300
N_STARTS = 3
IDLE_WINDOW = 10.0

BARE_LATCHED = r"""
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
rclpy.init()
node = Node("bare")
pub = node.create_publisher(String, "/bare/state", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
pub.publish(String(data="Idle"))
try:
    rclpy.spin(node)
except Exception:
    pass
"""

ECHO = r"""
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from std_msgs.msg import String
rclpy.init()
node = Node("echo")
q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
pub = node.create_publisher(String, "/echo/out", q)
node.create_subscription(String, "/echo/in", lambda m: pub.publish(m), q)
try:
    rclpy.spin(node)
except Exception:
    pass
"""


class Probe:
    """One client node, spun on a thread: latched-state waits and request/response round trips."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = Node("bench_probe")
        self.cond = threading.Condition()
        self.latest = {}
        self.replies = {}
        self.exec = SingleThreadedExecutor()
        self.exec.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.exec.spin_once(timeout_sec=0.05)

    def watch(self, topic: str) -> None:
        def cb(msg: String, topic=topic) -> None:
            with self.cond:
                self.latest[topic] = msg.data
                self.cond.notify_all()
        self.node.create_subscription(String, topic, cb, LATCHED)

    def wait_value(self, topic: str, value: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.latest.get(topic) == value, timeout)

    def channel(self, out_topic: str, in_topic: str, key):
        pub = self.node.create_publisher(String, out_topic, RELIABLE)

        def cb(msg: String) -> None:
            k = key(msg.data)
            with self.cond:
                self.replies[k] = time.perf_counter()
                self.cond.notify_all()
        sub = self.node.create_subscription(String, in_topic, cb, RELIABLE)
        deadline = time.monotonic() + 20
        while (pub.get_subscription_count() == 0 or sub.get_publisher_count() == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        return pub

    def round_trips(self, pub, make, n: int):
        times = []
        for i in range(n):
            k, text = make(i)
            t0 = time.perf_counter()
            pub.publish(String(data=text))
            with self.cond:
                if not self.cond.wait_for(lambda: k in self.replies, 5.0):  # noqa: B023 (waited on here)
                    raise RuntimeError(f"no reply to {k}")
                times.append(self.replies.pop(k) - t0)
        return times

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.exec.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()


def start(argv, **kw) -> subprocess.Popen:
    return subprocess.Popen(argv, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kw)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    probe = Probe()
    probe.watch("/demo_cell/state")
    probe.watch("/bare/state")
    tmp = tempfile.mkdtemp(prefix="bench_api_")
    anycell = [sys.executable, "-c", "import sys; from anycell.cli.main import main; sys.exit(main())"]
    up_times, bare_times = [], []
    procs = []
    try:
        for i in range(N_STARTS):
            t0 = time.perf_counter()
            bare = start([sys.executable, "-c", BARE_LATCHED])
            assert probe.wait_value("/bare/state", "Idle", 30), "bare node never seen"
            bare_times.append(time.perf_counter() - t0)
            stop(bare)
            with probe.cond:
                probe.latest.pop("/bare/state", None)
                probe.latest.pop("/demo_cell/state", None)
            t0 = time.perf_counter()
            up = start(anycell + ["up", "demo_cell", "--sim", "--startup", "idle",
                                  "--journal", os.path.join(tmp, f"j{i}.db"), "--no-color"])
            assert probe.wait_value("/demo_cell/state", "Idle", 60), "cell never reached Idle"
            up_times.append(time.perf_counter() - t0)
            if i < N_STARTS - 1:
                stop(up)
            else:
                procs.append(up)
        # idle CPU of the whole cell, against a bare spinning rclpy node over the same window
        bare = start([sys.executable, "-c", BARE_LATCHED])
        procs.append(bare)
        assert probe.wait_value("/bare/state", "Idle", 30), "bare node never seen"
        time.sleep(3.0)   # let the cell settle (the sim node rests once nothing moves)
        idle_cell, idle_bare = idle_cpu_share([procs[0], bare], IDLE_WINDOW)
        # API latency on the last cell; the echo reference in the same run
        api = probe.channel("/demo_cell/api/request", "/demo_cell/api/response",
                            lambda data: json.loads(data)["request_id"])
        api_make = lambda i: (f"b{i}", json.dumps({"request_id": f"b{i}", "op": "status"}))  # noqa: E731
        probe.round_trips(api, api_make, 20)                     # warm-up
        api_times = probe.round_trips(api, lambda i: api_make(i + 1000), N_REQUESTS)
        echo_proc = start([sys.executable, "-c", ECHO])
        procs.append(echo_proc)
        echo = probe.channel("/echo/in", "/echo/out", lambda data: data)
        probe.round_trips(echo, lambda i: (f"w{i}", f"w{i}"), 20)
        echo_times = probe.round_trips(echo, lambda i: (f"e{i}", f"e{i}"), N_REQUESTS)
    finally:
        for p in procs:
            stop(p)
        probe.close()

    up_med, bare_med = statistics.median(up_times), statistics.median(bare_times)
    a50, a99 = pct(api_times, 0.5) * 1e3, pct(api_times, 0.99) * 1e3
    e50, e99 = pct(echo_times, 0.5) * 1e3, pct(echo_times, 0.99) * 1e3
    print(f"anycell up --sim -> Idle (median of {N_STARTS}): {up_med:.2f} s   "
          f"[bare rclpy node start -> seen: {bare_med:.2f} s]   ratio {up_med / bare_med:.1f}x   goal < 3 s: "
          f"{'met' if up_med < 3 else 'NOT met'}")
    print(f"API status request->response ({N_REQUESTS}): p50 {a50:.2f} ms, p99 {a99:.2f} ms   "
          f"[bare String echo: p50 {e50:.2f} ms, p99 {e99:.2f} ms]   ratio p99 {a99 / e99:.1f}x   goal p99 < 50 ms: "
          f"{'met' if a99 < 50 else 'NOT met'}")
    print(f"idle cell CPU over {IDLE_WINDOW:.0f} s (agent + sim node + machines): {idle_cell * 100:.1f} % of a core   "
          f"[bare rclpy node: {idle_bare * 100:.1f} %]   goal <= 3 %: {'met' if idle_cell <= 0.03 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    sys.exit(main())
