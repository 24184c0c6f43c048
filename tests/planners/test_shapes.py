"""Part shapes: exact convex pieces, meshes with units, order from real solids, free faces for a cup."""

from __future__ import annotations

import os
from typing import Any, Dict, List

import pytest

from anycell.documents import from_data
from anycell.errors import ConfigError, PlanningError
from anycell.job import job_from_document, load_job
from anycell.planners import sites
from anycell.planners.assembly_order import assembly_order
from anycell.shapes import ROUND_SIDES, convex_pieces, load_mesh, polygon_area
from tests.paths import ROOT

EXAMPLES = os.path.join(ROOT, "examples", "jobs")


def _job(parts: List[Dict[str, Any]], placements: List[Dict[str, Any]]):
    doc = {"spec_version": 1, "id": "t", "product": "p", "parts": parts, "assembly": {"placements": placements}}
    return job_from_document(from_data(doc), base_dir=EXAMPLES)


def _part(pid: str, geometry: Dict[str, Any]) -> Dict[str, Any]:
    return {"id": pid, "geometry": geometry, "mass": 0.01, "source": {"feeder": pid}}


def _at(pid: str, xyz: List[float]) -> Dict[str, Any]:
    return {"part": pid, "pose": {"xyz": xyz}}


def _volume(pieces) -> float:  # noqa: ANN001 - prisms: the lower half of the points is the base polygon
    total = 0.0
    for piece in pieces:
        n = len(piece.points) // 2
        base = [(x, y) for x, y, _z in piece.points[:n]]
        total += polygon_area(base) * (piece.points[n][2] - piece.points[0][2])
    return total


def test_a_box_with_a_blind_hole_is_the_box_minus_the_hole_exactly() -> None:
    job = _job([_part("holder", {"box": [0.05, 0.04, 0.03],
                                 "features": [{"kind": "hole", "at": [0.005, -0.004], "diameter": 0.016,
                                               "depth": 0.02}]})], [_at("holder", [0, 0, 0.015])])
    pieces = convex_pieces(job.part("holder").geometry)
    import math

    hole = ROUND_SIDES * (0.008 ** 2) * math.tan(math.pi / ROUND_SIDES)   # the circumscribed polygon's area
    assert _volume(pieces) == pytest.approx(0.05 * 0.04 * 0.03 - hole * 0.02, rel=1e-9)
    # every piece is convex and inside the box; none reaches into the hole above its floor
    for piece in pieces:
        (x0, y0, z0), (x1, y1, z1) = piece.bounds()
        assert -0.025 - 1e-9 <= x0 and x1 <= 0.025 + 1e-9 and -0.015 - 1e-9 <= z0 and z1 <= 0.015 + 1e-9
        cx, cy = sum(p[0] for p in piece.points) / len(piece.points), sum(p[1] for p in piece.points) / len(piece.points)
        if z0 >= -0.005 - 1e-9:
            assert math.hypot(cx - 0.005, cy + 0.004) > 0.008


def test_a_pocket_and_a_slot_together_and_a_cylinder_with_a_hole() -> None:
    job = _job([_part("tray", {"box": [0.1, 0.06, 0.02], "features": [
        {"kind": "pocket", "at": [-0.025, 0.0], "size": [0.03, 0.03], "depth": 0.01},
        {"kind": "slot", "at": [0.03, 0.0], "size": [0.01, 0.08], "depth": 0.005}]}),
        _part("ring", {"cylinder": {"radius": 0.02, "height": 0.01},
                       "features": [{"kind": "hole", "diameter": 0.01}]})],
        [_at("tray", [0, 0, 0.01]), _at("ring", [0.2, 0, 0.005])])
    tray = _volume(convex_pieces(job.part("tray").geometry))
    # the slot runs through both long edges: it cuts 0.01 x 0.06 of the face
    assert tray == pytest.approx(0.1 * 0.06 * 0.02 - 0.03 * 0.03 * 0.01 - 0.01 * 0.06 * 0.005, rel=1e-9)
    ring = convex_pieces(job.part("ring").geometry)
    assert all(min(abs(p[0]) + abs(p[1]) for p in piece.points) > 0.004 for piece in ring)


def test_bad_features_are_refused_with_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        _job([_part("b", {"box": [0.04, 0.04, 0.02], "features": [{"kind": "hole", "size": [0.01, 0.01]}]})],
             [_at("b", [0, 0, 0.01])])
    assert "needs 'diameter'" in err.value.message and "features" in err.value.field
    with pytest.raises(ConfigError) as err:
        _job([_part("b", {"box": [0.04, 0.04, 0.02], "features": [{"kind": "hole", "diameter": 0.01,
                                                                  "depth": 0.03}]})], [_at("b", [0, 0, 0.01])])
    assert "deeper than the part" in err.value.message
    with pytest.raises(ConfigError) as err:
        _job([_part("b", {"box": [0.04, 0.04, 0.02], "features": [
            {"kind": "hole", "at": [-0.004, 0], "diameter": 0.01},
            {"kind": "hole", "at": [0.004, 0], "diameter": 0.01}]})], [_at("b", [0, 0, 0.01])])
    assert "overlap" in err.value.message


def test_a_mesh_in_millimetres_has_its_size_in_meters_and_a_wrong_box_is_caught() -> None:
    job = load_job(os.path.join(EXAMPLES, "bracket_clip.yaml"))
    assert job.part("bracket").geometry.size == pytest.approx([0.09, 0.04, 0.028])
    mesh = load_mesh(os.path.join(EXAMPLES, "meshes", "bracket.obj"), 0.001)
    assert max(abs(v[2]) for v in mesh.vertices) == pytest.approx(0.014)   # centred on its bounding box
    with pytest.raises(ConfigError) as err:
        _job([_part("b", {"mesh": "meshes/bracket.obj", "bounding_box": [0.09, 0.04, 0.028]})],
             [_at("b", [0, 0, 0.014])])
    assert "check 'units'" in (err.value.hint or "")


