"""Helpers shared by the simulator's tests."""

from __future__ import annotations

import os
import shutil
import textwrap
from typing import Any, Tuple

from tests.paths import ROOT

#: The shipped robot description packages (a UR5e arm, a hinged gripper).
ROBOTS = os.path.join(ROOT, "cell_configs", "robots")

#: A UR5e from its shipped xacro description, as a cell's robots list entry.
UR = """
- id: ur
  urdf: robots/ur5e_description/urdf/ur5e.urdf.xacro
  package_paths: [robots]
  base: {rpy: [0, 0, 3.14159265]}
  home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]
"""

CELL_TAIL = """
table: {min: [-0.6, -0.6, -0.05], max: [0.8, 0.6, 0.0]}
safety:
  workspace: {min: [-0.8, -0.8, -0.01], max: [0.9, 0.8, 1.3]}
"""


def one_robot_cell(tmp_path: Any, robot_yaml: str, extra: str = "") -> Any:
    """A one-robot cell (``robot_yaml``: its robots list, ``extra``: more top-level YAML) written next to
    copies of the shipped description packages, so its file references stay inside its folder."""
    from anycell.cell import load_cell

    if not (tmp_path / "robots").exists():
        shutil.copytree(ROBOTS, tmp_path / "robots")
    text = "cell: {id: t}\nrobots:\n" + textwrap.indent(textwrap.dedent(robot_yaml).strip("\n"), "  ") + "\n"
    (tmp_path / "cell.yaml").write_text(text + extra + CELL_TAIL)
    return load_cell(str(tmp_path / "cell.yaml"))


def load_alone(cell: Any, rid: str) -> Tuple[int, Any]:
    """Robot ``rid`` of ``cell`` loaded into a fresh PyBullet DIRECT client: (client, loaded robot).

    The caller disconnects the client; it is disconnected here when loading fails.
    """
    import pybullet as p

    from anycell.sim.builder import load_robot

    client = p.connect(p.DIRECT)
    try:
        return client, load_robot(client, cell.robot(rid))
    except BaseException:
        p.disconnect(client)
        raise


def lift_and_release(world: Any, robot: Any, grasp: Any, above: Any) -> None:
    """``robot`` holding part ``box`` at joint positions ``grasp``: it moves straight (in joint space) to
    ``above`` in 2 s; the part must have come along, and it lets go."""
    import numpy as np

    from anycell.planners.trajectory import Trajectory

    path = [grasp + (np.asarray(above) - grasp) * s for s in np.linspace(0, 1, 11)]
    robot.execute(Trajectory(joint_names=robot.joint_names, times=list(np.linspace(0, 2.0, 11)),
                             positions=[list(q) for q in path]))
    assert world.part_pose("box").xyz[2] > 0.1
    robot.release()
    assert robot.holding() is None
