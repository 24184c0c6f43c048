"""A planner shared by threads: checks on one thread while another moves obstacles never fail or mix.

Seen in `make demo` before the planner had a lock: a look-ahead check on one thread read the
compiled collision scene while another thread's obstacle change rebuilt it (IndexError).
"""

from __future__ import annotations

import threading

from anycell.cell import load_cell
from anycell.geometry import Pose
from anycell.planners.motion import MotionPlanner
from tests.paths import DEMO_CELL


def test_checks_and_obstacle_changes_from_two_threads() -> None:
    planner = MotionPlanner(load_cell(DEMO_CELL), "panda")
    home = planner.kin.home.tolist()
    goal = list(home)
    goal[0] += 0.6
    traj = planner.plan_joint(home, goal)
    errors: list = []
    stop = threading.Event()

    def churn() -> None:
        i = 0
        try:
            while not stop.is_set():
                name = f"box{i % 3}"
                planner.add_obstacle(name, [0.05, 0.05, 0.05], Pose(xyz=[0.3 + 0.01 * (i % 5), 0.4, 0.05]))
                planner.remove_obstacle(name)
                i += 1
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        verdicts = {tuple(planner.trajectory_collisions(traj)) for _ in range(40)}
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    # the churned boxes stand away from this motion: every check gives the same (empty) answer
    assert verdicts == {()}, verdicts
