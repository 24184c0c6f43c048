"""A tool given as its own URDF (or .urdf.xacro) and attached to any arm's flange (``robots[].tool.urdf``).

One place (:func:`anycell.sim.builder.robot_urdf`) merges the tool into the robot's model with a
fixed joint at the flange; the planner (both collision backends), the feasibility figures, the
simulator and ``anycell validate`` all read that one model. Bad tool input is refused with the
field, the file and a hint before anything moves.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import ConfigError
from tests.paths import ROOT, STACK_JOB
from tests.sim.helpers import UR, lift_and_release, load_alone, one_robot_cell

GRIPPER_CELL = os.path.join(ROOT, "cell_configs", "ur_gripper_cell.yaml")
GRIPPER_XACRO = "robots/hinge_gripper_description/urdf/hinge_gripper.urdf.xacro"

HINGE_TOOL = f"""
  tool:
    kind: parallel_gripper
    urdf: {GRIPPER_XACRO}
    package_paths: [robots]
    joints: [left_finger_joint]
    open: [0.4]
    closed: [-0.38]
    tcp: {{xyz: [0, 0, 0.118]}}
    max_opening: 0.09
    force: 30.0
"""

ARM_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
              "wrist_3_joint"]


def _tool_urdf(tmp_path, name: str, body: str) -> str:
    (tmp_path / name).write_text(f'<?xml version="1.0"?>\n<robot name="tool">\n{body}\n</robot>\n')
    return name


BOX = '<collision><geometry><box size="0.02 0.02 0.02"/></geometry></collision>'


# ---------------------------------------------------------------- loading and merging


def test_tool_xacro_is_merged_at_the_flange_with_its_args_and_package_mesh(tmp_path) -> None:
    import pybullet as p

    from anycell.sim.builder import robot_tree, robot_urdf
    from anycell.sim.urdf_model import TOOL_MOUNT_JOINT

    tool = HINGE_TOOL + '    xacro_args: {finger_length: "0.07"}\n    mount: {xyz: [0, 0, 0.005], rpy: [0, 0, 1.5707963]}\n'
    cell = one_robot_cell(tmp_path, UR + tool)
    robot = cell.robot("ur")
    text = open(robot_urdf(robot)).read()
    mesh = os.path.realpath(tmp_path / "robots" / "hinge_gripper_description" / "meshes" / "adapter.obj")
    assert f'filename="{mesh}"' in text                    # the tool's package:// mesh, resolved
    assert 'filename="package://' not in text and "<xacro:" not in text
    tree = robot_tree(robot)
    mount = tree.joints[TOOL_MOUNT_JOINT]
    assert (mount.parent, mount.child, mount.type) == ("tool0", "gripper_base", "fixed")
    assert [j.name for j in tree.chain("tool0") if j.movable] == ARM_JOINTS     # the arm is unchanged
    client, rb = load_alone(cell, "ur")
    try:
        assert rb.joint_names == ARM_JOINTS and rb.flange_name == "tool0"
        assert rb.tool_joint_names[0] == "left_finger_joint"
        assert sorted(rb.tool_joint_names[1:]) == ["left_pad_joint", "right_finger_joint", "right_pad_joint"]
        names = [rb.link_names[link] for link in rb.finger_links]
        assert names == ["left_pad", "right_pad"]            # the fingertips: the leaves of the finger branches
        # every mimic joint follows the driven one, through chains of mimics (right pad <- right finger <- left)
        follow = {p.getJointInfo(rb.body, j, physicsClientId=client)[1].decode(): (k, mult)
                  for j, k, mult, _off in rb.mimic_joints}
        assert follow == {"left_pad_joint": (0, -1.0), "right_finger_joint": (0, 1.0), "right_pad_joint": (0, -1.0)}
        joints, targets = rb.finger_targets([0.25])
        assert targets == [0.25, *(m * 0.25 for _j, _k, m, _o in rb.mimic_joints)]
        # the xacro argument reached the geometry: the finger bar is 70 mm long
        finger = next(j for j, n in rb.link_names.items() if n == "left_finger")
        (shape,) = p.getCollisionShapeData(rb.body, finger, physicsClientId=client)
        assert shape[3][2] == pytest.approx(0.07)
        # the mount pose: the gripper's base link sits 5 mm out of the flange, turned 90 degrees about z
        base = next(j for j, n in rb.link_names.items() if n == "gripper_base")
        fl = p.getLinkState(rb.body, rb.flange_link, computeForwardKinematics=True, physicsClientId=client)
        gb = p.getLinkState(rb.body, base, computeForwardKinematics=True, physicsClientId=client)
        rel_p, rel_q = p.multiplyTransforms(*p.invertTransform(fl[4], fl[5]), gb[4], gb[5])
        assert np.allclose(rel_p, [0, 0, 0.005], atol=1e-6)
        assert np.allclose(p.getEulerFromQuaternion(rel_q), [0, 0, 1.5707963], atol=1e-5)
    finally:
        p.disconnect(client)


def test_the_tcp_stays_in_the_flange_frame_whatever_the_mount(tmp_path) -> None:
    from anycell.planners.kinematics import Kinematics

    q = [0.3, -1.2, 1.4, -1.7, -1.5, 0.4]
    tcps = []
    for mount in ("{xyz: [0, 0, 0]}", "{xyz: [0.01, 0, 0.02], rpy: [0, 0, 0.7]}"):
        cell = one_robot_cell(tmp_path, UR + HINGE_TOOL + f"    mount: {mount}\n")
        kin = Kinematics(cell, "ur")
        try:
            tcps.append(kin.fk_matrix(q))
        finally:
            kin.close()
    assert np.allclose(tcps[0], tcps[1], atol=1e-9)


@pytest.mark.parametrize("model,flange_joints", [("kuka_iiwa", 7), ("xarm6", 6)])
def test_builtin_arm_takes_a_tool_urdf(tmp_path, model, flange_joints) -> None:
    from anycell.planners.collision import CollisionWorld
    from anycell.planners.robot_check import check_robots

    home = {"kuka_iiwa": "[0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0]", "xarm6": "[0.0, -0.3, -0.6, 0.0, 0.9, 0.0]"}[model]
    cell = one_robot_cell(tmp_path, f"- id: arm\n  model: {model}\n  home: {home}\n" + HINGE_TOOL)
    world = CollisionWorld(cell, "arm")
    try:
        rb = world.robot
        assert len(rb.arm_joints) == flange_joints
        assert rb.tool_joint_names[0] == "left_finger_joint" and len(rb.finger_links) == 2
        assert world.fast is not None, "the compiled collision backend reads the merged model too"
        names = {world.name(rb.body, link).split("/")[1] for link in rb.tool_links}
        assert {"gripper_base", "palm", "left_pad", "right_pad"} <= names
    finally:
        world.close()
    report, = check_robots(cell)
    assert report.tool_source.endswith("hinge_gripper.urdf.xacro") and report.tool_root == "gripper_base"
    assert report.driven_joints == ["left_finger_joint"]
    assert "  tool URDF: " in "\n".join(report.lines())


def test_validate_prints_the_tool_urdf_and_its_joints() -> None:
    from anycell.planners.robot_check import check_robots

    report, = check_robots(load_cell(GRIPPER_CELL))
    lines = "\n".join(report.lines())
    assert report.arm_joints == ARM_JOINTS and report.flange == "tool0"
    assert "tool: parallel_gripper (joints: left_finger_joint; mimic: " in lines
    assert "(root link gripper_base fixed to tool0)" in lines


# ---------------------------------------------------------------- validation


def _error(tmp_path, robot_yaml: str):
    """The ConfigError that loading the cell or its robot model raises (as `anycell validate` would)."""
    from anycell.planners.robot_check import check_robots

    with pytest.raises(ConfigError) as err:
        check_robots(one_robot_cell(tmp_path, robot_yaml))
    return err.value


def test_missing_tool_file_names_the_field_and_the_place_in_the_cell_file(tmp_path) -> None:
    err = _error(tmp_path, UR + HINGE_TOOL.replace("hinge_gripper.urdf.xacro", "gripper.urdf.xacro"))
    assert err.field == "robots[0].tool.urdf" and "not found" in err.message
    assert err.location is not None and err.location.file == str(tmp_path / "cell.yaml") and err.location.line


@pytest.mark.parametrize("tool_yaml,field,message,hint", [
    ("joints: [thumb_joint]", "tool.joints", "tool joint 'thumb_joint' is not in the tool URDF",
     "left_finger_joint"),
    ("joints: [elbow_joint]", "tool.joints", "tool joint 'elbow_joint' is not in the tool URDF", "left_pad_joint"),
    ("open: [0.9]", "tool.open", "puts 'left_finger_joint' at 0.9, outside its limits [-0.5, 0.4]", "URDF limits"),
    ("xacro_args: {finger_length: abc}", "tool.xacro_args", "xacro could not expand", "xacro_args"),
], ids=["unknown-joint", "arm-joint", "open-beyond-limits", "bad-xacro-arg"])
def test_bad_tool_declarations_are_refused(tmp_path, tool_yaml, field, message, hint) -> None:
    key = tool_yaml.split(":")[0]
    lines = [line for line in HINGE_TOOL.splitlines() if not line.strip().startswith(key + ":")]
    err = _error(tmp_path, UR + "\n".join(lines) + f"\n    {tool_yaml}\n")
    assert err.field is not None and err.field.endswith(field), err
    assert message in err.message and hint in (err.hint or "") + err.message, err
    assert err.location is not None and err.location.line, "the error points into the cell file"


def test_unknown_tool_package_names_tool_package_paths(tmp_path) -> None:
    one_robot_cell(tmp_path, UR)
    xacro = tmp_path / "robots" / "hinge_gripper_description" / "urdf" / "hinge_gripper.urdf.xacro"
    xacro.write_text(xacro.read_text().replace("package://hinge_gripper_description/", "package://vendor_gripper/"))
    err = _error(tmp_path, UR + HINGE_TOOL)
    assert err.field == "robots[0].tool.package_paths" and "'vendor_gripper', which is not found" in err.message


@pytest.mark.parametrize("body,message,hint", [
    (f'<link name="wrist_3_link">{BOX}</link>', "both have link 'wrist_3_link'", "prefix"),
    (f'<link name="a">{BOX}</link><link name="b">{BOX}</link><joint name="wrist_3_joint" type="fixed">'
     '<parent link="a"/><child link="b"/></joint>', "both have joint 'wrist_3_joint'", "rename"),
    (f'<link name="a">{BOX}</link><link name="b">{BOX}</link>', "has 2 root links (a, b)", "one base link"),
    (f'<link name="a">{BOX}</link><joint name="j" type="fixed"><parent link="tool0"/><child link="a"/></joint>',
     "joint 'j' names parent link 'tool0', which the tool does not define", "tool.mount"),
    ("", "has no links", ""),
    (f'<link name="a">{BOX}</link><link name="a"/>', "defines link 'a' more than once", ""),
], ids=["link-clash", "joint-clash", "two-roots", "joint-to-the-arm", "empty", "duplicate-link"])
def test_bad_tool_urdfs_are_refused(tmp_path, body, message, hint) -> None:
    name = _tool_urdf(tmp_path, "tool.urdf", body)
    err = _error(tmp_path, UR + f"  tool: {{kind: parallel_gripper, urdf: {name}}}\n")
    assert err.field == "robots[0].tool.urdf", err
    assert message in err.message and "tool.urdf" in err.message and hint in (err.hint or ""), err


def test_tool_without_movable_joints_cannot_be_a_gripper(tmp_path) -> None:
    name = _tool_urdf(tmp_path, "tool.urdf", f'<link name="plate">{BOX}</link>')
    err = _error(tmp_path, UR + f"  tool: {{kind: parallel_gripper, urdf: {name}}}\n")
    assert err.field == "robots[0].tool.joints" and "has no movable joint" in err.message


@pytest.mark.parametrize("tool_yaml,message", [
    ("{kind: suction, mount: {xyz: [0, 0, 0.01]}}", "tool.mount places a tool URDF"),
    ("{kind: suction, xacro_args: {a: b}}", "tool.xacro_args needs a tool urdf"),
    ("{kind: suction, urdf: tool.urdf, xacro_args: {a: b}}", "xacro_args need a .xacro tool file"),
    ("{kind: suction, urdf: tool.urdf, package_paths: [nowhere]}", "folder 'nowhere' not found"),
])
def test_tool_fields_are_checked_when_the_cell_loads(tmp_path, tool_yaml, message) -> None:
    _tool_urdf(tmp_path, "tool.urdf", f'<link name="cup">{BOX}</link>')
    with pytest.raises(ConfigError, match=message) as err:
        one_robot_cell(tmp_path, UR + f"  tool: {tool_yaml}\n")
    assert err.value.location is not None and err.value.field.startswith("robots[0].tool")


# ---------------------------------------------------------------- one geometry for every consumer


def test_planner_backends_and_simulator_see_the_same_tool(tmp_path) -> None:
    """The planner's PyBullet world, its compiled pinocchio/coal scene and the simulator: same tool links,
    same places, same contacts; the feasibility figures come from that geometry too."""
    import pybullet as p

    from anycell.geometry import Pose
    from anycell.planners.collision import CollisionWorld
    from anycell.planners.tool import tool_figures
    from anycell.sim.world import SimWorld

    cell = one_robot_cell(tmp_path, UR + HINGE_TOOL)
    world = CollisionWorld(cell, "ur")
    sim = SimWorld(cell)
    try:
        assert world.fast is not None
        prb, srb = world.robot, sim.robots["ur"]
        assert prb.link_names == srb.link_names and prb.tool_joint_names == srb.tool_joint_names
        q = [0.2, -1.3, 1.5, -1.8, -1.5, 0.3]
        world.kin.set(q)
        for j, v in zip(srb.arm_joints, q):
            p.resetJointState(srb.body, j, v, physicsClientId=sim.client)
        for link in prb.tool_links:   # the fingers open in both worlds, every tool link in the same place
            a = p.getAABB(prb.body, link, physicsClientId=world.client)
            b = p.getAABB(srb.body, link, physicsClientId=sim.client)
            assert np.allclose(a, b, atol=1e-6), prb.link_names[link]
        # a box pressed into the bottom of the left pad: both backends find the pad
        pad = next(link for link, n in prb.link_names.items() if n == "left_pad")
        lo, hi = p.getAABB(prb.body, pad, physicsClientId=world.client)
        centre = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] - 0.002]   # 2 mm into the pad
        world.add_obstacle("probe", [0.01, 0.01, 0.01], Pose(xyz=centre))
        world.add_obstacle("probe_far", [0.01, 0.01, 0.01], Pose(xyz=[centre[0], centre[1], lo[2] - 0.05]))
        assert world.fast is not None
        fast = world.contacts(q, clearance=0.004, first=False)
        fast_names = {c.a for c in fast} | {c.b for c in fast}
        saved, world.fast = world.fast, None
        try:
            slow = world.contacts(q, clearance=0.004, first=False)
        finally:
            world.fast = saved
        slow_names = {c.a for c in slow} | {c.b for c in slow}
        assert "ur/left_pad" in fast_names and "ur/left_pad" in slow_names
        assert "part:probe" in fast_names and "part:probe_far" not in fast_names | slow_names
    finally:
        sim.close()
        world.close()
    reach, hand, _r, sideways = tool_figures(cell.robot("ur"))
    # the pads reach 20 mm below the fingertips; the TCP is 8 mm below them: 12 mm (plus Bullet's AABB margin)
    assert 0.012 <= reach <= 0.0135
    # the hand starts at the palm (the swinging fingers are not the hand): 118 - 50 mm
    assert hand == pytest.approx(0.068, abs=0.0015)
    assert 0.045 < sideways < 0.07


def test_a_bare_flange_frame_leaves_the_wrist_behind_it_as_the_hand() -> None:
    """A UR's tool0 has no solid and the cup is not the hand: the wrist link behind the flange is.

    Before, no hand was found (1 m above the TCP, 0 wide), so the suction checks for what stands
    around a held part were skipped on such arms, and only the motion planner found the wrist.
    """
    from anycell.planners.tool import tool_figures

    cell = load_cell(os.path.join(ROOT, "cell_configs", "ur_cell.yaml"))
    _reach, hand, _cup, sideways = tool_figures(cell.robot("ur"))
    tcp = cell.robot("ur").tool.tcp.xyz[2]
    assert tcp <= hand < tcp + 0.02          # the wrist starts at the flange face, 60 mm above the TCP
    assert 0.03 < sideways < 0.08            # wrist 3 of a UR5e: about 45 mm in radius (plus Bullet's margin)


def test_the_fingers_sweep_is_checked_between_open_and_closed(tmp_path) -> None:
    """Open fingers that clear a channel's walls from outside still hit them on the way: refused."""
    from anycell.errors import CollisionError
    from anycell.geometry import Pose
    from anycell.planners.motion import MotionPlanner

    cell = one_robot_cell(tmp_path, UR + HINGE_TOOL)
    planner = MotionPlanner(cell, "ur")
    try:
        q = planner.ik(Pose(xyz=[0.45, 0.0, 0.10], rpy=[3.14159265, 0.0, 0.0]), planner.kin.home)
        planner.check_fingers(q)            # nothing near: fine
        t = planner.kin.fk_matrix(q)
        x_axis = t[:3, 0]                   # the fingers close along the TCP's x
        for side in (1, -1):                # two walls 30 mm either side of the TCP, below the open pads' reach
            c = t[:3, 3] + side * 0.03 * x_axis
            planner.add_obstacle(f"wall{side}", [0.004, 0.04, 0.02], Pose(xyz=list(c)))
        assert planner.world.free(q), "the open fingers straddle the walls"
        with pytest.raises(CollisionError, match=r"fingers would hit .*ur/(left|right)_(pad|finger) and part:wall"):
            planner.check_fingers(q, what="place of 'clip'")
        planner.check_fingers(q, ignore=("wall1", "wall-1"))
    finally:
        planner.close()


