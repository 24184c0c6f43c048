"""Paired conversions between anycell's core types and standard ROS 2 messages.

Every ``*_to_msg`` has its ``*_from_msg`` (the pyrobosim_ros pattern), and the
tests round-trip each pair. Only standard message packages are used
(builtin_interfaces, std_msgs, sensor_msgs, trajectory_msgs,
diagnostic_msgs, visualization_msgs, geometry_msgs), so nothing needs to be
compiled. No node or rclpy runtime is needed to call these.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from anycell.plan import Plan

# ------------------------------------------------------------------ time


def duration_to_msg(seconds: float) -> Duration:
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Duration(sec=sec, nanosec=nanosec)


def duration_from_msg(msg: Duration) -> float:
    return float(msg.sec) + float(msg.nanosec) * 1e-9


def time_to_msg(seconds: float) -> Time:
    d = duration_to_msg(seconds)
    return Time(sec=d.sec, nanosec=d.nanosec)


def time_from_msg(msg: Time) -> float:
    return float(msg.sec) + float(msg.nanosec) * 1e-9


# ------------------------------------------------------------------ JSON documents


def json_to_msg(data: Dict[str, Any]) -> String:
    return String(data=json.dumps(data, separators=(",", ":")))


def json_from_msg(msg: String) -> Any:
    """Parse the JSON in a String; raises ValueError (json.JSONDecodeError) when it is not JSON."""
    return json.loads(msg.data)


# ------------------------------------------------------------------ trajectories


def trajectory_to_msg(trajectory: Any, frame_id: str = "", stamp: Optional[float] = None) -> JointTrajectory:
    """A planners.trajectory.Trajectory (or any TrajectoryLike) as a JointTrajectory.

    ``stamp`` None (zero) means "start now", as ros2_control's controllers read it.
    """
    msg = JointTrajectory()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = time_to_msg(stamp)
    msg.joint_names = list(trajectory.joint_names)
    vels = list(getattr(trajectory, "velocities", []) or [])
    accs = list(getattr(trajectory, "accelerations", []) or [])
    for i, (t, q) in enumerate(zip(trajectory.times, trajectory.positions)):
        pt = JointTrajectoryPoint()
        pt.positions = [float(x) for x in q]
        if i < len(vels):
            pt.velocities = [float(x) for x in vels[i]]
        if i < len(accs):
            pt.accelerations = [float(x) for x in accs[i]]
        pt.time_from_start = duration_to_msg(float(t))
        msg.points.append(pt)
    return msg


def trajectory_from_msg(msg: JointTrajectory):
    """A JointTrajectory as a anycell.planners.trajectory.Trajectory (missing velocities/accelerations become zeros)."""
    from anycell.planners.trajectory import Trajectory

    dof = len(msg.joint_names)
    times = [duration_from_msg(p.time_from_start) for p in msg.points]
    positions = [list(p.positions) for p in msg.points]
    velocities = [list(p.velocities) if len(p.velocities) == dof else [0.0] * dof for p in msg.points]
    accelerations = [list(p.accelerations) if len(p.accelerations) == dof else [0.0] * dof for p in msg.points]
    return Trajectory(joint_names=list(msg.joint_names), times=times, positions=positions,
                      velocities=velocities, accelerations=accelerations)


# ------------------------------------------------------------------ joint states


@dataclass
class JointSample:
    """Joint names with positions (and velocities/efforts when known), at a time in seconds."""

    names: List[str]
    positions: List[float]
    velocities: List[float] = field(default_factory=list)
    efforts: List[float] = field(default_factory=list)
    stamp: float = 0.0

    def by_name(self) -> Dict[str, float]:
        return dict(zip(self.names, self.positions))

    def ordered(self, names: Sequence[str]) -> Optional[List[float]]:
        """Positions in the order of ``names``, or None when one is missing from this sample."""
        m = self.by_name()
        if not all(n in m for n in names):
            return None
        return [m[n] for n in names]


def joint_state_to_msg(sample: JointSample) -> JointState:
    msg = JointState()
    msg.header.stamp = time_to_msg(sample.stamp)
    msg.name = list(sample.names)
    msg.position = [float(x) for x in sample.positions]
    msg.velocity = [float(x) for x in sample.velocities]
    msg.effort = [float(x) for x in sample.efforts]
    return msg


def joint_state_from_msg(msg: JointState) -> JointSample:
    return JointSample(names=list(msg.name), positions=list(msg.position), velocities=list(msg.velocity),
                       efforts=list(msg.effort), stamp=time_from_msg(msg.header.stamp))


# ------------------------------------------------------------------ diagnostics

_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR, 3: DiagnosticStatus.STALE}
_LEVEL_WORDS = {"ok": 0, "warn": 1, "warning": 1, "error": 2, "stale": 3}


def _level(value: Any) -> int:
    """A health level as 0..3: an int, or a word (ok, warn, error, stale) as drivers report it."""
    if isinstance(value, str):
        return _LEVEL_WORDS.get(value.strip().lower(), 2)
    return int(value)


def health_to_diagnostics(entries: List[Dict[str, Any]], stamp: float = 0.0, hardware_id: str = "") -> DiagnosticArray:
    """Health entries ``{name, level 0..3, message, values{}}`` as a DiagnosticArray."""
    arr = DiagnosticArray()
    arr.header.stamp = time_to_msg(stamp)
    for e in entries:
        st = DiagnosticStatus()
        st.level = _LEVELS.get(_level(e.get("level", 0)), DiagnosticStatus.ERROR)
        st.name = str(e["name"])
        st.message = str(e.get("message", ""))
        st.hardware_id = str(e.get("hardware_id", hardware_id))
        st.values = [KeyValue(key=str(k), value=str(v)) for k, v in (e.get("values") or {}).items()]
        arr.status.append(st)
    return arr


def diagnostics_from_msg(msg: DiagnosticArray) -> List[Dict[str, Any]]:
    out = []
    for st in msg.status:
        level = st.level if isinstance(st.level, int) else int.from_bytes(st.level, "little")
        out.append({"name": st.name, "level": level, "message": st.message, "hardware_id": st.hardware_id,
                    "values": {kv.key: kv.value for kv in st.values}})
    return out


# ------------------------------------------------------------------ plan markers

_KIND_COLOR = {
    "pick_place": (0.2, 0.6, 1.0), "load": (1.0, 0.6, 0.1), "unload": (0.9, 0.4, 0.1),
    "output": (0.2, 0.8, 0.3), "run_program": (0.7, 0.3, 0.9), "inspect": (1.0, 1.0, 0.2),
}


def plan_to_markers(plan: Plan, frame_id: str = "cell", done: Sequence[str] = ()) -> MarkerArray:
    """The plan for RViz: per move, an arrow from source to target part centre, and a label.

    Markers are in namespace ``plan/<job_id>``, ids in plan order (arrow 2i,
    label 2i+1). Finished steps are drawn faded (alpha 0.25).
    """
    arr = MarkerArray()
    clear = Marker()
    clear.header.frame_id = frame_id
    clear.ns = f"plan/{plan.job_id}"
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    finished = set(done)
    for i, op in enumerate(plan.operations):
        src = (op.params or {}).get("source")
        dst = (op.params or {}).get("target")
        if not (isinstance(src, dict) and isinstance(dst, dict)):
            continue
        r, g, b = _KIND_COLOR.get(op.kind, (0.8, 0.8, 0.8))
        color = ColorRGBA(r=r, g=g, b=b, a=0.25 if op.id in finished else 0.9)
        arrow = Marker()
        arrow.header.frame_id = frame_id
        arrow.ns = f"plan/{plan.job_id}"
        arrow.id = 2 * i
        arrow.type = Marker.ARROW
        arrow.action = Marker.ADD
        arrow.points = [Point(x=float(src["xyz"][0]), y=float(src["xyz"][1]), z=float(src["xyz"][2])),
                        Point(x=float(dst["xyz"][0]), y=float(dst["xyz"][1]), z=float(dst["xyz"][2]))]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.004, 0.01, 0.01
        arrow.pose.orientation.w = 1.0
        arrow.color = color
        label = Marker()
        label.header.frame_id = frame_id
        label.ns = f"plan/{plan.job_id}"
        label.id = 2 * i + 1
        label.type = Marker.TEXT_VIEW_FACING
        label.action = Marker.ADD
        label.text = op.id
        label.pose.position = Point(x=float(dst["xyz"][0]), y=float(dst["xyz"][1]), z=float(dst["xyz"][2]) + 0.03)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.012
        label.color = color
        arr.markers.extend([arrow, label])
    return arr


def markers_to_moves(msg: MarkerArray) -> Dict[str, Dict[str, List[float]]]:
    """Read back what plan_to_markers drew: op id -> {source xyz, target xyz, alpha}."""
    arrows = {m.id: m for m in msg.markers if m.type == Marker.ARROW and m.action == Marker.ADD}
    out: Dict[str, Dict[str, Any]] = {}
    for m in msg.markers:
        if m.type == Marker.TEXT_VIEW_FACING and (m.id - 1) in arrows:
            a = arrows[m.id - 1]
            out[m.text] = {"source": [a.points[0].x, a.points[0].y, a.points[0].z],
                           "target": [a.points[1].x, a.points[1].y, a.points[1].z],
                           "alpha": a.color.a}
    return out
