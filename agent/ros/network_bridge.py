"""The network bridge: one process beside ``cell_agent`` that puts a real cell on the manufacturing network.

``ros2 run anycell network_bridge --ros-args -r __ns:=/demo_cell -p cell:=<cell.yaml> -p keys:=<dir>
-p connect:=tcp/10.0.0.5:7447`` (``anycell up CELL --market --market-connect ...`` starts it).

It is a :class:`~anycell.network.cell_node.CellNode` whose builder is the
cell agent itself: a won job is submitted through the cell's JSON API (the
``/<cell>/api/request`` topic, via :class:`~anycell.agent.ros.client.CellClient`),
followed on the ``jobs`` topic until it ends, and its units are reported from
the agent's job report. The agent's queue, journal and PackML stay the
authority over what the cell does: the bridge only submits and watches.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from typing import Any, Dict, List, Optional

from anycell.errors import AnycellError, ExecutionError

from anycell.network.building import inspection_uncertainty, units_from_report
from anycell.network.cell_node import CellNode
from anycell.network.identity import Identity, Keyring
from anycell.network.records import UnitBuild
from anycell.network.transport import Keys

from .client import CellClient
from .node_main import init_with_cell, spin_until_shutdown

log = logging.getLogger(__name__)

PARAMS = (("cell", ""), ("keys", "keys"), ("connect", ""), ("listen", ""), ("namespace", "anycell"), ("name", ""),
          ("time_scale", 1.0), ("job_timeout", 7200.0))


class CellAgentBuilder:
    """Builds a won job on the cell agent through its API, and reads the units back from the job's report."""

    def __init__(self, client: CellClient, cell: Any, job_timeout: float = 7200.0) -> None:
        self.client = client
        self.cell = cell
        self.job_timeout = job_timeout

    def build(self, job: Any, plan: Any, cancel: threading.Event, progress: Any) -> List[UnitBuild]:
        spec = dict(job.document.data)
        job_id = f"{job.id}-{uuid.uuid4().hex[:6]}"
        reply = self.client.submit(spec, job_id=job_id)
        if not reply.get("ok", False):
            raise ExecutionError(f"the cell refused the job: {reply.get('error', reply)}",
                                 hint="the cell agent's answer is in its log")
        watch = threading.Thread(target=lambda: cancel.wait() and self.client.cancel(job_id), daemon=True)
        watch.start()
        final = self.client.wait_job(job_id, self.job_timeout, on_update=progress)
        if final.get("status") != "complete":
            raise ExecutionError(f"job {job_id} ended {final.get('status')}: {final.get('error')}",
                                 hint="the cell's journal says why; the exchange re-awards the job")
        summary = self.client.get(job_id).get("job", {})
        path = (summary.get("report") or {}).get("path")
        report_dir = os.path.dirname(path) if path else None
        try:
            with open(os.path.join(report_dir or "", "report.json"), encoding="utf-8") as handle:
                report = json.load(handle)
        except (OSError, ValueError, TypeError):
            raise ExecutionError(f"job {job_id} left no report with inspection results",
                                 hint="the record needs the unit's measurements; is the cell inspecting?") from None
        return units_from_report(job, report, inspection_uncertainty(self.cell), report_dir)


def _endpoints(text: str) -> List[str]:
    return [e.strip() for e in str(text).split(",") if e.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``network_bridge``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = init_with_cell("network_bridge", "network_bridge_params", PARAMS, argv)
    if started is None:
        return 2
    params, cell = started
    from rclpy.node import Node

    client: Optional[CellClient] = None
    node: Optional[CellNode] = None
    try:
        name = str(params["name"] or cell.cell.id)
        ident = Identity.load_or_create(str(params["keys"]), name, "cell")
        client = CellClient(cell.cell.id, node_name="network_bridge_client")
        session: Dict[str, Any] = {"connect": _endpoints(params["connect"]), "listen": _endpoints(params["listen"])}
        node = CellNode(ident, cell, CellAgentBuilder(client, cell, float(params["job_timeout"])),
                        Keyring(str(params["keys"])), session=session, keys=Keys(str(params["namespace"])),
                        time_scale=float(params["time_scale"]),
                        chain_path=os.path.join(str(params["keys"]), f"{name}.chain.json")).start()
    except AnycellError as exc:
        print(f"network_bridge: {exc}", file=sys.stderr)
        if client is not None:
            client.destroy()
        return 2
    ros_node = Node("network_bridge")
    ros_node.get_logger().info(f"cell '{cell.cell.id}' on the network as {ident.name} (key {ident.key_id})")

    def cleanup() -> None:
        node.stop()
        client.destroy()

    spin_until_shutdown(ros_node, 1, cleanup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
