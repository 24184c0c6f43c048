"""Task planning: inferred assembly order, explicit dependencies, cycles, tending, quantity, feasibility."""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, List

import pytest
import yaml

from anycell.cell import cell_from_document, load_cell
from anycell.documents import from_data
from anycell.errors import InfeasibleError, PlanningError
from anycell.job import job_from_document, load_job
from anycell.plan import Plan, Site
from anycell.planners import sites
from anycell.planners.process import plan_job

from tests.jobs import stack_without_peg
from tests.paths import DEMO_CELL, DEMO_JOB, ROOT, STACK_JOB


def _job(parts: List[Dict[str, Any]], placements: List[Dict[str, Any]], **extra: Any):
    doc = {"spec_version": 1, "id": "t", "product": "p", "parts": parts,
           "assembly": {"placements": placements}, **extra}
    return job_from_document(from_data(doc), base_dir=ROOT)


def _box(pid: str, size: List[float], feeder: str, mass: float = 0.01) -> Dict[str, Any]:
    return {"id": pid, "geometry": {"box": size}, "mass": mass, "source": {"feeder": feeder}}


def _at(pid: str, xyz: List[float], **extra: Any) -> Dict[str, Any]:
    return {"part": pid, "pose": {"xyz": xyz}, **extra}


def _cell_with(**changes: Any):
    """The demo cell's YAML, edited as a dict, loaded as a real CellConfig."""
    data = yaml.safe_load(open(DEMO_CELL))
    for fn in changes.values():
        fn(data)
    return cell_from_document(from_data(data, file="edited_demo_cell.yaml"))


def _placed_order(plan: Plan, unit: int = 1) -> List[str]:
    return [op.part for op in plan.operations if op.unit == unit and op.kind in ("pick_place", "unload")]


def test_stacked_assembly_order_is_inferred_from_geometry() -> None:
    cell = load_cell(DEMO_CELL)
    # The spec lists them top first; geometry must put them bottom first.
    job = _job([_box("peg", [0.012, 0.012, 0.03], "peg"), _box("block", [0.04, 0.04, 0.02], "block"),
                _box("base", [0.06, 0.06, 0.012], "base_plate")],
               [_at("peg", [0, 0, 0.047]), _at("block", [0, 0, 0.022]), _at("base", [0, 0, 0.006])])
    plan = plan_job(cell, job)
    assert _placed_order(plan) == ["base", "block", "peg"]
    block = plan.op("u1.place.block")
    assert block.after == ["u1.place.base"]
    assert "block after base: block rests on base" in block.reasons
    peg = plan.op("u1.place.peg")
    assert peg.after == ["u1.place.block"]  # peg-after-base is implied, so not repeated
    assert "peg after block: peg rests on block" in peg.reasons


def test_nested_part_goes_in_after_its_container() -> None:
    cell = load_cell(DEMO_CELL)
    # A peg standing in a pocket of the block: their boxes interpenetrate, their solids do not.
    block = _box("block", [0.04, 0.04, 0.02], "block")
    block["geometry"]["features"] = [{"kind": "pocket", "size": [0.0126, 0.0126], "depth": 0.015}]
    job = _job([_box("peg", [0.012, 0.012, 0.03], "peg"), block],
               [_at("peg", [0.0, 0.0, 0.02], insert=True), _at("block", [0.0, 0.0, 0.01])])
    plan = plan_job(cell, job)
    assert _placed_order(plan) == ["block", "peg"]
    peg = plan.op("u1.place.peg")
    assert "peg after block: peg sits inside block" in peg.reasons
    assert peg.params["insert"] is True and "insert" not in plan.op("u1.place.block").params


def test_part_under_an_overhang_goes_first() -> None:
    cell = load_cell(DEMO_CELL)
    # A lintel (block) held 2 cm above the fixture would be in the way of the peg placed under it.
    job = _job([_box("block", [0.04, 0.04, 0.01], "block"), _box("peg", [0.012, 0.012, 0.01], "peg")],
               [_at("block", [0.0, 0.0, 0.035]), _at("peg", [0.0, 0.0, 0.005])])
    plan = plan_job(cell, job)
    assert _placed_order(plan) == ["peg", "block"]
    assert any("would collide with block on the way in" in r for r in plan.op("u1.place.block").reasons)


