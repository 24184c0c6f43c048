"""Executed trajectory time vs the TOPP-RA optimum, and the simulator's real-time factor.

1. For the pick/place transfers of the demo cell, each planned trajectory is
   executed by SimRobot in PyBullet; its executed duration (from the first
   command until the arm has settled at the goal) is divided by the
   time-optimal duration TOPP-RA finds for the same geometric path and the same
   (speed-scaled) limits with no headroom and a fine grid. Goal <= 1.05.
2. The stack assembly job runs headless through ``anycell sim`` (the executor,
   the step runner, the simulated machines) on both example cells. Real-time
   factor = simulated robot-motion seconds / wall seconds spent moving the
   simulated robot (physics + driver). The headline is the END-TO-END factor:
   simulated robot-motion seconds / the job's whole wall time (planning,
   simulator start-up, machines and PNG rendering included), which is what an
   engineer waits for; the simulating-only factor is printed beside it.
   Reference: the wall clock (1x). Goal >= 20x simulating.

Run: .venv/bin/python bench/bench_sim.py
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import load_cell  # noqa: E402
from anycell.agent.simulation.job import run_job_in_sim  # noqa: E402
from anycell.errors import AnycellError  # noqa: E402
from anycell.geometry import Pose  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.sim.robot import SimRobot  # noqa: E402
from anycell.planners.motion import MotionPlanner  # noqa: E402
from anycell.planners.timing import time_optimal  # noqa: E402
from anycell.sim.world import SimWorld  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOWN = [math.pi, 0.0, 0.0]


def duration_ratio() -> None:
    cell = load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml"))
    planner = MotionPlanner(cell, "panda")
    world = SimWorld(cell)
    robot = SimRobot(world, "panda")
    fixture = cell.station("fixture").pose.xyz
    tray = cell.stations_of("output_tray")[0].pose.xyz
    goals = []
    for st in cell.stations_of("feeder"):
        for slot in st.slots:
            p = st.pose.compose(slot.offset).xyz
            goals.append([p[0], p[1], p[2] + 0.1])
            goals.append([fixture[0], fixture[1], fixture[2] + 0.1] if len(goals) % 4 else [tray[0], tray[1], 0.1])
    ratios, executed, optimal = [], [], []
    for g in goals:
        try:
            q_goal = planner.ik(Pose(xyz=g, rpy=DOWN), robot.joint_positions())
            q0 = robot.joint_positions()
            path = planner.plan_joint_path(q0, q_goal)
            traj = planner.parameterize(path)
        except AnycellError:
            continue
        ref = time_optimal(traj.joint_names, path, planner.vmax, planner.amax, headroom=1.0, gridpoints=2000,
                           max_step=0.1)
        t0 = world.sim_time
        robot.execute(traj)
        t_exec = world.sim_time - t0
        ratios.append(t_exec / ref.duration)
        executed.append(t_exec)
        optimal.append(ref.duration)
    r = np.asarray(ratios)
    print(f"trajectory duration, {len(r)} moves: executed {np.sum(executed):.2f} s vs TOPP-RA optimum "
          f"{np.sum(optimal):.2f} s (same paths, same limits)")
    print(f"  ratio executed/optimal: total {np.sum(executed) / np.sum(optimal):.3f}, median {np.median(r):.3f}, "
          f"max {np.max(r):.3f}  (goal <= 1.05)")
    planner.close()
    world.close()


def real_time_factor() -> None:
    job = load_job(os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml"))
    for name in ("demo_cell", "kuka_cell"):
        cell = load_cell(os.path.join(ROOT, "cell_configs", f"{name}.yaml"))
        with tempfile.TemporaryDirectory() as out:
            r = run_job_in_sim(cell, job, out)
        print(f"{name}: stack assembly {r['outcome']}, {r['robot_motion_s']:.1f} s of robot motion simulated; "
              f"END-TO-END real-time factor {r['robot_motion_s'] / r['executed_wall_time_s']:.1f}x "
              f"(planning {r['planning_s']:.2f} s, wall {r['executed_wall_time_s']:.2f} s); "
              f"{r['robot_real_time_factor']:.1f}x while simulating  (reference: wall clock 1x)")


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    duration_ratio()
    real_time_factor()
