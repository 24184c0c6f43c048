"""The ``cell_agent`` ROS 2 node: a thin wrapper over :class:`anycell.agent.cell_service.CellService`.

Under the cell's namespace ``/<cell_id>`` (DESIGN.md, "The ROS 2 interface"):

=====================  ==================================  =====================================
name                   type                                what
=====================  ==================================  =====================================
api/request            std_msgs/String (JSON)              requests in (submit, cancel, ...)
api/response           std_msgs/String (JSON)              responses out, by request_id
jobs                   std_msgs/String (JSON), latched     queue and progress
state                  std_msgs/String, latched            the PackML state
start, stop, ...       std_srvs/Trigger                    the PackML commands
/diagnostics           diagnostic_msgs/DiagnosticArray     cell, journal and driver health (1 Hz)
plan_markers           visualization_msgs/MarkerArray      the running job's plan, latched
<robot>/robot_desc...  std_msgs/String, latched            each robot's URDF (robot_state_publisher)
=====================  ==================================  =====================================

Requests are parsed in the subscription callback and answered on the API's own threads
(:mod:`anycell.agent.api_queue`), so planning never occupies the executor threads that serve
the PackML commands. The e-stop (``safety.estop``) is watched from start-up
(:mod:`anycell.agent.ros.estop`); SIGINT/SIGTERM halt the robots and machines before rclpy
shuts down (:mod:`anycell.agent.ros.node_main`).

Parameters: ``cell`` (path to the cell config, required), ``sim`` (bool),
``journal`` (path of the SQLite journal; default under ``~/.local/state/anycell``),
``runner`` (``auto``: the cell's real step runner when this install has one,
``dry_run``: rehearse jobs on the clock without moving anything, or
``module:function`` returning a runner factory), ``dry_run_scale`` (time
scale of the dry run), ``complete_when_empty`` (Execute goes on to Complete when the
queue runs dry; default false: Execute waits for more work), ``startup`` (``stopped``, the PackML power-up state; ``idle``:
reset at launch; ``execute``: reset and start), ``max_quantity`` (the most units one job may ask
for, default 100), ``program_dir`` (a folder on this machine whose programs API jobs may name with
``program: {file: NAME}``; default none: programs come inline).

A runner module named by ``runner`` provides ``make_runner_factory(node, cell, sim)``
returning ``(plan, job) -> StepRunner``; it may add health sources for
``/diagnostics`` with ``node.service.health_sources.append(fn)``.

Only Humble-compatible rclpy APIs are used (see DESIGN.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
from typing import Any, Callable, Dict, List, Optional

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger
from diagnostic_msgs.msg import DiagnosticArray
from visualization_msgs.msg import MarkerArray

from anycell.errors import AnycellError, StateError
from anycell.plan import Plan

from anycell.agent.ros import conversions as cv
from anycell.agent.cell_service import CellService, RunnerFactory, default_journal_path
from anycell.agent.executor import DryRunRunner
from anycell.agent.journal import Journal
from anycell.agent.api_queue import RequestQueue
from anycell.agent.ros.estop import attach_estop
from anycell.agent.ros.node_main import forward_logging, init_with_cell, on_signal, spin_until_shutdown
from anycell.agent.packml import COMMANDS

log = logging.getLogger(__name__)

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: the state topic keeps its last transitions, so a late or slow reader still sees brief states
STATE_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: requests and responses: deep enough for a burst of 1000 back-to-back requests
API_QOS = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def resolve_runner(spec: str, node: "CellAgentNode", sim: bool, dry_run_scale: float) -> Optional[RunnerFactory]:
    """The runner factory named by the ``runner`` parameter (see the module docstring)."""
    if spec == "dry_run":
        return lambda plan, job: DryRunRunner(dry_run_scale)
    if spec in ("", "none"):
        return None
    target = "anycell.agent.ros.runners:make_runner_factory" if spec == "auto" else spec
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if spec == "auto":
            log.warning("no step runner in this install (%s); jobs will wait. Use runner:=dry_run to rehearse.", exc)
            return None
        raise
    factory = getattr(module, func_name or "make_runner_factory")
    return factory(node=node, cell=node.service.cell, sim=sim)


class CellAgentNode(Node):
    """The cell agent. Construct after ``rclpy.init()``; no callback blocks, so one executor thread spins it."""

    def __init__(self, service: CellService, *, node_name: str = "cell_agent") -> None:
        super().__init__(node_name, namespace="/" + service.cell_id)
        self.service = service
        self._api_group = ReentrantCallbackGroup()
        self._cmd_group = MutuallyExclusiveCallbackGroup()
        self._pub_lock = threading.Lock()
        self.response_pub = self.create_publisher(String, "api/response", API_QOS)
        self.state_pub = self.create_publisher(String, "state", STATE_QOS)
        self.jobs_pub = self.create_publisher(String, "jobs", LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self.marker_pub = self.create_publisher(MarkerArray, "plan_markers", LATCHED)
        self.requests = RequestQueue(service.handle, self._send_response)
        self.create_subscription(String, "api/request", self._on_request, API_QOS,
                                 callback_group=self._api_group)
        self.description_pubs = self._publish_descriptions()
        for name in COMMANDS:
            self.create_service(Trigger, name, self._make_command(name), callback_group=self._cmd_group)
        self.create_timer(1.0, self._publish_diagnostics)
        self._marked_job: Optional[str] = None
        service.on_jobs = self._publish_jobs
        service.on_progress = self._on_progress
        service.packml.add_listener(lambda old, new, cause: self._publish_state(new))
        self._publish_state(service.packml.state)

    # ---- publishing (callbacks come from the service's worker thread too)
    def _publish(self, pub, msg) -> None:
        with self._pub_lock:
            if rclpy.ok():
                pub.publish(msg)

    def _publish_state(self, state: str) -> None:
        self._publish(self.state_pub, String(data=state))

    def _publish_jobs(self, snapshot: Dict[str, Any]) -> None:
        self._publish(self.jobs_pub, cv.json_to_msg(snapshot))

    def _on_progress(self, info: Dict[str, Any]) -> None:
        if info["event"] in ("begin", "resumed", "done", "end") or self._marked_job != info["job_id"]:
            rec = self.service.journal.job(info["job_id"])
            if rec is not None and rec.plan:
                plan = Plan.from_dict(rec.plan)
                done = self.service.journal.finished_steps(info["job_id"])
                self._publish(self.marker_pub, cv.plan_to_markers(plan, frame_id="cell", done=done))
                self._marked_job = info["job_id"]

    def _publish_diagnostics(self) -> None:
        stamp = self.get_clock().now().nanoseconds * 1e-9
        self._publish(self.diag_pub, cv.health_to_diagnostics(self.service.health(), stamp=stamp,
                                                              hardware_id=self.service.cell_id))

    def _publish_descriptions(self) -> Dict[str, Any]:
        """Each robot's URDF on ``<robot>/robot_description`` (latched), for robot_state_publisher and RViz."""
        pubs: Dict[str, Any] = {}
        for robot in self.service.cell.robots:
            try:
                from anycell.sim.builder import robot_urdf

                with open(robot_urdf(robot), "r", encoding="utf-8") as handle:
                    text = handle.read()
            except Exception as exc:  # noqa: BLE001 - RViz is a view; the cell runs without it
                log.warning("no robot_description for %s: %s", robot.id, exc)
                continue
            pub = self.create_publisher(String, f"{robot.id}/robot_description", LATCHED)
            pub.publish(String(data=text))
            pubs[robot.id] = pub
        return pubs

    # ---- the API and the commands
    def _on_request(self, msg: String) -> None:
        self.requests.put(msg.data)     # parsed here, answered on the API threads

    def _send_response(self, response: Dict[str, Any]) -> None:
        self._publish(self.response_pub, String(data=json.dumps(response, separators=(",", ":"))))

    def _make_command(self, name: str) -> Callable[[Trigger.Request, Trigger.Response], Trigger.Response]:
        def handler(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            try:
                state = self.service.command(name)
                response.success = True
                response.message = state
            except StateError as exc:
                response.success = False
                response.message = str(exc)
            return response

        return handler


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``cell_agent`` (``ros2 run anycell cell_agent --ros-args -p cell:=...``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)   # its INFO logs every notification
    try:
        return _main(argv)
    except KeyboardInterrupt:   # a signal during start-up: nothing moved yet
        return 0


def _main(argv: Optional[List[str]]) -> int:
    started = init_with_cell("cell_agent", "cell_agent_params",
                             (("cell", ""), ("sim", False), ("runner", "auto"), ("dry_run_scale", 1.0),
                              ("startup", "stopped"), ("journal", ""), ("complete_when_empty", False),
                              ("max_quantity", 100), ("program_dir", ""), ("sim_machines", "")), argv)
    if started is None:
        return 2
    params, cell = started
    startup = str(params["startup"])
    if startup not in ("stopped", "idle", "execute"):
        print(f"cell_agent: startup:={startup} is not one of stopped, idle, execute", file=sys.stderr)
        rclpy.shutdown()
        return 2
    try:
        journal = Journal(str(params["journal"]) or default_journal_path(cell.cell.id))
    except AnycellError as exc:
        print(f"cell_agent: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return 2
    service = CellService(cell, journal, complete_when_empty=bool(params["complete_when_empty"]),
                          max_quantity=int(params["max_quantity"]), program_dir=str(params["program_dir"]) or None)
    node = CellAgentNode(service)
    forward_logging(node)   # from here on the core's log records reach /rosout
    for name, value in params.items():
        node.declare_parameter(name, value)
    sim = bool(params["sim"])
    closers: List[Callable[[], None]] = []
    try:
        service.runner_factory = resolve_runner(str(params["runner"]), node, sim, float(params["dry_run_scale"]))
        close = attach_estop(node, service, getattr(node, "cell_devices", None))
        if close is not None:
            closers.append(close)
    except (AnycellError, ImportError, AttributeError, ValueError) as exc:
        print(f"cell_agent: {exc}", file=sys.stderr)
        node.destroy_node()
        rclpy.shutdown()
        return 2

    def halt_on_signal(reason: str) -> None:
        service.halt_now(reason)
        try:
            service.journal.log_event("signal", {"reason": reason, "state": service.packml.state})
        except Exception:  # noqa: BLE001
            pass

    on_signal(halt_on_signal)
    service.start()
    if startup in ("idle", "execute"):
        service.command("reset")
        service.packml.wait_for(["Idle"], 10)
        if startup == "execute":
            service.command("start")
    node.get_logger().info(f"cell '{service.cell_id}' up: state {service.packml.state}, journal {service.journal.path}")

    def cleanup() -> None:
        service.shutdown()
        node.requests.close()
        for close in closers:
            close()

    try:
        spin_until_shutdown(node, 1, cleanup)   # no callback blocks: API requests have threads of their own
    finally:
        service.journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
