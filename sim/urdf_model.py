"""A robot's URDF as integrators have it, turned into the one file PyBullet loads.

Vendor descriptions come as ``.urdf.xacro`` files with ``package://`` mesh URIs.
PyBullet reads neither, so :func:`prepare_urdf` expands xacro (the ``xacro``
package from PyPI, with the robot's ``xacro_args``), rewrites every mesh URI to
an absolute path (``package://`` through the robot's ``package_paths``, then the
ament index on a ROS machine; relative paths against the URDF's folder), merges
a tool URDF at the flange (:func:`attach_tool`) or adds the suction cup, and
writes the result to a cache keyed by its content.

:class:`UrdfTree` reads the kinematic tree (links, joints, mimic joints) with
the standard library, so the arm chain (root link to flange) is computed from
the URDF itself, not guessed from joint order or names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from anycell.cell import RobotConfig
from anycell.errors import ConfigError

log = logging.getLogger(__name__)

CUP_LINK = "anycell_suction_cup"
MESH_SUFFIXES = (".obj", ".stl", ".dae", ".urdf", ".mtl")


@dataclass
class UrdfJoint:
    """One joint of the tree: what PyBullet needs plus the mimic relation it ignores."""

    name: str
    type: str
    parent: str
    child: str
    lower: float = 0.0
    upper: float = 0.0
    velocity: float = 0.0
    mimic: Optional[str] = None
    multiplier: float = 1.0
    offset: float = 0.0

    @property
    def movable(self) -> bool:
        return self.type in ("revolute", "continuous", "prismatic")


@dataclass
class UrdfTree:
    """The links and joints of a URDF, with the queries the arm and tool split needs."""

    name: str
    links: List[str]
    joints: Dict[str, UrdfJoint]
    parent_joint: Dict[str, str] = field(default_factory=dict)   # child link -> joint name

    @classmethod
    def parse(cls, text: str, where: str = "URDF") -> "UrdfTree":
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise ConfigError(f"{where} is not valid XML: {exc}", hint="check the file (or its xacro expansion)")
        links = [link.get("name", "") for link in root.findall("link")]
        joints: Dict[str, UrdfJoint] = {}
        for j in root.findall("joint"):
            parent, child = j.find("parent"), j.find("child")
            if parent is None or child is None:
                raise ConfigError(f"{where}: joint '{j.get('name')}' lacks a parent or child link")
            limit, mimic = j.find("limit"), j.find("mimic")
            joint = UrdfJoint(name=j.get("name", ""), type=j.get("type", "fixed"), parent=parent.get("link", ""),
                              child=child.get("link", ""))
            if limit is not None:
                joint.lower = float(limit.get("lower", 0.0))
                joint.upper = float(limit.get("upper", 0.0))
                joint.velocity = float(limit.get("velocity", 0.0))
            if mimic is not None:
                joint.mimic = mimic.get("joint")
                joint.multiplier = float(mimic.get("multiplier", 1.0))
                joint.offset = float(mimic.get("offset", 0.0))
            joints[joint.name] = joint
        tree = cls(name=root.get("name", ""), links=links, joints=joints)
        tree.parent_joint = {j.child: j.name for j in joints.values()}
        return tree

    @property
    def root(self) -> str:
        roots = [link for link in self.links if link not in self.parent_joint]
        return roots[0] if roots else (self.links[0] if self.links else "")

    def chain(self, tip: str) -> List[UrdfJoint]:
        """The joints from the root link down to ``tip``, root first."""
        out: List[UrdfJoint] = []
        link = tip
        while link in self.parent_joint:
            joint = self.joints[self.parent_joint[link]]
            out.append(joint)
            link = joint.parent
        return list(reversed(out))

    def descendants(self, link: str) -> List[str]:
        """Every link below ``link`` (not ``link`` itself)."""
        out: List[str] = []
        todo = [link]
        while todo:
            now = todo.pop()
            for j in self.joints.values():
                if j.parent == now:
                    out.append(j.child)
                    todo.append(j.child)
        return out

    def leaves(self) -> List[str]:
        parents = {j.parent for j in self.joints.values()}
        return [link for link in self.links if link not in parents]

    def flange_candidates(self) -> List[str]:
        """Links a flange could be: the child links of the arm's last movable joints and the leaf links."""
        out = []
        for link in self.links:
            chain = self.chain(link)
            if chain and any(j.movable for j in chain) and (link in self.leaves() or link in ("tool0", "flange")
                                                            or chain[-1].movable):
                out.append(link)
        return out

    def followers(self, driven: Sequence[str]) -> List[UrdfJoint]:
        """Mimic joints that follow ``driven`` (directly or through another mimic joint)."""
        known = set(driven)
        out: List[UrdfJoint] = []
        changed = True
        while changed:
            changed = False
            for j in self.joints.values():
                if j.mimic in known and j.name not in known:
                    known.add(j.name)
                    out.append(j)
                    changed = True
        return out

    def master_of(self, joint: str) -> tuple:
        """``(driven joint, multiplier, offset)`` of a mimic joint, followed through chains of mimics."""
        mult, off, name = 1.0, 0.0, joint
        seen = set()
        while self.joints[name].mimic and name not in seen:
            seen.add(name)
            j = self.joints[name]
            mult, off = mult * j.multiplier, off * j.multiplier + j.offset
            name = j.mimic  # type: ignore[assignment]
        return name, mult, off


