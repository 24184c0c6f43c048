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

How the ratio is kept fair and steady on a loaded machine: both checks run on the same
configurations in the same rounds, one after the other (which goes first alternates), after a
warm-up round neither is timed in; each round gives a per-check (or per-state) time for each and
their ratio, and the table shows the median time of each and the median of the per-round ratios
with their range. A burst of load during a round slows one side of that round's ratio only, and
the median leaves it out; times are CPU time (``time.process_time``), which counts this process
only. The load average it ran under is printed first and last.

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


#: Timed rounds per measurement (after one warm-up round): the ratio is the median of the rounds' ratios.
ROUNDS = 7


def interleaved(world: CollisionWorld, run, per: int, rounds: int = ROUNDS) -> tuple:  # noqa: ANN001
    """Time ``run()`` with the PyBullet path and with the backend in the same rounds (the first one untimed).

    ``run`` makes ``per`` checks (or states) on fixed inputs; the order of the two alternates between
    rounds. Returns (median PyBullet us, median backend us, median of the per-round ratios, lowest
    ratio, highest ratio), times per check.
    """
    fast = world.fast
    ref_t, fast_t = [], []
    try:
        for r in range(rounds + 1):
            times = {}
            for name in (("pybullet", "fast") if r % 2 else ("fast", "pybullet")):
                world.fast = fast if name == "fast" else None
                t = time.process_time()
                run()
                times[name] = (time.process_time() - t) / per * 1e6
            if r:                                   # round 0 warms both up
                ref_t.append(times["pybullet"])
                fast_t.append(times["fast"])
    finally:
        world.fast = fast
    ratios = np.asarray(ref_t) / np.asarray(fast_t)
    return (float(np.median(ref_t)), float(np.median(fast_t)), float(np.median(ratios)), float(ratios.min()),
            float(ratios.max()))


def per_check(world: CollisionWorld, n: int = 1000) -> tuple:
    """:func:`interleaved` for ``free`` on random configurations, half with a held part."""
    rng = np.random.default_rng(0)
    lo, hi = world.kin.lower, world.kin.upper
    qs = [lo + (hi - lo) * rng.random(len(lo)) for _ in range(n)]
    plain, holding = qs[: n // 2], qs[n // 2:]
    free = world.free

    def run() -> None:
        for q in plain:
            free(q)
        for q in holding:
            free(q, HELD)
    return interleaved(world, run, n)


def per_segment_state(world: CollisionWorld, n: int = 200) -> tuple:
    """:func:`interleaved` per configuration of free short segments (0.02 rad spacing)."""
    rng = np.random.default_rng(1)
    lo, hi = world.kin.lower, world.kin.upper
    segs = []
    while len(segs) < n:
        a = lo + (hi - lo) * rng.random(len(lo))
        b = np.clip(a + rng.normal(0.0, 0.15, len(lo)), lo, hi)
        if world.segment_free(a, b):
            segs.append((a, b))
    states = sum(max(1, int(np.ceil(np.max(np.abs(b - a)) / 0.02))) for a, b in segs)
    segment_free = world.segment_free

    def run() -> None:
        for a, b in segs:
            segment_free(a, b)
    return interleaved(world, run, states)


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


def load() -> str:
    """The 1, 5 and 15 minute load averages and the CPU count (the ratio moves with the machine's load)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> int:
    print(f"collision check cost, {ROUNDS} interleaved rounds after a warm-up; {load()}")
    print(f"{'cell':8s} {'check':24s} {'PyBullet us':>12s} {'backend us':>11s} {'ratio':>7s}  {'rounds':>13s}")
    for cfg in ("demo_cell.yaml", "kuka_cell.yaml", "ur_cell.yaml", "two_robot_cell.yaml"):
        cell = load_cell(os.path.join(ROOT, "cell_configs", cfg))
        world = CollisionWorld(cell, cell.robots[0].id)
        if world.fast is None:
            print(f"{cell.robots[0].id}: no fast backend (see the log)")
            world.close()
            continue
        for label, (ref, fast, ratio, low, high) in (("free (random q)", per_check(world)),
                                                     ("segment_free per state", per_segment_state(world))):
            print(f"{cell.robots[0].id:8s} {label:24s} {ref:12.1f} {fast:11.2f} {ratio:6.1f}x  "
                  f"{low:5.1f}-{high:5.1f}x")
        world.close()
    n, res = planning()
    (m0, p0), (m1, p1) = res["pybullet"], res["fast"]
    print(f"planning, bench_motion problems ({n}, 3 rounds): PyBullet median {m0:.2f} ms p95 {p0:.1f} ms; "
          f"backend median {m1:.2f} ms p95 {p1:.1f} ms; ratio median {m0 / m1:.1f}x, p95 {p0 / p1:.1f}x")
    print(f"(ratio: the median of the rounds' ratios; rounds: their range) {load()}")
    return 0


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    sys.exit(main())
