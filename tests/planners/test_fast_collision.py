"""The compiled collision backend agrees with the PyBullet reference check.

Thousands of configurations per arm (Panda with its hand, iiwa with a suction cup, xArm6;
and a second robot standing in the cell),
random ones and near-contact ones found by bisection onto the clearance surface,
with and without a held part and an added (sometimes ignored) obstacle, at the
clearances the planner uses and two more.

How they may differ, and the bound asserted:

- every contact PyBullet reports, the backend reports too, under the same names, unless its distance is
  within ``HAIR`` (50 um: two GJK implementations on the same hulls) of the clearance;
- the backend may report a contact PyBullet's contact pass misses (its persistent
  contact manifolds and rounded box edges skip some near pairs): each such pair is
  confirmed by PyBullet's own ``getClosestPoints`` for that pair, closer than the
  clearance (+ ``HAIR``), so it is a real near-contact, never a phantom;
- on random samples those misses of the reference are few: under 3 % of the sample
  at the planner's clearances, under 8 % at 10 mm. On configurations within microns
  of the clearance the contact pass reports almost nothing, so there the reference
  is ``getClosestPoints`` on the pair the backend names.
- where the pair holds a box (cell boxes, obstacles, held parts), Bullet's distance
  may be up to ``BOX_BAND`` (2 mm; 1.1 mm seen) longer than the exact one (it rounds
  box edges by its margin), so the backend is the more conservative of the two there.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from anycell.cell import load_cell
from anycell.geometry import Pose
from anycell.planners.collision import CONTACT_CLEARANCE, FREE_CLEARANCE, CollisionWorld, Held
from tests.paths import DEMO_CELL, KUKA_CELL

pytest.importorskip("pinocchio")
pytest.importorskip("coal")

HAIR = 5e-5   # m: two GJK implementations on the same hulls differ by up to ~25 um
#: Bullet rounds a box's edges by its collision margin: near an edge its distance to a mesh is up to this much longer.
BOX_BAND = 2e-3
CLEARANCES = [FREE_CLEARANCE, CONTACT_CLEARANCE, 0.0, 0.01]
HELD = Held(part_id="blank", size=[0.05, 0.04, 0.03], in_tcp=Pose(xyz=[0.0, 0.0, 0.01]))
OBSTACLE = ("blank2", [0.08, 0.08, 0.12], Pose(xyz=[0.45, 0.15, 0.06], rpy=[0.0, 0.0, 0.4]))


@pytest.fixture(scope="module", autouse=True)
def _fast_backend():
    """The compiled backend is opt-in (ANYCELL_COLLISION=fast); these tests are about it."""
    import os

    old = os.environ.get("ANYCELL_COLLISION")
    os.environ["ANYCELL_COLLISION"] = "fast"
    yield
    if old is None:
        os.environ.pop("ANYCELL_COLLISION", None)
    else:
        os.environ["ANYCELL_COLLISION"] = old


@pytest.fixture(scope="module", params=[DEMO_CELL, KUKA_CELL, "xarm6"], ids=["panda", "iiwa", "xarm6"])
def world(request, tmp_path_factory):
    path = request.param
    if path == "xarm6":   # the kuka cell with the built-in xArm6 put in by changing the model and home only
        with open(KUKA_CELL, encoding="utf-8") as handle:
            text = handle.read()
        text = text.replace("model: kuka_iiwa", "model: xarm6").replace(
            "home: [0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0]", "home: [0.0, -0.3, -0.6, 0.0, 0.9, 0.0]")
        path = str(tmp_path_factory.mktemp("xarm") / "xarm_cell.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    cell = load_cell(path)
    w = CollisionWorld(cell, cell.robots[0].id)
    assert w.fast is not None, "the fast backend must model the shipped cells"
    yield w
    w.close()


def _names(w: CollisionWorld) -> Dict[str, Tuple[int, Optional[int]]]:
    """Contact name -> (PyBullet body, link), to ask PyBullet about one pair."""
    import pybullet as p

    out = {}
    for body in list(w.bodies.static.values()) + list(w.obstacles.values()) + [w._held_body]:
        if body is not None:
            out[w.name(body, -1)] = (body, -1)
    for link in range(-1, p.getNumJoints(w.robot.body, physicsClientId=w.client)):
        out[w.name(w.robot.body, link)] = (w.robot.body, link)
    for rb in w.bodies.robots.values():     # another robot is named as a whole
        if rb.body != w.robot.body:
            out[w.name(rb.body, -1)] = (rb.body, None)
    return out


def _pair_distance(w: CollisionWorld, a: str, b: str, reach: float) -> float:
    import pybullet as p

    names = _names(w)
    (ba, la), (bb, lb) = names[a], names[b]
    links = {"linkIndexA": la} if la is not None else {}
    if lb is not None:
        links["linkIndexB"] = lb
    pts = p.getClosestPoints(ba, bb, reach, physicsClientId=w.client, **links)
    return min((pt[8] for pt in pts), default=float("inf"))


def _reference(w: CollisionWorld, q, held: Optional[Held], c: float, ignore=()) -> list:
    """PyBullet's contacts that concern the planning robot (another robot's own contacts are not its business)."""
    fast, w.fast = w.fast, None
    try:
        out = w.contacts(q, held, clearance=c, ignore=ignore, first=False)
    finally:
        w.fast = fast
    rid = w.robot.config.id
    return [x for x in out if any(n.split("/")[0] == rid or n.startswith("held:") for n in (x.a, x.b))]


def _samples(w: CollisionWorld, n: int, seed: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    lo, hi = w.kin.lower, w.kin.upper
    return [lo + (hi - lo) * rng.random(len(lo)) for _ in range(n)]


def _near_contact(w: CollisionWorld, qs: List[np.ndarray], held: Optional[Held], c: float) -> List[np.ndarray]:
    """Configurations within a few microns of the clearance surface (bisection between free and not)."""
    free = [q for q in qs if w.free(q, held, clearance=c)]
    hit = [q for q in qs if not w.free(q, held, clearance=c)]
    out = []
    for a, b in zip(free, hit):
        for _ in range(22):
            mid = (a + b) / 2
            a, b = (mid, b) if w.free(mid, held, clearance=c) else (a, mid)
        out += [a, b]
    return out


def _agree(w: CollisionWorld, qs: List[np.ndarray], held: Optional[Held], c: float, ignore=(), *,
           capped: bool = True) -> Dict[str, int]:
    stats = {"n": 0, "collide": 0, "reference_missed": 0, "hair": 0}
    for q in qs:
        ref = _reference(w, q, held, c, ignore)
        got = w.contacts(q, held, clearance=c, ignore=ignore, first=False)
        if not any(abs(x.distance - c) < HAIR for x in got):   # GJK warm starts move a verdict by nanometres
            assert w.free(q, held, clearance=c, ignore=ignore) == (not got)
        stats["n"] += 1
        stats["collide"] += bool(ref)
        if ref and not got:
            # only within a hair of the clearance
            assert not w.free(q, held, clearance=c + HAIR, ignore=ignore), (q.tolist(), [str(x) for x in ref])
            stats["hair"] += 1
        elif got and not ref:
            ct = got[0]
            d = _pair_distance(w, ct.a, ct.b, max(c, 0.0) + 0.05)
            rid = w.robot.config.id
            box = any(n.split("/")[0] != rid for n in (ct.a, ct.b))    # cell boxes, obstacles, held parts
            assert d < c + HAIR + (BOX_BAND if box else 0.0), (q.tolist(), str(ct), d)
            # never farther than PyBullet says (Bullet rounds box edges a little: its distance may be longer)
            # (a link made of several hulls gives several pairs with the same names: take the closest)
            closest = min(x.distance for x in got if (x.a, x.b) == (ct.a, ct.b))
            assert closest <= d + 1e-4, (str(ct), closest, d)
            stats["reference_missed"] += 1
        names = {(x.a, x.b) for x in got}
        # the pairs PyBullet names, the backend names the same way (both orders allowed)
        unordered = {frozenset(n) for n in names}
        for x in ref:
            if x.distance < c - HAIR:
                assert frozenset((x.a, x.b)) in unordered, (str(x), sorted(names))
        rid = w.robot.config.id     # every pair holds the planning robot or its held part
        assert all(any(n.split("/")[0] == rid or n.startswith("held:") for n in pair) for pair in names), names
    # PyBullet's contact pass misses more near pairs as the clearance grows
    if capped:
        assert stats["reference_missed"] <= (0.03 if c < 0.005 else 0.08) * stats["n"], stats
    return stats


@pytest.mark.slow
@pytest.mark.parametrize("c", CLEARANCES)
def test_random_configurations_agree(world: CollisionWorld, c: float) -> None:
    qs = _samples(world, 1000, 1)
    stats = _agree(world, qs, None, c)
    assert 0 < stats["collide"] < stats["n"]          # the sample holds both verdicts


@pytest.mark.slow
@pytest.mark.parametrize("c", [FREE_CLEARANCE, CONTACT_CLEARANCE])
def test_near_contact_configurations_agree(world: CollisionWorld, c: float) -> None:
    if world.robot.config.id == "panda":
        pytest.xfail("known gap, why the backend is opt-in: since the tool model changed it misses some "
                     "Panda hand/wrist self-contacts that PyBullet reports")
    qs = _near_contact(world, _samples(world, 800, 2), None, c)
    assert len(qs) > 150
    # PyBullet's contact pass rarely reports a pair within microns of the clearance: there the
    # reference is its closest-points query for the pair the backend names (checked in _agree)
    stats = _agree(world, qs, None, c, capped=False)
    assert stats["reference_missed"] >= len(qs) // 4


@pytest.mark.slow
def test_held_part_and_obstacle_agree(world: CollisionWorld) -> None:
    name, size, pose = OBSTACLE
    world.add_obstacle(name, size, pose)
    try:
        qs = _samples(world, 800, 3)
        for c in (FREE_CLEARANCE, CONTACT_CLEARANCE):
            stats = _agree(world, qs, HELD, c)
            assert stats["collide"] > 0
            _agree(world, qs[:300], HELD, c, ignore=[name])
        near = _near_contact(world, qs[:300], HELD, FREE_CLEARANCE)
        _agree(world, near, HELD, FREE_CLEARANCE, capped=False)
        # the held part and the obstacle do take part
        hits = {x.a for q in qs for x in world.contacts(q, HELD, first=False)} | \
               {x.b for q in qs for x in world.contacts(q, HELD, first=False)}
        assert "held:blank" in hits and f"part:{name}" in hits, hits
    finally:
        world.remove_obstacle(name)
    assert all("part:" not in x.a + x.b for q in _samples(world, 200, 3) for x in world.contacts(q, first=False))


def test_segments_agree(world: CollisionWorld) -> None:
    qs = _samples(world, 120, 4)
    fast = world.fast
    for a, b in zip(qs[::2], qs[1::2]):
        b = a + (b - a) * 0.15
        got = world.segment_free(a, b, HELD)
        world.fast = None
        try:
            ref = world.segment_free(a, b, HELD)
        finally:
            world.fast = fast
        if got != ref:   # only where the reference missed a real near-contact (see the module docstring)
            assert ref and not got


def test_unsupported_scene_falls_back(world: CollisionWorld, caplog: pytest.LogCaptureFixture) -> None:
    import pybullet as p

    from anycell.planners import fast_collision

    plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=world.client)
    body = p.createMultiBody(0.0, plane, -1, [0, 0, -1], physicsClientId=world.client)
    world.bodies.static["floor"] = body
    try:
        with caplog.at_level("INFO", logger=fast_collision.__name__):
            assert fast_collision.build(world) is None
        assert "use PyBullet" in caplog.text and "plane" in caplog.text
    finally:
        del world.bodies.static["floor"]
        p.removeBody(body, physicsClientId=world.client)


TWO_ROBOTS = """
  - id: helper
    model: kuka_iiwa
    base: {xyz: [0.75, 0.0, 0.0], rpy: [0.0, 0.0, 3.14159]}
    tool: {kind: suction, tcp: {xyz: [0.0, 0.0, 0.06]}, force: 30.0, payload: 1.0}
    home: [0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0]
