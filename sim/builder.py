"""Build the PyBullet bodies of a cell from its CellConfig: the one geometric model of the cell.

Both the simulator (:class:`anycell.sim.world.SimWorld`) and the motion planner's
collision world call :func:`build_cell` on their own PyBullet client, so the
planner checks against exactly the geometry the simulated robot meets.

Robots come from ``pybullet_data`` (built-in models) or a URDF path. The tool
is part of the robot body: the Panda URDF carries its hand and fingers; a tool
given as its own URDF (``tool.urdf``) is merged into a generated copy of the
robot's URDF with a fixed joint at the flange; a suction tool without one is
added as a cup link (a cylinder from the flange to the TCP). Planner, collision
backends, feasibility figures and simulator all load that one file
(:func:`robot_urdf`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from anycell.cell import BUILTIN_ROBOTS, CellConfig
from anycell.cell import RobotConfig
from anycell.errors import ConfigError

from .urdf_model import (CUP_LINK, TOOL_MOUNT_JOINT, UrdfTree, add_missing_inertials, attach_tool, cache_file,
                         read_source, resolve_uris, suction_cup)

#: The flange link (where the tool's TCP offset is measured from) of each built-in model.
FLANGE_LINKS: Dict[str, str] = {
    "franka_panda": "panda_link8",
    "kuka_iiwa": "lbr_iiwa_link_7",
    "xarm6": "link6",
}

#: The driven finger joints of models whose URDF carries a parallel gripper.
TOOL_JOINTS: Dict[str, List[str]] = {
    "franka_panda": ["panda_finger_joint1", "panda_finger_joint2"],
}

#: Each built-in model's ready pose (its maker's documented "ready"/home pose, TCP pointing down),
#: used when a robot declares no ``home``.
READY_POSES: Dict[str, List[float]] = {
    "franka_panda": [0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398],   # franka_ros "ready"
    "kuka_iiwa": [0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0],
    "xarm6": [0.0, -0.3, -0.6, 0.0, 0.9, 0.0],
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
    """The robot's URDF (or xacro) file on disk (built-in model or the configured path)."""
    if robot.model is not None:
        return os.path.join(_pybullet_data(), BUILTIN_ROBOTS[robot.model])
    return str(robot.urdf)


_PREPARED: Dict[str, Tuple[str, UrdfTree]] = {}


def _prepared(robot: RobotConfig) -> Tuple[str, UrdfTree]:
    # the config is frozen but holds lists: its repr (and the files' ages) is the cache key
    key = repr(robot) + "".join(f"@{os.path.getmtime(f)}" for f in (source_urdf(robot), robot.tool.urdf)
                                if f and os.path.exists(f))
    if key not in _PREPARED:
        _PREPARED[key] = _prepare(robot)
    return _PREPARED[key]


def _prepare(robot: RobotConfig) -> Tuple[str, UrdfTree]:
    """The one model of the robot with its tool, which every consumer loads.

    The arm's URDF (xacro expanded, mesh URIs absolute), then the tool: a tool URDF
    (:attr:`Tool.urdf <anycell.cell.Tool.urdf>`, expanded and resolved the same way)
    fixed to the flange at ``tool.mount``, or a suction cup made from ``cup_radius``.
    """
    src = source_urdf(robot)
    tool = robot.tool
    if not os.path.exists(src):
        raise ConfigError(f"robot '{robot.id}': URDF '{src}' not found", field=f"robots.{robot.id}.urdf")
    if robot.model is not None and tool.kind != "suction" and tool.urdf is None:
        with open(src, "r", encoding="utf-8") as handle:
            return src, UrdfTree.parse(handle.read(), src)
    text = resolve_uris(robot, read_source(robot, src), os.path.dirname(os.path.abspath(src)))
    tree = UrdfTree.parse(text, src)
    if tool.urdf is not None:
        tool_src = str(tool.urdf)
        if not os.path.isfile(tool_src):
            raise ConfigError(f"robot '{robot.id}': tool URDF '{tool_src}' not found",
                              field=f"robots.{robot.id}.tool.urdf", hint="paths are relative to the cell config file")
        tool_text = resolve_uris(robot, read_source(robot, tool_src, tool=True),
                                 os.path.dirname(os.path.abspath(tool_src)), tool=True)
        text = attach_tool(text, tree, tool_text, flange_link_name(robot, tree), robot, tool_src)
    elif tool.kind == "suction":
        text = text.replace("</robot>", suction_cup(flange_link_name(robot, tree), robot) + "</robot>")
    text = add_missing_inertials(text)
    return cache_file(robot, text), UrdfTree.parse(text, src)


