"""The simulated world is saved with the journal and restored after a restart: a resumed job finds its parts."""

from __future__ import annotations

from anycell.agent.simulation.hooks import WorldHooks, serve_call
from anycell.cell import load_cell
from anycell.geometry import Pose
from tests.paths import DEMO_CELL


def test_parts_come_back_where_they_lay(tmp_path) -> None:
    from anycell.sim.world import SimWorld

    cell = load_cell(DEMO_CELL)
    path = str(tmp_path / "sim_world.json")
    first = SimWorld(cell)
    try:
        hooks = WorldHooks(first)
        hooks.present("u1.base", [0.06, 0.06, 0.012], 0.05, [0.2, 0.4, 0.8, 1.0], Pose(xyz=[0.4, -0.31, 0.026]))
        hooks.machine_made("u1.cap", [0.03, 0.03, 0.02], 0.02, None, Pose(xyz=[0.45, 0.2, 0.04]))
        where = hooks.measure(["u1.base", "u1.cap"])
        assert serve_call(hooks, {"op": "save", "path": path}) == {"ok": True, "result": 2}
    finally:
        first.close()
    second = SimWorld(cell)     # the restarted agent's fresh world
    try:
        hooks = WorldHooks(second)
        assert hooks.measure(["u1.base"])["u1.base"] is None
        assert serve_call(hooks, {"op": "restore", "path": path})["result"] == 2
        back = hooks.measure(["u1.base", "u1.cap"])
        for uid in ("u1.base", "u1.cap"):
            assert max(abs(a - b) for a, b in zip(back[uid].xyz, where[uid].xyz)) < 2e-3
        assert hooks.restore(path) == 0          # restoring twice adds nothing
        assert hooks.restore(str(tmp_path / "missing.json")) == 0
    finally:
        second.close()
