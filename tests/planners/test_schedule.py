"""Scheduling: precedence, exclusivity, machine holds, optimality, determinism, a second printer."""

from __future__ import annotations

import copy

import pytest
import yaml

from anycell.cell import CellConfig, load_cell
from anycell.documents import from_data
from anycell.errors import PlanningError
from anycell.job import load_job
from anycell.plan import Operation, Plan
from anycell.planners.process import plan_job
from anycell.planners.schedule import resource_intervals, schedule_plan

from tests.paths import DEMO_CELL, DEMO_JOB


def _check_valid(plan: Plan) -> None:
    """Every constraint of the model holds in the schedule (checked from the entries, not the solver)."""
    assert plan.schedule is not None
    when = {e.op: (e.start, e.end) for e in plan.schedule.entries}
    assert set(when) == {op.id for op in plan.operations}
    for op in plan.operations:
        s, e = when[op.id]
        assert e - s == pytest.approx(op.duration, abs=0.011)
        for a in op.after:
            assert when[a][1] <= s + 1e-9, f"{op.id} starts before {a} ends"
    for res, ivs in resource_intervals(plan).items():
        for (s1, e1, w1), (s2, e2, w2) in zip(ivs, ivs[1:]):
            assert e1 <= s2 + 1e-9, f"{res}: {w1} [{s1},{e1}] overlaps {w2} [{s2},{e2}]"
    assert plan.schedule.makespan == pytest.approx(max(e for _, e in when.values()))
    assert plan.schedule.lower_bound <= plan.schedule.makespan + 1e-9


def _demo_cell_with_second_printer(tmp_path) -> CellConfig:
    """The demo cell YAML with a second printer, written to a file and loaded like any cell."""
    data = yaml.safe_load(open(DEMO_CELL))
    p2 = copy.deepcopy(data["machines"][0])
    p2.update(id="printer2", pose={"xyz": [0.35, -0.5, 0.0]}, tending={"load": {"xyz": [0.35, -0.5, 0.1]}},
              driver={"kind": "serial", "port": "/dev/ttyACM1", "dialect": "marlin"})
    data["machines"].append(p2)
    path = tmp_path / "two_printers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_cell(str(path))


def test_demo_schedule_is_valid_and_cp_sat_proves_it_optimal() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    sched = schedule_plan(plan, cell, time_limit=10.0)
    assert plan.schedule is sched
    _check_valid(plan)
    assert sched.solver == "cp-sat" and sched.optimal and sched.gap == 0.0
    assert sched.makespan == pytest.approx(sched.lower_bound)


def test_list_scheduler_is_valid_and_never_better_than_cp_sat() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    lst = schedule_plan(plan, cell, solver="list")
    _check_valid(plan)
    assert lst.solver == "list"
    opt = schedule_plan(plan, cell, solver="cp-sat")
    assert opt.makespan <= lst.makespan


def test_machines_run_in_parallel_with_the_robot() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    schedule_plan(plan, cell)
    when = {e.op: (e.start, e.end) for e in plan.schedule.entries}
    robot = [when[o.id] for o in plan.operations if o.resource == "panda"]
    run = when["u1.run.block"]
    assert any(s < run[1] and run[0] < e for s, e in robot), "the robot idles while the mill runs"
    # Units overlap: unit 2's mill work starts before unit 1 is output.
    assert when["u2.load.block"][0] < when["u1.output"][1]


def test_a_machine_holding_a_part_is_not_loaded_again() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    for solver in ("list", "cp-sat"):
        schedule_plan(plan, cell, solver=solver)
        when = {e.op: (e.start, e.end) for e in plan.schedule.entries}
        # Unit 2's stock goes into the mill only after unit 1's block is out of it.
        assert when["u2.load.block"][0] >= when["u1.unload.block"][1]
        assert when["u2.run.cap"][0] >= when["u1.unload.cap"][1]


def test_hold_is_enforced_against_another_users_of_the_machine() -> None:
    # A hand-made plan: op "b" needs machine m for 1 s while "a".."c" hold it; b must wait for c.
    ops = [Operation(id="a", kind="load", unit=1, resource="r", duration=2, uses=["r", "m"], holds={"m": "c"}),
           Operation(id="run", kind="run_program", unit=1, resource="m", duration=5, uses=["m"], after=["a"]),
           Operation(id="c", kind="unload", unit=1, resource="r", duration=2, uses=["r", "m"], after=["run"]),
           Operation(id="b", kind="run_program", unit=2, resource="m", duration=1, uses=["m"])]
    plan = Plan(job_id="j", cell_id="c", quantity=1, operations=ops)
    for solver in ("list", "cp-sat"):
        sched = schedule_plan(plan, None, solver=solver)
        _check_valid(plan)
        when = {e.op: (e.start, e.end) for e in sched.entries}
        b = when["b"]
        assert b[1] <= when["a"][0] or b[0] >= when["c"][1]
        assert sched.makespan == pytest.approx(10.0)


