"""The API's own worker threads: planning never runs on the threads that serve commands.

The ROS callback that receives an ``api/request`` only parses it and puts it here; it returns
at once, so a burst of requests never fills the subscription's queue and the executor's threads
stay free for the PackML command services (Stop is answered whatever the queue holds).

Two lanes: ``submit``, ``quote``, ``resume`` and ``cancel`` (which may plan, and which change
the cell one at a time) run on the *slow* lane; ``get``, ``list`` and ``status`` on the *fast*
lane, so a read is never stuck behind a long plan. When a lane already holds ``max_pending``
requests, the request is answered at once with ``busy`` (and its request_id): nothing is
dropped silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Dict, Optional

from anycell.errors import AnycellError

from anycell.agent import api

log = logging.getLogger(__name__)

SLOW_OPS = ("submit", "quote", "resume", "cancel")


class RequestQueue:
    """Parses on the caller's thread, answers on its own workers; ``reply(response)`` publishes."""

    def __init__(self, handle: Callable[[Any], Dict[str, Any]], reply: Callable[[Dict[str, Any]], None], *,
                 max_pending: int = 2000) -> None:
        self._handle = handle
        self._reply = reply
        self.max_pending = max_pending
        self._lanes: Dict[str, "queue.Queue[Optional[api.Request]]"] = {"slow": queue.Queue(), "fast": queue.Queue()}
        self._threads = [threading.Thread(target=self._work, args=(lane,), name=f"api-{lane}", daemon=True)
                         for lane in self._lanes]
        for t in self._threads:
            t.start()

    def pending(self) -> Dict[str, int]:
        return {lane: q.qsize() for lane, q in self._lanes.items()}

    def put(self, raw: Any) -> None:
        """Take one raw request (never blocks, never raises)."""
        try:
            req = api.parse_request(raw)
        except AnycellError as exc:
            self._send(api.error(api.request_id_of(raw), None, exc))
            return
        except Exception as exc:  # noqa: BLE001 - nothing a client sends may take the agent down
            self._send(api.error(None, None, exc))
            return
        lane = "slow" if req.op in SLOW_OPS else "fast"
        q = self._lanes[lane]
        if q.qsize() >= self.max_pending:
            self._send(api.ok(req.request_id, req.op, busy=True) | {
                "ok": False, "error": {"error": "Busy", "message": f"{q.qsize()} requests wait; try again later",
                                       "hint": "resend with the same request_id"}})
            return
        q.put(req)

    def _send(self, response: Dict[str, Any]) -> None:
        try:
            self._reply(response)
        except Exception:  # noqa: BLE001
            log.exception("publishing an API response failed")

    def _work(self, lane: str) -> None:
        q = self._lanes[lane]
        while True:
            req = q.get()
            if req is None:
                return
            try:
                response = self._handle(req)
            except Exception as exc:  # noqa: BLE001 - the service never raises; belt and braces
                log.exception("request %s failed", req.request_id)
                response = api.error(req.request_id, req.op, exc)
            self._send(response)

    def close(self) -> None:
        for q in self._lanes.values():
            q.put(None)
        for t in self._threads:
            t.join(1.0)