def robot_urdf(robot: RobotConfig) -> str:
    """A URDF PyBullet can load for the robot *with its tool*.

    Built-in models without a suction cup load as they are; anything else is a
    generated copy (xacro expanded, mesh URIs absolute, suction cup added) in a
    cache directory keyed by its content.
    """
    return _prepared(robot)[0]


def robot_tree(robot: RobotConfig) -> UrdfTree:
    """The kinematic tree of the robot with its tool (the same file :func:`robot_urdf` gives)."""
    return _prepared(robot)[1]


def flange_link_name(robot: RobotConfig, tree: Optional[UrdfTree] = None) -> str:
    """The flange link: ``robot.flange``, the built-in model's flange, or ``tool0`` when the URDF has it.

    Anything else is a :class:`ConfigError` listing the candidates: guessing (the
    child of the last movable joint) put a UR arm's TCP 90 degrees and 82 mm off.
    """
    if robot.flange is None and robot.model in FLANGE_LINKS:
        return FLANGE_LINKS[robot.model]  # type: ignore[index]
    tree = tree or robot_tree(robot)
    where = f"robots.{robot.id}.flange"
    if robot.flange is not None:
        if robot.flange not in tree.links:
            raise ConfigError(f"robot '{robot.id}': flange link '{robot.flange}' is not in its URDF", field=where,
                              hint="candidates: " + ", ".join(tree.flange_candidates()))
        if not any(j.movable for j in tree.chain(robot.flange)):
            raise ConfigError(f"robot '{robot.id}': no movable joint between the root link '{tree.root}' and "
                              f"flange '{robot.flange}'", field=where,
                              hint="candidates: " + ", ".join(tree.flange_candidates()))
        return robot.flange
    if "tool0" in tree.links:
        return "tool0"
    raise ConfigError(f"robot '{robot.id}': its URDF has no 'tool0' link; name the link the tool is mounted on",
                      field=where, hint="set flange: to one of " + ", ".join(tree.flange_candidates()))


@dataclass
class RobotBody:
    """A loaded robot: its body id and the indices anycell needs.

    The arm is the chain of movable joints from the URDF's root link to the
    flange; the tool's driven joints are ``finger_joints`` (with their open and
    closed positions), and ``mimic_joints`` follow them as the URDF says.
    Every other joint is held where it is.
    """

    body: int
    config: RobotConfig
    arm_joints: List[int]               # movable joints of the arm chain, root first
    joint_names: List[str]
    finger_joints: List[int]            # driven finger joints (sliding or hinged)
    finger_links: List[int]             # the fingertip links (leaves of the finger branches)
    flange_link: int
    tool_links: List[int]               # links below the flange (hand, fingers, cup)
    lower: List[float]
    upper: List[float]
    velocity: List[float]
    acceleration: List[float]
    finger_open: List[float] = field(default_factory=list)
    finger_closed: List[float] = field(default_factory=list)
    mimic_joints: List[Tuple[int, int, float, float]] = field(default_factory=list)  # (joint, finger k, mult, offset)
    cup_link: Optional[int] = None      # the suction cup link, for a suction tool
    base_links: List[int] = field(default_factory=lambda: [-1])   # links fixed to the base (-1 is the base)
    flange_name: str = ""
    chain_links: List[str] = field(default_factory=list)           # root link .. flange
    tool_joint_names: List[str] = field(default_factory=list)      # driven, then mimic
    link_names: Dict[int, str] = field(default_factory=dict)
    finger_parts: List[int] = field(default_factory=list)          # every link the finger joints move

    @property
    def finger_max(self) -> List[float]:
        """The open finger positions (kept for callers written for sliding fingers)."""
        return self.finger_open

    def finger_targets(self, values: Sequence[float]) -> Tuple[List[int], List[float]]:
        """Joint indices and positions for the driven finger joints at ``values`` and their mimic joints."""
        joints, targets = list(self.finger_joints), [float(v) for v in values]
        for j, k, mult, off in self.mimic_joints:
            joints.append(j)
            targets.append(mult * float(values[k]) + off)
        return joints, targets