def test_scheduling_is_deterministic() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    runs = []
    for _ in range(2):
        plan = plan_job(cell, job)
        sched = schedule_plan(plan, cell)
        runs.append([(e.op, e.start, e.end) for e in sched.entries])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("print_s,min_saving", [(40.0, 0.0), (120.0, 0.25)])
def test_second_printer_shortens_the_makespan(tmp_path, print_s: float, min_saving: float) -> None:
    # As shipped (40 s prints) the robot is the bottleneck and a second printer saves a little;
    # with 120 s prints the printer is, and the second one saves over a quarter of the makespan.
    from anycell.job import job_from_document

    data = yaml.safe_load(open(DEMO_JOB))
    next(p for p in data["parts"] if p["id"] == "cap")["source"]["duration"] = print_s
    job = job_from_document(from_data(data, file=DEMO_JOB))
    one = load_cell(DEMO_CELL)
    two = _demo_cell_with_second_printer(tmp_path)
    p1, p2 = plan_job(one, job), plan_job(two, job)
    s1, s2 = schedule_plan(p1, one), schedule_plan(p2, two)
    _check_valid(p2)
    assert {p2.op("u1.run.cap").resource, p2.op("u2.run.cap").resource} == {"printer", "printer2"}
    when = {e.op: e for e in s2.entries}
    if min_saving:  # long prints: both printers work at once
        assert when["u1.run.cap"].start < when["u2.run.cap"].end and when["u2.run.cap"].start < when["u1.run.cap"].end
    assert s1.optimal and s2.optimal
    assert s2.makespan < s1.makespan * (1.0 - min_saving)


def test_cycle_in_a_plan_is_refused() -> None:
    ops = [Operation(id="x", kind="inspect", unit=1, resource="s", duration=1, uses=["s"], after=["y"]),
           Operation(id="y", kind="inspect", unit=1, resource="s", duration=1, uses=["s"], after=["x"])]
    with pytest.raises(PlanningError, match="cycle among: x, y"):
        schedule_plan(Plan(job_id="j", cell_id="c", quantity=1, operations=ops), None)


def test_two_parts_of_one_unit_on_one_machine_are_scheduled_in_assembly_order() -> None:
    # Both the block and the cap milled on the demo cell's one mill: the mill must make the block
    # (placed first) before the cap, or the unit could never be assembled.
    from anycell.job import job_from_document

    from tests.paths import ROOT

    data = yaml.safe_load(open(DEMO_JOB))
    cap = next(p for p in data["parts"] if p["id"] == "cap")
    cap["source"] = {"process": "mill", "stock": "blank", "program": {"name": "CAP_01"}, "material": "aluminium",
                     "duration": 25.0}
    job = job_from_document(from_data(data, file=DEMO_JOB), base_dir=ROOT)
    cell = load_cell(DEMO_CELL)
    plan = plan_job(cell, job)
    assert plan.op("u1.run.cap").resource == "mill" and plan.op("u1.run.block").resource == "mill"
    for solver in ("list", "cp-sat"):
        schedule_plan(plan, cell, solver=solver)
        _check_valid(plan)
        when = {e.op: e for e in plan.schedule.entries}
        assert when["u1.load.cap"].start >= when["u1.unload.block"].end


def test_cp_sat_keeps_the_optimal_makespan_and_the_shortest_machine_holds() -> None:
    cell, job = load_cell(DEMO_CELL), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    sched = schedule_plan(plan, cell)
    assert sched.optimal
    when = {e.op: e for e in sched.entries}
    for op in plan.operations:
        for res, closer in op.holds.items():
            chain = [o for o in plan.operations if o.unit == op.unit and o.part == op.part and res in o.uses]
            # load (if any) + run + unload back to back: no part sits finished in the machine.
            assert when[closer].end - when[op.id].start == pytest.approx(sum(o.duration for o in chain)), op.id


def test_scheduler_hands_moves_to_an_idle_alternative_robot() -> None:
    # Four independent 10 s moves, all planned on r1 but r2 can do them too (12 s there).
    ops = [Operation(id=f"m{k}", kind="pick_place", unit=1, resource="r1", duration=10.0, uses=["r1"],
                     alternatives={"r2": 12.0}) for k in range(4)]
    for solver in ("list", "cp-sat"):
        plan = Plan(job_id="j", cell_id="c", quantity=1, operations=[copy.deepcopy(o) for o in ops])
        sched = schedule_plan(plan, None, solver=solver)
        _check_valid(plan)
        on = {op.resource for op in plan.operations}
        assert on == {"r1", "r2"}, solver
        assert sched.makespan == pytest.approx(24.0)  # two moves each: r1 20 s, r2 24 s (all on r1: 40 s)
        moved = [op for op in plan.operations if op.resource == "r2"]
        assert all(op.duration == 12.0 and op.alternatives == {"r1": 10.0} and op.uses == ["r2"] for op in moved)
        assert all(any(r.startswith("scheduler: r2 takes it") for r in op.reasons) for op in moved)


