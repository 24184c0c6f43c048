"""Robots as integrators have them: xacro with package:// meshes, a named flange, tool joints
(sliding or hinged, with mimic joints) apart from the arm, declared homes, one cup radius."""

from __future__ import annotations

import os

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import ConfigError
from tests.paths import ROOT
from tests.sim.helpers import UR, lift_and_release, load_alone, one_robot_cell

UR_CELL = os.path.join(ROOT, "cell_configs", "ur_cell.yaml")


def test_xacro_with_package_mesh_loads_with_tool0_as_flange(tmp_path) -> None:
    import pybullet as p

    from anycell.planners.kinematics import Kinematics
    from anycell.sim.builder import robot_urdf

    cell = one_robot_cell(tmp_path, UR + "  tool: {kind: suction, tcp: {xyz: [0, 0, 0.05]}, cup_radius: 0.012}\n")
    text = open(robot_urdf(cell.robot("ur"))).read()
    mesh = os.path.join(str(tmp_path), "robots", "ur5e_description", "meshes", "base.obj")
    assert f'filename="{os.path.realpath(mesh)}"' in text or f'filename="{mesh}"' in text
    assert 'filename="package://' not in text and "<xacro:" not in text
    client, rb = load_alone(cell, "ur")
    try:
        assert rb.flange_name == "tool0"
        assert rb.joint_names == ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint",
                                  "wrist_2_joint", "wrist_3_joint"]
        # the cup is the tool's own radius: the collision model and the feasibility check agree
        lo, hi = p.getAABB(rb.body, rb.cup_link, physicsClientId=client)     # radius plus the contact margin
        assert 0.012 <= (hi[0] - lo[0]) / 2 <= 0.012 + 0.003
    finally:
        p.disconnect(client)
    # the TCP is measured from tool0, d6 = 99.6 mm beyond wrist_3_link along its axis
    kin = Kinematics(cell, "ur")
    try:
        q = [0.3, -1.2, 1.4, -1.7, -1.5, 0.4]
        tcp = kin.fk_matrix(q)
        kin.set(q)
        wrist3 = p.getLinkState(kin.body.body, kin.body.arm_joints[-1], computeForwardKinematics=True,
                                physicsClientId=kin.client)
        gap = np.asarray(tcp[:3, 3]) - np.asarray(wrist3[4])
        assert np.linalg.norm(gap) == pytest.approx(0.0996 + 0.05, abs=1e-4)
    finally:
        kin.close()


@pytest.mark.parametrize("robot_yaml,rid", [(UR + "  tool: {kind: suction, tcp: {xyz: [0, 0, 0.06]}}\n", "ur"),
                                             ("- id: iiwa\n  model: kuka_iiwa\n  tool: {kind: suction, "
                                              "tcp: {xyz: [0, 0, 0.06]}}\n", "iiwa")], ids=["urdf", "builtin"])
def test_the_simulated_suction_cup_touches_as_declared_not_a_millimetre_early(tmp_path, robot_yaml, rid) -> None:
    """In the simulator a face 2 mm below the TCP, and one 2 mm beside the cup's rim, are 2 mm from the cup.

    PyBullet turns URDF cylinders into convex hulls puffed up by its 1 mm collision margin: the cup met a
    part's face 1 mm early and pressed it that much into what it stood on (a holder held beside its hole
    tilted 1.2 degrees and landed 0.5 mm off, more than its hole's 0.3 mm clearance). The planners keep
    the hull with its margin (1 mm to spare), as their collision backends model it.
    """
    import pybullet as p

    from anycell.sim.world import SimWorld

    cell = one_robot_cell(tmp_path, robot_yaml)
    world = SimWorld(cell)
    client, rb = world.client, world.robots[rid]
    try:
        state = p.getLinkState(rb.body, rb.cup_link, computeForwardKinematics=True, physicsClientId=client)
        rot = np.asarray(p.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        tcp = np.asarray(state[4]) + rot @ np.array([0.0, 0.0, 0.06])     # the cup link starts at the flange
        box = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.02, 0.02, 0.02], physicsClientId=client)
        for centre in (tcp + rot @ np.array([0.0, 0.0, 0.022]),                  # a face under the cup
                       tcp + rot @ np.array([0.01 + 0.022, 0.0, -0.03])):       # a face beside its rim
            body = p.createMultiBody(0, box, basePosition=centre.tolist(), baseOrientation=state[5],
                                     physicsClientId=client)
            near = p.getClosestPoints(rb.body, body, 0.01, linkIndexA=rb.cup_link, physicsClientId=client)
            assert min(c[8] for c in near) == pytest.approx(0.002, abs=0.0002)
            p.removeBody(body, physicsClientId=client)
    finally:
        world.close()
    client, rb = load_alone(cell, rid)          # as the planners load it: the hull and its margin
    try:
        assert p.getCollisionShapeData(rb.body, rb.cup_link, physicsClientId=client)[0][2] == p.GEOM_MESH
    finally:
        p.disconnect(client)