# ---------------------------------------------------------------- picking in simulation


def _over_a_box(cell, size, tcp_z: float):
    """A simulated world with a box of ``size`` on the table at x = 0.45 m and robot ``ur`` set (not
    moved) at the top-down TCP pose ``tcp_z`` above the table there: (world, kinematics, that q).
    The caller closes both."""
    import pybullet as p

    from anycell.geometry import Pose
    from anycell.planners.kinematics import Kinematics
    from anycell.sim.world import SimWorld

    kin = Kinematics(cell, "ur")
    world = SimWorld(cell)
    try:
        world.add_part("box", list(size), 0.05, Pose(xyz=[0.45, 0.0, size[2] / 2]))
        world.settle(0.2)
        q = kin.ik(Pose(xyz=[0.45, 0.0, tcp_z], rpy=[3.14159265, 0.0, 0.0]))
        rb = world.robots["ur"]
        for j, v in zip(rb.arm_joints, q):
            p.resetJointState(rb.body, j, v, physicsClientId=world.client)
    except BaseException:
        world.close()
        kin.close()
        raise
    return world, kin, q


def test_tool_urdf_gripper_grasps_and_lifts_a_part(tmp_path) -> None:
    import pybullet as p

    from anycell.geometry import Pose
    from anycell.sim.robot import SimRobot

    cell = one_robot_cell(tmp_path, UR + HINGE_TOOL)
    world, kin, grasp = _over_a_box(cell, [0.04, 0.04, 0.04], tcp_z=0.022)
    try:
        above = kin.ik(Pose(xyz=[0.45, 0.0, 0.15], rpy=[3.14159265, 0.0, 0.0]), grasp)
        rb = world.robots["ur"]
        robot = SimRobot(world, "ur")
        robot.expect_contact("box")
        assert robot.grasp("box"), "the pads did not close on the part"
        left = p.getJointState(rb.body, rb.finger_joints[0], physicsClientId=world.client)[0]
        assert -0.2 < left < 0.05     # 40 mm between the pads: q = asin((0.02 - 0.025) / 0.06) = -0.083
        for j, _k, mult, _off in rb.mimic_joints:
            assert p.getJointState(rb.body, j, physicsClientId=world.client)[0] == pytest.approx(mult * left, abs=0.03)
        lift_and_release(world, robot, grasp, above)
    finally:
        world.close()
        kin.close()


