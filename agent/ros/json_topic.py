"""JSON requests over a pair of std_msgs/String topics, correlated by ``request_id``.

Used by both the cell client (``api/request`` -> ``api/response``) and the sim bridge
(``sim/request`` -> ``sim/response``), so the rules live in one place:

* nothing is sent before the peer's subscription *and* its response publisher match (a topic
  message published before the match is lost); the check uses ``node.count_publishers``,
  which Humble has (``Subscription.get_publisher_count`` is Iron and later);
* a request that gets no answer within ``resend_after`` is sent again with the *same*
  request_id: the peer answers a repeated id with the same response, never a second action.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from anycell.errors import ConnectionLost, DriverTimeout

#: deep enough for a burst of 1000 requests
QOS = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class JsonRequester:
    """Sends JSON requests on ``request_topic`` and waits for the answer with the same request_id."""

    def __init__(self, node: Node, request_topic: str, response_topic: str, *, callback_group: Any = None,
                 qos: QoSProfile = QOS) -> None:
        self.node = node
        self.request_topic = request_topic
        self.response_topic = response_topic
        self._cond = threading.Condition()
        self._answers: Dict[str, Dict[str, Any]] = {}
        self._pub = node.create_publisher(String, request_topic, qos)
        self._sub = node.create_subscription(String, response_topic, self._on_response, qos,
                                             callback_group=callback_group)
        #: extra condition for :meth:`wait_ready` (the client also wants the cell's state)
        self.ready_also: Optional[Callable[[], bool]] = None
        self._closed = False

    def close(self) -> None:
        """Before the node goes: calls still waiting (other threads) end with ConnectionLost at once,
        rather than publishing on a destroyed publisher or waiting out their timeout."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _check_open(self, what: str, rid: str) -> None:
        if self._closed:
            raise ConnectionLost(f"{what} ({rid}) on {self.request_topic}: the client was closed",
                                 hint="the program closed its cell client while this request waited")

    def _on_response(self, msg: String) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        rid = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(rid, str):
            with self._cond:
                self._answers[rid] = data
                self._cond.notify_all()

    def matched(self) -> bool:
        """The peer subscribes to our requests and publishes responses."""
        return (self._pub.get_subscription_count() > 0
                and self.node.count_publishers(self._sub.topic_name) > 0)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.matched() and (self.ready_also is None or self.ready_also()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def call(self, payload: Dict[str, Any], *, timeout: float, resend_after: float = 5.0,
             request_id: Optional[str] = None, what: str = "request") -> Dict[str, Any]:
        """Send ``payload`` (its request_id is set) and return the answer; DriverTimeout when none comes."""
        return self.send(payload, timeout=timeout, resend_after=resend_after, request_id=request_id, what=what)()

    def send(self, payload: Dict[str, Any], *, timeout: float, resend_after: float = 5.0,
             request_id: Optional[str] = None, what: str = "request") -> Callable[[], Dict[str, Any]]:
        """Send ``payload`` now; the returned call waits for its answer (resending it, same id, every
        ``resend_after`` s; DriverTimeout ``timeout`` s after this send).

        So a request whose moment matters (a picture of the cell as it is now) goes out at once,
        and its answer is waited for on another thread.
        """
        rid = request_id or payload.get("request_id") or uuid.uuid4().hex
        body = dict(payload, request_id=rid)
        text = json.dumps(body, separators=(",", ":"))
        deadline = time.monotonic() + timeout

        def publish() -> None:
            with self._cond:   # not closed, and it cannot close, until this message is out
                self._check_open(what, rid)
                self._pub.publish(String(data=text))

        with self._cond:
            self._answers.pop(rid, None)
        publish()
        sent = time.monotonic()

        def wait() -> Dict[str, Any]:
            resend = min(deadline, sent + resend_after)
            while True:
                with self._cond:
                    while rid not in self._answers and time.monotonic() < resend and not self._closed:
                        self._cond.wait(max(0.0, min(resend - time.monotonic(), 0.1)))
                    if rid in self._answers:
                        return self._answers.pop(rid)
                    self._check_open(what, rid)
                if time.monotonic() >= deadline:
                    raise DriverTimeout(f"no answer to {what} ({rid}) on {self.request_topic} within {timeout:.0f} s")
                publish()
                resend = min(deadline, time.monotonic() + resend_after)

        return wait