def test_explicit_after_is_honoured_with_its_reason() -> None:
    cell = load_cell(DEMO_CELL)
    # Side by side on the fixture: geometry says nothing, the spec asks peg before block.
    job = _job([_box("block", [0.02, 0.02, 0.02], "block"), _box("peg", [0.012, 0.012, 0.03], "peg")],
               [_at("block", [-0.02, 0.0, 0.01], after=["peg"]), _at("peg", [0.03, 0.0, 0.015])])
    plan = plan_job(cell, job)
    assert _placed_order(plan) == ["peg", "block"]
    op = plan.op("u1.place.block")
    assert op.after == ["u1.place.peg"] and "explicit after: peg" in op.reasons


def test_cycle_is_reported_with_its_members() -> None:
    cell = load_cell(DEMO_CELL)
    # block rests on base, but the spec says base after block: a cycle.
    job = _job([_box("base", [0.06, 0.06, 0.012], "base_plate"), _box("block", [0.04, 0.04, 0.02], "block")],
               [_at("base", [0, 0, 0.006], after=["block"]), _at("block", [0, 0, 0.022])])
    with pytest.raises(PlanningError) as err:
        plan_job(cell, job)
    msg = str(err.value)
    assert "cycle among parts base, block" in msg
    assert "block rests on base" in msg and "explicit after: block" in msg


def test_tending_expansion_with_and_without_stock() -> None:
    cell = load_cell(DEMO_CELL)
    job = load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    # Milled block: stock fetched from the feeder, loaded, run, unloaded straight onto the fixture.
    load, run, unload = plan.op("u1.load.block"), plan.op("u1.run.block"), plan.op("u1.unload.block")
    assert (load.kind, load.resource, load.uses) == ("load", "panda", ["panda", "mill"])
    assert load.holds == {"mill": "u1.unload.block"}
    assert Site.from_dict(load.params["source"]).kind == "feeder"
    assert Site.from_dict(load.params["target"]).ref == "mill"
    assert run.after == ["u1.load.block"] and "tending: load before run" in run.reasons
    assert run.params["program"] == {"name": "POCKET_01"}
    assert run.params["parameters"] == {"depth": 0.002, "feed": 0.01, "spindle_rpm": 12000}
    assert run.duration == 30.0 and run.uses == ["mill"]
    assert "u1.run.block" in unload.after and "tending: run before unload" in unload.reasons
    assert Site.from_dict(unload.params["target"]) == sites.fixture_site(cell, job, "block")
    # Printed cap: no stock, so the program starts the hold and there is no load.
    with pytest.raises(KeyError):
        plan.op("u1.load.cap")
    cap_run = plan.op("u1.run.cap")
    assert cap_run.holds == {"printer": "u1.unload.cap"} and cap_run.after == []
    assert list(cap_run.params["program"]) == ["file"] and cap_run.params["program"]["file"].endswith("cap.gcode")
    # Inspection after every placement, then output by the base part to the tray.
    ins = plan.op("u1.inspect")
    assert set(ins.after) == {"u1.unload.cap", "u1.place.peg"} and ins.params["checks"] == ["placement", "presence"]
    out = plan.op("u1.output")
    assert out.part == "base" and out.after == ["u1.inspect"]
    assert Site.from_dict(out.params["target"]) == sites.tray_site(cell.station("out_tray"), job, 0)


def test_quantity_gives_that_many_units_in_sequence_on_the_fixture() -> None:
    cell = load_cell(DEMO_CELL)
    job = stack_without_peg(3)
    plan = plan_job(cell, job)
    assert sorted({op.unit for op in plan.operations}) == [1, 2, 3]
    for u in (1, 2, 3):
        assert [op.id for op in plan.operations if op.unit == u] == [
            f"u{u}.place.base", f"u{u}.place.block", f"u{u}.inspect", f"u{u}.output"]
    assert plan.op("u2.place.base").after == ["u1.output"]
    assert plan.op("u3.place.base").after == ["u2.output"]
    targets = [Site.from_dict(plan.op(f"u{u}.output").params["target"]).index for u in (1, 2, 3)]
    assert targets == [0, 1, 2]