def read_source(robot: RobotConfig, path: str, *, tool: bool = False) -> str:
    """The URDF text of ``path``, expanding xacro with the robot's arguments (the tool's, for its file)."""
    args = robot.tool.xacro_args if tool else robot.xacro_args
    where = f"robots.{robot.id}." + ("tool.xacro_args" if tool else "xacro_args")
    if path.endswith(".xacro"):
        try:
            import xacro
        except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
            raise ConfigError(f"robot '{robot.id}': '{path}' is xacro and the xacro package is missing",
                              hint="pip install xacro") from exc
        try:
            doc = xacro.process_file(path, mappings={str(k): str(v) for k, v in args.items()})
        except Exception as exc:  # noqa: BLE001 - xacro raises many kinds; all mean a bad file or argument
            raise ConfigError(f"robot '{robot.id}': xacro could not expand '{path}': {exc}",
                              field=where, hint="check the file and its xacro_args")
        return doc.toxml()
    with open(path, "r", encoding="utf-8") as handle:
        return handle.read()


def find_package(name: str, search: Sequence[str]) -> Optional[str]:
    """The folder of ROS package ``name``: in the configured folders, then the ament index."""
    for folder in search:
        for candidate in (os.path.join(folder, name), folder if os.path.basename(folder) == name else ""):
            if candidate and os.path.isdir(candidate):
                return candidate
    try:  # a ROS machine: the ament index knows every installed package
        from ament_index_python.packages import get_package_share_directory  # type: ignore[import-not-found]

        return get_package_share_directory(name)
    except Exception:  # noqa: BLE001 - no ROS here, or no such package
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        share = os.path.join(prefix, "share", name)
        if prefix and os.path.isdir(share):
            return share
    return None


def resolve_uris(robot: RobotConfig, text: str, base: str, *, tool: bool = False) -> str:
    """Every mesh ``filename`` made an absolute path; a ``package://`` nobody can find is a clear error.

    A tool's URIs are looked up in the tool's ``package_paths``, then the robot's, then beside the tool file.
    """
    search = (list(robot.tool.package_paths) if tool else []) + list(robot.package_paths) + \
        [base, os.path.dirname(base)]
    where = f"robots.{robot.id}." + ("tool.package_paths" if tool else "package_paths")

    def absolute(m: "re.Match[str]") -> str:
        name = m.group(2)
        if name.startswith("package://"):
            pkg, _, rest = name[len("package://"):].partition("/")
            folder = find_package(pkg, search)
            if folder is None:
                raise ConfigError(f"robot '{robot.id}': mesh '{name}' names ROS package '{pkg}', which is not "
                                  "found", field=where,
                                  hint="add the folder that holds the package to package_paths "
                                       "(or install it on the ROS machine)")
            return f'{m.group(1)}="{os.path.join(folder, rest)}"'
        if name.startswith("file://"):
            return f'{m.group(1)}="{name[len("file://"):]}"'
        if os.path.isabs(name) or not name.lower().endswith(MESH_SUFFIXES):
            return m.group(0)
        return f'{m.group(1)}="{os.path.join(base, name)}"'

    return re.sub(r'(filename)="([^"]+)"', absolute, text)


