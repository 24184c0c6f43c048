"""Scheduling: the plan's operations on a timeline over the cell's robots, machines and stations.

The model (the same for both solvers):

* **precedence**: an operation starts after every op in its ``after`` ends;
* **exclusivity**: every resource in ``uses`` does one thing at a time (the
  robot is shared; the fixture takes one placement at a time);
* **holds**: ``op.holds[r] = y`` keeps resource ``r`` busy from ``op``'s start
  to ``y``'s end (a machine from its load until its unload). The operations
  between them that use ``r`` run inside that hold; they are found from the
  precedence graph (descendants of ``op`` that are ancestors of ``y``);
* machines run in parallel with the robot: a ``run_program`` uses only its machine.

Solvers: a list scheduler (serial schedule generation with insertion, three
priority rules, the best kept) is fast and always available; OR-Tools CP-SAT
then minimises the makespan within the time limit, warm-started with the list
schedule as a hint; once the makespan is proven optimal, a second pass keeps
it and shortens the machine holds (no part waits in a machine longer than it
must). The result reports the makespan, a lower bound (the
solver's proven bound, or the best of the critical path and each resource's
load), the gap, and the solver used.

Times are integers of ``1/SCALE`` s inside the solvers. CP-SAT runs its
portfolio of workers interleaved (``interleave_search``: deterministic), with a
fixed seed and a deterministic-time limit below the wall-clock limit, so the
same input gives the same schedule on the same OR-Tools version. Only when
the wall-clock limit strikes first (a machine much slower than a 2-core VM, or
a heavily loaded one) may two runs differ; both are valid schedules.
"""

from __future__ import annotations

import graphlib
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from anycell.cell import CellConfig
from anycell.errors import PlanningError
from anycell.plan import Plan, Schedule, ScheduledOp
from .graph import cycle_members, reachable, topological_order

log = logging.getLogger(__name__)

SCALE = 100  # solver ticks per second (10 ms resolution)
#: CP-SAT portfolio size. A single worker has no LNS and no bound-proving workers, and stalls at
#: 100+ operations; eight interleaved workers prove the optimum at 200 (bench/bench_schedule.py).
CPSAT_WORKERS = 8
#: CP-SAT deterministic-time budget per second of wall-clock limit (measured on a 2-core VM at
#: about 0.25 deterministic s per wall s), so a search normally ends on the deterministic limit.
DETERMINISTIC_PER_SECOND = 0.25
INF = 1 << 60
#: Above this many operations CP-SAT runs without its LP relaxation: loading the LP into each of the
#: eight workers takes seconds of wall time at 500 operations on a loaded 2-core machine, time in
#: which CP-SAT cannot be stopped, for bounds that :func:`lower_bound` already gives.
LP_MAX_OPS = 200
#: CP-SAT stops once its schedule is within this fraction of the lower bound.
RELATIVE_GAP = 1e-3
#: The share of the remaining wall time given to CP-SAT's own clock; a timer stops it at the cap itself.
STOP_MARGIN = 0.85
#: The share of ``time_limit`` at which the hard timer stops CP-SAT: stopping mid-presolve at 500
#: operations and reading the answer back took up to a fifth of a 6 s limit on a loaded 2-core
#: machine, and the whole call must stay within 1.1x the limit.
WALL_SHARE = 0.85


@dataclass
class Model:
    """The plan reduced to integers: durations, predecessors and, per resource, what occupies it."""

    ids: List[str]
    dur: List[int]
    preds: List[List[int]]
    succs: List[List[int]]
    # per resource: plain ops (index) and holds (open index, close index)
    plain: Dict[str, List[int]] = field(default_factory=dict)
    spans: Dict[str, List[Tuple[int, int]]] = field(default_factory=dict)
    # ops whose main resource the scheduler picks: op index -> [(resource, duration)], default first;
    # ``dur`` holds the shortest of them (so heads, tails and bounds stay valid)
    choices: Dict[int, List[Tuple[str, int]]] = field(default_factory=dict)


