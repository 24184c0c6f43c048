"""The simulated cell is built from the CellConfig alone, is deterministic and renders headless."""

from __future__ import annotations

import os

import pytest

from anycell.cell import load_cell
from anycell.errors import UnresolvedReference
from anycell.geometry import Pose, distance
from anycell.sim.world import SimWorld
from tests.paths import DEMO_CELL, KUKA_CELL


@pytest.mark.parametrize("path", [DEMO_CELL, KUKA_CELL], ids=["demo", "kuka"])
def test_world_has_every_body_of_the_config(path: str) -> None:
    import pybullet as p

    cell = load_cell(path)
    with SimWorld(cell) as world:
        for item in list(cell.stations) + list(cell.machines):
            body = world.bodies.static[item.id]
            lo, hi = p.getAABB(body, physicsClientId=world.client)
            # stations' tops are at pose.z; machines stand on pose.z
            top = item.pose.xyz[2] if item in cell.stations else item.pose.xyz[2] + item.size[2]
            assert abs(hi[2] - top) < 0.002 and abs((hi[0] - lo[0]) - item.size[0]) < 0.003
        rb = world.robots[cell.robots[0].id]
        com = p.getBasePositionAndOrientation(rb.body, physicsClientId=world.client)[0]
        inertial = p.getDynamicsInfo(rb.body, -1, physicsClientId=world.client)[3]   # COM in the base frame
        base = [c - i for c, i in zip(com, inertial)]
        assert distance(base, cell.robots[0].base.xyz) < 1e-6
        assert len(rb.arm_joints) == 7
        if cell.robots[0].tool.kind == "parallel_gripper":
            assert len(rb.finger_joints) == 2
        else:
            assert any(p.getJointInfo(rb.body, j, physicsClientId=world.client)[12] == b"anycell_suction_cup"
                       for j in rb.tool_links)


def test_part_rests_where_it_is_put_and_runs_deterministically() -> None:
    cell = load_cell(DEMO_CELL)
    feeder = cell.station("feeder")
    poses = []
    for _ in range(2):
        with SimWorld(cell) as world:
            world.add_part("p", [0.04, 0.04, 0.02], 0.05, Pose(xyz=[feeder.pose.xyz[0], feeder.pose.xyz[1],
                                                                    feeder.pose.xyz[2] + 0.0105]))
            world.step(240)
            assert abs(world.sim_time - 1.0) < 1e-9
            poses.append(world.part_pose("p"))
            with pytest.raises(UnresolvedReference):
                world.part_pose("nope")
            world.remove_part("p")
            assert "p" not in world.parts
    assert poses[0] == poses[1]                                 # bit for bit the same
    assert abs(poses[0].xyz[2] - (feeder.pose.xyz[2] + 0.01)) < 0.001   # resting on the feeder


def test_snapshot_writes_png_headless(tmp_path) -> None:
    import zlib
    import struct

    cell = load_cell(KUKA_CELL)     # no cameras in the config: default viewpoints
    with SimWorld(cell) as world:
        for cam in ("overview", "top"):
            path = world.snapshot(str(tmp_path / f"{cam}.png"), cam, width=160, height=120)
            data = open(path, "rb").read()
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            w, h = struct.unpack(">II", data[16:24])
            assert (w, h) == (160, 120)
            idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
            raw = zlib.decompress(idat)
            assert len(set(raw)) > 20          # a real picture, not a blank frame
        with pytest.raises(UnresolvedReference):
            world.snapshot(str(tmp_path / "x.png"), "no_such_camera")
    assert os.path.exists(tmp_path / "top.png")
