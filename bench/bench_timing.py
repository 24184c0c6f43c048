"""Benchmark: time parameterisation with toppra's own grid against a fixed dense grid, same paths, same run.

Times are CPU times of this process (time.process_time), so other load on the machine
changes them little. The reference is what anycell did before issue 16: a uniform grid of 500-1000
points along the densified path. The candidate is :func:`anycell.planners.timing.time_optimal`
as it is now (toppra's ``propose_gridpoints``). Figures: the speed-up
(reference time / candidate time) and the trajectory durations as a ratio
(candidate / reference, median and worst). Goal: at least 2x faster, at most
1% longer; every sample within the joint limits.

Run: ``.venv/bin/python bench/bench_timing.py`` (under a minute).
"""

from __future__ import annotations

import time

import numpy as np

from anycell.planners import timing


def main(n_paths: int = 30, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = [f"j{i}" for i in range(7)]
    vmax, amax = [2.175] * 4 + [2.61] * 3, [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]  # Panda-like limits
    paths = [rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 7)), 7)) for _ in range(n_paths)]

    def dense_grid(path: np.ndarray) -> int:
        pts = timing._dedupe(timing.densify(path, 0.15))
        return min(1000, max(500, 20 * len(pts)))

    t0 = time.process_time()
    ref = [timing.time_optimal(names, p, vmax, amax, gridpoints=dense_grid(p)) for p in paths]
    t_ref = time.process_time() - t0
    t0 = time.process_time()
    new = [timing.time_optimal(names, p, vmax, amax) for p in paths]
    t_new = time.process_time() - t0
    ratios = np.array([n.times[-1] / r.times[-1] for n, r in zip(new, ref)])
    violations = sum(bool(timing.limits_ok(n, vmax, amax)) for n in new)
    print(f"{n_paths} random 7-joint paths (2-6 waypoints)")
    print(f"  dense grid (reference): {1000 * t_ref / n_paths:7.1f} ms per path")
    print(f"  toppra's grid:          {1000 * t_new / n_paths:7.1f} ms per path   speed-up {t_ref / t_new:.2f}x (goal >= 2x)")
    print(f"  duration ratio: median {np.median(ratios):.4f}, worst {ratios.max():.4f} (goal <= 1.01)")
    print(f"  trajectories over a joint limit at a sample: {violations}")


if __name__ == "__main__":
    main()
