"""Time parameterisation: the closed-form TOPP-RA against toppra itself, durations, limits, awkward paths."""

from __future__ import annotations

import numpy as np
import pytest

from anycell.planners import timing

NAMES7 = [f"j{i}" for i in range(7)]
V7 = [2.175] * 4 + [2.61] * 3
A7 = [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]


def _toppra_profile(ss, pts, grid, v, a):
    """toppra's own controllable sets and sd^2 on ``grid`` (natural spline: the ends must be at sd = 0)."""
    import toppra as ta
    import toppra.algorithm as algo
    import toppra.constraint as constraint

    path = ta.SplineInterpolator(ss, pts, bc_type="natural")
    inst = algo.TOPPRA([constraint.JointVelocityConstraint(np.stack([-v, v], axis=1)),
                        constraint.JointAccelerationConstraint(np.stack([-a, a], axis=1))],
                       path, gridpoints=grid, parametrizer="ParametrizeConstAccel")
    _, sd, _, k = inst.compute_parameterization(0.0, 0.0, return_data=True)
    return path, k[:, 1], sd ** 2


@pytest.mark.parametrize("seed", range(4))
def test_reachability_passes_match_toppra_on_the_same_grid(seed: int) -> None:
    """Same discretised problem (interpolation scheme, both ends at rest): same profile, to toppra's own
    safety margin (it keeps each step 1e-8 inside its sets)."""
    rng = np.random.default_rng(seed)
    pts = timing._dedupe(timing.densify(rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 6)), 7)), 0.15))
    ss, _ = timing._path_parameter(pts)
    grid = np.linspace(0.0, 1.0, int(rng.integers(150, 600)))
    v, a = np.asarray(V7), np.asarray(A7)
    path, k_ref, x_ref = _toppra_profile(ss, pts, grid, v, a)
    x = timing._reachability(grid, path(grid, 1), path(grid, 2), v, a)
    scale = float(np.max(x_ref))
    assert np.max(np.abs(x - x_ref)) < 1e-4 * scale
    t_ref = np.sum(2 * np.diff(grid) / (np.sqrt(x_ref[:-1]) + np.sqrt(x_ref[1:])))
    t_new = np.sum(2 * np.diff(grid) / (np.sqrt(x[:-1]) + np.sqrt(x[1:])))
    assert abs(t_new / t_ref - 1.0) < 1e-4
    assert np.all(k_ref >= x_ref - 1e-9 * scale)


def test_bands_meet_is_the_least_pair_bound() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = int(rng.integers(2, 15))
        alpha = rng.normal(0.0, 10 ** rng.uniform(-2, 3), (40, m))
        w = rng.uniform(0.01, 10.0, (40, m))
        alpha[:5, 1] = alpha[:5, 0]                     # parallel bands never close on each other
        start = np.where(rng.random(40) < 0.3, np.inf, rng.uniform(0.0, 10.0, 40))
        i, j = np.triu_indices(m, 1)
        with np.errstate(divide="ignore"):
            pairs = 1.0 / np.max(np.abs(alpha[:, i] - alpha[:, j]) / (w[:, i] + w[:, j]), axis=1)
        want = np.minimum(np.minimum(start, pairs), 1e200)
        assert np.allclose(timing._bands_meet(alpha, w, start), want, rtol=1e-12, atol=0.0)


def _path_sets():
    rng = np.random.default_rng(3)
    wide = [rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 7)), 7)) for _ in range(8)]
    short = [np.cumsum(rng.normal(0.0, rng.uniform(0.005, 0.2), size=(int(rng.integers(2, 7)), 7)), axis=0)
             for _ in range(8)]
    back = [np.array([a, b, a]) for a, b in zip(rng.uniform(-2, 2, (4, 7)), rng.uniform(-2, 2, (4, 7)))]
    line = [np.cumsum(np.tile(rng.normal(0, 0.004, 7), (30, 1)) + rng.normal(0, 2e-4, (30, 7)), axis=0)
            for _ in range(4)]
    return [(p, 0.15) for p in wide + short + back] + [(p, 0.02) for p in line]


def test_durations_are_within_one_percent_of_the_dense_toppra_grid_and_within_limits() -> None:
    """The issue-16 goal, on wide, short, reversing and Cartesian-like (IK-noisy) paths."""
    for path, step in _path_sets():
        n = min(1000, max(500, 20 * len(timing._dedupe(timing.densify(path, step)))))
        dense = timing.time_optimal(NAMES7, path, V7, A7, max_step=step, gridpoints=n)
        fast = timing.time_optimal(NAMES7, path, V7, A7, max_step=step)
        assert fast.times[-1] <= 1.01 * dense.times[-1]
        assert not timing.limits_ok(fast, V7, A7)
        assert np.allclose(fast.positions[0], path[0]) and np.allclose(fast.positions[-1], path[-1])
        assert np.allclose(fast.velocities[0], 0.0) and np.allclose(fast.velocities[-1], 0.0)


