"""A small Python client for a cell's ROS 2 API, in the spirit of nav2_simple_commander.

::

    client = CellClient("demo_cell")          # rclpy.init() is done for you if needed
    client.wait_ready(timeout=10)
    client.command("reset"); client.command("start")
    job_id = client.submit_file("examples/jobs/demo_widget.yaml")["job_id"]
    while not client.is_job_done(job_id):
        print(client.progress(job_id))          # {"done": 7, "total": 18, "running": [...]}
    client.destroy()

The client waits until the agent's ``api/request`` subscription and
``api/response`` publisher both match before it sends anything (a topic
message published before the match is lost), and a request that gets no
answer is sent again with the *same* request_id, which the agent answers with
the same response, never a second job.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from anycell.errors import DriverTimeout

from anycell.agent.api import inline_program_files
from anycell.agent.ros.json_topic import JsonRequester
from anycell.agent.packml import COMMANDS

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATE_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FINAL_JOB = ("complete", "failed", "aborted", "cancelled")


def init_client_rclpy() -> None:
    """rclpy.init for a client process, keeping Ctrl-C and SIGTERM as a KeyboardInterrupt in the main thread.

    rclpy's own handlers would shut the context down under a waiting client (its spin thread
    ends and the main thread waits forever). Without them, SIGINT raises KeyboardInterrupt as
    usual, and SIGTERM does the same when nothing else handles it, so every CLI command ends
    within a moment of either signal and tears its node down on the way out.
    """
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:   # pragma: no cover - before Humble
        rclpy.init()
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.default_int_handler)


class CellClient:
    """Talks to ``/<cell_id>/...``. Spins its own node on a background thread."""

    def __init__(self, cell_id: str, node_name: Optional[str] = None) -> None:
        self._own_context = False
        if not rclpy.ok():
            init_client_rclpy()
            self._own_context = True
        self.cell_id = cell_id
        ns = "/" + cell_id
        self.node = Node(node_name or f"cell_client_{uuid.uuid4().hex[:8]}")
        self._lock = threading.Condition()
        self._responses: Dict[str, Dict[str, Any]] = {}
        self._state: Optional[str] = None
        self._jobs: Optional[Dict[str, Any]] = None
        self._jobs_seq = 0
        self._api = JsonRequester(self.node, ns + "/api/request", ns + "/api/response")
        self._api.ready_also = lambda: self._state is not None
        self.node.create_subscription(String, ns + "/state", self._on_state, STATE_QOS)
        self.node.create_subscription(String, ns + "/jobs", self._on_jobs, LATCHED)
        self._triggers = {name: self.node.create_client(Trigger, f"{ns}/{name}") for name in COMMANDS}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, name="cell-client", daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and rclpy.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception:  # shutdown races
                if not self._running:
                    return
                raise

    # ---- callbacks
    def _on_state(self, msg: String) -> None:
        with self._lock:
            self._state = msg.data
            self._lock.notify_all()

    def _on_jobs(self, msg: String) -> None:
        with self._lock:
            self._jobs = json.loads(msg.data)
            self._jobs_seq += 1
            self._lock.notify_all()

    # ---- connection
    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until the agent's API topics match ours and its state arrived (False on timeout)."""
        return self._api.wait_ready(timeout)

    # ---- the JSON API
    def request(self, op: str, timeout: float = 30.0, request_id: Optional[str] = None, resend_after: float = 5.0,
                **fields: Any) -> Dict[str, Any]:
        """Send one request and wait for its response (resent with the same id if none comes)."""
        if not self.wait_ready(timeout):
            raise DriverTimeout(f"cell '{self.cell_id}' API did not appear within {timeout:.0f} s",
                                hint="is the cell up? (anycell up CELL.yaml, or ros2 launch anycell cell.launch.py)")
        rid = request_id or f"{self.node.get_name()}-{uuid.uuid4().hex}"
        return self._api.call(dict(fields, op=op), timeout=timeout, resend_after=resend_after, request_id=rid,
                              what=f"'{op}'")

    def submit(self, job: Dict[str, Any], job_id: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
        fields: Dict[str, Any] = {"job": job}
        if job_id:
            fields["job_id"] = job_id
        return self.request("submit", **fields, **kw)

    def submit_file(self, path: str, job_id: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
        """Submit a job file (YAML or JSON); its program files travel inline."""
        from anycell.documents import load_file

        doc = load_file(path)
        data = inline_program_files(doc.data, os.path.dirname(os.path.abspath(path)))
        return self.submit(data, job_id=job_id, **kw)

    def quote(self, job: Dict[str, Any], **kw: Any) -> Dict[str, Any]:
        return self.request("quote", job=job, **kw)

    def cancel(self, job_id: str, **kw: Any) -> Dict[str, Any]:
        return self.request("cancel", job_id=job_id, **kw)

    def resume(self, job_id: str, retry: bool = False, decisions: Optional[Dict[str, Dict[str, str]]] = None,
               **kw: Any) -> Dict[str, Any]:
        """Resume an interrupted or failed job; ``decisions``: ``{op: {"action": done|retry|skip, "reason": ...}}``."""
        if decisions:
            kw["decisions"] = decisions
        return self.request("resume", job_id=job_id, retry=retry, **kw)

    def get(self, job_id: str, **kw: Any) -> Dict[str, Any]:
        return self.request("get", job_id=job_id, **kw)

    def list_jobs(self, all: bool = False, **kw: Any) -> Dict[str, Any]:  # noqa: A002 - the API's word
        return self.request("list", all=all, **kw) if all else self.request("list", **kw)

    def status(self, **kw: Any) -> Dict[str, Any]:
        return self.request("status", **kw)

    # ---- PackML
    def command(self, name: str, timeout: float = 10.0) -> Tuple[bool, str]:
        """A PackML command over its Trigger service: (success, new state or the refusal's reason)."""
        if name not in self._triggers:
            raise ValueError(f"unknown command '{name}'")
        cli = self._triggers[name]
        if not cli.wait_for_service(timeout_sec=timeout):
            raise DriverTimeout(f"service /{self.cell_id}/{name} did not appear within {timeout:.0f} s",
                                hint="is the cell up?")
        future = cli.call_async(Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise DriverTimeout(f"no answer from /{self.cell_id}/{name} within {timeout:.0f} s")
        result = future.result()
        return bool(result.success), str(result.message)

    def state(self, timeout: float = 5.0) -> Optional[str]:
        """The latest PackML state (latched topic), waiting up to ``timeout`` for the first one."""
        with self._lock:
            self._lock.wait_for(lambda: self._state is not None, timeout)
            return self._state

    def wait_state(self, states: List[str], timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._state in states, timeout)

    # ---- progress
    def jobs(self) -> Optional[Dict[str, Any]]:
        """The latest ``jobs`` snapshot (queue, progress, recent final jobs)."""
        with self._lock:
            return self._jobs

    def progress(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The job's latest summary from the ``jobs`` topic (done, total, running, status), if listed."""
        snap = self.jobs() or {}
        for entry in list(snap.get("jobs", [])) + list(snap.get("recent", [])):
            if entry.get("job_id") == job_id:
                return entry
        return None

    def is_job_done(self, job_id: str) -> bool:
        p = self.progress(job_id)
        return p is not None and p.get("status") in FINAL_JOB

    def wait_job(self, job_id: str, timeout: float, on_update: Optional[Callable[[Dict[str, Any]], None]] = None,
                 stop_on_interrupt: bool = True) -> Dict[str, Any]:
        """Wait until the job ends (or is interrupted); calls ``on_update`` with each new summary."""
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            with self._lock:
                self._lock.wait_for(lambda s=seen: self._jobs_seq != s, max(0.0, min(1.0, deadline - time.monotonic())))
                seen = self._jobs_seq
            p = self.progress(job_id)
            if p is not None:
                if on_update is not None:
                    on_update(p)
                if p["status"] in FINAL_JOB or (stop_on_interrupt and p["status"] == "interrupted"):
                    return p
            if time.monotonic() >= deadline:
                raise DriverTimeout(f"job '{job_id}' did not finish within {timeout:.0f} s")

    def destroy(self) -> None:
        self._api.close()
        self._running = False
        self._spin.join(timeout=2.0)
        self._executor.shutdown()
        self.node.destroy_node()
        if self._own_context and rclpy.ok():
            rclpy.shutdown()


def find_cells(timeout: float = 3.0) -> List[str]:
    """Cell ids visible in this ROS domain: namespaces that have an ``api/request`` topic."""
    own = not rclpy.ok()
    if own:
        init_client_rclpy()
    node = Node(f"anycell_probe_{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + timeout
        found: List[str] = []
        while True:
            found = sorted({name.split("/")[1] for name, _types in node.get_topic_names_and_types()
                            if name.endswith("/api/request") and name.count("/") == 3})
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)
    finally:
        node.destroy_node()
        if own and rclpy.ok():
            rclpy.shutdown()
