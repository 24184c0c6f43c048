"""Library logging reaches ROS: inside a node, the core's ``logging`` records go to ``/rosout``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List

import pytest

from .conftest import agent_argv

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from anycell.agent.ros.client import CellClient  # noqa: E402
from anycell.agent.ros.node_main import RosLogHandler, forward_logging, restore_logging  # noqa: E402
from tests.paths import DEMO_CELL  # noqa: E402

#: What /rosout publishers offer (rcl's rosout profile): a late subscriber still gets recent records.
ROSOUT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _wait(predicate: Callable[[], bool], timeout: float, spin: Callable[[], None] = lambda: time.sleep(0.01)) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        spin()
    return predicate()


def test_driver_records_go_to_the_nodes_logger_and_rosout(rclpy_context) -> None:
    node = rclpy.create_node("log_probe", namespace="/logtest")
    listener = rclpy.create_node("log_listener", namespace="/logtest")
    got: List[Log] = []
    lock = threading.Lock()

    def on_log(msg: Log) -> None:
        with lock:
            got.append(msg)

    listener.create_subscription(Log, "/rosout", on_log, ROSOUT_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        handler = forward_logging(node)
        assert root.handlers == [handler] and isinstance(handler, RosLogHandler)
        # the probe node's /rosout publisher has matched the listener
        assert _wait(lambda: listener.count_publishers("/rosout") >= 2, 15, lambda: executor.spin_once(0.05))
        logging.getLogger("anycell.drivers.opcua_client").warning("mill: connection lost, reconnecting")
        logging.getLogger("anycell.drivers.grbl").error("router: ALARM:1 (hard limit)")

        def mine() -> List[Log]:
            with lock:
                return [m for m in got if m.name == "logtest.log_probe"]

        assert _wait(lambda: len(mine()) >= 2, 15, lambda: executor.spin_once(0.05)), [m.msg for m in got]
        by_text = {m.msg: m for m in mine()}
        warn = by_text["[anycell.drivers.opcua_client] mill: connection lost, reconnecting"]
        err = by_text["[anycell.drivers.grbl] router: ALARM:1 (hard limit)"]
        assert (warn.level, err.level) == (Log.WARN, Log.ERROR)
    finally:
        restore_logging()
        executor.shutdown()
        listener.destroy_node()
        node.destroy_node()
    assert root.handlers == before, "restore_logging puts the process's own handlers back"


def test_cell_agent_process_sends_the_executives_records_to_rosout(processes, rclpy_context, tmp_path) -> None:
    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db")), "agent")
    client = CellClient("demo_cell")
    got: List[Log] = []
    lock = threading.Lock()

    def on_log(msg: Log) -> None:
        with lock:
            got.append(msg)

    try:
        assert client.wait_ready(20), "the cell agent's API did not match in time"
        client.node.create_subscription(Log, "/rosout", on_log, ROSOUT_QOS)
        assert client.command("reset") == (True, "Resetting")
        assert client.wait_state(["Idle"], 10)

        def packml() -> List[str]:
            with lock:
                return [m.msg for m in got if m.name == "demo_cell.cell_agent" and m.msg.startswith("[anycell.agent.")]

        assert _wait(lambda: any("Stopped -> Resetting" in t for t in packml()), 15), [m.msg for m in got][-20:]
    finally:
        client.destroy()
