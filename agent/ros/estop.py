"""E-stop sources for the cell agent: a ROS topic, and the wiring of every kind ``safety.estop`` allows.

``kind: ros_topic``: ``source`` names a ``std_msgs/Bool`` topic (relative to the cell namespace,
or absolute) that reads ``true`` when tripped. A true message trips the cell from the
subscription callback at once. The subscription lives on a listener node of its own, spun by a
single-threaded executor on its own thread (the safety lane): the agent's main executor is busy
with joint states, API requests and timers, and rclpy's multi-threaded executor was seen to
deliver a message 50-600 ms late under that traffic, ten times the e-stop goal. The source must publish at least every ``stale_after`` seconds
(a heartbeat, as safety relays do): no publisher, no message yet, or a silence longer than that
counts as a lost source, which trips the cell too.

``kind: opcua``: see :mod:`anycell.agent.estop_sources` (its own OPC UA session to the machine).
``kind: serial_state`` / ``serial_pin``: a serial machine's alarm/door/kill state, or a GRBL input pin,
read through the machine's driver at 20 Hz.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from anycell.errors import ConfigError

from anycell.agent.safety import EStopLost, EStopWatch

log = logging.getLogger(__name__)


class RosTopicEStop:
    """A std_msgs/Bool e-stop topic; :meth:`read` raises EStopLost when the source is gone or silent."""

    def __init__(self, node: Node, topic: str, *, stale_after: float = 1.0) -> None:
        self.topic = topic if topic.startswith("/") else node.get_namespace().rstrip("/") + "/" + topic
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._value: Optional[bool] = None
        self._at = 0.0
        self.watch: Optional[EStopWatch] = None
        # the safety lane: a node and an executor that do nothing else (see the module docstring)
        self.node = Node(f"{node.get_name()}_estop", namespace=node.get_namespace(), context=node.context)
        self._sub = self.node.create_subscription(Bool, self.topic, self._on_msg,
                                                  QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._executor = SingleThreadedExecutor(context=node.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="estop-listener", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass   # rclpy shut down: the agent is ending
        except Exception as exc:  # noqa: BLE001 - a dead lane is a lost source: read() reports it
            log.error("e-stop listener stopped: %s", exc)

    def close(self) -> None:
        """Stop the listener's executor and destroy its node (before rclpy shuts down)."""
        self._executor.shutdown(timeout_sec=2)
        self._thread.join(2)
        self.node.destroy_node()

    def _on_msg(self, msg: Bool) -> None:
        with self._lock:
            self._value = bool(msg.data)
            self._at = time.monotonic()
        if self.watch is not None and msg.data:
            self.watch.feed(True)    # trip now, not at the next poll

    def read(self) -> bool:
        if not self._thread.is_alive():
            raise EStopLost(f"the listener of {self.topic} stopped")
        if self.node.count_publishers(self.topic) == 0:
            raise EStopLost(f"no publisher on {self.topic}")
        with self._lock:
            value, at = self._value, self._at
        if value is None:
            raise EStopLost(f"no message on {self.topic} yet")
        if time.monotonic() - at > self.stale_after:
            raise EStopLost(f"no message on {self.topic} for {time.monotonic() - at:.1f} s")
        return value


def attach_estop(node: Any, service: Any, devices: Any = None) -> Optional[Callable[[], None]]:
    """Watch the cell's ``safety.estop`` source; returns a close function (None for kind none).

    Raises ConfigError (naming ``safety.estop``) for a source that cannot be watched.
    """
    cfg = service.cell.safety.estop
    if cfg.kind == "none":
        return None
    if not cfg.source:
        raise ConfigError(f"e-stop kind {cfg.kind} needs a source", field="safety.estop.source",
                          hint="a topic (ros_topic) or <machine_id>/<variable> (opcua)")
    if cfg.kind == "ros_topic":
        src = RosTopicEStop(node, cfg.source)
        src.watch = service.add_estop(f"ros_topic:{src.topic}", src.read)
        return src.close
    if cfg.kind == "opcua":
        from anycell.agent.estop_sources import OpcUaEStopSource, opcua_estop_target

        mid = cfg.source.split("/")[0]
        drv = (getattr(devices, "machines", None) or {}).get(mid)
        endpoint, path = opcua_estop_target(service.cell, getattr(drv, "endpoint", None))
        opc = OpcUaEStopSource(endpoint, path)
        service.add_estop(f"opcua:{endpoint}#{path}", opc.read)
        return opc.close
    if cfg.kind in ("serial_state", "serial_pin"):
        from anycell.agent.estop_sources import serial_estop_read

        mid = cfg.source.split("/")[0]
        drv = (getattr(devices, "machines", None) or {}).get(mid)
        if drv is None:
            raise ConfigError(f"e-stop kind {cfg.kind} reads machine '{mid}' through its driver, which this agent "
                              "does not run", field="safety.estop.source",
                              hint="run the agent with runner:=auto (the cell's own machine drivers)")
        service.add_estop(f"{cfg.kind}:{cfg.source}", serial_estop_read(service.cell, drv), period=0.05)
        return None
    raise ConfigError(f"e-stop kind '{cfg.kind}' is not supported by this agent", field="safety.estop.kind",
                      hint="none, opcua, ros_topic, serial_state or serial_pin")