def build_model(plan: Plan) -> Model:
    """Reduce ``plan`` to the scheduling model; raises PlanningError on unknown ids or a cycle."""
    ids = [op.id for op in plan.operations]
    index = {oid: i for i, oid in enumerate(ids)}
    if len(index) != len(ids):
        raise PlanningError("the plan has duplicate operation ids")
    n = len(ids)
    preds: List[List[int]] = [[] for _ in range(n)]
    succs: List[List[int]] = [[] for _ in range(n)]
    for i, op in enumerate(plan.operations):
        for a in op.after:
            if a not in index:
                raise PlanningError(f"operation '{op.id}' comes after unknown operation '{a}'")
            if index[a] not in preds[i]:
                preds[i].append(index[a])
                succs[index[a]].append(i)
    topo = _topological(preds, ids)
    pos = {v: k for k, v in enumerate(topo)}
    dur = [max(1, int(round(op.duration * SCALE))) for op in plan.operations]
    m = Model(ids=ids, dur=dur, preds=preds, succs=succs)
    covered: Set[Tuple[int, str]] = set()
    for i, op in enumerate(plan.operations):
        for r, closer in sorted(op.holds.items()):
            if closer not in index:
                raise PlanningError(f"operation '{op.id}' holds '{r}' until unknown operation '{closer}'")
            j = index[closer]
            if pos[j] < pos[i]:
                raise PlanningError(f"operation '{op.id}' holds '{r}' until '{closer}', which comes before it")
            m.spans.setdefault(r, []).append((i, j))
            inside = _descendants(i, succs) & _ancestors(j, preds) | {i, j}
            covered.update((k, r) for k in inside)
    for i, op in enumerate(plan.operations):
        alts = {r: d for r, d in op.alternatives.items() if r != op.resource}
        flexible = bool(alts) and (i, op.resource) not in covered and op.resource not in op.holds
        if flexible:
            opts = [(op.resource, dur[i])] + [(r, max(1, int(round(d * SCALE)))) for r, d in sorted(alts.items())]
            m.choices[i] = opts
            m.dur[i] = min(d for _, d in opts)
        for r in op.uses:
            if (i, r) not in covered and not (flexible and r == op.resource):
                m.plain.setdefault(r, []).append(i)
    return m


def _topological(preds: List[List[int]], ids: List[str]) -> List[int]:
    try:
        return topological_order(range(len(ids)), preds)
    except graphlib.CycleError as exc:
        stuck = [ids[int(i)] for i in cycle_members(exc)]  # type: ignore[call-overload]
        raise PlanningError("the plan's precedences have a cycle among: " + ", ".join(stuck[:12]))


def _descendants(i: int, succs: List[List[int]]) -> Set[int]:
    return reachable(i, succs)  # type: ignore[return-value]


def _ancestors(i: int, preds: List[List[int]]) -> Set[int]:
    return _descendants(i, preds)


def forced_orders(m: Model) -> List[Tuple[int, int]]:
    """Precedences the resources force: (close of x, open of y) for occupations x, y of one resource.

    When x's closing op is an ancestor of y's closing op, x ends before y ends;
    as both occupy the same resource they cannot overlap, so y cannot start
    before x ends. These edges are implied by the model (valid in every
    schedule), and they chain a machine's holds across units, which the plain
    critical path misses.
    """
    n = len(m.ids)
    order = _topological(m.preds, m.ids)
    anc = [0] * n  # bitset of ancestors of each op
    for i in order:
        bits = 0
        for p in m.preds[i]:
            bits |= anc[p] | (1 << p)
        anc[i] = bits
    edges: List[Tuple[int, int]] = []
    for r in set(m.plain) | set(m.spans):
        occ = [(i, i) for i in m.plain.get(r, [])] + list(m.spans.get(r, []))
        for ox, cx in occ:
            for oy, cy in occ:
                if (ox, cx) == (oy, cy) or cx == oy:
                    continue
                if (anc[cy] >> cx) & 1 and not (anc[oy] >> cx) & 1:
                    edges.append((cx, oy))
    return edges


def _heads_tails(m: Model, extra: Optional[List[Tuple[int, int]]] = None) -> Tuple[List[int], List[int]]:
    """Earliest start (head) and the longest path after an op's end (tail), ignoring resources.

    ``extra`` adds precedences (e.g. :func:`forced_orders`) to the plan's own.
    """
    n = len(m.ids)
    if extra:
        preds = [list(p) for p in m.preds]
        succs = [list(q) for q in m.succs]
        for a, b in extra:
            preds[b].append(a)
            succs[a].append(b)
        m = Model(ids=m.ids, dur=m.dur, preds=preds, succs=succs, plain=m.plain, spans=m.spans, choices=m.choices)
    order = _topological(m.preds, m.ids)
    head = [0] * n
    for i in order:
        for j in m.succs[i]:
            head[j] = max(head[j], head[i] + m.dur[i])
    tail = [0] * n
    for i in reversed(order):
        for j in m.succs[i]:
            tail[i] = max(tail[i], m.dur[j] + tail[j])
    return head, tail


