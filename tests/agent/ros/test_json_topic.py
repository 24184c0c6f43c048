"""JSON requests over topics: a request still waiting when its client closes ends at once, cleanly."""

from __future__ import annotations

import threading

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.agent.ros.json_topic import JsonRequester  # noqa: E402
from anycell.errors import ConnectionLost  # noqa: E402


def test_a_waiting_call_ends_with_connection_lost_when_the_requester_closes(rclpy_context) -> None:
    node = rclpy.create_node("json_topic_close")
    requester = JsonRequester(node, "nobody/request", "nobody/response")
    outcome: dict = {}
    waiting = threading.Event()

    def ask() -> None:
        waiting.set()
        try:
            requester.call({"op": "status"}, timeout=120.0, resend_after=0.05)
        except ConnectionLost as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=ask, daemon=True)
    caller.start()
    try:
        assert waiting.wait(10)
        requester.close()
        caller.join(timeout=10)          # not the call's 120 s: close ends it
        assert not caller.is_alive()
        assert "the client was closed" in str(outcome["error"])
        with pytest.raises(ConnectionLost):   # and nothing more is sent once closed
            requester.call({"op": "status"}, timeout=1.0)
    finally:
        node.destroy_node()