def _tool_joints(robot: RobotConfig, tree: UrdfTree, arm: Sequence[str]) -> Tuple[List[str], List[float], List[float]]:
    """The driven finger joints with their open and closed positions (declared, or the model's own)."""
    tool = robot.tool
    if tool.kind == "suction":
        return [], [], []
    where = f"robots.{robot.id}.tool.joints"
    mount = tree.joints.get(TOOL_MOUNT_JOINT)
    if mount is not None:   # a tool URDF: its fingers are its own joints (default: its driven movable ones)
        own = {mount.child, *tree.descendants(mount.child)}
        own_joints = [j for j in tree.joints.values() if j.child in own and j.name != TOOL_MOUNT_JOINT]
        movable = [j.name for j in own_joints if j.movable]
        names = list(tool.joints) or [j.name for j in own_joints if j.movable and not j.mimic]
        for name in names:
            if name not in movable:
                state = "fixed in" if name in {j.name for j in own_joints} else "not in"
                raise ConfigError(f"robot '{robot.id}': tool joint '{name}' is {state} the tool URDF "
                                  f"'{tool.urdf}'", field=where,
                                  hint="the tool's movable joints: " + (", ".join(movable) or "none"))
        if not names:
            raise ConfigError(f"robot '{robot.id}': the parallel gripper's tool URDF '{tool.urdf}' has no movable "
                              "joint to close its fingers", field=where,
                              hint="give the fingers revolute or prismatic joints, or use kind: suction")
    else:
        names = list(tool.joints) or list(TOOL_JOINTS.get(robot.model or "", ()))
        if not names:   # an undeclared gripper: sliding joints named like fingers, as before
            names = [j.name for j in tree.joints.values()
                     if j.type == "prismatic" and "finger" in j.name and j.name not in arm and not j.mimic]
    for name in names:
        if name not in tree.joints:
            outside = [j.name for j in tree.joints.values() if j.movable and j.name not in arm]
            raise ConfigError(f"robot '{robot.id}': tool joint '{name}' is not in its URDF", field=where,
                              hint="movable joints outside the arm: " + (", ".join(outside) or "none"))
        if name in arm:
            raise ConfigError(f"robot '{robot.id}': tool joint '{name}' is an arm joint (between the root and the "
                              "flange)", field=where, hint="check flange: the fingers hang below the flange")
        if not tree.joints[name].movable:
            raise ConfigError(f"robot '{robot.id}': tool joint '{name}' is fixed", field=where)
    opened = [float(v) for v in tool.open] or [tree.joints[n].upper for n in names]
    closed = [float(v) for v in tool.closed] or [tree.joints[n].lower for n in names]
    for label, values in (("open", opened), ("closed", closed)):
        for name, v in zip(names, values):
            j = tree.joints[name]
            if j.type != "continuous" and j.upper > j.lower and not j.lower - 1e-9 <= v <= j.upper + 1e-9:
                raise ConfigError(f"robot '{robot.id}': tool.{label} puts '{name}' at {v:g}, outside its limits "
                                  f"[{j.lower:g}, {j.upper:g}]", field=f"robots.{robot.id}.tool.{label}",
                                  hint="give positions within the joint's URDF limits")
    return names, opened, closed


