"""Planning time per pick/place motion on the demo cell: anycell's planner vs OMPL RRTConnect.

Both planners solve the *same* joint-space problems in the same run with the
*same* collision checker (planners.collision, same resolution): the transfers
of a pick-and-place (home -> pre-grasp, pre-grasp -> pre-place with the part
held, pre-place -> next pre-grasp) for every feeder slot and fixture/tray
target of the stack assembly, plus the same problems with a post planted
between source and target so a search is needed. Ours = direct path first,
then RRT-Connect + shortcutting; OMPL = RRTConnect.solve + simplifySolution
(SimpleSetup construction is not timed). The comparison is kept fair: both
check the straight path first, OMPL's motions are validated by anycell's own
segment check (same world, same spacing, so the same states are checked), and
OMPL shortens its path with rope shortcutting (the counterpart of anycell's
shortcutting, which since issue 16 also takes partial shortcuts). Path quality
is compared too: both paths are timed with TOPP-RA and their executed durations
compared (the timing's one-time imports are done before any clock starts);
OMPL's paths are random, so each searched problem is also solved by OMPL
``REPEATS`` more times, and ours is compared with the median and the shortest
of those.
mplib, a second peer, needs numpy < 2 and cannot share this venv (its 0.2.1 wheel
pins it): it runs in a venv of its own (``.venv/mplib-peer``, created with pinned wheels
on the first run; ``--no-mplib`` leaves it out) on the same problems, in its own FCL
collision world built from the same cell (every static body's boxes as PyBullet has
them, the post, the held part attached to the flange), through ``bench/mplib_peer.py``.
It is timed as it is used: ``Planner.plan_qpos`` (RRTConnect, its simplification and its
own TOPP-RA timing), with the same joint limits; its path's executed duration is the one
its TOPP-RA reports.
VAMP (KavrakiLab's SIMD planner), a third peer, is on PyPI only as source (``vamp-planner``, pinned
below) whose build clones two libraries from GitHub (kavrakilab/nigh, lemire/SIMDxorshift) that no
registry carries, so it cannot be built offline from the registry alone. With ``--vamp-deps DIR``
(DIR/nigh and DIR/SIMDxorshift: their source trees at the commits VAMP pins, obtained by the user)
the first run builds it into ``.venv/vamp-peer`` with anycell's CPM stand-in
(``bench/vamp_cmake/FetchInitCPM.cmake``), which answers each of VAMP's downloads from DIR or from
what is installed (nanobind from PyPI, Eigen3 and pdqsort from Debian: libeigen3-dev, pdqsort-dev);
later runs use that venv without the option. Without either it is skipped with the reason.
``bench/vamp_peer.py`` runs VAMP's RRT-Connect with its default settings and its simplification on
the same problems (VAMP's own sphere model of the Panda, the cell's boxes as cuboids, the post, the
held part as a sphere attachment), ``VAMP_REPEATS`` times each; its paths are timed with the same
TOPP-RA as ours.

Run: .venv/bin/python bench/bench_motion.py   [--no-mplib] [--no-vamp] [--vamp-deps DIR]
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import load_cell  # noqa: E402
from anycell.errors import AnycellError  # noqa: E402
from anycell.geometry import Pose  # noqa: E402
from anycell.job import load_job  # noqa: E402
from anycell.planners import sites  # noqa: E402
from anycell.planners.collision import FREE_CLEARANCE, Held  # noqa: E402
from anycell.planners.motion import RESOLUTION, MotionPlanner  # noqa: E402
from anycell.planners.timing import time_optimal  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOWN = [math.pi, 0.0, 0.0]
REPEATS = 10    # OMPL runs per searched problem for the spread of its path durations
POST_SIZE = [0.06, 0.06, 0.4]   # the blocking post of the searched problems (every peer gets the same)
ARGS = None    # the command line (set when run as a script)


def problems(cell, job, planner):
    out = []
    slots = [(st, i) for st in cell.stations_of("feeder") for i in range(len(st.slots))]
    targets = [sites.placement_pose(cell, job, pl.part).xyz for pl in job.assembly.placements]
    tray = cell.stations_of("output_tray")[0]
    targets.append(list(tray.pose.xyz))
    held = Held("part", [0.04, 0.04, 0.02], Pose(xyz=[0, 0, 0.0]))
    q = planner.kin.home
    for k, (st, i) in enumerate(slots):
        src = st.pose.compose(st.slots[i].offset).xyz
        dst = targets[k % len(targets)]
        try:
            qa = planner.ik(Pose(xyz=[src[0], src[1], src[2] + 0.09], rpy=DOWN), q)
            qb = planner.ik(Pose(xyz=[dst[0], dst[1], dst[2] + 0.09], rpy=DOWN), qa, held)
        except AnycellError:
            continue
        out += [(q, qa, None), (qa, qb, held)]
        q = qb
    return out


def ompl_solve(planner, qa, qb, held, timeout=3.0):
    """OMPL RRTConnect on the same problem, checked exactly as anycell checks.

    Fair by construction: the same straight-path check first; OMPL's motions are
    validated by anycell's own ``segment_free`` (the same collision world, the same
    max-joint-step spacing, so both check the same states); the path is shortened
    with OMPL's rope shortcutting, the counterpart of anycell's shortcutting (not
    ``simplifySolution``, OMPL's heaviest simplifier). Returns (seconds, solve-only
    seconds, path or None).
    """
    from ompl import base as ob
    from ompl import geometric as og

    world = planner.world
    t0 = time.perf_counter()
    if world.segment_free(qa, qb, held, resolution=RESOLUTION):
        dt = time.perf_counter() - t0
        return dt, dt, [list(qa), list(qb)]
    dof = len(qa)
    space = ob.RealVectorStateSpace(dof)
    bounds = ob.RealVectorBounds(dof)
    for j in range(dof):
        bounds.setLow(j, float(planner.lower[j]))
        bounds.setHigh(j, float(planner.upper[j]))
    space.setBounds(bounds)
    si = ob.SpaceInformation(space)

    class SameChecks(ob.MotionValidator):
        def checkMotion(self, s1, s2, *last_valid):  # noqa: N802 (OMPL's name)
            return world.segment_free([s1[j] for j in range(dof)], [s2[j] for j in range(dof)], held,
                                      resolution=RESOLUTION)

    validator = SameChecks(si)
    si.setMotionValidator(validator)
    si.setStateValidityChecker(lambda s: world.free([s[j] for j in range(dof)], held))
    si.setup()
    ss = og.SimpleSetup(si)
    start, goal = space.allocState(), space.allocState()
    for j in range(dof):
        start[j], goal[j] = float(qa[j]), float(qb[j])
    ss.setStartAndGoalStates(start, goal)
    ss.setPlanner(og.RRTConnect(si))
    ss.setup()
    t1 = time.perf_counter()
    solved = ss.solve(timeout)
    t_solve = time.perf_counter() - t1 + (t1 - t0)
    if not (bool(solved) and ss.haveExactSolutionPath()):
        return time.perf_counter() - t0, t_solve, None
    path = ss.getSolutionPath()
    og.PathSimplifier(si).ropeShortcutPath(path)
    dt = time.perf_counter() - t0
    states = [[path.getState(k)[j] for j in range(dof)] for k in range(path.getStateCount())]
    return dt, t_solve, states


MPLIB_VENV = os.environ.get("ANYCELL_MPLIB_VENV", os.path.join(ROOT, ".venv", "mplib-peer"))
MPLIB_PINS = ["mplib==0.2.1", "numpy==1.26.4", "toppra==0.6.10", "transforms3d==0.4.2", "scipy==1.17.1",
              "matplotlib==3.11.2"]


def mplib_python() -> str:
    """The side venv's python, created with the pinned wheels on first use (raises with the reason)."""
    py = os.path.join(MPLIB_VENV, "bin", "python")
    stamp = os.path.join(MPLIB_VENV, ".pins")
    if os.path.exists(stamp):
        with open(stamp) as fh:
            if fh.read() == " ".join(MPLIB_PINS):
                return py
    print(f"mplib: creating {MPLIB_VENV} (once) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)   # the interpreter this venv was made from
    subprocess.run([base, "-m", "venv", MPLIB_VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", *MPLIB_PINS], check=True)
    with open(stamp, "w") as fh:
        fh.write(" ".join(MPLIB_PINS))
    return py


def _quat_wxyz(rpy):
    from anycell.geometry import rpy_to_quat

    x, y, z, w = rpy_to_quat(rpy)
    return [w, x, y, z]


def mplib_spec(cell, planner, probs, repeats):
    """What bench/mplib_peer.py needs: the robot as anycell loads it, and the cell's bodies as boxes."""
    import pybullet_data

    from anycell.sim.builder import FLANGE_LINKS

    robot = cell.robot("panda")
    models = os.path.join(MPLIB_VENV, "models")
    panda = os.path.join(models, "franka_panda")
    if not os.path.isdir(panda):
        shutil.copytree(os.path.join(pybullet_data.getDataPath(), "franka_panda"), panda)
        # the same meshes, without the line elements and two-vertex faces the .obj files carry, which
        # mplib's loader (assimp) refuses and PyBullet skips
        for folder, _dirs, files in os.walk(panda):
            for name in files:
                if name.endswith(".obj"):
                    path = os.path.join(folder, name)
                    with open(path) as fh:
                        lines = [ln for ln in fh if not ln.startswith("l ") and
                                 not (ln.startswith("f ") and len(ln.split()) < 4)]
                    with open(path, "w") as fh:
                        fh.writelines(lines)
    boxes = cell_boxes(planner.world)
    tcp = robot.tool.tcp.xyz
    out = []
    for qa, qb, held, mid in probs:
        prob = {"start": [float(v) for v in qa], "goal": [float(v) for v in qb]}
        if held is not None:
            prob["held"] = {"size": list(held.size), "p": [float(tcp[0]), float(tcp[1]), float(tcp[2])],
                            "q": [1.0, 0.0, 0.0, 0.0]}
        if mid is not None:
            prob["post"] = {"size": POST_SIZE, "p": list(mid)}
        out.append(prob)
    return {"urdf": os.path.join(panda, "panda.urdf"), "srdf": None, "move_group": FLANGE_LINKS["franka_panda"],
            "base": {"p": list(robot.base.xyz), "q": _quat_wxyz(robot.base.rpy)},
            "vel": list(planner.vmax), "acc": list(planner.amax), "extra_joints": [0.04, 0.04],
            "base_links": ["panda_link0"],
            "boxes": boxes, "problems": out, "repeats": repeats, "time_step": 0.01, "timeout": 3.0}


def run_mplib(cell, planner, probs, repeats=1):
    """mplib's results per problem (a list of runs each), or None with the reason printed."""
    try:
        py = mplib_python()
        spec = mplib_spec(cell, planner, probs, repeats)
        done = subprocess.run([py, os.path.join(ROOT, "bench", "mplib_peer.py")], input=json.dumps(spec),
                              capture_output=True, text=True, timeout=3600, cwd=MPLIB_VENV)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        return json.loads(done.stdout.strip().splitlines()[-1])["results"]
    except Exception as exc:  # noqa: BLE001 - the peer is optional: say why it did not run
        print(f"mplib: not run ({type(exc).__name__}: {exc})")
        return None


VAMP_VENV = os.environ.get("ANYCELL_VAMP_VENV", os.path.join(ROOT, ".venv", "vamp-peer"))
VAMP_PIN = "vamp-planner==0.6.4"
#: what VAMP 0.6.4's cmake/Dependencies.cmake asks CPM to clone from GitHub: folder -> (repository,
#: commit, a file the tree must have)
VAMP_GITHUB_DEPS = {
    "nigh": ("kavrakilab/nigh", "97130999440647c204e0265d05a997dbd8da4e70", "src/nigh"),
    "SIMDxorshift": ("lemire/SIMDxorshift", "857c1a01df53cf1ee1ae8db3238f0ef42ef8e490", "src/simdxorshift128plus.c"),
}
VAMP_REPEATS = 5    # VAMP runs per problem: its best and its median are reported


def vamp_python(deps: Optional[str]) -> str:
    """The VAMP venv's python, built on first use from the pinned sdist (raises with the reason).

    Why a venv of its own: VAMP compiles for this CPU (-march=native) from source, and a failed
    or absent build must never touch anycell's venv. The sources of nigh and SIMDxorshift come
    from ``deps`` (the user's copies): nothing here reaches GitHub.
    """
    py = os.path.join(VAMP_VENV, "bin", "python")
    stamp = os.path.join(VAMP_VENV, ".pins")
    if os.path.exists(stamp):
        with open(stamp) as fh:
            if fh.read().split("\n")[0] == VAMP_PIN:
                return py
    if deps is None:
        raise RuntimeError("VAMP is on PyPI only as source and its build clones kavrakilab/nigh and "
                           "lemire/SIMDxorshift from GitHub, so it cannot be built offline; pass --vamp-deps DIR "
                           "with their source trees at the pinned commits as DIR/nigh, DIR/SIMDxorshift")
    deps = os.path.abspath(deps)
    for folder, (repo, commit, probe) in VAMP_GITHUB_DEPS.items():
        if not os.path.exists(os.path.join(deps, folder, probe)):
            raise RuntimeError(f"{os.path.join(deps, folder)} is not a source tree of {repo} (no {probe})")
        head = subprocess.run(["git", "-C", os.path.join(deps, folder), "rev-parse", "HEAD"],
                              capture_output=True, text=True)
        if head.returncode == 0 and head.stdout.strip() != commit:   # a plain tree cannot be checked
            raise RuntimeError(f"{os.path.join(deps, folder)} is at {head.stdout.strip()[:12]}, "
                               f"VAMP pins {repo} at {commit[:12]}")
    print(f"VAMP: building {VAMP_PIN} into {VAMP_VENV} (once, minutes) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", VAMP_VENV], check=True)
    t0 = time.perf_counter()
    done = subprocess.run([py, "-m", "pip", "install", "-q", "--no-binary", "vamp-planner", VAMP_PIN,
                           "-C", "cmake.define.CMAKE_MODULE_PATH=" + os.path.join(ROOT, "bench", "vamp_cmake"),
                           "-C", "cmake.define.VAMP_OFFLINE_DEPS=" + deps],
                          capture_output=True, text=True)
    if done.returncode != 0:
        log = os.path.join(VAMP_VENV, "build.log")
        with open(log, "w") as fh:
            fh.write(done.stdout + done.stderr)
        raise RuntimeError(f"the build failed (log: {log})")
    with open(stamp, "w") as fh:
        fh.write(f"{VAMP_PIN}\nbuilt in {time.perf_counter() - t0:.0f} s\n")
    return py


def cell_boxes(world) -> List[Dict[str, Any]]:
    """Every static body's links as world-aligned boxes (their PyBullet AABBs), for the peers that
    take boxes; the same list for mplib and VAMP."""
    import pybullet as p

    boxes = []
    for body in world.bodies.static.values():
        for link in range(-1, p.getNumJoints(body, physicsClientId=world.client)):
            lo, hi = p.getAABB(body, link, physicsClientId=world.client)
            size = [b - a for a, b in zip(lo, hi)]
            if min(size) > 0:
                boxes.append({"size": size, "p": [(a + b) / 2 for a, b in zip(lo, hi)], "q": [1.0, 0.0, 0.0, 0.0]})
    return boxes


def run_vamp(cell, planner, probs, deps: Optional[str], repeats: int = VAMP_REPEATS):
    """VAMP's results per problem (a list of runs each) and its build facts, or None with the
    reason printed on one line."""
    try:
        py = vamp_python(deps)
        robot = cell.robot("panda")
        if robot.model != "franka_panda":
            raise RuntimeError(f"VAMP has a compiled Panda only, the cell's robot is {robot.model}")
        tcp = [float(v) for v in robot.tool.tcp.xyz]
        out = []
        for qa, qb, held, mid in probs:
            prob: Dict[str, Any] = {"start": [float(v) for v in qa], "goal": [float(v) for v in qb]}
            if held is not None:
                prob["held"] = {"size": list(held.size), "p": tcp}
            if mid is not None:
                prob["post"] = {"size": POST_SIZE, "p": list(mid)}
            out.append(prob)
        spec = {"base": {"p": list(robot.base.xyz), "q": _quat_wxyz(robot.base.rpy)},
                "boxes": cell_boxes(planner.world), "problems": out, "repeats": repeats}
        done = subprocess.run([py, os.path.join(ROOT, "bench", "vamp_peer.py")], input=json.dumps(spec),
                              capture_output=True, text=True, timeout=3600, cwd=VAMP_VENV)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        with open(os.path.join(VAMP_VENV, ".pins")) as fh:
            got["info"]["build"] = fh.read().strip().replace("\n", ", ")
        return got
    except Exception as exc:  # noqa: BLE001 - the peer is optional: say why it did not run
        print(f"VAMP: not run ({type(exc).__name__}: {exc})")
        return None


def stats(xs):
    a = np.asarray(xs) * 1000
    return float(np.median(a)), float(np.percentile(a, 95))


def main() -> int:
    try:
        from ompl import util as ou

        ou.setLogLevel(ou.LogLevel.LOG_ERROR)
    except Exception:  # noqa: BLE001
        pass
    cell = load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml"))
    job = load_job(os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml"))
    planner = MotionPlanner(cell, "panda")
    base = problems(cell, job, planner)
    # the same problems with a post between start and goal TCPs, where it blocks the straight path
    hard = []
    for qa, qb, held in base:
        pa, pb = planner.fk(qa).xyz, planner.fk(qb).xyz
        mid = [(pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2, 0.2]
        planner.add_obstacle("post", POST_SIZE, Pose(xyz=mid))
        if (planner.world.free(qa, held) and planner.world.free(qb, held)
                and not planner.world.segment_free(qa, qb, held)):
            hard.append((qa, qb, held, mid))
        planner.remove_obstacle("post")
    planner.parameterize([planner.kin.home, planner.kin.home + 0.1])   # imports (scipy): once per process, not timed
    ours, theirs, theirs_raw, timing, fails = [], [], [], [], {"anycell": 0, "ompl": 0}
    durations = []  # (ours, OMPL's) executed duration after TOPP-RA, on the searched problems
    searched = 0
    for _label, probs in (("cell", [(a, b, h, None) for a, b, h in base]), ("post", hard)):
        for qa, qb, held, mid in probs:
            if mid is not None:
                planner.add_obstacle("post", POST_SIZE, Pose(xyz=mid))
            planner.world.free(qa, held)  # the held part's body is built now, outside both timings
            t0 = time.perf_counter()
            mine = None
            try:
                path = planner.plan_joint_path(qa, qb, held)
                ours.append(time.perf_counter() - t0)
                searched += planner.last_stats["method"] != "direct"
                t1 = time.perf_counter()
                mine = planner.parameterize(path, held)
                timing.append(time.perf_counter() - t1)
            except AnycellError:
                fails["anycell"] += 1
            planner.world.free(qa, held)
            dt, dt_raw, other = ompl_solve(planner, qa, qb, held)
            if other is not None:
                theirs.append(dt)
                theirs_raw.append(dt_raw)
                if mine is not None and len(other) > 2:
                    try:
                        durations.append((mine.times[-1], planner.parameterize(other, held).times[-1]))
                    except AnycellError:
                        pass
            else:
                fails["ompl"] += 1
            if mid is not None:
                planner.remove_obstacle("post")
    m1, p1 = stats(ours)
    m2, p2 = stats(theirs)
    mt, pt = stats(timing)
    m3, p3 = stats(theirs_raw)
    n = len(base) + len(hard)
    print(f"problems: {n} ({len(base)} pick/place transfers on the demo cell, {len(hard)} with a blocking post); "
          f"anycell searched on {searched}")
    print(f"{'planner':28s} {'median ms':>10s} {'p95 ms':>10s} {'failures':>9s}")
    print(f"{'anycell direct+RRT-Connect':28s} {m1:10.2f} {p1:10.2f} {fails['anycell']:9d}")
    print(f"{'OMPL RRTConnect+shortcut':28s} {m2:10.2f} {p2:10.2f} {fails['ompl']:9d}")
    print(f"{'OMPL RRTConnect solve only':28s} {m3:10.2f} {p3:10.2f}")
    print(f"{'(TOPP-RA timing, ours)':28s} {mt:10.2f} {pt:10.2f}")
    print(f"ratio anycell/OMPL: median {m1 / m2:.2f}, p95 {p1 / p2:.2f}  (goal: median < 20 ms and ratio <= 1)")
    if durations:
        d = np.asarray(durations)
        r = d[:, 0] / d[:, 1]
        print(f"executed duration after TOPP-RA on {len(d)} searched problems: anycell/OMPL median {np.median(r):.3f}, "
              f"worst {r.max():.3f}  (goal: within 10% of the best peer)")
    mine_post = post_durations(planner, hard)
    # OMPL's paths are random (one run per problem above): its typical and its best path over REPEATS runs
    spread = []
    for (qa, qb, held, mid), mine_t in zip(hard, mine_post):
        if mine_t is None:
            continue
        planner.add_obstacle("post", POST_SIZE, Pose(xyz=mid))
        try:
            runs = []
            for _ in range(REPEATS):
                _, _, other = ompl_solve(planner, qa, qb, held)
                if other is not None and len(other) > 2:
                    runs.append(planner.parameterize(other, held).times[-1])
            if runs:
                spread.append((mine_t / float(np.median(runs)), mine_t / min(runs)))
        except AnycellError:
            pass
        planner.remove_obstacle("post")
    if spread:
        sp = np.asarray(spread)
        print(f"the same against OMPL's {REPEATS} runs per searched problem: anycell / OMPL's median duration "
              f"{sp[:, 0].min():.3f}-{sp[:, 0].max():.3f}, anycell / OMPL's shortest {sp[:, 1].min():.3f}-"
              f"{sp[:, 1].max():.3f}")
    everything = [(a, b, h, None) for a, b, h in base] + list(hard)
    if ARGS is None or not ARGS.no_mplib:
        got = run_mplib(cell, planner, everything)
        if got is not None:
            first = [runs[0] for runs in got]
            ok = [r["seconds"] for r in first if r["ok"]]
            if ok:
                mm, pm = stats(ok)
                print(f"{'mplib RRTConnect+TOPP-RA':28s} {mm:10.2f} {pm:10.2f} {len(first) - len(ok):9d}")
                ours_all = ours if len(ours) == len(first) else None
                if ours_all:
                    print(f"ratio anycell(+timing)/mplib: median {(m1 + mt) / mm:.2f}, p95 {(p1 + pt) / pm:.2f} "
                          f"(mplib's call includes its TOPP-RA timing, so ours is planning + timing)")
            # executed durations on the searched problems (the post): ours after TOPP-RA against mplib's
            ratios = []
            for mine_t, runs in zip(mine_post, got[len(base):]):
                if runs[0]["ok"] and mine_t is not None:
                    ratios.append(mine_t / runs[0]["duration"])
            if ratios:
                print(f"executed duration on the {len(ratios)} problems with the post: anycell/mplib "
                      f"{min(ratios):.3f}-{max(ratios):.3f} (median {float(np.median(ratios)):.3f})")
    if ARGS is None or not ARGS.no_vamp:
        report_vamp(cell, planner, everything, len(base), ours, mine_post, None if ARGS is None else ARGS.vamp_deps)
    planner.close()
    return 0


def post_durations(planner, hard) -> List[Optional[float]]:
    """Our executed duration (planned, then TOPP-RA) on each problem with the post, None where we fail:
    the planner is deterministic for its seed, so it is planned once and compared with every peer's."""
    out: List[Optional[float]] = []
    for qa, qb, held, mid in hard:
        planner.add_obstacle("post", POST_SIZE, Pose(xyz=mid))
        try:
            out.append(planner.parameterize(planner.plan_joint_path(qa, qb, held), held).times[-1])
        except AnycellError:
            out.append(None)
        finally:
            planner.remove_obstacle("post")
    return out


def report_vamp(cell, planner, everything, n_base: int, ours: List[float], mine_post: List[Optional[float]],
                deps: Optional[str]) -> None:
    """VAMP's rows: its planning time over the same problems (per problem the median and the best
    of its runs), anycell's median and p95 as ratios to it, and the executed durations of its
    paths on the problems with the post, timed by anycell's TOPP-RA like ours. ``everything``: the
    problems, the first ``n_base`` without the post; ``ours`` holds anycell's planning time per problem
    and ``mine_post`` its executed durations on those with the post (:func:`post_durations`)."""
    got = run_vamp(cell, planner, everything, deps)
    if got is None:
        return
    info, res = got["info"], got["results"]
    solved = [runs for runs in res if all(r["ok"] for r in runs)]
    if not solved:
        print(f"VAMP: solved none of {len(res)} problems ({info})")
        return
    med = [float(np.median([r["seconds"] for r in runs])) for runs in solved]
    best = [min(r["seconds"] for r in runs) for runs in solved]
    inner = [float(np.median([(r["plan_ns"] + r["simplify_ns"]) * 1e-9 for r in runs])) for runs in solved]
    m1, p1 = stats(ours)
    mv, pv = stats(med)
    mb, pb = stats(best)
    mi, pi = stats(inner)
    n = len(res[0])
    print(f"{'VAMP RRTConnect+simplify':28s} {mv:10.2f} {pv:10.2f} {len(res) - len(solved):9d}"
          f"  (median of its {n} runs per problem)")
    print(f"{'VAMP, best of ' + str(n) + ' runs':28s} {mb:10.2f} {pb:10.2f}")
    print(f"{'VAMP, its own ns counters':28s} {mi:10.2f} {pi:10.2f}")
    print(f"ratio anycell/VAMP: median {m1 / mv:.2f}, p95 {p1 / pv:.2f}  (against VAMP's best runs: median "
          f"{m1 / mb:.2f}, p95 {p1 / pb:.2f}; neither includes TOPP-RA timing)")
    # VAMP's paths are timed by the same TOPP-RA (same limits, same step) without anycell's re-check of
    # the timed trajectory, which refuses a path that grazes an obstacle in anycell's mesh model
    if len(ours) == len(res) and len(solved) == len(res) and len(everything) > n_base:
        mine_h = [t * 1000 for t in ours[n_base:]]
        theirs_h = [m * 1000 for m in med[n_base:]]
        print(f"on the {len(everything) - n_base} problems with the post (searched): anycell median {np.median(mine_h):.2f} ms, "
              f"max {max(mine_h):.2f} ms; VAMP median {np.median(theirs_h):.2f} ms, max {max(theirs_h):.2f} ms")
    ratios, accepted, checked = [], 0, 0
    for (_qa, _qb, held, mid), runs, mine_t in zip(everything[n_base:], res[n_base:], mine_post):
        if not runs[0]["ok"] or len(runs[0]["path"]) < 2:
            continue
        theirs = runs[0]["path"]
        planner.add_obstacle("post", POST_SIZE, Pose(xyz=mid))
        try:
            checked += 1
            accepted += all(planner.world.segment_free(a, b, held, resolution=RESOLUTION)
                            for a, b in zip(theirs[:-1], theirs[1:]))
            if mine_t is not None:
                ratios.append(mine_t / time_optimal(planner.joint_names, theirs, planner.vmax, planner.amax,
                                                    max_step=0.1).times[-1])
        except AnycellError:
            pass
        planner.remove_obstacle("post")
    if ratios:
        print(f"executed duration on the {len(ratios)} problems with the post: anycell/VAMP "
              f"{min(ratios):.3f}-{max(ratios):.3f} (median {float(np.median(ratios)):.3f}); VAMP's paths "
              f"collision-free in anycell's checker: {accepted}/{checked} (its meshes at its RESOLUTION, with the "
              f"{FREE_CLEARANCE * 1000:.0f} mm clearance it keeps on free moves; VAMP's spheres keep none)")
    print(f"VAMP: {info['build'] if 'build' in info else ''}; its Panda is {info['n_spheres']} spheres, motions "
          f"checked at its resolution {info['resolution']:g}; {info['boxes']} cell boxes as {info['cuboids']} "
          f"cuboids ({info['carved']} carved under the base); held part = one enclosing sphere; configurations "
          f"it finds in collision: {info['invalid']['start']} starts, {info['invalid']['goal']} goals")


if __name__ == "__main__":
    from bench.usage import bench_args

    ARGS = bench_args(__doc__, [("--no-mplib", "leave out mplib, the second peer (it runs in a venv of its own)"),
                                ("--no-vamp", "leave out VAMP, the third peer (built into a venv of its own)")],
                      values=[("--vamp-deps", "DIR", "DIR/nigh and DIR/SIMDxorshift: the sources VAMP's build "
                                                     "would clone from GitHub, to build .venv/vamp-peer once")])
    sys.exit(main())
