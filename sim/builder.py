"""Build the PyBullet bodies of a cell from its CellConfig: the one geometric model of the cell.

Both the simulator (:class:`anycell.sim.world.SimWorld`) and the motion planner's
collision world call :func:`build_cell` on their own PyBullet client, so the
planner checks against exactly the geometry the simulated robot meets.

Robots come from ``pybullet_data`` (built-in models) or a URDF path. The tool
is part of the robot body: the Panda URDF carries its hand and fingers; a
suction tool is added as a cup link (a cylinder from the flange to the TCP)
in a generated copy of the URDF, so planner and simulator both see it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from anycell.cell import BUILTIN_ROBOTS, CellConfig
from anycell.cell import RobotConfig
from anycell.errors import ConfigError

#: The flange link (where the tool's TCP offset is measured from) of each built-in model.
FLANGE_LINKS: Dict[str, str] = {
    "franka_panda": "panda_link8",
    "kuka_iiwa": "lbr_iiwa_link_7",
    "xarm6": "link6",
}

#: Finger links of models whose URDF carries a parallel gripper.
FINGER_LINKS: Dict[str, List[str]] = {
    "franka_panda": ["panda_leftfinger", "panda_rightfinger"],
}

#: Acceleration limits (rad/s^2) from the makers' datasheets; URDFs carry none.
DEFAULT_ACCEL: Dict[str, List[float]] = {
    "franka_panda": [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0],
    "kuka_iiwa": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
}

#: Velocity limits (rad/s) where the bundled URDF's own figures are not the datasheet's.
DEFAULT_VEL: Dict[str, List[float]] = {
    "kuka_iiwa": [1.71, 1.71, 1.75, 2.27, 2.44, 3.14, 3.14],
}

CUP_RADIUS = 0.015
STATIC_COLOR = {
    "table": [0.75, 0.72, 0.66, 1.0],
    "feeder": [0.55, 0.55, 0.6, 1.0],
    "fixture": [0.35, 0.35, 0.4, 1.0],
    "output_tray": [0.4, 0.6, 0.4, 1.0],
    "reject_tray": [0.7, 0.4, 0.4, 1.0],
    "inspection": [0.2, 0.2, 0.2, 1.0],
    "machine": [0.6, 0.65, 0.75, 1.0],
    "keep_out": [1.0, 0.3, 0.3, 0.25],
}


def _pybullet_data() -> str:
    import pybullet_data

    return pybullet_data.getDataPath()


def source_urdf(robot: RobotConfig) -> str:
    """The robot's URDF file on disk (built-in model or the configured path)."""
    if robot.model is not None:
        return os.path.join(_pybullet_data(), BUILTIN_ROBOTS[robot.model])
    return str(robot.urdf)


def robot_urdf(robot: RobotConfig) -> str:
    """A URDF for the robot *with its tool*: the source file, or a generated copy with a suction cup.

    The copy lives in a cache directory keyed by its content; mesh paths are made absolute.
    """
    src = source_urdf(robot)
    if robot.tool.kind != "suction":
        return src
    with open(src, "r", encoding="utf-8") as handle:
        text = handle.read()
    base = os.path.dirname(os.path.abspath(src))

    def absolute(m: "re.Match[str]") -> str:
        name = m.group(1)
        if name.startswith("package://"):
            # resolved like PyBullet does: the package folder beside the URDF (or one level up)
            rest = name[len("package://"):]
            for root in (base, os.path.dirname(base)):
                if os.path.exists(os.path.join(root, rest)):
                    return f'filename="{os.path.join(root, rest)}"'
            return m.group(0)
        if name.startswith(("/", "file://")) or not name.lower().endswith((".obj", ".stl", ".dae", ".urdf")):
            return m.group(0)
        return f'filename="{os.path.join(base, name)}"'

    text = re.sub(r'filename="([^"]+)"', absolute, text)
    flange = flange_link_name(robot, text)
    tcp = robot.tool.tcp
    length = max(0.005, float(tcp.xyz[2]))
    cup = f"""
  <link name="anycell_suction_cup">
    <inertial><origin xyz="0 0 {length / 2}"/><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><origin xyz="0 0 {length / 2}"/><geometry><cylinder radius="{CUP_RADIUS}" length="{length}"/></geometry>
      <material name="cup"><color rgba="0.15 0.15 0.15 1"/></material></visual>
    <collision><origin xyz="0 0 {length / 2}"/><geometry><cylinder radius="{CUP_RADIUS}" length="{length}"/></geometry></collision>
  </link>
  <joint name="anycell_suction_joint" type="fixed">
    <parent link="{flange}"/><child link="anycell_suction_cup"/>
    <origin xyz="{tcp.xyz[0]} {tcp.xyz[1]} 0" rpy="0 0 0"/>
  </joint>
"""
    text = text.replace("</robot>", cup + "</robot>")
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    out_dir = os.path.join(tempfile.gettempdir(), "anycell_urdf")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{robot.id}_{digest}.urdf")
    if not os.path.exists(out):
        tmp = out + f".{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, out)
    return out


