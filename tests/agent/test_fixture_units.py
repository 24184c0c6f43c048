"""The step runner on a cell with several fixtures: each unit is inspected in its own fixture's frame,
and taking a finished unit away opens only its own fixture's clamp (the other unit stays held)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import yaml

from anycell.agent.cell_runner import CellRunner, uid
from anycell.cell import cell_from_document
from anycell.documents import from_data
from anycell.geometry import Pose
from anycell.planners import sites
from anycell.planners.process import plan_job

from tests.jobs import stack_without_peg
from tests.paths import DEMO_CELL


class _World:
    """Just what the runner asks of a simulated world here: where parts are, and the fixtures' holds."""

    def __init__(self, poses: Dict[str, Pose], held: Dict[str, str]) -> None:
        self.poses, self.held = poses, held
        self.released: List[str] = []

    def measure(self, uids: Sequence[str]) -> Dict[str, Optional[Pose]]:
        return {u: self.poses.get(u) for u in uids}

    def release_hold(self, station: str) -> Optional[str]:
        self.released.append(station)
        return self.held.pop(station, None)


def _setup(poses: Dict[str, Pose], held: Dict[str, str]) -> tuple:
    data = yaml.safe_load(open(DEMO_CELL))
    data["stations"].append({"id": "fixture2", "kind": "fixture", "pose": {"xyz": [0.50, 0.35, 0.02]},
                             "size": [0.12, 0.12, 0.02], "hold": {"kind": "clamp", "force": 200.0}})
    cell = cell_from_document(from_data(data, file="two_fixture_demo_cell.yaml"))
    job = stack_without_peg(2)
    world = _World(poses, held)
    runner = CellRunner(cell, job, robots={}, planners={}, machines={}, sim=world)  # type: ignore[arg-type]
    runner._held_by = dict(held)
    return cell, job, plan_job(cell, job), runner, world


def test_a_unit_on_the_second_fixture_is_inspected_in_that_fixtures_frame() -> None:
    cell_for_poses, job_for_poses, _plan, _r, _w = _setup({}, {})
    where = {uid(2, pl.part): sites.placement_pose(cell_for_poses, job_for_poses, pl.part, "fixture2")
             for pl in job_for_poses.assembly.placements}
    _cell, _job, plan, runner, _world = _setup(where, {})
    runner._prepared = True
    detail: Any = runner.run(plan.op("u2.inspect"), plan)
    assert detail["passed"], detail["failures"]


def test_taking_a_unit_away_opens_only_its_own_fixtures_clamp() -> None:
    held = {"fixture": uid(1, "base"), "fixture2": uid(2, "base")}
    _cell, _job, _plan, runner, world = _setup({}, held)
    runner._release_fixture("fixture2")
    assert world.released == ["fixture2"]
    assert runner._held_by == {"fixture": uid(1, "base")}     # unit 1 is still clamped on its fixture
    runner._release_fixture("fixture2")                          # nothing held there now: nothing to open
    assert world.released == ["fixture2"]