def test_xacro_args_reach_the_description(tmp_path) -> None:
    cell = one_robot_cell(tmp_path, UR + "  xacro_args: {gripper: hinged}\n  tool: {kind: parallel_gripper, "
                 "joints: [left_finger_joint], open: [0.4], closed: [-0.3], tcp: {xyz: [0, 0, 0.09]}}\n")
    import pybullet as p

    client, rb = load_alone(cell, "ur")
    try:
        assert len(rb.arm_joints) == 6, rb.joint_names       # the fingers are not arm joints
        assert rb.tool_joint_names == ["left_finger_joint", "right_finger_joint"]
        (joint, k, mult, off), = rb.mimic_joints
        assert k == 0 and mult == -1.0 and off == 0.0
        names = [p.getJointInfo(rb.body, j, physicsClientId=client)[12].decode() for j in rb.finger_links]
        assert names == ["left_finger", "right_finger"]
        joints, targets = rb.finger_targets([0.25])
        assert targets == [0.25, -0.25]
    finally:
        p.disconnect(client)


def _flat_urdf(tmp_path, with_tool0: bool) -> None:
    tool0 = ('<link name="tool0"/><joint name="j_tool0" type="fixed"><parent link="l2"/><child link="tool0"/>'
             '<origin xyz="0 0 0.1"/></joint>') if with_tool0 else ""
    (tmp_path / "arm.urdf").write_text(f"""<robot name="arm">
  <link name="base"/><link name="l1"/><link name="l2"/>{tool0}
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="10" velocity="1"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0 0 0.3"/><axis xyz="0 1 0"/>
    <limit lower="-2" upper="2" effort="10" velocity="1"/></joint>
</robot>""")


def test_flange_defaults_to_tool0_and_otherwise_is_a_clear_error(tmp_path) -> None:
    from anycell.sim.builder import flange_link_name

    arm = "- id: a\n  urdf: arm.urdf\n  home: [0, 0]\n  tool: {kind: suction}\n"
    _flat_urdf(tmp_path, with_tool0=True)
    assert flange_link_name(one_robot_cell(tmp_path, arm).robot("a")) == "tool0"
    _flat_urdf(tmp_path, with_tool0=False)
    with pytest.raises(ConfigError, match="no 'tool0'") as err:
        flange_link_name(one_robot_cell(tmp_path, arm).robot("a"))
    assert "l2" in str(err.value.hint) and err.value.field == "robots.a.flange"
    with pytest.raises(ConfigError, match="'hand' is not in its URDF"):
        flange_link_name(one_robot_cell(tmp_path, arm + "  flange: hand\n").robot("a"))
    assert flange_link_name(one_robot_cell(tmp_path, arm + "  flange: l2\n").robot("a")) == "l2"


def test_missing_package_and_missing_home_are_clear_errors(tmp_path) -> None:
    from anycell.sim.builder import robot_urdf

    cell = one_robot_cell(tmp_path, UR)
    xacro = tmp_path / "robots" / "ur5e_description" / "urdf" / "ur5e.urdf.xacro"
    xacro.write_text(xacro.read_text().replace("package://ur5e_description/", "package://vendor_meshes/"))
    with pytest.raises(ConfigError, match="'vendor_meshes', which is not found") as err:
        robot_urdf(cell.robot("ur"))
    assert err.value.field == "robots.ur.package_paths"
    with pytest.raises(ConfigError, match="needs a declared 'home'"):
        one_robot_cell(tmp_path, UR.replace("  home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]\n", ""))