def flange_link_name(robot: RobotConfig, urdf_text: Optional[str] = None) -> str:
    """The flange link: the model's known flange, else the child link of the last movable joint."""
    if robot.model in FLANGE_LINKS:
        return FLANGE_LINKS[robot.model]  # type: ignore[index]
    if urdf_text is None:
        with open(source_urdf(robot), "r", encoding="utf-8") as handle:
            urdf_text = handle.read()
    joints = re.findall(r'<joint[^>]*type="(revolute|continuous|prismatic)"[^>]*>(.*?)</joint>', urdf_text, re.S)
    if not joints:
        raise ConfigError(f"robot '{robot.id}': no movable joint in its URDF", field=f"robots.{robot.id}.urdf")
    child = re.search(r'<child\s+link="([^"]+)"', joints[-1][1])
    if child is None:
        raise ConfigError(f"robot '{robot.id}': cannot find the flange link", field=f"robots.{robot.id}.urdf")
    return child.group(1)


@dataclass
class RobotBody:
    """A loaded robot: its body id and the indices anycell needs."""

    body: int
    config: RobotConfig
    arm_joints: List[int]               # movable joints of the arm, in URDF order
    joint_names: List[str]
    finger_joints: List[int]            # prismatic finger joints (parallel gripper)
    finger_links: List[int]
    flange_link: int
    tool_links: List[int]               # links that may touch a part being grasped
    lower: List[float]
    upper: List[float]
    velocity: List[float]
    acceleration: List[float]
    finger_max: List[float] = field(default_factory=list)
    cup_link: Optional[int] = None      # the suction cup link, for a suction tool
    base_links: List[int] = field(default_factory=lambda: [-1])   # links fixed to the base (-1 is the base)


def load_robot(client: int, robot: RobotConfig, *, self_collision: bool = False) -> RobotBody:
    """Load one robot (with its tool) at its base pose and read its joints and limits.

    ``self_collision`` makes PyBullet report contacts between the robot's own links
    (the planner wants them; the simulator's position-controlled arm does not need them).
    """
    import pybullet as p

    path = robot_urdf(robot)
    if not os.path.exists(path):
        raise ConfigError(f"robot '{robot.id}': URDF '{path}' not found", field=f"robots.{robot.id}.urdf")
    body = p.loadURDF(path, robot.base.position, robot.base.quaternion, useFixedBase=True,
                      flags=p.URDF_USE_INERTIA_FROM_FILE | (
                          p.URDF_USE_SELF_COLLISION | p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT if self_collision else 0),
                      physicsClientId=client)
    arm, names, fingers, finger_links, lower, upper, vel = [], [], [], [], [], [], []
    finger_max: List[float] = []
    link_index: Dict[str, int] = {}
    finger_names = set(FINGER_LINKS.get(robot.model or "", []))
    for j in range(p.getNumJoints(body, physicsClientId=client)):
        info = p.getJointInfo(body, j, physicsClientId=client)
        jname, jtype, child = info[1].decode(), info[2], info[12].decode()
        link_index[child] = j
        if jtype == p.JOINT_FIXED:
            continue
        if child in finger_names or (jtype == p.JOINT_PRISMATIC and "finger" in jname):
            fingers.append(j)
            finger_links.append(j)
            finger_max.append(float(info[9]))
            continue
        arm.append(j)
        names.append(jname)
        lo, hi = float(info[8]), float(info[9])
        if hi <= lo:  # continuous joint
            lo, hi = -2 * 3.141592653589793, 2 * 3.141592653589793
        lower.append(lo)
        upper.append(hi)
        vel.append(float(info[11]) if info[11] > 0 else 1.0)
    if robot.model in DEFAULT_VEL and len(DEFAULT_VEL[robot.model]) == len(arm):  # type: ignore[index]
        vel = list(DEFAULT_VEL[robot.model])  # type: ignore[index]
    acc = list(DEFAULT_ACCEL.get(robot.model or "", [10.0] * len(arm)))[: len(arm)]
    acc += [10.0] * (len(arm) - len(acc))
    for i, name in enumerate(names):
        lim = robot.joint_limits.get(name)
        if lim is None:
            continue
        lower[i] = lim.lower if lim.lower is not None else lower[i]
        upper[i] = lim.upper if lim.upper is not None else upper[i]
        vel[i] = lim.velocity if lim.velocity is not None else vel[i]
        acc[i] = lim.acceleration if lim.acceleration is not None else acc[i]
    base_links = [-1]
    for j in range(p.getNumJoints(body, physicsClientId=client)):
        info = p.getJointInfo(body, j, physicsClientId=client)
        if info[2] == p.JOINT_FIXED and info[16] in base_links:
            base_links.append(j)
    flange_name = flange_link_name(robot)
    if flange_name not in link_index:
        raise ConfigError(f"robot '{robot.id}': flange link '{flange_name}' not in its URDF")
    flange = link_index[flange_name]
    tool_links = list(finger_links)
    if "anycell_suction_cup" in link_index:
        tool_links.append(link_index["anycell_suction_cup"])
    # the links beyond the flange (hand, fingers, cup) are the tool
    for idx in link_index.values():
        if idx > flange and idx not in tool_links:
            tool_links.append(idx)
    return RobotBody(body=body, config=robot, arm_joints=arm, joint_names=names, finger_joints=fingers,
                     finger_links=finger_links, flange_link=flange, tool_links=sorted(tool_links),
                     lower=lower, upper=upper, velocity=vel, acceleration=acc, finger_max=finger_max,
                     cup_link=link_index.get("anycell_suction_cup"), base_links=base_links)


