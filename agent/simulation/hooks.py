"""What only a simulated cell needs from the executor: parts appearing, and measuring them.

On the floor, feeders hold real parts, machines make real parts and a camera
measures them. In simulation the same three things must happen in the
PyBullet world, or the robot would reach for nothing. :class:`SimHooks` is
that small seam; :class:`WorldHooks` implements it on an in-process
:class:`anycell.sim.world.SimWorld` (``anycell sim``), and the ROS sim node serves the
same calls to a cell agent in another process (``anycell.agent.ros.sim_bridge``).

Nothing here moves a held part: a part appears only where the cell says a
feeder presents it or a machine made it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Sequence

from anycell.geometry import Pose
from anycell.sim.shapes import shape_to_json

if TYPE_CHECKING:  # the world brings pybullet: the hooks are handed one
    from anycell.sim.world import SimWorld

log = logging.getLogger(__name__)


class SimHooks(Protocol):
    """The simulated world's side of the executor (all poses are part centres, cell frame)."""

    def present(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                pose: Pose) -> bool:
        """A feeder presents a part at ``pose`` if none is there yet; True when it appeared now."""

    def machine_made(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                     pose: Pose) -> None:
        """A machine finished a part: the stock (same uid) becomes the part, or a new part appears."""

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        """True poses of the parts (None for a part not in the world)."""

    def hold(self, uid: str, station: str) -> bool:
        """The fixture ``station`` holds the part with its declared clamp or vacuum; False if it declares none."""

    def release_hold(self, station: str) -> Optional[str]:
        """The fixture lets go of what it holds; returns that part's uid, or None."""

    def snapshot(self, path: str, camera: Optional[str] = None) -> str:
        """Write a PNG of the cell."""


class WorldHooks:
    """:class:`SimHooks` on an in-process SimWorld."""

    def __init__(self, world: "SimWorld", settle_seconds: float = 0.3) -> None:
        self.world = world
        self.settle_seconds = settle_seconds
        self._looks: Dict[str, tuple] = {}   # uid -> (mass, color, shape as plain data), to save the world

    def present(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                pose: Pose) -> bool:
        if uid in self.world.parts:
            return False
        self._looks[uid] = (float(mass), list(color) if color else None, shape_to_json(size))
        self.world.add_part(uid, size, mass, pose, color)
        self.world.settle(self.settle_seconds)
        return True

    def machine_made(self, uid: str, size: Any, mass: float, color: Optional[Sequence[float]],
                     pose: Pose) -> None:
        if uid in self.world.parts:
            log.info("sim: the machine turned the stock %s into the finished part", uid)
            self.world.remove_part(uid)
        self._looks[uid] = (float(mass), list(color) if color else None, shape_to_json(size))
        self.world.add_part(uid, size, mass, pose, color)
        self.world.settle(self.settle_seconds)

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        return {u: (self.world.part_pose(u) if u in self.world.parts else None) for u in uids}

    def hold(self, uid: str, station: str) -> bool:
        return bool(self.world.hold(uid, station))

    def release_hold(self, station: str) -> Optional[str]:
        return self.world.release_hold(station)

    def snapshot(self, path: str, camera: Optional[str] = None) -> str:
        return self.world.snapshot(path, camera)

    def snapshot_later(self, path: str, camera: Optional[str] = None) -> Callable[[], str]:
        """Copy the scene now; the returned call renders it off the physics client (any thread)."""
        return self.world.snapshot_later(path, camera)

    def part_ids(self) -> List[str]:
        return sorted(self.world.parts)

    def save(self, path: str) -> int:
        """Write every part (size, mass, color, pose) to ``path`` (JSON, atomically); returns the count."""
        import json
        import os

        parts = {}
        for uid in sorted(self.world.parts):
            mass, color, shape = self._looks.get(
                uid, (0.1, None, list(self.world.part_sizes.get(uid, [0.02, 0.02, 0.02]))))
            parts[uid] = {"size": shape, "mass": mass, "color": color,
                          "pose": _pose_to_json(self.world.part_pose(uid))}
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"parts": parts}, handle)
        os.replace(tmp, path)
        return len(parts)

    def restore(self, path: str) -> int:
        """Put back the parts a saved world had (where they were); returns how many were added."""
        import json

        try:
            with open(path, "r", encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return 0
        added = 0
        for uid, p in (data.get("parts") or {}).items():
            if uid in self.world.parts:
                continue
            self._looks[uid] = (float(p["mass"]), p.get("color"), p["size"])
            pose = _pose_from_json(p["pose"])
            if pose is None:
                continue
            self.world.add_part(uid, p["size"], float(p["mass"]), pose, p.get("color"))
            added += 1
        if added:
            self.world.settle(self.settle_seconds)
        return added


# ---------------------------------------------------------------------- over a message channel
# The ROS sim node serves these calls on ``sim/request`` / ``sim/response`` (std_msgs/String JSON,
# correlated by request_id, like the cell API). The encoding lives here so both ends share it.

def _pose_to_json(pose: Optional[Pose]) -> Optional[Dict[str, List[float]]]:
    return None if pose is None else {"xyz": [float(v) for v in pose.xyz], "rpy": [float(v) for v in pose.rpy]}


def _pose_from_json(data: Optional[Dict[str, Any]]) -> Optional[Pose]:
    return None if data is None else Pose(xyz=list(data["xyz"]), rpy=list(data.get("rpy", [0.0, 0.0, 0.0])))


def encode_call(op: str, **args: Any) -> Dict[str, Any]:
    """A hook call as a JSON-ready request (without request_id)."""
    body: Dict[str, Any] = {"op": op}
    for key, value in args.items():
        if key == "size":
            value = shape_to_json(value)
        body[key] = _pose_to_json(value) if isinstance(value, Pose) else value
    return body


def serve_call(hooks: SimHooks, request: Dict[str, Any]) -> Dict[str, Any]:
    """Run one encoded hook call on ``hooks``; the answer carries ``ok`` and the result or the error."""
    from anycell.errors import AnycellError

    op = request.get("op")
    try:
        if op in ("present", "machine_made"):
            pose = _pose_from_json(request["pose"])
            if pose is None:
                raise ValueError(f"{op} needs a pose")
            args = (request["uid"], request["size"], float(request["mass"]), request.get("color"), pose)
            if op == "present":
                return {"ok": True, "result": bool(hooks.present(*args))}
            hooks.machine_made(*args)
            return {"ok": True, "result": None}
        if op == "measure":
            poses = hooks.measure(list(request["uids"]))
            return {"ok": True, "result": {k: _pose_to_json(v) for k, v in poses.items()}}
        if op == "hold":
            return {"ok": True, "result": bool(hooks.hold(request["uid"], request["station"]))}
        if op == "release_hold":
            return {"ok": True, "result": hooks.release_hold(request["station"])}
        if op == "snapshot":
            return {"ok": True, "result": hooks.snapshot(request["path"], request.get("camera"))}
        if op in ("save", "restore") and hasattr(hooks, op):
            return {"ok": True, "result": getattr(hooks, op)(str(request["path"]))}
        return {"ok": False, "error": {"error": "ConfigError", "message": f"unknown sim call '{op}'"}}
    except AnycellError as exc:
        return {"ok": False, "error": exc.to_dict()}
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "error": {"error": "ConfigError", "message": f"malformed sim call '{op}': {exc}"}}


def decode_measure(result: Dict[str, Any]) -> Dict[str, Optional[Pose]]:
    return {k: _pose_from_json(v) for k, v in result.items()}
