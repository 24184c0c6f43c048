"""The sim hooks: parts appear only where a feeder or machine puts them; the call encoding round-trips."""

from __future__ import annotations

import pytest

from anycell.cell import load_cell
from anycell.geometry import Pose
from anycell.agent.simulation.hooks import WorldHooks, decode_measure, encode_call, serve_call
from tests.paths import DEMO_CELL


@pytest.fixture
def hooks():
    from anycell.sim.world import SimWorld

    world = SimWorld(load_cell(DEMO_CELL))
    yield WorldHooks(world)
    world.close()


def test_present_adds_a_part_once_and_it_rests_where_presented(hooks) -> None:
    pose = Pose(xyz=[0.4, -0.31, 0.026])
    assert hooks.present("u1.base", [0.06, 0.06, 0.012], 0.05, None, pose) is True
    assert hooks.present("u1.base", [0.06, 0.06, 0.012], 0.05, None, pose) is False
    got = hooks.measure(["u1.base", "u9.nothing"])
    assert got["u9.nothing"] is None
    assert abs(got["u1.base"].xyz[0] - 0.4) < 1e-3 and abs(got["u1.base"].xyz[2] - 0.026) < 2e-3


def test_machine_made_turns_stock_into_the_part(hooks) -> None:
    bed = Pose(xyz=[0.15, 0.5, 0.11])
    hooks.present("u1.block", [0.035, 0.035, 0.02], 0.04, None, bed)
    hooks.machine_made("u1.block", [0.035, 0.035, 0.02], 0.04, [0.7, 0.7, 0.7, 1], bed)
    assert hooks.part_ids() == ["u1.block"]


def test_calls_round_trip_through_the_message_encoding(hooks) -> None:
    req = encode_call("present", uid="u1.peg", size=[0.016, 0.016, 0.03], mass=0.01, color=None,
                      pose=Pose(xyz=[0.4, -0.13, 0.035]))
    assert serve_call(hooks, req) == {"ok": True, "result": True}
    res = serve_call(hooks, encode_call("measure", uids=["u1.peg"]))
    assert res["ok"] and abs(decode_measure(res["result"])["u1.peg"].xyz[1] + 0.13) < 1e-3


def test_bad_calls_get_errors_not_crashes(hooks) -> None:
    assert serve_call(hooks, {"op": "teleport"})["ok"] is False
    res = serve_call(hooks, {"op": "present", "uid": "x"})
    assert res["ok"] is False and "malformed" in res["error"]["message"]