def test_a_peg_in_a_declared_hole_sits_inside_but_in_a_solid_block_is_refused() -> None:
    holder = {"box": [0.05, 0.05, 0.03], "features": [{"kind": "hole", "diameter": 0.0166, "depth": 0.02}]}
    pin = {"cylinder": {"radius": 0.008, "height": 0.04}}
    job = _job([_part("pin", pin), _part("holder", holder)], [_at("pin", [0, 0, 0.03]), _at("holder", [0, 0, 0.015])])
    order, incoming = assembly_order(job)
    assert order == ["holder", "pin"]
    assert [e.reason for e in incoming["pin"]] == ["pin after holder: pin sits inside holder"]
    solid = {"box": [0.05, 0.05, 0.03]}
    job = _job([_part("pin", pin), _part("holder", solid)], [_at("pin", [0, 0, 0.03]), _at("holder", [0, 0, 0.015])])
    with pytest.raises(PlanningError) as err:
        assembly_order(job)
    assert "'pin' and 'holder' overlap by 20.0 mm" in err.value.message and "features" in (err.value.hint or "")


def test_a_clip_inside_a_mesh_bracket_sits_inside_and_one_in_its_wall_is_refused() -> None:
    job = load_job(os.path.join(EXAMPLES, "bracket_clip.yaml"))
    order, incoming = assembly_order(job)
    assert order == ["bracket", "clip"] and "clip sits inside bracket" in incoming["clip"][0].reason
    bracket = {"mesh": "meshes/bracket.obj", "units": "mm"}
    clip = {"box": [0.03, 0.024, 0.016]}
    job = _job([_part("bracket", bracket), _part("clip", clip)],
               [_at("bracket", [0, 0, 0.014]), _at("clip", [0.02, 0, 0.016])])   # 12 mm into a wall
    with pytest.raises(PlanningError) as err:
        assembly_order(job)
    assert "overlap" in err.value.message


def test_a_cup_finds_the_free_half_of_a_plate() -> None:
    """The issue's case: a tower on one half of a 100 x 60 mm plate leaves 50 x 60 mm free."""
    parts = [_part("plate", {"box": [0.1, 0.06, 0.01]}), _part("tower", {"box": [0.04, 0.05, 0.04]})]
    job = _job(parts, [_at("plate", [0, 0, 0.005]), _at("tower", [-0.025, 0, 0.03])])
    spot = sites.suction_spot(job, "plate", 0.01, ["tower"], 0.016)
    assert spot is not None and spot[0] >= -0.005 + 0.016 and spot[2] == pytest.approx(0.005)   # clear of the tower
    # a tower over the whole plate leaves no area
    job = _job([_part("plate", {"box": [0.1, 0.06, 0.01]}), _part("tower", {"box": [0.1, 0.06, 0.04]})],
               [_at("plate", [0, 0, 0.005]), _at("tower", [0, 0, 0.03])])
    assert sites.suction_spot(job, "plate", 0.01, ["tower"]) is None


def test_a_cup_holds_a_holder_beside_its_hole_and_a_bracket_on_a_wall() -> None:
    job = load_job(os.path.join(EXAMPLES, "peg_in_hole_flush.yaml"))
    x, y, z = sites.suction_spot(job, "holder", 0.01)
    import math

    assert math.hypot(x, y) >= 0.0113 + 0.01 and z == pytest.approx(0.015)
    job = load_job(os.path.join(EXAMPLES, "bracket_clip.yaml"))
    x, y, z = sites.suction_spot(job, "bracket", 0.01, ["clip"], 0.016)
    assert abs(x) >= 0.023 + 0.01 - 1e-6 and z == pytest.approx(0.014)   # on a wall top, clear of the clip


def test_the_fingers_stay_above_the_receiving_part() -> None:
    job = load_job(os.path.join(EXAMPLES, "peg_in_hole.yaml"))
    assert sites.receiving_surface(job, "pin") == pytest.approx(0.0)   # the holder's top, at the pin's centre
    assert sites.receiving_surface(job, "holder") is None             # the pin goes in later


def test_the_carry_check_tries_every_free_area_and_the_flange_around_it() -> None:
    """A tower on one half of a 100 x 60 mm plate: a cup long enough to keep the flange above the tower
    carries the unit by the free half; the shipped 60 mm cup (its flange 7 mm above the face, 55 mm
    across) cannot, wherever it holds."""
    import yaml

    from anycell.cell import cell_from_document
    from anycell.planners.feasibility import carry_problem
    from tests.paths import KUKA_CELL

    parts = [_part("plate", {"box": [0.1, 0.06, 0.01]}), _part("tower", {"box": [0.04, 0.05, 0.04]})]
    job = _job(parts, [_at("plate", [0, 0, 0.005]), _at("tower", [-0.025, 0, 0.03])])
    data = yaml.safe_load(open(KUKA_CELL))
    short = cell_from_document(from_data(data, file="kuka.yaml")).robot("iiwa")
    data["robots"][0]["tool"]["tcp"]["xyz"] = [0.0, 0.0, 0.11]
    long = cell_from_document(from_data(data, file="kuka_long_cup.yaml")).robot("iiwa")
    assert carry_problem(long, job) is None
    assert "flange of 'iiwa' would hit" in carry_problem(short, job)
