"""Benchmark: anycell's time parameterisation against toppra on the dense grid it replaced, same paths, same run.

Times are CPU times of this process (time.process_time), so other load on the machine
changes them little. The reference is what anycell did before issue 16: ``toppra`` on a
uniform grid of 500-1000 points along the densified path (``time_optimal(..., gridpoints=N)``).
The candidate is :func:`anycell.planners.timing.time_optimal` as it is now (TOPP-RA's
reachability passes in closed form on a grid that follows the path's curvature). Both are
warmed up first (toppra's and scipy's imports cost ~0.6 s of CPU, 20 ms per path here, and
would otherwise be charged to whichever runs first), and each set is timed over several
rounds, the two in alternating order. Figures: the speed-up (reference time / candidate
time, its range over the rounds) and the trajectory durations as a ratio (candidate /
reference, median and worst). Goal: at least 2x faster, at most 1% longer; every sample
within the joint limits.

Path sets: 30 random 7-joint paths of 2-6 waypoints over most of the joint range (the figure
the README quotes since issue 16), and 30 short random paths (steps of 0.005-0.2 rad, the
size of approach moves and short transfers), where a grid that follows only the curvature
would be too coarse.

Run: ``.venv/bin/python bench/bench_timing.py`` (under a minute).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.planners import timing  # noqa: E402

NAMES = [f"j{i}" for i in range(7)]
VMAX, AMAX = [2.175] * 4 + [2.61] * 3, [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]  # Panda-like limits


def dense_grid(path: np.ndarray) -> int:
    """The grid size anycell used before issue 16: 20 points per densified waypoint, 500-1000."""
    pts = timing._dedupe(timing.densify(path, 0.15))
    return min(1000, max(500, 20 * len(pts)))


def run_set(label: str, paths: list, rounds: int) -> None:
    t_ref, t_new = [], []
    ref = new = []
    for k in range(rounds):
        order = ("ref", "new") if k % 2 == 0 else ("new", "ref")
        for which in order:
            t0 = time.process_time()
            if which == "ref":
                ref = [timing.time_optimal(NAMES, p, VMAX, AMAX, gridpoints=dense_grid(p)) for p in paths]
                t_ref.append(time.process_time() - t0)
            else:
                new = [timing.time_optimal(NAMES, p, VMAX, AMAX) for p in paths]
                t_new.append(time.process_time() - t0)
    speedups = np.array(t_ref) / np.array(t_new)
    ratios = np.array([n.times[-1] / r.times[-1] for n, r in zip(new, ref) if r.times[-1] > 0])
    violations = sum(bool(timing.limits_ok(n, VMAX, AMAX)) for n in new)
    n = len(paths)
    print(f"{label}")
    print(f"  toppra, dense grid (reference): {1000 * min(t_ref) / n:6.1f} ms per path (best of {rounds} rounds)")
    print(f"  anycell time_optimal:           {1000 * min(t_new) / n:6.1f} ms per path   speed-up "
          f"{speedups.min():.2f}-{speedups.max():.2f}x over the rounds (goal >= 2x)")
    print(f"  duration ratio: median {np.median(ratios):.4f}, worst {ratios.max():.4f} (goal <= 1.01)")
    print(f"  trajectories over a joint limit at a sample: {violations}")


def main(n_paths: int = 30, seed: int = 0, rounds: int = 3) -> None:
    rng = np.random.default_rng(seed)
    wide = [rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 7)), 7)) for _ in range(n_paths)]
    short = [np.cumsum(rng.normal(0.0, rng.uniform(0.005, 0.2), size=(int(rng.integers(2, 7)), 7)), axis=0)
             for _ in range(n_paths)]
    warm = rng.uniform(-2.0, 2.0, size=(3, 7))
    timing.time_optimal(NAMES, warm, VMAX, AMAX, gridpoints=dense_grid(warm))   # imports, caches: not timed
    timing.time_optimal(NAMES, warm, VMAX, AMAX)
    run_set(f"{n_paths} random 7-joint paths (2-6 waypoints in [-2, 2] rad)", wide, rounds)
    run_set(f"{n_paths} short random 7-joint paths (2-6 waypoints, steps of 0.005-0.2 rad)", short, rounds)


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    main()