def test_home_checks_name_length_limits_and_colliding_bodies(tmp_path) -> None:
    from anycell.planners.robot_check import check_robots

    bad_length = UR.replace("home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]", "home: [0, 0, 0]")
    with pytest.raises(ConfigError, match="home has 3 values for 6 arm joints"):
        check_robots(one_robot_cell(tmp_path, bad_length))
    outside = UR.replace("home: [0.0, -1.5708, 1.5708", "home: [0.0, -1.5708, 4.0")
    with pytest.raises(ConfigError, match="elbow_joint=4 rad is outside its limits"):
        check_robots(one_robot_cell(tmp_path, outside))
    # the arm stretched out flat lies in the table: both bodies are named
    flat = UR.replace("home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]", "home: [0, 0.3, 0, 0, 0, 0]")
    with pytest.raises(ConfigError, match=r"in collision: .*table") as err:
        check_robots(one_robot_cell(tmp_path, flat))
    assert "ur/" in str(err.value)
    report, = check_robots(load_cell(UR_CELL))
    assert report.flange == "tool0" and report.chain[0] == "base_link" and report.chain[-1] == "tool0"
    assert 0.8 < report.reach < 1.2


def test_builtin_models_default_to_their_ready_pose() -> None:
    from anycell.planners.robot_check import check_robots
    from tests.paths import DEMO_CELL

    from anycell.sim.builder import READY_POSES

    cell = load_cell(DEMO_CELL)
    cell.robots[0].__dict__["home"] = None            # as if the config declared none
    report, = check_robots(cell)
    assert report.home == READY_POSES["franka_panda"]


HINGED = UR + ("  xacro_args: {gripper: hinged}\n  tool: {kind: parallel_gripper, joints: [left_finger_joint], "
               "open: [0.4], closed: [-0.3], tcp: {xyz: [0, 0, 0.085]}, force: 30.0}\n")
SLIDING = """
- id: panda
  model: franka_panda
  tool: {kind: parallel_gripper, joints: [panda_finger_joint1, panda_finger_joint2], open: [0.04, 0.04],
         closed: [0.0, 0.0], tcp: {xyz: [0, 0, 0.1034]}}
"""


@pytest.mark.parametrize("robot_yaml,rid", [(HINGED, "ur"), (SLIDING, "panda")], ids=["hinged", "sliding"])
def test_declared_gripper_grasps_and_lifts_a_part(tmp_path, robot_yaml, rid) -> None:
    from anycell.geometry import Pose
    from anycell.planners.kinematics import Kinematics
    from anycell.sim.robot import SimRobot
    from anycell.sim.world import SimWorld

    import pybullet as p

    cell = one_robot_cell(tmp_path, robot_yaml)
    kin = Kinematics(cell, rid)
    world = SimWorld(cell)
    try:
        part = world.add_part("box", [0.04, 0.04, 0.04], 0.05, Pose(xyz=[0.45, 0.0, 0.02]))
        world.settle(0.2)
        grasp = kin.ik(Pose(xyz=[0.45, 0.0, 0.025], rpy=[3.14159265, 0.0, 0.0]))
        above = kin.ik(Pose(xyz=[0.45, 0.0, 0.15], rpy=[3.14159265, 0.0, 0.0]), grasp)
        rb = world.robots[rid]
        for j, q in zip(rb.arm_joints, grasp):
            p.resetJointState(rb.body, j, q, physicsClientId=world.client)
        robot = SimRobot(world, rid)
        robot.expect_contact("box")
        assert robot.grasp("box"), "the fingers did not close on the part"
        assert robot.holding() == "box"
        if rb.mimic_joints:   # the mimic finger followed the driven one
            (mj, _k, mult, _off), = rb.mimic_joints
            left = p.getJointState(rb.body, rb.finger_joints[0], physicsClientId=world.client)[0]
            right = p.getJointState(rb.body, mj, physicsClientId=world.client)[0]
            assert right == pytest.approx(mult * left, abs=0.03)
        lift_and_release(world, robot, grasp, above)
        assert part in world.parts.values()
    finally:
        world.close()
        kin.close()