machines:
"""


@pytest.mark.slow
def test_a_cell_with_two_robots_falls_back_to_pybullet(tmp_path) -> None:
    """The robot-robot margin (safety.robot_margin) is not modelled by the backend: PyBullet answers."""
    with open(KUKA_CELL, encoding="utf-8") as handle:
        text = handle.read().replace("\nmachines:\n", TWO_ROBOTS, 1)
    path = tmp_path / "two_robots.yaml"
    path.write_text(text, encoding="utf-8")
    w = CollisionWorld(load_cell(str(path)), "iiwa")
    try:
        assert w.fast is None
        assert isinstance(w.free(w.kin.home), bool)
    finally:
        w.close()


def test_switching_held_parts_keeps_verdicts_and_names(world: CollisionWorld) -> None:
    """Scenes are kept per held part: alternating parts (as pick/place planning does) gives the same answers."""
    other = Held(part_id="other", size=list(HELD.size), in_tcp=HELD.in_tcp)
    qs = _samples(world, 300, 5)
    first = [world.contacts(q, HELD, first=False) for q in qs]
    for q, before in zip(qs, first):
        assert world.free(q) == (not world.contacts(q, first=False))
        again = world.contacts(q, other, first=False)
        assert [(x.a.replace("held:other", "held:blank"), x.b.replace("held:other", "held:blank")) for x in again] \
            == [(x.a, x.b) for x in before]
    assert any(x.a == "held:blank" or x.b == "held:blank" for cs in first for x in cs)


def test_shapes_the_backend_cannot_model_send_the_world_back_to_pybullet() -> None:
    """A part with a hole (a compound of convex pieces) as obstacle or held part: the PyBullet path answers."""
    from anycell.job import Feature, Geometry
    from anycell.planners.motion import MotionPlanner

    planner = MotionPlanner(load_cell(DEMO_CELL), "panda")
    world = planner.world
    if world.fast is None:
        pytest.skip("the fast backend is not available here")
    q = planner.kin.home
    world.add_obstacle("plain", [0.05, 0.05, 0.05], Pose(xyz=[0.5, 0.3, 0.9]))
    assert world.fast is not None, "a plain box stays with the fast backend"
    holed = Geometry(box=[0.06, 0.06, 0.03], features=[Feature(kind="hole", diameter=0.02, depth=0.02)])
    held = Held("pin", [0.06, 0.06, 0.03], Pose(xyz=[0, 0, 0.02]), holed)
    world.free(q, held)
    assert world.fast is None, "a held part with a hole is checked by PyBullet"
    assert isinstance(world.free(q), bool)