def test_second_printer_takes_the_second_unit() -> None:
    cell = _cell_with(m=lambda d: d["machines"].append({**copy.deepcopy(d["machines"][0]), "id": "printer2",
                                                        "pose": {"xyz": [0.35, -0.5, 0.0]},
                                                        "tending": {"load": {"xyz": [0.35, -0.5, 0.1]}},
                                                        "driver": {"kind": "sim", "protocol": "marlin"}}))
    plan = plan_job(cell, load_job(DEMO_JOB))
    assert plan.op("u1.run.cap").resource == "printer" and plan.op("u2.run.cap").resource == "printer2"


# ------------------------------------------------------------------ infeasibility, one test per class


def test_missing_capability_names_operation_part_and_capability() -> None:
    cell = _cell_with(m=lambda d: d["machines"].pop(0))  # no printer
    with pytest.raises(InfeasibleError, match=r"operation 'u1.run.cap' \(part 'cap'\) needs process 'print'"):
        plan_job(cell, load_job(DEMO_JOB))


def test_missing_inspection_station_for_checks() -> None:
    cell = _cell_with(s=lambda d: d.__setitem__("stations", [s for s in d["stations"] if s["kind"] != "inspection"]))
    with pytest.raises(InfeasibleError, match=r"operation 'u1.inspect' needs capability 'inspection'"):
        plan_job(cell, load_job(DEMO_JOB))


def test_pose_outside_workspace() -> None:
    def shrink(d: Dict[str, Any]) -> None:
        d["safety"]["workspace"]["max"][1] = 0.3  # the mill at y=0.5 falls outside
    with pytest.raises(InfeasibleError, match=r"operation 'u1.load.block' \(part 'block'\): target machine 'mill'"
                                              r" .* is outside the cell workspace"):
        plan_job(_cell_with(w=shrink), load_job(DEMO_JOB))


def test_pose_in_keep_out_zone() -> None:
    def fence(d: Dict[str, Any]) -> None:
        d["safety"]["keep_out"].append({"id": "printer_guard", "min": [0.0, -0.7, 0.0], "max": [0.3, -0.3, 0.5]})
    with pytest.raises(InfeasibleError, match=r"operation 'u1.unload.cap' \(part 'cap'\): source machine "
                                              r"'printer' .* inside keep-out zone 'printer_guard'"):
        plan_job(_cell_with(k=fence), load_job(DEMO_JOB))


@pytest.mark.slow
def test_unreachable_pose() -> None:
    def far(d: Dict[str, Any]) -> None:  # the output tray 1.2 m from the robot, still inside the workspace
        d["safety"]["workspace"]["max"][0] = 1.6
        for s in d["stations"]:
            if s["id"] == "out_tray":
                s["pose"]["xyz"] = [1.2, 0.3, 0.01]
    with pytest.raises(InfeasibleError, match=r"operation 'u1.output' \(part 'base'\): robot 'panda' cannot reach "
                                              r"the target output_tray 'out_tray'"):
        plan_job(_cell_with(f=far), load_job(DEMO_JOB))


def test_tolerance_tighter_than_robot_accuracy() -> None:
    data = yaml.safe_load(open(STACK_JOB))
    data["assembly"]["placements"][1]["tolerance"]["position"] = 0.0002  # 0.2 mm < panda 0.5 mm
    job = job_from_document(from_data(data), base_dir=ROOT)
    with pytest.raises(InfeasibleError, match=r"operation 'u1.place.block' \(part 'block'\): position tolerance "
                                              r"0.2 mm is tighter than robot 'panda' accuracy 0.5 mm"):
        plan_job(load_cell(DEMO_CELL), job)


def test_tolerance_tighter_than_inspection_can_measure() -> None:
    def coarse(d: Dict[str, Any]) -> None:
        for s in d["stations"]:
            if s["kind"] == "inspection":
                s["uncertainty"]["position"] = 0.002  # 3 sigma = 6 mm > the base's 3 mm
    with pytest.raises(InfeasibleError, match=r"operation 'u1.place.base' \(part 'base'\): position tolerance 3 mm "
                                              r"is tighter than inspection station 'inspection' can verify \(3 x 2 mm\)"):
        plan_job(_cell_with(c=coarse), load_job(DEMO_JOB))