def add_missing_inertials(text: str) -> str:
    """Give links without an ``<inertial>`` (``tool0``, frames) a negligible mass.

    PyBullet gives such a link 1 kg and unit inertia: on a vendor arm's ``tool0``
    that is a kilogram hanging off the flange the real arm does not carry.
    """
    def fix(m: "re.Match[str]") -> str:
        whole = m.group(0)
        if "<inertial" in whole:
            return whole
        tiny = ('<inertial><mass value="0.001"/><inertia ixx="1e-7" ixy="0" ixz="0" iyy="1e-7" iyz="0" '
                'izz="1e-7"/></inertial>')
        if whole.rstrip().endswith("/>") and "</link>" not in whole:
            return whole.rstrip()[:-2].rstrip() + ">" + tiny + "</link>"
        return whole.replace("</link>", tiny + "</link>")

    return re.sub(r"<link\b[^>]*?/>|<link\b[^>]*?[^/]>.*?</link>", fix, text, flags=re.S)


def suction_cup(flange: str, robot: RobotConfig) -> str:
    """The cup as a link on the flange: a cylinder of the tool's ``cup_radius`` from the flange to the TCP."""
    tcp = robot.tool.tcp
    length = max(0.005, float(tcp.xyz[2]))
    radius = float(robot.tool.cup_radius)
    geom = f'<origin xyz="0 0 {length / 2}"/><geometry><cylinder radius="{radius}" length="{length}"/></geometry>'
    return f"""
  <link name="{CUP_LINK}">
    <inertial><origin xyz="0 0 {length / 2}"/><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual>{geom}<material name="cup"><color rgba="0.15 0.15 0.15 1"/></material></visual>
    <collision>{geom}</collision>
  </link>
  <joint name="anycell_suction_joint" type="fixed">
    <parent link="{flange}"/><child link="{CUP_LINK}"/>
    <origin xyz="{tcp.xyz[0]} {tcp.xyz[1]} 0" rpy="0 0 0"/>
  </joint>
"""


#: The fixed joint anycell adds between the flange and a tool URDF's root link.
TOOL_MOUNT_JOINT = "anycell_tool_mount"
#: The elements of a tool URDF that go into the combined robot (``gazebo`` and ``ros2_control`` do not).
TOOL_ELEMENTS = ("link", "joint", "material", "transmission")