def test_limits_hold_between_the_samples() -> None:
    """Sampled every 0.5 ms, the profile stays within the true limits (no stretch needed): the headroom
    and the grid keep what happens between the 10 ms samples within them too."""
    v, a = np.asarray(V7), np.asarray(A7)
    for path, step in _path_sets()[::3]:
        traj = timing.time_optimal(NAMES7, path, V7, A7, max_step=step, dt=0.0005)
        assert np.max(np.abs(np.asarray(traj.velocities)) / v) < 1.0
        assert np.max(np.abs(np.asarray(traj.accelerations)) / a) < 1.0


def test_the_path_is_followed_start_to_end_at_rest() -> None:
    """Positions follow the spline through the waypoints in order, the ends at rest and on the waypoints."""
    path = np.array([[0.0] * 7, [1.0, -0.5, 0.2, 0.0, 0.3, 0.0, 0.1], [1.2, 0.4, -0.3, 0.5, 0.0, 0.2, 0.0]])
    traj = timing.time_optimal(NAMES7, path, V7, A7)
    pos = np.asarray(traj.positions)
    assert np.all(np.diff(traj.times) > 0)
    assert np.allclose(pos[0], path[0]) and np.allclose(pos[-1], path[-1])
    assert np.allclose(traj.velocities[0], 0.0) and np.allclose(traj.velocities[-1], 0.0)
    # the middle waypoint is passed (within the spline's reach of it)
    assert np.min(np.max(np.abs(pos - path[1]), axis=1)) < 0.02


def test_awkward_inputs() -> None:
    """One waypoint, repeated waypoints, one joint moving alone, a tiny move: all timed, none over a limit."""
    q = [0.1] * 7
    assert timing.time_optimal(NAMES7, [q], V7, A7).times == [0.0]
    assert timing.time_optimal(NAMES7, [q, q, q], V7, A7).times == [0.0]
    one = np.array([q, [0.1, 0.1, 1.6, 0.1, 0.1, 0.1, 0.1]])
    traj = timing.time_optimal(NAMES7, one, V7, A7)
    # a single joint's time-optimal move: accelerate at 10 rad/s^2 to 2.175 rad/s, cruise, brake
    t_opt = 1.5 / 2.175 + 2.175 / 10.0
    assert t_opt <= traj.times[-1] <= 1.01 * t_opt
    assert np.allclose(np.asarray(traj.positions)[:, [0, 1, 3, 4, 5, 6]], 0.1)
    tiny = np.array([q, [v + 1e-4 for v in q]])
    assert 0.0 < timing.time_optimal(NAMES7, tiny, V7, A7).times[-1] < 0.05
    repeated = np.array([q, q, [0.5] * 7, [0.5] * 7, q])
    assert not timing.limits_ok(timing.time_optimal(NAMES7, repeated, V7, A7), V7, A7)


def test_densify_matches_the_segment_by_segment_definition() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        pts = rng.uniform(-2.0, 2.0, size=(int(rng.integers(1, 6)), 6))
        want = [pts[0]]
        for a, b in zip(pts[:-1], pts[1:]):
            n = max(1, int(np.ceil(np.max(np.abs(b - a)) / 0.15)))
            want += [a + (b - a) * (k / n) for k in range(1, n + 1)]
        assert np.allclose(timing.densify(pts, 0.15), np.asarray(want), rtol=0.0, atol=1e-12)


def test_a_profile_stopping_inside_the_path_falls_back_to_toppra(monkeypatch) -> None:
    """A grid on which the profile comes to rest mid-path is refined, and toppra's dense grid answers last."""
    calls = []

    def never(spline, grid, x, dt):  # noqa: ANN001
        calls.append(len(grid))
        return None

    monkeypatch.setattr(timing, "_sample", never)
    path = np.array([[0.0] * 7, [1.0] * 7])
    traj = timing.time_optimal(NAMES7, path, V7, A7)
    assert len(calls) == timing.GRID_RETRIES + 1 and calls == sorted(calls)   # each retry on a finer grid
    assert traj.times[-1] > 0 and not timing.limits_ok(traj, V7, A7)
    assert np.allclose(traj.positions[-1], path[-1])