def lower_bound(m: Model) -> int:
    """The best of three valid bounds on the makespan (ticks).

    * the critical path, with the orders the resources force (:func:`forced_orders`);
    * per resource, the one-machine relaxation with heads and tails solved by
      Jackson's preemptive schedule (every occupation of the resource, each
      released at its head and followed by its tail): at least as strong as
      "earliest head + total occupation + shortest tail", and much stronger
      when the occupations' heads and tails are spread along a long job;
    * the pooled robots: ops that may go to several resources share them, so
      their total shortest work divided among the pool, plus the smallest head
      and tail, bounds the makespan too.
    """
    try:
        head, tail = _heads_tails(m, forced_orders(m))
    except PlanningError:  # the forced orders close a cycle: the plan cannot be scheduled; stay plain
        head, tail = _heads_tails(m)
    n = len(m.ids)
    best = max((head[i] + m.dur[i] + tail[i] for i in range(n)), default=0)
    for r in set(m.plain) | set(m.spans):
        items: List[Tuple[int, int, int]] = []  # (head, length, tail)
        for i in m.plain.get(r, []):  # (an op that may move to another robot is not in its plain list)
            items.append((head[i], m.dur[i], tail[i]))
        for i, j in m.spans.get(r, []):
            length = _longest_path(m, i, j)  # the hold lasts at least its own chain
            items.append((head[i], length, tail[j]))
        best = max(best, jackson_preemptive_bound(items))
    pools: Dict[Tuple[str, ...], List[int]] = {}
    for i, opts in m.choices.items():
        pools.setdefault(tuple(sorted(r for r, _ in opts)), []).append(i)
    for pool, ops in pools.items():
        fixed = [i for r in pool for i in m.plain.get(r, []) if i not in m.choices]
        work = sum(m.dur[i] for i in ops) + sum(m.dur[i] for i in fixed)
        everyone = ops + fixed
        best = max(best, min(head[i] for i in everyone) + -(-work // len(pool)) + min(tail[i] for i in everyone))
    return best


def jackson_preemptive_bound(items: List[Tuple[int, int, int]]) -> int:
    """Optimal makespan of one resource with heads, lengths and tails when work may be preempted.

    Jackson's preemptive schedule: whenever the resource is free, run the
    released item with the longest tail. Its value is a lower bound for the
    non-preemptive problem (Carlier 1982), computed in O(n log n).
    """
    import heapq

    if not items:
        return 0
    order = sorted(items)
    ready: List[Tuple[int, int]] = []  # (-tail, remaining)
    t, k, best = 0, 0, 0
    while k < len(order) or ready:
        if not ready and t < order[k][0]:
            t = order[k][0]
        while k < len(order) and order[k][0] <= t:
            h, ln, tl = order[k]
            heapq.heappush(ready, (-tl, ln))
            k += 1
        neg_tail, left = heapq.heappop(ready)
        next_release = order[k][0] if k < len(order) else None
        run = left if next_release is None else min(left, next_release - t)  # next_release > t here
        t += run
        if run < left:
            heapq.heappush(ready, (neg_tail, left - run))
        else:
            best = max(best, t - neg_tail)
    return best


def _longest_path(m: Model, i: int, j: int) -> int:
    """The longest chain of durations from the start of ``i`` to the end of ``j`` (ticks)."""
    best: Dict[int, int] = {i: m.dur[i]}  # op -> longest end offset from i's start
    todo = [i]
    seen: Set[int] = set()
    while todo:  # the ops reachable from i, then relaxed in topological order
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        todo.extend(m.succs[k])
    for k in topological_order(sorted(seen), m.preds):  # every op of the subgraph comes after i
        for q in m.succs[k]:
            best[q] = max(best.get(q, 0), best[k] + m.dur[q])
    return best.get(j, m.dur[i])


# ------------------------------------------------------------------ list scheduler


@dataclass
class Solution:
    """Start, duration and chosen main resource (for ops with choices) of every op, in ticks."""

    starts: List[int]
    durs: List[int]
    chosen: Dict[int, str]

    @property
    def makespan(self) -> int:
        return max((s + d for s, d in zip(self.starts, self.durs)), default=0)


def list_schedule(m: Model, rule: str = "tail") -> Solution:
    """Serial schedule generation with insertion.

    ``rule`` orders the eligible ops: ``tail`` (longest path to the end),
    ``head`` (earliest possible start, then tail) or ``succ`` (most successors).
    An op with a choice of resources takes the one where it would finish first.
    """
    n = len(m.ids)
    head, tail = _heads_tails(m)
    nsucc = [len(_descendants(i, m.succs)) for i in range(n)] if rule == "succ" else [0] * n
    plain_of: Dict[int, List[str]] = {}
    for r, lst in m.plain.items():
        for i in lst:
            plain_of.setdefault(i, []).append(r)
    opens: Dict[int, List[str]] = {}
    closes: Dict[int, List[Tuple[str, int]]] = {}
    for r, pairs in m.spans.items():
        for i, j in pairs:
            opens.setdefault(i, []).append(r)
            closes.setdefault(j, []).append((r, i))
    busy: Dict[str, List[Tuple[int, int]]] = {r: [] for r in set(m.plain) | set(m.spans)}
    for opts in m.choices.values():
        for r, _ in opts:
            busy.setdefault(r, [])
    dur = list(m.dur)
    chosen: Dict[int, str] = {}
    held: Dict[str, int] = {}  # resource -> op index that opened a hold not yet closed
    # A hold (i, j) on r must not open before a hold (k, l) on r whose closer l precedes j:
    # j could never run while (i, j) keeps r from k (two parts of one unit on one machine).
    blockers: Dict[int, Set[int]] = {}
    for pairs in m.spans.values():
        for i, j in pairs:
            anc = _ancestors(j, m.preds)
            blockers.setdefault(i, set()).update(k for k, l in pairs if l != j and l in anc and k != i)
    start = [-1] * n
    done = 0
    npred = [len(p) for p in m.preds]
    eligible = {i for i in range(n) if npred[i] == 0}

    def key(i: int) -> Tuple:
        est = max((start[p] + dur[p] for p in m.preds[i]), default=0)
        if rule == "head":
            return (est, -tail[i], m.ids[i])
        if rule == "succ":
            return (-nsucc[i], -tail[i], m.ids[i])
        return (-(m.dur[i] + tail[i]), est, m.ids[i])

    while done < n:
        cands = [i for i in eligible if not any(r in held for r in opens.get(i, []))
                 and all(start[k] >= 0 for k in blockers.get(i, ()))
                 and not any(r in held for r in plain_of.get(i, []))]
        if not cands:
            raise PlanningError("the list scheduler is stuck: every remaining operation waits for a held "
                                "resource (" + ", ".join(sorted(m.ids[i] for i in eligible)[:8]) + ")")
        i = min(cands, key=key)
        est = max((start[p] + dur[p] for p in m.preds[i]), default=0)
        plain_busy = [busy[r] for r in plain_of.get(i, [])]
        opened = [busy[r] for r in opens.get(i, [])]
        if i in m.choices:
            best_fin, t, pick = INF, 0, ""
            for r, d in m.choices[i]:
                tr = _earliest(est, d, plain_busy + [busy[r]], opened)
                if tr + d < best_fin:
                    best_fin, t, pick, dur[i] = tr + d, tr, r, d
            chosen[i] = pick
            _insert(busy[pick], (t, t + dur[i]))
        else:
            t = _earliest(est, dur[i], plain_busy, opened)
        start[i] = t
        for r in plain_of.get(i, []):
            _insert(busy[r], (t, t + dur[i]))
        for r in opens.get(i, []):
            held[r] = i
            _insert(busy[r], (t, INF))
        for r, opener in closes.get(i, []):
            spans = busy[r]
            k = spans.index((start[opener], INF))
            spans[k] = (start[opener], t + dur[i])
            held.pop(r, None)
        eligible.discard(i)
        done += 1
        for j in m.succs[i]:
            npred[j] -= 1
            if npred[j] == 0:
                eligible.add(j)
    return Solution(starts=start, durs=dur, chosen=chosen)


def _insert(lst: List[Tuple[int, int]], iv: Tuple[int, int]) -> None:
    lst.append(iv)
    lst.sort()


def _earliest(est: int, d: int, plain: List[List[Tuple[int, int]]], opened: List[List[Tuple[int, int]]]) -> int:
    """The earliest t >= est with [t, t+d) free on every plain resource and [t, inf) free on opened ones."""
    t = est
    for lst in opened:
        for _s, e in lst:
            t = max(t, e)
    changed = True
    while changed:
        changed = False
        for lst in plain:
            for s, e in lst:
                if s < t + d and t < e:
                    t = e
                    changed = True
    return t


# ------------------------------------------------------------------ CP-SAT


def _cpsat(m: Model, hint: Optional[Solution], horizon: int, time_limit: float,
           deterministic_limit: float, bound: int = 0) -> Optional[Tuple[Solution, int, str, bool]]:
    """Minimise the makespan with CP-SAT, warm-started with ``hint``; None when it finds nothing.

    ``deterministic_limit`` is the search budget (CP-SAT's deterministic time,
    the same on a loaded and an idle machine, so the same input gives the same
    schedule); ``time_limit`` is a hard wall-clock cap: a timer stops the
    search when it expires, whatever phase CP-SAT is in, so the call never
    overruns it by more than the time to stop.
    """
    import threading

    deadline = time.perf_counter() + time_limit
    try:
        from ortools.sat.python import cp_model
    except ImportError:  # pragma: no cover - ortools is pinned in requirements.txt
        log.warning("OR-Tools is not installed; using the list schedule")
        return None
    n = len(m.ids)
    model = cp_model.CpModel()
    starts = [model.NewIntVar(0, horizon, f"s{i}") for i in range(n)]
    ends = [model.NewIntVar(0, horizon, f"e{i}") for i in range(n)]
    ivs = []
    lits: Dict[int, List[Tuple[str, int, object]]] = {}  # op -> [(resource, duration, presence)]
    sizes: Dict[int, object] = {}  # op with a choice of resource -> its duration variable
    for i in range(n):
        if i not in m.choices:
            ivs.append(model.NewIntervalVar(starts[i], m.dur[i], ends[i], f"iv{i}"))
            continue
        ds = [d for _, d in m.choices[i]]
        size = model.NewIntVar(min(ds), max(ds), f"d{i}")
        sizes[i] = size
        ivs.append(model.NewIntervalVar(starts[i], size, ends[i], f"iv{i}"))
        lits[i] = []
        for r, d in m.choices[i]:
            lit = model.NewBoolVar(f"x{i}_{r}")
            model.Add(size == d).OnlyEnforceIf(lit)
            lits[i].append((r, d, lit))
        model.AddExactlyOne([lit for _, _, lit in lits[i]])
    for i in range(n):
        for p in m.preds[i]:
            model.Add(starts[i] >= ends[p])
    for a, b in forced_orders(m):  # implied by the resources; stated, they prune the search
        model.Add(starts[b] >= ends[a])
    hold_sizes = []
    optional: Dict[str, list] = {}
    for i, opts in lits.items():
        for r, d, lit in opts:
            optional.setdefault(r, []).append(
                model.NewOptionalIntervalVar(starts[i], d, ends[i], lit, f"o{i}_{r}"))
    for r in sorted(set(m.plain) | set(m.spans) | set(optional)):
        group = [ivs[i] for i in m.plain.get(r, [])] + optional.get(r, [])
        for k, (i, j) in enumerate(m.spans.get(r, [])):
            size = model.NewIntVar(0, horizon, f"h_{r}_{k}")
            hold_sizes.append(size)
            group.append(model.NewIntervalVar(starts[i], size, ends[j], f"hold_{r}_{k}"))
        if len(group) > 1:
            model.AddNoOverlap(group)
    mk = model.NewIntVar(0, horizon, "makespan")
    model.AddMaxEquality(mk, ends)
    model.Add(mk >= bound)  # a valid bound (lower_bound): CP-SAT can stop as soon as it meets it
    model.Minimize(mk)
    holds = [(i, j) for r in sorted(set(m.plain) | set(m.spans) | set(optional)) for i, j in m.spans.get(r, [])]

    def add_hints(sol: Solution) -> None:
        """A complete hint: every start, end, choice, hold length and the makespan."""
        for i in range(n):
            model.AddHint(starts[i], sol.starts[i])
            model.AddHint(ends[i], sol.starts[i] + sol.durs[i])
        for i, opts in lits.items():
            for r, _, lit in opts:
                model.AddHint(lit, r == sol.chosen.get(i))
            model.AddHint(sizes[i], sol.durs[i])
        for size, (i, j) in zip(hold_sizes, holds):
            model.AddHint(size, sol.starts[j] + sol.durs[j] - sol.starts[i])
        model.AddHint(mk, sol.makespan)

    def read() -> Solution:
        chosen = {i: next(r for r, _, lit in opts if solver.Value(lit)) for i, opts in lits.items()}
        st = [solver.Value(v) for v in starts]
        return Solution(starts=st, durs=[solver.Value(ends[i]) - st[i] for i in range(n)], chosen=chosen)

    if hint is not None:
        add_hints(hint)
    solver = cp_model.CpSolver()
    cap = threading.Timer(max(0.0, deadline - time.perf_counter()), solver.stop_search)
    cap.daemon = True
    cap.start()
    try:
        return _solve(cp_model, model, solver, mk, hold_sizes, add_hints, read, deadline, deterministic_limit)
    finally:
        cap.cancel()


def _solve(cp_model, model, solver, mk, hold_sizes, add_hints, read, deadline: float,  # noqa: ANN001
           deterministic_limit: float) -> Optional[Tuple[Solution, int, str, bool]]:
    """Run the search (and the hold-shortening pass when time is left) under ``_cpsat``'s wall cap."""
    solver.parameters.num_workers = CPSAT_WORKERS
    solver.parameters.interleave_search = True   # the portfolio, run in a deterministic order
    solver.parameters.random_seed = 0
    # CP-SAT's own SIGINT handler replaces Python's and leaves SIG_DFL behind, so a later Ctrl-C
    # would kill the cell agent without its clean halt; keep Python's handler.
    solver.parameters.catch_sigint_signal = False
    solver.parameters.relative_gap_limit = RELATIVE_GAP
    if len(model.Proto().variables) > 4 * LP_MAX_OPS:
        solver.parameters.linearization_level = 0
    # CP-SAT's own clock stops a little early: stopping takes time, and the cap must not be overrun
    solver.parameters.max_time_in_seconds = max(0.01, STOP_MARGIN * (deadline - time.perf_counter()))
    solver.parameters.max_deterministic_time = max(0.02, float(deterministic_limit))
    status = solver.Solve(model)
    name = solver.StatusName(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.info("CP-SAT found no schedule (%s); using the list schedule", name)
        return None
    found = read()
    best, bound = int(solver.Value(mk)), int(solver.BestObjectiveBound())
    left = deadline - time.perf_counter()
    if status == cp_model.OPTIMAL and hold_sizes and left > 0.05:
        # Second pass at the optimal makespan: the shortest machine holds (a machine does not
        # start a part long before the robot can take it out), so the quote charges no idle hold.
        model.Add(mk <= best)
        model.Minimize(sum(hold_sizes))
        model.ClearHints()
        add_hints(found)
        solver.parameters.max_time_in_seconds = STOP_MARGIN * left
        solver.parameters.max_deterministic_time = max(0.02, 0.25 * float(deterministic_limit))
        if solver.Solve(model) in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            found = read()
    # relative_gap_limit makes CP-SAT answer OPTIMAL within the gap: proven only when it meets its bound
    proven = status == cp_model.OPTIMAL and best <= bound
    return (found, bound, "OPTIMAL" if proven else "FEASIBLE", proven)


def schedule_plan(plan: Plan, cell: Optional[CellConfig] = None, time_limit: float = 10.0,
                  solver: str = "auto", deterministic_limit: Optional[float] = None) -> Schedule:
    """Schedule ``plan`` (also stored in ``plan.schedule``) and return the schedule.

    ``solver`` is ``auto`` (CP-SAT warm-started by the list schedule, falling
    back to the list schedule), ``cp-sat`` or ``list``. ``time_limit`` is a
    hard wall-clock cap on the whole call (the list schedule is computed first
    and is the answer whenever CP-SAT finds nothing better in time);
    ``deterministic_limit`` is CP-SAT's search budget in deterministic seconds,
    which does not shrink on a loaded machine (default
    ``DETERMINISTIC_PER_SECOND * time_limit``). ``cell`` is accepted for future
    use (resource calendars); the plan already names every resource.
    """
    if solver not in ("auto", "cp-sat", "list"):
        raise PlanningError(f"unknown solver '{solver}'", hint="auto, cp-sat or list")
    t0 = time.perf_counter()
    m = build_model(plan)
    lb = lower_bound(m)
    best: Optional[Solution] = None
    for rule in ("tail", "head", "succ"):
        try:
            sol = list_schedule(m, rule)
        except PlanningError as exc:
            log.debug("list scheduler (%s) failed: %s", rule, exc)
            continue
        if best is None or sol.makespan < best.makespan:
            best = sol
    if best is None:  # no list schedule: let CP-SAT search from scratch over a safe horizon
        if solver == "list":
            raise PlanningError("the list scheduler found no schedule", hint="use the cp-sat solver")
        best_mk = sum(max(d for _, d in m.choices[i]) if i in m.choices else m.dur[i] for i in range(len(m.ids)))
    else:
        best_mk = best.makespan
    final, used, status, optimal = best, "list", "FEASIBLE", best_mk <= lb
    if solver != "list" and best_mk > lb and m.ids:
        det = DETERMINISTIC_PER_SECOND * time_limit if deterministic_limit is None else deterministic_limit
        res = _cpsat(m, best, best_mk, max(0.01, WALL_SHARE * time_limit - (time.perf_counter() - t0)), det, lb)
        if res is not None:
            sol, bound, status, optimal = res
            lb = max(lb, bound)
            used = "cp-sat"
            if final is None or sol.makespan <= best_mk:
                final, best_mk = sol, sol.makespan
        if final is None:
            raise PlanningError("no schedule found: the list scheduler is stuck and CP-SAT found none in time",
                                hint="raise --time-limit")
        if res is None and solver == "cp-sat":
            # the list schedule was CP-SAT's hint: a valid answer, better than none on a loaded machine
            log.warning("CP-SAT found nothing better than its hint within %.1f s; using the list schedule",
                        time_limit)
    elif best_mk <= lb:
        status = "OPTIMAL"
    assert final is not None or not m.ids
    if final is not None:
        _apply_choices(plan, m, final)
    entries = [ScheduledOp(op=m.ids[i], start=final.starts[i] / SCALE,
                           end=(final.starts[i] + final.durs[i]) / SCALE)
               for i in range(len(m.ids))] if final is not None else []
    entries.sort(key=lambda e: (e.start, e.op))
    sched = Schedule(entries=entries, makespan=best_mk / SCALE if m.ids else 0.0, lower_bound=lb / SCALE,
                     solver=used, optimal=optimal or best_mk <= lb, solve_time=time.perf_counter() - t0,
                     status=status)
    plan.schedule = sched
    return sched


def _apply_choices(plan: Plan, m: Model, sol: Solution) -> None:
    """Rewrite the ops whose resource the scheduler picked: resource, uses, duration, alternatives."""
    for i, res in sorted(sol.chosen.items()):
        op = plan.operations[i]
        if res == op.resource:
            continue
        old, old_d = op.resource, op.duration
        new_d = float(op.alternatives[res])
        op.alternatives = {r: d for r, d in op.alternatives.items() if r != res}
        op.alternatives[old] = old_d
        op.resource, op.duration = res, new_d
        op.uses = [res if u == old else u for u in op.uses]
        op.reasons = [r for r in op.reasons if not r.startswith("scheduler: ")] + [
            f"scheduler: {res} takes it, so it runs beside {old}'s work"]


def resource_intervals(plan: Plan) -> Dict[str, List[Tuple[float, float, str]]]:
    """Per resource, the (start, end, what) intervals it is busy in the plan's schedule, holds included.

    ``what`` is an op id, or ``hold:<open>..<close>`` for a hold. Used by the
    quote, the text timeline and the Gantt chart, so all three agree.
    """
    if plan.schedule is None:
        raise PlanningError("the plan is not scheduled yet")
    m = build_model(plan)
    when = {e.op: (e.start, e.end) for e in plan.schedule.entries}
    out: Dict[str, List[Tuple[float, float, str]]] = {}
    for r, lst in m.plain.items():
        for i in lst:
            out.setdefault(r, []).append((when[m.ids[i]][0], when[m.ids[i]][1], m.ids[i]))
    for i in m.choices:  # the resource the scheduler picked is the op's resource now
        op = plan.operations[i]
        out.setdefault(op.resource, []).append((when[op.id][0], when[op.id][1], op.id))
    for r, pairs in m.spans.items():
        for i, j in pairs:
            out.setdefault(r, []).append((when[m.ids[i]][0], when[m.ids[j]][1], f"hold:{m.ids[i]}..{m.ids[j]}"))
    for r in out:
        out[r].sort()
    return out