def attach_tool(arm_text: str, arm: UrdfTree, tool_text: str, flange: str, robot: RobotConfig, source: str) -> str:
    """The arm's URDF with the tool's links and joints added, the tool's root link fixed to ``flange`` at
    ``robot.tool.mount`` by the joint :data:`TOOL_MOUNT_JOINT`.

    The tool URDF must be one tree hanging from one root link, every joint joining two of its own links,
    and no link or joint name may also be the arm's; anything else is a :class:`ConfigError` naming the tool
    file and the clashing names. Material names the arm also uses are renamed in the tool (colours only).
    """
    where = f"robots.{robot.id}.tool.urdf"
    what = f"robot '{robot.id}': tool URDF '{source}'"
    try:
        root = ET.fromstring(tool_text)
    except ET.ParseError as exc:
        raise ConfigError(f"{what} is not valid XML: {exc}", field=where,
                          hint="check the file (or its xacro expansion with tool.xacro_args)") from exc
    if root.tag != "robot":
        raise ConfigError(f"{what} is not a URDF (its root element is <{root.tag}>, not <robot>)", field=where)
    tool = UrdfTree.parse(tool_text, source)
    if not tool.links:
        raise ConfigError(f"{what} has no links", field=where, hint="a tool URDF describes the tool's own links")
    for kind, names in (("link", tool.links), ("joint", [j.get("name", "") for j in root.findall("joint")])):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{what} defines {kind} '{twice[0]}' more than once", field=where)
    for j in tool.joints.values():
        for side, link in (("parent", j.parent), ("child", j.child)):
            if link not in tool.links:
                raise ConfigError(f"{what}: joint '{j.name}' names {side} link '{link}', which the tool does not "
                                  "define", field=where,
                                  hint="a tool URDF stands alone: anycell fixes its root link to the flange itself "
                                       "(tool.mount); drop the joint to the arm, or switch it off with a xacro arg")
    children = [j.child for j in tool.joints.values()]
    twice = sorted({c for c in children if children.count(c) > 1})
    if twice:
        raise ConfigError(f"{what}: link '{twice[0]}' is the child of more than one joint", field=where,
                          hint="a URDF is a tree: give each link one parent joint")
    roots = [link for link in tool.links if link not in tool.parent_joint]
    if len(roots) != 1:
        raise ConfigError(f"{what} has {len(roots)} root links" + (f" ({', '.join(roots)})" if roots else "")
                          + ": it needs exactly one, the link bolted to the flange", field=where,
                          hint="join the parts under one base link with fixed joints" if roots
                          else "the joints form a loop: a URDF is a tree")
    unreachable = sorted(set(tool.links) - set(tool.descendants(roots[0])) - {roots[0]})
    if unreachable:
        raise ConfigError(f"{what}: link(s) {', '.join(unreachable)} are not connected to its root link "
                          f"'{roots[0]}'", field=where, hint="the joints form a loop: a URDF is a tree")
    links = sorted(set(tool.links) & set(arm.links))
    joints = sorted(set(tool.joints) & (set(arm.joints) | {TOOL_MOUNT_JOINT}))
    if links or joints:
        names = ([f"link '{n}'" for n in links] + [f"joint '{n}'" for n in joints])
        raise ConfigError(f"{what} and the robot's own URDF both have " + ", ".join(names[:6])
                          + (f" (and {len(names) - 6} more)" if len(names) > 6 else ""), field=where,
                          hint="names must be unique in the robot with its tool: rename them in the tool's URDF, "
                               "or pass a prefix through tool.xacro_args when its xacro takes one")
    # materials: the arm's definitions win a name both use, so the tool's are renamed (colours only)
    arm_materials = set(re.findall(r'<material\s+name="([^"]+)"', arm_text))
    for el in root.iter("material"):
        name = el.get("name")
        if name and name in arm_materials:
            el.set("name", f"{name}_tool")
    parts = []
    for el in root:
        if el.tag in TOOL_ELEMENTS:
            el.tail = "\n"
            parts.append(ET.tostring(el, encoding="unicode"))
        else:
            log.debug("tool URDF '%s': <%s> left out of the combined robot", source, el.tag)
    mount = robot.tool.mount
    parts.append(f'<joint name="{TOOL_MOUNT_JOINT}" type="fixed"><parent link="{flange}"/>'
                 f'<child link="{roots[0]}"/><origin xyz="{" ".join(repr(float(v)) for v in mount.xyz)}" '
                 f'rpy="{" ".join(repr(float(v)) for v in mount.rpy)}"/></joint>\n')
    head, tag, tail = arm_text.rpartition("</robot>")
    if not tag:
        raise ConfigError(f"robot '{robot.id}': its URDF has no closing </robot>", field=f"robots.{robot.id}.urdf")
    return head + "\n<!-- the tool, from " + source.replace("--", "-") + " -->\n" + "".join(parts) + tag + tail


def cache_file(robot: RobotConfig, text: str) -> str:
    """Write ``text`` to the URDF cache (keyed by content) and return its path."""
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
