"""A simulated machine does not outlive the process that launched it."""

from __future__ import annotations

import pytest

from tests.orphans import assert_child_dies_with_parent
from tests.paths import DEMO_CELL


@pytest.mark.slow
def test_simulator_dies_with_its_launcher_even_on_kill_9(tmp_path) -> None:
    assert_child_dies_with_parent(
        "import time\n"
        "from anycell.cell import load_cell\n"
        "from anycell.sim.machines import launch_sim_machine\n"
        f"m = launch_sim_machine(load_cell({DEMO_CELL!r}).machine('printer'), {str(tmp_path)!r})\n"
        "print('PID', m.process.pid, flush=True)\n"
        "time.sleep(60)\n", "a simulated machine")
