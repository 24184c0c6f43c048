"""The sim hooks over ROS 2: the cell agent asks the sim node to present, make and measure parts.

Requests go out on ``sim/request`` and answers come back on ``sim/response``
(std_msgs/String JSON with a ``request_id``), the same pattern as the cell
API. The sim node (:mod:`anycell.agent.ros.sim_node`) serves them with
:func:`anycell.agent.simulation.hooks.serve_call` on its PyBullet world.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, Optional, Sequence

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from anycell.errors import DriverTimeout, ExecutionError
from anycell.geometry import Pose

from anycell.agent.ros.json_topic import JsonRequester
from anycell.agent.simulation.hooks import decode_measure, encode_call

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class RosSimHooks:
    """:class:`anycell.agent.simulation.hooks.SimHooks` served by the sim node of the same cell namespace."""

    def __init__(self, node: Node, timeout: float = 30.0) -> None:
        self.node = node
        self.timeout = timeout
        self._json = JsonRequester(node, "sim/request", "sim/response", callback_group=ReentrantCallbackGroup())

    def wait_ready(self, timeout: float) -> bool:
        """True once the sim node's request subscription and response publisher both match."""
        return self._json.wait_ready(timeout)

    def _call(self, op: str, **args: Any) -> Any:
        return self._send(op, **args)()

    def _send(self, op: str, **args: Any) -> Callable[[], Any]:
        """Send the call now; the returned call waits for its result (an ExecutionError when it failed)."""
        if not self.wait_ready(self.timeout):
            raise DriverTimeout(f"the sim node does not answer on {self.node.get_namespace()}/sim/request",
                                hint="start the cell with --sim (or sim:=true) so the sim_cell node runs")
        wait = self._json.send(encode_call(op, **args), timeout=self.timeout, resend_after=5.0,
                               request_id=uuid.uuid4().hex, what=f"sim '{op}'")

        def result() -> Any:
            answer = wait()
            if not answer.get("ok"):
                err = answer.get("error") or {}
                raise ExecutionError(f"sim node: {err.get('message', 'failed')}", hint=err.get("hint"))
            return answer.get("result")

        return result

    def present(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                pose: Pose) -> bool:
        return bool(self._call("present", uid=uid, size=size, mass=mass,
                               color=list(color) if color else None, pose=pose))

    def machine_made(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                     pose: Pose) -> None:
        self._call("machine_made", uid=uid, size=size, mass=mass, color=list(color) if color else None,
                   pose=pose)

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        return decode_measure(self._call("measure", uids=list(uids)))

    def hold(self, uid: str, station: str) -> bool:
        return bool(self._call("hold", uid=uid, station=station))

    def release_hold(self, station: str) -> Optional[str]:
        result = self._call("release_hold", station=station)
        return None if result is None else str(result)

    def snapshot(self, path: str, camera: Optional[str] = None) -> str:
        return str(self._call("snapshot", path=path, camera=camera))

    def snapshot_later(self, path: str, camera: Optional[str] = None) -> Callable[[], str]:
        """Ask for the picture now, so it shows the cell as it is at this moment; the returned
        call waits until the sim node has written it (it renders apart from its physics)."""
        result = self._send("snapshot", path=path, camera=camera)
        return lambda: str(result())

    def save(self, path: str) -> int:
        """The sim node writes its parts (where they lie now) to ``path``."""
        return int(self._call("save", path=path))

    def restore(self, path: str) -> int:
        """The sim node puts back the parts of a saved world (after a restart); returns how many."""
        return int(self._call("restore", path=path))
