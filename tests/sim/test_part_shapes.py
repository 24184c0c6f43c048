"""Parts in the simulated cell are their real solids: holes, channels, V-HACD meshes; fixtures hold."""

from __future__ import annotations

import os

import pytest

from anycell.cell import load_cell
from anycell.geometry import Pose
from anycell.job import Cylinder, Feature, Geometry
from anycell.typed import FileRef
from tests.paths import DEMO_CELL, ROOT

BRACKET = os.path.join(ROOT, "examples", "jobs", "meshes", "bracket.obj")


@pytest.fixture()
def world():
    from anycell.sim.world import SimWorld

    w = SimWorld(load_cell(DEMO_CELL))
    try:
        yield w
    finally:
        w.close()


def _fixture_top(world) -> list:  # noqa: ANN001
    return list(world.cell.station("fixture").pose.xyz)


@pytest.mark.slow
def test_a_mesh_is_decomposed_once_and_kept_on_disk_by_its_content(tmp_path, monkeypatch) -> None:
    from anycell.sim import shapes

    monkeypatch.setenv("ANYCELL_CACHE", str(tmp_path))
    monkeypatch.setattr(shapes, "_PIECES", {})
    geometry = Geometry(mesh=FileRef(BRACKET), units="mm")
    first = shapes.mesh_pieces(geometry)
    files = sorted(f for f in os.listdir(tmp_path / "shapes") if f.startswith("vhacd_") and f.endswith(".obj"))
    assert len(files) == 1 and len(first) >= 3          # the walls and the floor at least: not one box
    stamp = os.path.getmtime(tmp_path / "shapes" / files[0])
    monkeypatch.setattr(shapes, "_PIECES", {})
    calls = []
    import pybullet

    monkeypatch.setattr(pybullet, "vhacd", lambda *a, **k: calls.append(a))
    again = shapes.mesh_pieces(geometry)
    assert not calls and again == first and os.path.getmtime(tmp_path / "shapes" / files[0]) == stamp


def test_a_clip_falls_into_the_channel_of_a_mesh_bracket(world) -> None:
    x, y, z = _fixture_top(world)
    world.add_part("bracket", Geometry(mesh=FileRef(BRACKET), units="mm"), 0.08, Pose(xyz=[x, y, z + 0.014]))
    world.add_part("clip", [0.03, 0.024, 0.016], 0.02, Pose(xyz=[x, y, z + 0.016 + 0.004]))
    world.settle(0.6)
    # on the channel floor (8 mm), not on the bracket's bounding box (28 mm)
    assert world.part_pose("clip").xyz[2] == pytest.approx(z + 0.008 + 0.008, abs=0.0006)
    assert world.part_pose("bracket").xyz[2] == pytest.approx(z + 0.014, abs=0.0003)


def test_a_pin_drops_to_the_floor_of_a_declared_hole(world) -> None:
    x, y, z = _fixture_top(world)
    holder = Geometry(box=[0.05, 0.05, 0.03], features=[Feature(kind="hole", diameter=0.0166, depth=0.02)])
    world.add_part("holder", holder, 0.06, Pose(xyz=[x, y, z + 0.015]))
    world.add_part("pin", Geometry(cylinder=Cylinder(radius=0.008, height=0.04)), 0.015,
                   Pose(xyz=[x + 0.0002, y, z + 0.03 + 0.005]))
    world.settle(0.6)
    pin = world.part_pose("pin")
    assert pin.xyz[2] == pytest.approx(z + 0.03, abs=0.0006)      # 20 mm deep, on the hole's floor
    assert abs(pin.rpy[0]) < 0.05 and abs(pin.rpy[1]) < 0.05       # standing straight in the hole


def test_a_clamped_base_does_not_move_when_pushed(world) -> None:
    x, y, z = _fixture_top(world)
    import pybullet as p

    world.add_part("base", [0.06, 0.06, 0.012], 0.05, Pose(xyz=[x, y, z + 0.006]))
    world.settle(0.2)
    before = world.part_pose("base")
    assert world.hold("base", "fixture") and world.holding("fixture") == "base"
    for _ in range(60):   # a 20 N shove sideways, under the 200 N clamp
        p.applyExternalForce(world.parts["base"], -1, [20.0, 0, 0], before.position, p.WORLD_FRAME,
                             physicsClientId=world.client)
        world.step()
    held = world.part_pose("base")
    assert abs(held.xyz[0] - before.xyz[0]) < 0.0001
    assert world.release_hold("fixture") == "base" and world.holding("fixture") is None
    for _ in range(60):
        p.applyExternalForce(world.parts["base"], -1, [20.0, 0, 0], before.position, p.WORLD_FRAME,
                             physicsClientId=world.client)
        world.step()
    assert world.part_pose("base").xyz[0] - before.xyz[0] > 0.001   # released, the same shove moves it
