"""Planned motions: collision-free by an independent fine check, within limits, refused when they must be."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.errors import CollisionError, UnreachableError
from anycell.geometry import Pose, distance
from anycell.planners.collision import CollisionWorld
from anycell.planners.motion import MotionPlanner
from anycell.planners.timing import limits_ok
from anycell.planners.trajectory import Trajectory
from tests.paths import DEMO_CELL, KUKA_CELL

DOWN = [math.pi, 0.0, 0.0]


@pytest.fixture(scope="module", params=[DEMO_CELL, KUKA_CELL], ids=["panda", "iiwa"])
def setup(request):
    cell = load_cell(request.param)
    planner = MotionPlanner(cell, cell.robots[0].id)
    checker = CollisionWorld(cell, cell.robots[0].id)   # an independent model for the checks
    yield cell, planner, checker
    planner.close()
    checker.close()


def fine_check(checker: CollisionWorld, traj: Trajectory, step: float = 0.005) -> list:
    """Every configuration along the trajectory, at most ``step`` rad apart, must touch nothing."""
    pos = np.asarray(traj.positions)
    for a, b in zip(pos[:-1], pos[1:]):
        n = max(1, int(np.ceil(np.max(np.abs(b - a)) / step)))
        for k in range(n + 1):
            bad = checker.contacts(a + (b - a) * k / n, clearance=0.0)
            if bad:
                return bad
    return []


def targets(cell):
    st = {s.id: s for s in cell.stations}
    feeder, fixture = st["feeder"].pose.xyz, st["fixture"].pose.xyz
    tray = next(s for s in cell.stations if s.kind == "output_tray").pose.xyz
    return [[feeder[0], feeder[1], 0.12], [fixture[0], fixture[1], 0.12], [tray[0], tray[1], 0.12]]


def test_joint_moves_are_collision_free_and_within_limits(setup) -> None:
    cell, planner, checker = setup
    q = planner.kin.home
    pts = targets(cell)
    for a, b in zip(pts, pts[1:] + pts[:1]):
        qa = planner.ik(Pose(xyz=a, rpy=DOWN), q)
        qb = planner.ik(Pose(xyz=b, rpy=DOWN), qa)
        traj = planner.plan_joint(qa, qb)
        assert np.allclose(traj.positions[0], qa) and np.allclose(traj.positions[-1], qb, atol=1e-9)
        assert fine_check(checker, traj) == []
        assert limits_ok(traj, planner.vmax, planner.amax, slack=1e-3) == []
        # finite differences of the positions agree: the samples are a real motion, not labels
        pos, t = np.asarray(traj.positions), np.asarray(traj.times)
        v_fd = np.abs(np.diff(pos, axis=0) / np.diff(t)[:, None]).max(axis=0)
        assert np.all(v_fd <= np.asarray(planner.vmax) * 1.01)
        q = qb


def test_rrt_connect_finds_a_way_around_an_obstacle(setup) -> None:
    cell, planner, checker = setup
    pts = targets(cell)
    qa = planner.ik(Pose(xyz=pts[0], rpy=DOWN), planner.kin.home)
    qb = planner.ik(Pose(xyz=pts[1], rpy=DOWN), qa)
    # a wall between the two, known to both the planner and the independent checker
    # the tallest post between them that leaves start and goal free but blocks the straight path
    for x in np.linspace(0.0, 1.0, 11)[1:-1]:
        found = False
        for h in (0.35, 0.3, 0.25, 0.2, 0.15):
            mid = [pts[0][0] + (pts[1][0] - pts[0][0]) * x, pts[0][1] + (pts[1][1] - pts[0][1]) * x, h / 2]
            planner.world.add_obstacle("wall", [0.05, 0.05, h], Pose(xyz=mid))
            if planner.world.free(qa) and planner.world.free(qb) and not planner.world.segment_free(qa, qb):
                found = True
                break
        if found:
            break
    assert found, "no blocking post found"
    checker.add_obstacle("wall", [0.05, 0.05, h], Pose(xyz=mid))
    try:
        traj = planner.plan_joint(qa, qb)
        assert planner.last_stats["method"] == "rrt_connect"
        assert fine_check(checker, traj) == []
        assert limits_ok(traj, planner.vmax, planner.amax, slack=1e-3) == []
    finally:
        for w in (planner.world, checker):
            w.remove_obstacle("wall")


def test_cartesian_line_keeps_the_tcp_on_the_line(setup) -> None:
    cell, planner, checker = setup
    top = targets(cell)[0]
    q0 = planner.ik(Pose(xyz=top, rpy=DOWN), planner.kin.home)
    goal = Pose(xyz=[top[0], top[1], top[2] - 0.07], rpy=DOWN)
    traj = planner.plan_cartesian_line(q0, goal)
    for q in traj.positions:
        p = planner.fk(q).xyz
        assert abs(p[0] - top[0]) < 0.001 and abs(p[1] - top[1]) < 0.001
    assert distance(planner.fk(traj.positions[-1]).xyz, goal.xyz) < 0.001
    assert limits_ok(traj, planner.vmax, planner.amax, slack=1e-3) == []


@pytest.mark.slow
def test_colliding_or_unreachable_targets_are_refused(setup) -> None:
    cell, planner, _ = setup
    q0 = planner.kin.home
    m = cell.machines[0]                            # into a machine's body
    inside = [m.pose.xyz[0], m.pose.xyz[1], m.pose.xyz[2] + m.size[2] / 2]
    with pytest.raises(CollisionError) as err:
        planner.plan_to_pose(q0, Pose(xyz=inside, rpy=DOWN), name="inside the machine")
    assert "inside the machine" in str(err.value)
    with pytest.raises(UnreachableError):           # outside the workspace
        planner.plan_to_pose(q0, Pose(xyz=[0.5, 0.0, 2.0], rpy=DOWN))
    with pytest.raises(UnreachableError):           # inside the workspace, out of reach
        planner.plan_to_pose(q0, Pose(xyz=[-0.75, -0.75, 1.1], rpy=DOWN))
    bad = list(q0)
    bad[1] = 1.6                                    # a goal configuration bent down into the cell
    with pytest.raises(CollisionError) as err:
        planner.plan_joint(q0, bad)
    assert f"{planner.robot_id}/" in str(err.value) and " and " in str(err.value)   # names both bodies


def test_trajectory_round_trips_through_the_joint_trajectory_json() -> None:
    t = Trajectory(["a", "b"], [0.0, 0.5], [[0.0, 1.0], [0.2, 1.1]], [[0, 0], [0.1, 0.1]], [[1, 1], [0, 0]])
    d = t.to_dict()
    assert d["points"][1]["time_from_start"] == 0.5 and d["joint_names"] == ["a", "b"]
    back = Trajectory.from_dict(d)
    assert back == t and back.duration == 0.5


def test_toppra_grid_is_within_one_percent_of_the_dense_grid_and_within_limits() -> None:
    """The default timing (issue 16) against toppra on the dense uniform grid it replaced, on random paths."""
    import numpy as np

    from anycell.planners import timing

    rng = np.random.default_rng(3)
    names = [f"j{i}" for i in range(6)]
    vmax, amax = [2.0] * 6, [10.0] * 6
    for _ in range(5):
        path = rng.uniform(-2.0, 2.0, size=(int(rng.integers(2, 6)), 6))
        dense = timing.time_optimal(names, path, vmax, amax, gridpoints=800)
        fast = timing.time_optimal(names, path, vmax, amax)
        assert fast.times[-1] <= 1.01 * dense.times[-1]
        assert not timing.limits_ok(fast, vmax, amax)
        assert np.allclose(fast.positions[0], path[0]) and np.allclose(fast.positions[-1], path[-1])


def test_trajectory_points_are_checked_at_the_collision_models_spacing() -> None:
    """``along``: first and last points kept, consecutive points at most ``resolution`` apart (max-norm), every
    sample within half of it (along the path) of a checked point, and no more points than that needs."""
    from anycell.planners.motion import along

    rng = np.random.default_rng(4)
    for _ in range(30):
        pos = np.cumsum(rng.normal(0.0, rng.uniform(0.0005, 0.05), size=(int(rng.integers(1, 60)), 7)), axis=0)
        pts = along(pos, 0.02)
        assert np.array_equal(pts[0], pos[0]) and np.array_equal(pts[-1], pos[-1])
        if len(pos) < 2:
            continue
        assert np.max(np.abs(np.diff(pts, axis=0))) <= 0.02 + 1e-12
        arc = np.sum(np.max(np.abs(np.diff(pos, axis=0)), axis=1))
        assert len(pts) == max(1, int(np.ceil(arc / 0.02))) + 1
        for q in pos:
            assert np.min(np.max(np.abs(pts - q), axis=1)) <= 0.01 + 1e-12


def test_first_collision_agrees_with_free_point_by_point(setup) -> None:
    """The batched check (compiled backend and the PyBullet path) names the first configuration ``free`` refuses."""
    from anycell.planners.collision import Held

    cell, planner, checker = setup
    world = planner.world
    held = Held("part", [0.04, 0.04, 0.02], Pose(xyz=[0, 0, 0.0]))
    rng = np.random.default_rng(5)
    lo, hi = world.kin.lower, world.kin.upper
    fast = world.fast
    try:
        for backend in (fast, None):
            world.fast = backend
            for k in range(40):
                h = held if k % 2 else None
                qs = lo + (hi - lo) * rng.random((int(rng.integers(1, 12)), len(lo)))
                want = next((i for i, q in enumerate(qs) if not world.free(q, h)), -1)
                assert world.first_collision(qs, h) == want
    finally:
        world.fast = fast