def load_robot(client: int, robot: RobotConfig, *, self_collision: bool = False,
               exact_cylinders: bool = False) -> RobotBody:
    """Load one robot (with its tool) at its base pose and split its joints into arm, tool and fixed.

    ``self_collision`` makes PyBullet report contacts between the robot's own links
    (the planner wants them; the simulator's position-controlled arm does not need them).
    ``exact_cylinders`` (the simulator's physics) makes URDF cylinders true cylinders. Otherwise
    PyBullet turns each into a convex hull that its 1 mm collision margin puffs up, which the
    planners' collision backends model the same way (1 mm to spare); in the simulator a suction
    cup (a cylinder) would meet a face 1 mm early and press the part it picks that much deeper
    into what it stands on, tilting a part held off its centre.
    """
    import pybullet as p

    path = robot_urdf(robot)
    tree = robot_tree(robot)
    flange_name = flange_link_name(robot, tree)
    chain = tree.chain(flange_name)
    arm_names = [j.name for j in chain if j.movable and not j.mimic]
    finger_names, finger_open, finger_closed = _tool_joints(robot, tree, arm_names)
    body = p.loadURDF(path, robot.base.position, robot.base.quaternion, useFixedBase=True,
                      flags=p.URDF_USE_INERTIA_FROM_FILE | (p.URDF_USE_IMPLICIT_CYLINDER if exact_cylinders else 0) | (
                          p.URDF_USE_SELF_COLLISION | p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT if self_collision else 0),
                      physicsClientId=client)
    joint_index: Dict[str, int] = {}
    link_index: Dict[str, int] = {}
    infos = {}
    for j in range(p.getNumJoints(body, physicsClientId=client)):
        info = p.getJointInfo(body, j, physicsClientId=client)
        joint_index[info[1].decode()] = j
        link_index[info[12].decode()] = j
        infos[j] = info
    arm = [joint_index[n] for n in arm_names]
    lower, upper, vel = [], [], []
    for j in arm:
        info = infos[j]
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
    for i, name in enumerate(arm_names):
        lim = robot.joint_limits.get(name)
        if lim is None:
            continue
        lower[i] = lim.lower if lim.lower is not None else lower[i]
        upper[i] = lim.upper if lim.upper is not None else upper[i]
        vel[i] = lim.velocity if lim.velocity is not None else vel[i]
        acc[i] = lim.acceleration if lim.acceleration is not None else acc[i]
    base_links = [-1]
    for j in range(p.getNumJoints(body, physicsClientId=client)):
        if infos[j][2] == p.JOINT_FIXED and infos[j][16] in base_links:
            base_links.append(j)
    flange = link_index[flange_name] if flange_name in link_index else -1
    below = set(tree.descendants(flange_name))
    tool_links = sorted(link_index[n] for n in below if n in link_index)
    mimic: List[Tuple[int, int, float, float]] = []
    for follower in tree.followers(finger_names):
        master, mult, off = tree.master_of(follower.name)
        if master in finger_names:
            mimic.append((joint_index[follower.name], finger_names.index(master), mult, off))
    finger_branch: List[str] = []
    for name in finger_names + [f.name for f in tree.followers(finger_names)]:
        child = tree.joints[name].child
        finger_branch += [child] + tree.descendants(child)
    leaves = set(tree.leaves())
    tips = [n for n in dict.fromkeys(finger_branch) if n in leaves and n in link_index]
    # the two fingertips, in the order of their driven joints (each driven joint's branch first)
    finger_links = [link_index[n] for n in tips]
    cup = link_index.get(CUP_LINK)
    if cup is None and robot.tool.kind == "suction" and robot.tool.urdf is not None:
        cup = _cup_of(client, body, tool_links, flange, robot)
    return RobotBody(body=body, config=robot, arm_joints=arm, joint_names=arm_names,
                     finger_joints=[joint_index[n] for n in finger_names], finger_links=finger_links,
                     flange_link=flange, tool_links=tool_links, lower=lower, upper=upper, velocity=vel,
                     acceleration=acc, finger_open=finger_open, finger_closed=finger_closed, mimic_joints=mimic,
                     cup_link=cup, base_links=base_links, flange_name=flange_name,
                     chain_links=[tree.root] + [j.child for j in chain],
                     tool_joint_names=finger_names + [f.name for f in tree.followers(finger_names)],
                     link_names={v: k for k, v in link_index.items()},
                     finger_parts=[link_index[n] for n in dict.fromkeys(finger_branch) if n in link_index])


def _cup_of(client: int, body: int, tool_links: Sequence[int], flange: int, robot: RobotConfig) -> Optional[int]:
    """The link of a suction tool URDF that holds parts: the solid tool link nearest the TCP."""
    import numpy as np
    import pybullet as p

    state = p.getLinkState(body, flange, computeForwardKinematics=True, physicsClientId=client)
    tcp = np.asarray(p.multiplyTransforms(state[4], state[5], robot.tool.tcp.position, robot.tool.tcp.quaternion,
                                          physicsClientId=client)[0])
    best: Tuple[float, Optional[int]] = (float("inf"), None)
    for link in tool_links:
        if not p.getCollisionShapeData(body, link, physicsClientId=client):
            continue
        lo, hi = (np.asarray(v) for v in p.getAABB(body, link, physicsClientId=client))
        best = min(best, (float(np.linalg.norm(tcp - np.clip(tcp, lo, hi))), link), key=lambda b: b[0])
    return best[1]


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


def build_cell(client: int, cell: CellConfig, *, keep_out: bool = False, self_collision: bool = False,
               exact_cylinders: bool = False) -> CellBodies:
    """Create the table, stations, machines (and, for planning, keep-out zones) and the robots.

    Stations are boxes whose top is at ``pose.z``; machines are boxes standing on ``pose``.
    ``exact_cylinders``: see :func:`load_robot` (the simulator's world sets it, the planners' do not).
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
    robots = {r.id: load_robot(client, r, self_collision=self_collision, exact_cylinders=exact_cylinders)
              for r in cell.robots}
    return CellBodies(static=static, robots=robots)


def home_configuration(body: RobotBody) -> List[float]:
    """The declared home, else the built-in model's ready pose. A home of the wrong length is an error."""
    robot = body.config
    home = robot.home if robot.home is not None else READY_POSES.get(robot.model or "")
    where = f"robots.{robot.id}.home"
    if home is None:
        raise ConfigError(f"robot '{robot.id}' has no home", field=where,
                          hint=f"declare home: one value per arm joint ({', '.join(body.joint_names)})")
    if len(home) != len(body.arm_joints):
        raise ConfigError(f"robot '{robot.id}': home has {len(home)} values for {len(body.arm_joints)} arm joints "
                          f"({', '.join(body.joint_names)})", field=where,
                          hint="one value per joint from the root link to the flange, radians")
    return [float(v) for v in home]