@pytest.mark.slow
def test_shipped_gripper_cell_makes_the_stack_assembly(tmp_path) -> None:
    from anycell.agent.simulation.job import run_job_in_sim
    from anycell.job import load_job

    out = run_job_in_sim(load_cell(GRIPPER_CELL), load_job(STACK_JOB), str(tmp_path / "report"))
    assert out["outcome"] == "complete", out.get("error")
    placed = {p["part"] for p in out["placements"]}
    assert {"base", "block", "peg"} <= placed
    for p in out["placements"]:
        assert p["error_m"] <= p["tolerance_m"], p


# ---------------------------------------------------------------- a suction cup with its real geometry


def test_suction_tool_urdf_holds_with_its_cup_link(tmp_path) -> None:
    """A suction tool from a URDF: its cup is the solid tool link nearest the TCP, and no generated cup is added."""
    import pybullet as p

    from anycell.planners.tool import cup_radius
    from anycell.sim.robot import SimRobot
    from anycell.sim.urdf_model import CUP_LINK

    body = ('<link name="body"><collision><origin xyz="0 0 0.02"/><geometry><cylinder radius="0.025" length="0.04"/>'
            '</geometry></collision></link>'
            '<link name="bellows"><collision><origin xyz="0 0 0.01"/><geometry><cylinder radius="0.015" length="0.02"/>'
            '</geometry></collision></link>'
            '<joint name="bellows_joint" type="fixed"><parent link="body"/><child link="bellows"/>'
            '<origin xyz="0 0 0.04"/></joint>')
    name = _tool_urdf(tmp_path, "cup.urdf", body)
    cell = one_robot_cell(tmp_path, UR + f"  tool: {{kind: suction, urdf: {name}, tcp: {{xyz: [0, 0, 0.06]}}, "
                                "cup_radius: 0.012}\n")
    client, rb = load_alone(cell, "ur")
    try:
        assert rb.cup_link is not None and rb.link_names[rb.cup_link] == "bellows"
        assert CUP_LINK not in rb.link_names.values()
    finally:
        p.disconnect(client)
    # the bellows' body (15 mm, measured from its box in PyBullet, which pads it), wider than the 12 mm seal
    assert 0.015 <= cup_radius(cell.robot("ur")) <= 0.018
    world, kin, _q = _over_a_box(cell, [0.05, 0.05, 0.03], tcp_z=0.0305)
    try:
        robot = SimRobot(world, "ur")
        assert robot.grasp("box") and robot.holding() == "box"
    finally:
        world.close()
        kin.close()
