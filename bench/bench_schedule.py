"""Benchmark: list scheduler and CP-SAT makespans against the proven optimum or the lower bound.

Instances are generated with the task planner's structure (``planners.process``):
units assembled one after another on one fixture; per unit, feeder parts
(one robot pick-and-place each) and machine parts (load stock -> run program
-> unload, the machine held from load to unload; some without stock); then
inspection and output. Robots and machines are drawn at random among 1-2
robots and 2-6 machines (with two robots, 70% of the moves can go to either,
at a different duration, and the scheduler picks), durations at random (robot 4-12 s, programs 20-200 s,
inspection 3-8 s), from a fixed seed. Sizes run from 10 to 200 operations, plus
about 500 operations on 4 robots and 10 machines (issue 16).

For each instance it prints the list scheduler's makespan and time, CP-SAT's
makespan, bound and time, and the reference: the proven optimum when CP-SAT
proves one, else the best lower bound. The figure is the gap to the
reference, as a ratio (makespan / reference), and the wall time as a ratio
of the limit. Goals: gap 0 up to 30 operations in under 1 s; gap <= 5% at
200 operations within 10 s (issue 5); at 500 operations a valid schedule
with the wall limit never overrun by more than 10% (issue 16). CP-SAT's budget
is deterministic time (``deterministic_limit``), so the figures do not depend
on the machine's load; the wall limit is only a cap.

Run: ``.venv/bin/python bench/bench_schedule.py`` (about 1-2 minutes).
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.plan import Operation, Plan  # noqa: E402
from anycell.planners.schedule import build_model, list_schedule, lower_bound, SCALE, schedule_plan  # noqa: E402


def generate(n_ops: int, robots: int, machines: int, seed: int) -> Plan:
    """A plan of about ``n_ops`` operations with the task planner's structure."""
    rng = random.Random(seed)
    rob = [f"robot{i + 1}" for i in range(robots)]
    mac = [f"m{i + 1}" for i in range(machines)]
    prog = {m: rng.uniform(20, 200) for m in mac}   # each machine's typical program length
    n_feed = rng.randint(1, 3)
    n_made = rng.randint(1, 3)
    ops: List[Operation] = []
    prev_out = None
    u = 0
    while len(ops) < n_ops:
        u += 1
        placed: List[str] = []
        for k in range(n_feed):
            after = ([placed[-1]] if placed else ([prev_out] if prev_out else []))
            oid = f"u{u}.place.f{k}"
            ops.append(Operation(id=oid, kind="pick_place", unit=u, resource=rng.choice(rob),
                                 duration=round(rng.uniform(4, 12), 2), uses=[], after=after))
            placed.append(oid)
        for k in range(n_made):
            m = mac[(u * n_made + k + seed) % machines] if rng.random() < 0.7 else rng.choice(mac)
            stock = rng.random() < 0.6
            run, unload = f"u{u}.run.p{k}", f"u{u}.unload.p{k}"
            run_after = []
            if stock:
                load = f"u{u}.load.p{k}"
                ops.append(Operation(id=load, kind="load", unit=u, resource=rng.choice(rob),
                                     duration=round(rng.uniform(4, 12), 2), uses=[m], holds={m: unload}))
                run_after = [load]
            ops.append(Operation(id=run, kind="run_program", unit=u, resource=m,
                                 duration=round(prog[m] * rng.uniform(0.7, 1.3), 2), uses=[m], after=run_after,
                                 holds={} if stock else {m: unload}))
            after = [run] + ([placed[-1]] if placed else ([prev_out] if prev_out else []))
            ops.append(Operation(id=unload, kind="unload", unit=u, resource=rng.choice(rob),
                                 duration=round(rng.uniform(4, 12), 2), uses=[m], after=after))
            placed.append(unload)
        ins = f"u{u}.inspect"
        ops.append(Operation(id=ins, kind="inspect", unit=u, resource="inspection",
                             duration=round(rng.uniform(3, 8), 2), uses=[], after=[placed[-1]]))
        prev_out = f"u{u}.output"
        ops.append(Operation(id=prev_out, kind="output", unit=u, resource=rng.choice(rob),
                             duration=round(rng.uniform(4, 12), 2), uses=[], after=[ins]))
    for op in ops:  # every op holds its main resource; fixture ops hold the fixture
        extra = ["fixture"] if op.kind in ("pick_place", "unload", "inspect", "output") else []
        op.uses = [op.resource] + [r for r in op.uses + extra if r != op.resource]
        if op.resource in rob and robots > 1 and rng.random() < 0.7:  # the other robot reaches it too
            op.alternatives = {r: round(op.duration * rng.uniform(0.8, 1.25), 2) for r in rob if r != op.resource}
    return Plan(job_id=f"gen{seed}", cell_id=f"r{robots}m{machines}", quantity=u, operations=ops)


