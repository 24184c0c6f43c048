"""Collision checking cost: the compiled backend (pinocchio + coal) vs the PyBullet reference check.

Same worlds, same configurations, same run. Per-check CPU time (``time.process_time``)
of ``CollisionWorld.free`` with the backend and with it switched off (the PyBullet
path), on every shipped cell's first robot (Panda with its hand, iiwa with a suction cup, the UR-style
arm, and ``left`` of the two-robot cell, whose pairs with ``right`` keep ``safety.robot_margin``),
half the checks with a held part;
per-configuration cost of ``segment_free`` on short segments (the planner's case:
free segments checked every 0.02 rad); and the planner's own time on
``bench_motion.py``'s problems (demo cell, stack assembly transfers, plus the same
with a blocking post) with each backend.

Run: .venv/bin/python bench/bench_collision.py
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.pop("ANYCELL_COLLISION", None)  # the compiled backend is the default; this compares it with PyBullet

from anycell.cell import load_cell  # noqa: E402
from anycell.errors import AnycellError  # noqa: E402
from anycell.geometry import Pose  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.planners.collision import CollisionWorld, Held  # noqa: E402
from anycell.planners.motion import MotionPlanner  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = Held("part", [0.04, 0.04, 0.02], Pose(xyz=[0, 0, 0.0]))


def cpu_per_call(fn, items) -> float:  # noqa: ANN001
    t = time.process_time()
    for it in items:
        fn(it)
    return (time.process_time() - t) / len(items)


def per_check(world: CollisionWorld, n: int = 3000) -> tuple:
    """(reference us, backend us) per ``free`` check on random configurations, half with a held part."""
    rng = np.random.default_rng(0)
    lo, hi = world.kin.lower, world.kin.upper
    qs = [lo + (hi - lo) * rng.random(len(lo)) for _ in range(n)]
    fast = world.fast
    out = []
    for backend in (None, fast):
        world.fast = backend
        world.free(qs[0], HELD)
        a = cpu_per_call(lambda q: world.free(q), qs[: n // 2])
        b = cpu_per_call(lambda q: world.free(q, HELD), qs[n // 2:])
        out.append((a + b) / 2 * 1e6)
    world.fast = fast
    return tuple(out)


def per_segment_state(world: CollisionWorld, n: int = 300) -> tuple:
    """(reference us, backend us) per configuration of free short segments (0.02 rad spacing)."""
    rng = np.random.default_rng(1)
    lo, hi = world.kin.lower, world.kin.upper
    segs = []
    while len(segs) < n:
        a = lo + (hi - lo) * rng.random(len(lo))
        b = np.clip(a + rng.normal(0.0, 0.15, len(lo)), lo, hi)
        if world.segment_free(a, b):
            segs.append((a, b))
    states = sum(max(1, int(np.ceil(np.max(np.abs(b - a)) / 0.02))) for a, b in segs)
    fast = world.fast
    out = []
    for backend in (None, fast):
        world.fast = backend
        t = time.process_time()
        for a, b in segs:
            world.segment_free(a, b)
        out.append((time.process_time() - t) / states * 1e6)
    world.fast = fast
    return tuple(out)


def planning(rounds: int = 3) -> tuple:
    """Median / p95 ms of ``plan_joint_path`` on bench_motion's problems, PyBullet vs the backend."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_motion import problems

    cell = load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml"))
    job = load_job(os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml"))
    planner = MotionPlanner(cell, "panda")
    fast = planner.world.fast
    base = problems(cell, job, planner)
    probs = [(a, b, h, None) for a, b, h in base]
    for qa, qb, held in base:
        pa, pb = planner.fk(qa).xyz, planner.fk(qb).xyz
        mid = [(pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2, 0.2]
        planner.add_obstacle("post", [0.06, 0.06, 0.4], Pose(xyz=mid))
        if planner.world.free(qa, held) and planner.world.free(qb, held) and not planner.world.segment_free(qa, qb, held):
            probs.append((qa, qb, held, mid))
        planner.remove_obstacle("post")
    times = {"pybullet": [], "fast": []}
    for _ in range(rounds):
        for qa, qb, held, mid in probs:
            if mid is not None:
                planner.add_obstacle("post", [0.06, 0.06, 0.4], Pose(xyz=mid))
            for name, backend in (("pybullet", None), ("fast", fast)):
                planner.world.fast = backend
                planner.world.free(qa, held)
                t = time.perf_counter()
                try:
                    planner.plan_joint_path(qa, qb, held)
                except AnycellError:
                    pass
                times[name].append(time.perf_counter() - t)
            planner.world.fast = fast
            if mid is not None:
                planner.remove_obstacle("post")
    planner.close()
    res = {k: (float(np.median(v) * 1000), float(np.percentile(v, 95) * 1000)) for k, v in times.items()}
    return len(probs), res


def main() -> int:
    print(f"{'cell':8s} {'check':24s} {'PyBullet us':>12s} {'backend us':>11s} {'ratio':>7s}")
    for cfg in ("demo_cell.yaml", "kuka_cell.yaml", "ur_cell.yaml", "two_robot_cell.yaml"):
        cell = load_cell(os.path.join(ROOT, "cell_configs", cfg))
        world = CollisionWorld(cell, cell.robots[0].id)
        if world.fast is None:
            print(f"{cell.robots[0].id}: no fast backend (see the log)")
            world.close()
            continue
        for label, (ref, fast) in (("free (random q)", per_check(world)),
                                   ("segment_free per state", per_segment_state(world))):
            print(f"{cell.robots[0].id:8s} {label:24s} {ref:12.1f} {fast:11.1f} {ref / fast:6.1f}x")
        world.close()
    n, res = planning()
    (m0, p0), (m1, p1) = res["pybullet"], res["fast"]
    print(f"planning, bench_motion problems ({n}, 3 rounds): PyBullet median {m0:.2f} ms p95 {p0:.1f} ms; "
          f"backend median {m1:.2f} ms p95 {p1:.1f} ms; ratio median {m0 / m1:.1f}x, p95 {p0 / p1:.1f}x")
    return 0


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    sys.exit(main())