def _box(client: int, center: List[float], half: List[float], color: List[float], yaw_quat=None,
         collide: bool = True) -> int:
    import pybullet as p

    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client) if collide else -1
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=color, physicsClientId=client)
    return p.createMultiBody(0.0, col, vis, center, yaw_quat or [0, 0, 0, 1], physicsClientId=client)


@dataclass
class CellBodies:
    """The static bodies of a cell, by id (``table``, station ids, machine ids, ``keep_out:<id>``)."""

    static: Dict[str, int]
    robots: Dict[str, RobotBody]


def build_cell(client: int, cell: CellConfig, *, keep_out: bool = False, self_collision: bool = False) -> CellBodies:
    """Create the table, stations, machines (and, for planning, keep-out zones) and the robots.

    Stations are boxes whose top is at ``pose.z``; machines are boxes standing on ``pose``.
    """
    static: Dict[str, int] = {}
    if cell.table is not None:
        lo, hi = cell.table.min, cell.table.max
        static["table"] = _box(client, [(a + b) / 2 for a, b in zip(lo, hi)], [(b - a) / 2 for a, b in zip(lo, hi)],
                               STATIC_COLOR["table"])
    for st in cell.stations:
        sx, sy, sz = st.size
        x, y, z = st.pose.position
        static[st.id] = _box(client, [x, y, z - sz / 2], [sx / 2, sy / 2, sz / 2],
                             STATIC_COLOR.get(st.kind, [0.5, 0.5, 0.5, 1]), st.pose.quaternion)
    for m in cell.machines:
        sx, sy, sz = m.size
        x, y, z = m.pose.position
        static[m.id] = _box(client, [x, y, z + sz / 2], [sx / 2, sy / 2, sz / 2], STATIC_COLOR["machine"],
                            m.pose.quaternion)
    if keep_out:
        for zone in cell.safety.keep_out:
            lo, hi = zone.min, zone.max
            static[f"keep_out:{zone.id}"] = _box(client, [(a + b) / 2 for a, b in zip(lo, hi)],
                                                 [(b - a) / 2 for a, b in zip(lo, hi)], STATIC_COLOR["keep_out"])
    robots = {r.id: load_robot(client, r, self_collision=self_collision) for r in cell.robots}
    return CellBodies(static=static, robots=robots)


def home_configuration(body: RobotBody) -> List[float]:
    """The configured home pose, or the middle of each joint's range."""
    if body.config.home is not None and len(body.config.home) == len(body.arm_joints):
        return [float(v) for v in body.config.home]
    return [(lo + hi) / 2 for lo, hi in zip(body.lower, body.upper)]