def test_part_heavier_than_payload() -> None:
    data = yaml.safe_load(open(STACK_JOB))
    data["parts"][1]["mass"] = 4.0  # the panda's gripper holds 3 kg
    job = job_from_document(from_data(data), base_dir=ROOT)
    with pytest.raises(InfeasibleError, match=r"operation 'u1.place.block' \(part 'block'\): part 'block' weighs "
                                              r"4 kg, over the 3 kg payload"):
        plan_job(load_cell(DEMO_CELL), job)


def test_unit_heavier_than_payload_when_output() -> None:
    data = yaml.safe_load(open(DEMO_JOB))
    for p in data["parts"]:
        p["mass"] = 1.0  # each part is fine, the 4 kg unit is not
    job = job_from_document(from_data(data), base_dir=os.path.dirname(DEMO_JOB))
    with pytest.raises(InfeasibleError, match=r"operation 'u1.output' \(part 'base'\): the unit \(4 parts, carried "
                                              r"by its base 'base'\) weighs 4 kg"):
        plan_job(load_cell(DEMO_CELL), job)


def test_part_wider_than_gripper() -> None:
    data = yaml.safe_load(open(STACK_JOB))
    data["parts"][0]["geometry"]["box"] = [0.10, 0.10, 0.012]  # 100 mm > 80 mm opening
    job = job_from_document(from_data(data), base_dir=ROOT)
    with pytest.raises(InfeasibleError, match=r"operation 'u1.place.base' \(part 'base'\): the part is 100 mm wide, "
                                              r"over the 80 mm max_opening"):
        plan_job(load_cell(DEMO_CELL), job)


def test_missing_output_tray() -> None:
    cell = _cell_with(s=lambda d: d.__setitem__("stations", [s for s in d["stations"] if s["kind"] != "output_tray"]))
    with pytest.raises(InfeasibleError, match=r"operation 'u1.output' needs an output tray, which cell 'demo_cell' "
                                              r"lacks"):
        plan_job(cell, load_job(STACK_JOB))


def test_plan_round_trips_through_json() -> None:
    import json

    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.op("u1.load.block").holds == {"mill": "u1.unload.block"}


# ---------------------------------------------------------------------- the tool must be able to hold the part
def test_a_part_narrower_than_the_suction_cup_is_refused_by_the_plan() -> None:
    """ur_cell's 20 mm cup on peg_in_hole's 16 mm pin: nothing seals, so the plan refuses the pin's step
    (the runner used to find out at the robot, with the holder already placed)."""
    from tests.paths import ROOT as root

    cell = load_cell(os.path.join(root, "cell_configs", "ur_cell.yaml"))
    job = load_job(os.path.join(root, "examples", "jobs", "peg_in_hole.yaml"))
    with pytest.raises(InfeasibleError, match=r"operation 'u1.place.pin' \(part 'pin'\): the suction cup of 'ur' "
                                              r"\(20 mm across\) finds no free area that wide") as err:
        plan_job(cell, job)
    assert err.value.field == "robots[ur].tool.cup_radius"
    # a cup that fits on the pin's top face passes this check (and plans)
    data = yaml.safe_load(open(os.path.join(root, "cell_configs", "ur_cell.yaml")))
    data["robots"][0]["tool"]["cup_radius"] = 0.007
    small = cell_from_document(from_data(data, file=os.path.join(root, "cell_configs", "small_cup.yaml")))
    plan = plan_job(small, job)
    assert plan.op("u1.place.pin").resource == "ur"


# ---------------------------------------------------------------------- feeder slots whose parts would touch
def _feeder_cell(slots: List[Dict[str, Any]]):
    def feeder(d: Dict[str, Any]) -> None:
        for s in d["stations"]:
            if s["kind"] == "feeder":
                s["slots"] = slots
    return _cell_with(f=feeder)


