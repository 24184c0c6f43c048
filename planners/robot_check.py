"""Check each robot of a cell as it will move: its arm chain, flange, tool joints, reach and home.

``anycell validate`` runs this so an integrator learns of a wrong flange, a home
of the wrong length, outside the joint limits or in collision *before* the
robot moves. Every robot's home is checked in the cell's collision model (the
one the planner uses), with the other robots at their homes too, and a
collision names both bodies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from anycell.cell import CellConfig
from anycell.documents import format_path
from anycell.errors import ConfigError

REACH_SAMPLES = 400


@dataclass
class RobotReport:
    """What anycell made of one robot's model."""

    id: str
    source: str
    chain: List[str]              # links, root to flange
    arm_joints: List[str]
    flange: str
    tool: str
    tool_joints: List[str]        # driven, then mimic
    reach: float                  # m: farthest TCP distance from the shoulder over sampled positions
    home: List[float] = field(default_factory=list)
    tool_source: str = ""         # the tool's own URDF, when it has one
    tool_root: str = ""           # its root link, fixed to the flange
    driven_joints: List[str] = field(default_factory=list)   # the tool joints anycell drives (the rest mimic)

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "source": self.source, "chain": self.chain, "arm_joints": self.arm_joints,
                "flange": self.flange, "tool": self.tool, "tool_joints": self.tool_joints,
                "driven_joints": self.driven_joints, "tool_urdf": self.tool_source or None,
                "tool_root": self.tool_root or None,
                "reach_m": round(self.reach, 3), "home": [round(v, 4) for v in self.home]}

    def lines(self) -> List[str]:
        mimic = [j for j in self.tool_joints if j not in self.driven_joints]
        joints = ", ".join(self.driven_joints or self.tool_joints) + (f"; mimic: {', '.join(mimic)}"
                                                                        if mimic and self.driven_joints else "")
        return [f"robot {self.id}: {self.source}",
                f"  arm chain: {' -> '.join(self.chain)} ({len(self.arm_joints)} joints: {', '.join(self.arm_joints)})",
                f"  flange: {self.flange}; tool: {self.tool}" + (f" (joints: {joints})" if self.tool_joints else "")]\
            + ([f"  tool URDF: {self.tool_source} (root link {self.tool_root} fixed to {self.flange})"]
               if self.tool_source else []) \
            + [f"  reach: {self.reach:.3f} m (TCP from the shoulder); home: [{', '.join(f'{v:.3f}' for v in self.home)}]"]


def check_robots(cell: CellConfig) -> List[RobotReport]:
    """A report per robot; raises :class:`ConfigError` for a home of the wrong length, outside limits or colliding."""
    from anycell.sim.builder import home_configuration, robot_tree
    from anycell.sim.urdf_model import TOOL_MOUNT_JOINT

    from .collision import CollisionWorld

    reports: List[RobotReport] = []
    worlds = []
    try:
        for index, robot in enumerate(cell.robots):
            try:
                world = CollisionWorld(cell, robot.id)
            except ConfigError as exc:
                raise _located(exc, cell, index) from None
            worlds.append(world)
            rb = world.robot
            home = home_configuration(rb)
            where = f"robots.{robot.id}.home"
            for name, v, lo, hi in zip(rb.joint_names, home, rb.lower, rb.upper):
                if not lo - 1e-9 <= v <= hi + 1e-9:
                    raise ConfigError(f"robot '{robot.id}': home {name}={v:g} rad is outside its limits "
                                      f"[{lo:g}, {hi:g}]", field=where, hint="choose a home inside the joint limits")
            bad = world.contacts(home, first=False)
            if bad:
                raise ConfigError(f"robot '{robot.id}': its home is in collision: " + "; ".join(map(str, bad[:3])),
                                  field=where, hint="choose a home clear of the stations, the machines and the "
                                                    "other robots' homes")
            mount = robot_tree(robot).joints.get(TOOL_MOUNT_JOINT)
            reports.append(RobotReport(id=robot.id, source=robot.model or str(robot.urdf), chain=rb.chain_links,
                                       arm_joints=list(rb.joint_names), flange=rb.flange_name, tool=robot.tool.kind,
                                       tool_joints=list(rb.tool_joint_names), reach=_reach(world), home=home,
                                       tool_source=str(robot.tool.urdf or ""),
                                       tool_root=mount.child if mount is not None else "",
                                       driven_joints=list(rb.tool_joint_names[:len(rb.finger_joints)])))
    finally:
        for world in worlds:
            world.close()
    return reports


def _located(exc: ConfigError, cell: CellConfig, index: int) -> ConfigError:
    """A model error (``robots.<id>.tool.urdf``) given the place in the cell file it points at."""
    prefix = f"robots.{cell.robots[index].id}."
    if exc.location is not None or cell.document is None or not (exc.field or "").startswith(prefix):
        return exc
    path = ("robots", index) + tuple(exc.field[len(prefix):].split("."))   # type: ignore[index]
    exc.location = cell.document.location(path)
    exc.field = format_path(path)
    return exc


def _reach(world: Any) -> float:
    """The farthest the TCP gets from the shoulder (the second arm joint; the first when there is one),
    over home and a fixed set of sampled positions: the figure makers quote as reach, plus the tool."""
    import pybullet as p  # lazily: pybullet only where the world model is

    kin = world.kin
    rb = world.robot
    kin.set(kin.home)
    shoulder = rb.arm_joints[1] if len(rb.arm_joints) > 1 else rb.arm_joints[0]
    origin = np.asarray(p.getLinkState(rb.body, shoulder, computeForwardKinematics=True,
                                       physicsClientId=world.client)[4])
    rng = np.random.default_rng(11)
    best = 0.0
    for k in range(REACH_SAMPLES):
        q = kin.home if k == 0 else kin.lower + (kin.upper - kin.lower) * rng.random(kin.dof)
        best = max(best, float(np.linalg.norm(kin.fk_matrix(q)[:3, 3] - origin)))
    return math.floor(best * 1000) / 1000
