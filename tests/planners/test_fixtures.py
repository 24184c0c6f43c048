"""A cell with several fixtures: units take them in turn and are built at the same time.

The task planner gives unit k the cell's k-th fixture (in turn); a unit waits only for the output
of the unit before it on the *same* fixture; its parts are fetched from slots and machines a robot
that reaches its fixture reaches; it goes to the output tray nearest its fixture.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

import yaml

from anycell.cell import cell_from_document, load_cell
from anycell.documents import from_data
from anycell.job import job_from_document, load_job
from anycell.plan import Site
from anycell.planners import sites
from anycell.planners.process import plan_job

from tests.paths import DEMO_CELL, ROOT, STACK_JOB

TWO_FIXTURE_CELL = os.path.join(ROOT, "bench", "cells", "two_fixture_cell.yaml")
PAIRS_JOB = os.path.join(ROOT, "bench", "jobs", "engraved_pairs.yaml")


def _demo_cell(*extra: Dict[str, Any]):
    """The demo cell with extra stations."""
    data = yaml.safe_load(open(DEMO_CELL))
    data["stations"] += list(extra)
    return cell_from_document(from_data(data, file="two_fixture_demo_cell.yaml"))


FIXTURE2 = {"id": "fixture2", "kind": "fixture", "pose": {"xyz": [0.50, 0.35, 0.02]}, "size": [0.12, 0.12, 0.02]}


def _stack_job(quantity: int):
    """The stack assembly without its peg (the hand clears the unit, so it can leave the fixture)."""
    data = yaml.safe_load(open(STACK_JOB))
    data["quantity"] = quantity
    data["parts"] = [p for p in data["parts"] if p["id"] != "peg"]
    data["assembly"]["placements"] = [p for p in data["assembly"]["placements"] if p["part"] != "peg"]
    return job_from_document(from_data(data), base_dir=ROOT)


def _ref(op: Any, role: str) -> str:
    return str(Site.from_dict(op.params[role]).ref)


def test_units_take_the_fixtures_in_turn_and_wait_only_for_their_own_fixture() -> None:
    cell, job = _demo_cell(FIXTURE2), _stack_job(3)
    plan = plan_job(cell, job)
    assert [_ref(plan.op(f"u{u}.place.base"), "target") for u in (1, 2, 3)] == ["fixture", "fixture2", "fixture"]
    assert plan.op("u2.place.base").after == []                # fixture2 is free: no wait for unit 1
    assert plan.op("u3.place.base").after == ["u1.output"]     # unit 1 leaves 'fixture' first
    assert "fixture: unit 1 leaves fixture 'fixture' first" in plan.op("u3.place.base").reasons
    # the product frame is on the unit's fixture
    frame2 = sites.product_frame(cell, "fixture2")
    want = frame2.compose(job.placement("block").pose).xyz
    assert Site.from_dict(plan.op("u2.place.block").params["target"]).xyz == [float(v) for v in want]
    inspect = plan.op("u2.inspect")
    assert inspect.params["fixture"] == "fixture2" and "fixture2" in inspect.uses
    output = plan.op("u2.output")
    assert _ref(output, "source") == "fixture2" and "fixture2" in output.uses
    assert any("2 fixtures" in note for note in plan.notes)


def test_one_fixture_keeps_units_one_after_another() -> None:
    plan = plan_job(load_cell(DEMO_CELL), _stack_job(2))
    assert plan.op("u2.place.base").after == ["u1.output"]
    assert any("one fixture ('fixture')" in note for note in plan.notes)


def test_a_finished_unit_goes_to_the_output_tray_nearest_its_fixture() -> None:
    tray2 = {"id": "out_tray2", "kind": "output_tray", "pose": {"xyz": [0.42, 0.50, 0.01]}, "size": [0.08, 0.08, 0.01]}
    cell = _demo_cell(FIXTURE2, tray2)
    plan = plan_job(cell, _stack_job(4))
    trays = [Site.from_dict(plan.op(f"u{u}.output").params["target"]) for u in (1, 2, 3, 4)]
    assert [t.ref for t in trays] == ["out_tray", "out_tray2", "out_tray", "out_tray2"]
    assert [t.index for t in trays] == [0, 0, 1, 0]   # out_tray2 holds one unit: its position is used again
    assert any("'out_tray2' holds 1 unit(s)" in note for note in plan.notes)


def test_slots_in_turn_skip_those_that_do_not_serve_the_unit() -> None:
    cell, job = load_cell(DEMO_CELL), _stack_job(3)
    plain = sites.allocate_feeder_slots(cell, job)
    first = plain[(1, "base")]
    calls: List[tuple] = []

    def serves(unit: int, part: Any, slot: Site) -> bool:
        calls.append((unit, part.id))
        return not (unit == 2 and part.id == "base" and slot == first)

    served = sites.allocate_feeder_slots(cell, job, serves)
    assert (2, "base") in calls
    assert served[(2, "base")] != first
    assert all(served[k] == v for k, v in plain.items() if k != (2, "base") and k[1] != "base")
    assert sites.allocate_feeder_slots(cell, job, lambda *_a: False) == plain   # none serves: in turn


def test_each_unit_of_the_two_fixture_cell_is_one_robots_own_work() -> None:
    cell, job = load_cell(TWO_FIXTURE_CELL), load_job(PAIRS_JOB)
    plan = plan_job(cell, job)
    side = {1: "left", 2: "right"}
    for op in plan.operations:
        if op.kind in ("pick_place", "load", "unload", "output"):
            assert op.resource == side[op.unit], op.id
            assert op.alternatives == {}, op.id          # the other robot reaches none of it
            for role in ("source", "target"):
                assert _ref(op, role).endswith(side[op.unit]), (op.id, role)
        if op.kind == "run_program":
            assert op.resource == f"laser_{side[op.unit]}"