def test_a_slot_whose_part_would_touch_another_stays_empty_when_its_type_has_another_slot() -> None:
    """A 90 mm plate in slot 0 reaches the peg in slot 1 (60 mm away): picking one would drag the other, so
    every peg comes from slot 2, presented again for each unit."""
    cell = _feeder_cell([{"part_type": "base_plate", "offset": {"xyz": [0.0, -0.06, 0.0]}},
                         {"part_type": "peg", "offset": {"xyz": [0.06, -0.06, 0.0]}},
                         {"part_type": "peg", "offset": {"xyz": [0.0, 0.07, 0.0]}}])
    job = _job([_box("plate", [0.09, 0.04, 0.01], "base_plate"), _box("peg", [0.03, 0.02, 0.02], "peg")],
               [_at("plate", [0, 0, 0.005]), _at("peg", [0, 0, 0.02])], quantity=2)
    used = sites.feeder_slots_in_use(cell, job)
    assert [i for _st, i, _s in used["peg"]] == [2] and [i for _st, i, _s in used["base_plate"]] == [0]
    plan = plan_job(cell, job)
    assert {plan.op(f"u{u}.place.peg").params["source"]["index"] for u in (1, 2)} == {2}
    assert "feeder slot 1 of 'feeder' (peg) left empty: its part would touch another slot's (under 2 mm apart)" \
        in plan.notes
    # 3 mm apart they keep clear of each other: both slots are used
    narrow = [_box("plate", [0.084, 0.04, 0.01], "base_plate"), _box("peg", [0.03, 0.02, 0.02], "peg")]
    job = _job(narrow, [_at("plate", [0, 0, 0.005]), _at("peg", [0, 0, 0.02])], quantity=2)
    assert [i for _st, i, _s in sites.feeder_slots_in_use(cell, job)["peg"]] == [1, 2]


def test_feeder_slots_whose_parts_would_touch_are_refused_when_there_is_no_other_slot() -> None:
    cell = _feeder_cell([{"part_type": "base_plate", "offset": {"xyz": [0.0, -0.06, 0.0]}},
                         {"part_type": "peg", "offset": {"xyz": [0.06, -0.06, 0.0]}}])
    job = _job([_box("plate", [0.09, 0.04, 0.01], "base_plate"), _box("peg", [0.03, 0.02, 0.02], "peg")],
               [_at("plate", [0, 0, 0.005]), _at("peg", [0, 0, 0.02])])
    with pytest.raises(InfeasibleError, match=r"feeder slots too close for job 't': part 'plate' in slot 0 of feeder "
                                              r"'feeder' \(base_plate\) and part 'peg' in slot 1 of feeder 'feeder' "
                                              r"\(peg\) would stand 0.0 mm apart") as err:
        plan_job(cell, job)
    assert err.value.field == "stations[feeder].slots[1].offset"


def test_parts_taken_from_one_feeder_slot_in_turn_are_ordered_by_it() -> None:
    """A slot holds one part at a time: the op taking the second blank from a slot comes after the
    op that took the first, whatever else the schedule would prefer (seen: the one-robot version of
    the two-robot cell loaded tag_c first and picked into tag_a's blank, still lying in the slot)."""
    from anycell.planners.schedule import schedule_plan

    cell = load_cell(os.path.join(ROOT, "cell_configs", "two_robot_cell.yaml"))
    job = load_job(os.path.join(ROOT, "bench", "jobs", "engraved_four.yaml"))
    plan = plan_job(cell, job)
    ops = {op.id: op for op in plan.operations}
    slot = {oid: (op.params["source"]["ref"], op.params["source"]["index"]) for oid, op in ops.items()
            if op.params.get("source", {}).get("kind") == "feeder"}
    shared = [oid for oid in slot if sum(1 for s in slot.values() if s == slot[oid]) > 1]
    assert sorted(shared) == ["u1.load.tag_a", "u1.load.tag_b", "u1.load.tag_c", "u1.load.tag_d"]
    assert "u1.load.tag_a" in ops["u1.load.tag_c"].after
    assert any("presents its next part once u1.load.tag_a" in r for r in ops["u1.load.tag_c"].reasons)
    assert "u1.load.tag_b" in ops["u1.load.tag_d"].after
    schedule_plan(plan, cell, time_limit=2.0)
    start = {e.op: e for e in plan.schedule.entries}
    assert start["u1.load.tag_c"].start >= start["u1.load.tag_a"].end - 1e-6