@pytest.mark.slow
def test_two_robot_cell_shares_the_moves_each_can_reach(tmp_path) -> None:
    data = yaml.safe_load(open(DEMO_CELL))
    second = copy.deepcopy(data["robots"][0])
    second.update(id="panda2", base={"xyz": [1.0, 0.0, 0.0], "rpy": [0.0, 0.0, 3.14159]})
    data["robots"].append(second)
    data["safety"]["workspace"]["max"][0] = 1.4
    path = tmp_path / "two_robots.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cell, job = load_cell(str(path)), load_job(DEMO_JOB)
    plan = plan_job(cell, job)
    # panda2, across the table, reaches the feeder and the fixture but not the machines.
    assert set(plan.op("u1.place.peg").alternatives) | {plan.op("u1.place.peg").resource} == {"panda", "panda2"}
    for op in plan.operations:
        if op.kind in ("load", "unload"):
            assert op.resource == "panda" and op.alternatives == {}, op.id
    sched = schedule_plan(plan, cell)
    _check_valid(plan)
    used = {op.resource for op in plan.operations if op.kind in ("pick_place", "output")}
    assert "panda2" in used and used <= {"panda", "panda2"}
    assert {op.resource for op in plan.operations if op.kind in ("load", "unload")} == {"panda"}
    assert sched.optimal


# ---------------------------------------------------------------- at scale (issue 16)

def _generator():
    """The benchmark's instance generator (bench/bench_schedule.py), loaded by path."""
    import importlib.util
    import os

    from tests.paths import ROOT

    spec = importlib.util.spec_from_file_location("bench_schedule", os.path.join(ROOT, "bench", "bench_schedule.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.generate


def test_jackson_preemptive_bound_on_a_hand_example() -> None:
    from anycell.planners.schedule import jackson_preemptive_bound

    # (head, length, tail): the long-tail item released at 1 preempts the first one
    assert jackson_preemptive_bound([(0, 4, 0), (1, 2, 10)]) == 13
    assert jackson_preemptive_bound([(0, 3, 1), (0, 3, 1)]) == 7
    assert jackson_preemptive_bound([]) == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_lower_bound_never_exceeds_a_proven_optimum(seed: int) -> None:
    """The forced orders, Jackson's bound and the robot pools are valid: never above CP-SAT's optimum."""
    from anycell.planners.schedule import SCALE, build_model, lower_bound

    plan = _generator()(20, 1 + seed % 2, 2 + seed % 3, seed)
    sched = schedule_plan(plan, None, time_limit=20.0, solver="cp-sat", deterministic_limit=20.0)
    _check_valid(plan)
    assert lower_bound(build_model(plan)) / SCALE <= sched.makespan + 1e-9
    if sched.optimal:
        assert sched.lower_bound <= sched.makespan + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_500_operations_get_a_valid_schedule_within_the_wall_limit(seed: int) -> None:
    """4 robots, 10 machines, about 500 operations: a valid schedule, and the wall cap holds (+10%)."""
    import time

    plan = _generator()(500, 4, 10, seed)
    limit = 6.0
    t0 = time.perf_counter()
    sched = schedule_plan(plan, None, time_limit=limit)
    wall = time.perf_counter() - t0
    _check_valid(plan)
    assert len(sched.entries) == len(plan.operations)
    assert sched.lower_bound <= sched.makespan
    assert (sched.makespan - sched.lower_bound) / sched.makespan < 0.05, "the bound should make the gap meaningful"
    assert wall <= 1.1 * limit + 0.5, wall


def test_cp_sat_starts_from_the_complete_list_hint() -> None:
    """With almost no search budget, CP-SAT still returns the hinted list schedule (never nothing)."""
    from anycell.planners.schedule import SCALE, _cpsat, build_model, list_schedule, lower_bound

    plan = _generator()(100, 2, 5, 7)
    m = build_model(plan)
    hint = list_schedule(m, "tail")
    res = _cpsat(m, hint, hint.makespan, time_limit=30.0, deterministic_limit=0.02, bound=lower_bound(m))
    assert res is not None
    sol, _bound, _status, _optimal = res
    assert sol.makespan <= hint.makespan
    assert sol.makespan / SCALE > 0