def best_list(plan: Plan) -> Tuple[float, float]:
    t0 = time.perf_counter()
    m = build_model(plan)
    best = min(list_schedule(m, rule).makespan for rule in ("tail", "head", "succ"))
    return best / SCALE, time.perf_counter() - t0


def main() -> None:
    cases = [(10, 1, 2), (20, 1, 3), (30, 2, 4), (30, 1, 2), (50, 2, 3), (100, 2, 5), (200, 1, 6), (200, 2, 6),
             (500, 4, 10)]
    seeds = (1, 2, 3)
    print(f"{'ops':>4} {'R':>2} {'M':>2} {'seed':>4} | {'list':>8} {'t_list':>7} | {'cp-sat':>8} {'bound':>8} "
          f"{'t_cpsat':>7} {'status':>8} | {'reference':>9} {'list/ref':>8} {'cpsat/ref':>9} {'wall/limit':>10}")
    summary = {}
    for n, r, mach in cases:
        limit = 1.0 if n <= 30 else 10.0
        for seed in seeds:
            plan = generate(n, r, mach, seed)
            lst, t_list = best_list(plan)
            t0 = time.perf_counter()
            sched = schedule_plan(plan, None, time_limit=limit, solver="cp-sat", deterministic_limit=limit / 2)
            wall = time.perf_counter() - t0
            lb = max(sched.lower_bound, lower_bound(build_model(plan)) / SCALE)
            ref = sched.makespan if sched.optimal else lb
            print(f"{len(plan.operations):>4} {r:>2} {mach:>2} {seed:>4} | {lst:8.1f} {t_list:7.3f} | "
                  f"{sched.makespan:8.1f} {lb:8.1f} {sched.solve_time:7.2f} {sched.status:>8} | {ref:9.1f} "
                  f"{lst / ref:8.3f} {sched.makespan / ref:9.3f} {wall / limit:10.2f}", flush=True)
            s = summary.setdefault(n, {"gap": 0.0, "t": 0.0, "opt": 0, "k": 0, "list": 0.0, "over": 0.0})
            s["over"] = max(s["over"], wall / limit)
            s["gap"] = max(s["gap"], sched.makespan / lb - 1)
            s["list"] = max(s["list"], lst / ref - 1)
            s["t"] = max(s["t"], sched.solve_time)
            s["opt"] += int(sched.optimal)
            s["k"] += 1
    print("\nsummary (worst over instances of that size): CP-SAT gap to lower bound, list scheduler gap, solve time")
    for n, s in summary.items():
        print(f"  ~{n:>3} ops: cp-sat gap {100 * s['gap']:.1f}% (proven optimal {s['opt']}/{s['k']}), "
              f"list gap {100 * s['list']:.1f}%, cp-sat time {s['t']:.2f} s, worst wall/limit {s['over']:.2f}")


if __name__ == "__main__":
    from bench.usage import bench_args

    bench_args(__doc__)
    main()
