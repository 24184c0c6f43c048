"""Safety that acts, without ROS: e-stop trips and lost sources, the halt fan-out, the trajectory guard,
journal failures that halt the cell, and Reset refused under an active e-stop.
"""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace
from typing import List, Optional

import pytest
import yaml

from anycell.agent import packml as pm
from anycell.agent.api import inline_program_files
from anycell.agent.cell_service import CellService, wait_until
from anycell.agent.journal import Journal
from anycell.agent.safety import EStopLost, EStopWatch, GuardedRobot, TrajectoryGuard, halt_devices
from anycell.cell import load_cell
from anycell.drivers.robot import Robot
from anycell.errors import ConfigError, ExecutionError
from tests.paths import DEMO_CELL, DEMO_JOB

from .helpers import GateRunner


@pytest.fixture(scope="module")
def cell():
    return load_cell(DEMO_CELL)


@pytest.fixture(scope="module")
def job_doc():
    with open(DEMO_JOB, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["quantity"] = 1
    return inline_program_files(data, os.path.dirname(DEMO_JOB))


class RecordingRobot(Robot):
    """A Robot that records when it was told to stop and what it was sent."""

    def __init__(self, names: List[str]) -> None:
        self.names = names
        self.stopped_at: List[float] = []
        self.executed: List[object] = []

    @property
    def joint_names(self) -> List[str]:
        return list(self.names)

    def execute(self, trajectory) -> None:  # noqa: ANN001
        self.executed.append(trajectory)

    def joint_positions(self) -> List[float]:
        return [0.0] * len(self.names)

    def grasp(self, part_id: Optional[str] = None) -> bool:
        return True

    def release(self) -> None:
        return None

    def stop(self) -> None:
        self.stopped_at.append(time.monotonic())


class SlowMachine:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.stopped = threading.Event()

    def stop(self) -> None:
        time.sleep(self.delay)
        self.stopped.set()


def test_halt_stops_every_robot_before_any_slow_machine() -> None:
    robots = {"a": RecordingRobot(["j1"]), "b": RecordingRobot(["j1"])}
    machines = {"mill": SlowMachine(0.5), "printer": SlowMachine(0.0)}
    t0 = time.monotonic()
    stamps = halt_devices(robots, machines)
    assert set(stamps) == {"a", "b"}
    assert max(stamps.values()) - t0 < 0.05          # robots stopped at once, not after the slow mill
    assert time.monotonic() - t0 < 0.1               # the caller is not held by the machines
    assert machines["printer"].stopped.wait(2) and machines["mill"].stopped.wait(2)


def test_estop_watch_trips_on_true_and_on_a_lost_source() -> None:
    trips: List[str] = []
    value = {"v": False, "lost": False}

    def read():
        if value["lost"]:
            raise EStopLost("cable pulled")
        return value["v"]

    watch = EStopWatch("test", read, trips.append, period=0.005)
    watch.start()
    try:
        time.sleep(0.05)
        assert trips == [] and not watch.active
        value["v"] = True
        assert wait_until(lambda: len(trips) == 1, 1.0) and watch.active
        value["v"] = False
        assert wait_until(lambda: not watch.active, 1.0)
        value["lost"] = True
        assert wait_until(lambda: len(trips) == 2, 1.0)
        assert "lost" in trips[1] and "cable pulled" in trips[1]
        assert watch.health()["level"] == 2
    finally:
        watch.close()


def test_estop_trip_mid_job_stops_robots_aborts_cell_and_is_journaled(cell, tmp_path, job_doc) -> None:
    robot = RecordingRobot(["j1"])
    runner = GateRunner()
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), lambda plan, job: runner)
    svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))
    pressed = {"v": False}
    watch = svc.add_estop("test", lambda: pressed["v"], period=0.005)
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("start")
        assert svc.packml.wait_for([pm.EXECUTE], 5)
        assert svc.handle({"request_id": "s1", "op": "submit", "job": job_doc})["ok"]
        assert wait_until(lambda: runner.running, 10)
        t0 = time.monotonic()
        pressed["v"] = True
        assert wait_until(lambda: robot.stopped_at, 1.0)
        assert robot.stopped_at[0] - t0 < 0.05           # the goal: commanded stop within 50 ms
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert runner.halted >= 1
        events = svc.journal.events("estop")
        assert events and "tripped" in events[0]["detail"]["reason"]
        entry = [h for h in svc.health() if h["name"].endswith("safety/estop")][0]
        assert entry["level"] == 2 and "tripped" in entry["message"]
        # Reset is refused while the e-stop is pressed: Clear, Reset -> Aborted again, not Idle
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.ABORTED], 5)
        # released: Clear and Reset reach Idle
        pressed["v"] = False
        assert wait_until(lambda: not watch.active, 1.0)
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
    finally:
        svc.shutdown()


def test_disk_full_mid_job_halts_to_aborted_and_nothing_crashes_later(cell, tmp_path, job_doc) -> None:
    robot = RecordingRobot(["j1"])
    runner = GateRunner()
    journal = Journal(str(tmp_path / "j.db"))
    svc = CellService(cell, journal, lambda plan, job: runner)
    svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("start")
        assert svc.packml.wait_for([pm.EXECUTE], 5)
        assert svc.handle({"request_id": "s1", "op": "submit", "job": job_doc})["ok"]
        assert wait_until(lambda: runner.running, 10)
        # the disk is full: SQLite's own "database or disk is full" from here on
        pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
        journal._db.execute(f"PRAGMA max_page_count = {pages}")
        big = {"request_id": "s2", "op": "submit", "job": dict(job_doc, id="second", product="x" * 200_000)}
        resp = svc.handle(big)
        assert not resp["ok"]                              # nothing acknowledged that was not written
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert robot.stopped_at                            # halted
        diag = [h for h in svc.health() if h["name"].endswith("/journal")][0]
        assert diag["level"] == 2 and "full" in diag["message"]
        # later requests get answers, not a crash
        assert svc.handle({"request_id": "s3", "op": "status"})["ok"]
        again = svc.handle({"request_id": "s4", "op": "submit", "job": dict(job_doc, id="third")})
        assert not again["ok"]
    finally:
        svc.shutdown()


def test_unopenable_journal_names_its_path_and_a_hint(tmp_path) -> None:
    bad = tmp_path / "journal.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError) as info:
        Journal(str(bad))
    assert str(bad) in str(info.value) and info.value.hint
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(str(ro), os.W_OK):
            pytest.skip("running as root: directory permissions do not apply")
        with pytest.raises(ConfigError) as info:
            Journal(str(ro / "sub" / "journal.db"))
        assert "journal" in str(info.value)
    finally:
        os.chmod(ro, 0o700)


def test_worker_crash_halts_devices_and_aborts(cell, tmp_path) -> None:
    robot = RecordingRobot(["j1"])
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None)
    svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))

    def boom() -> None:
        raise RuntimeError("bug in a hook")

    svc.stop_hooks.append(boom)   # swallowed: Stopped still declared
    svc._next_job = lambda: (_ for _ in ()).throw(RuntimeError("worker bug"))  # type: ignore[assignment]
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("start")
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert robot.stopped_at
        assert any(h["name"].endswith("safety/worker") and h["level"] == 2 for h in svc.health())
    finally:
        svc.shutdown()


# ---------------------------------------------------------------------------- trajectory guard
def _guard(cell, points=None) -> TrajectoryGuard:
    return TrajectoryGuard(cell, "panda", joint_names=["a", "b"], lower=[-1, -1], upper=[1, 1], vmax=[1.0, 1.0],
                           tcp_points=points)


def _traj(times, positions, velocities=None):
    return SimpleNamespace(joint_names=["a", "b"], times=times, positions=positions,
                           velocities=velocities or [[0.0, 0.0] for _ in positions])


def test_guard_refuses_limits_speed_workspace_and_keep_out(cell) -> None:
    g = _guard(cell)
    g.check(_traj([0, 1], [[0, 0], [0.5, 0.5]]))
    with pytest.raises(ExecutionError, match="outside its limits"):
        g.check(_traj([0, 1], [[0, 0], [1.5, 0]]))
    with pytest.raises(ExecutionError, match="max_speed_fraction"):
        g.check(_traj([0, 0.1], [[0, 0], [0.5, 0]]))
    with pytest.raises(ExecutionError, match="velocity"):
        g.check(_traj([0, 1], [[0, 0], [0.1, 0]], [[0, 0], [3.0, 0]]))
    with pytest.raises(ExecutionError, match="does not increase"):
        g.check(_traj([0, 0], [[0, 0], [0.0, 0]]))
    ws = cell.safety.workspace
    outside = [ws.max[0] + 0.5, 0.0, 0.5]
    g2 = _guard(cell, points=lambda q: [outside if q[0] > 0.4 else ws.min])
    with pytest.raises(ExecutionError, match="outside the safety workspace"):
        g2.check(_traj([0, 1], [[0, 0], [0.5, 0]]))
    if cell.safety.keep_out:
        zone = cell.safety.keep_out[0]
        inside = [(a + b) / 2 for a, b in zip(zone.min, zone.max)]
        g3 = _guard(cell, points=lambda q: [inside if q[0] > 0.2 else [(a + b) / 2 for a, b in zip(ws.min, ws.max)]])
        with pytest.raises(ExecutionError, match="keep-out"):
            g3.check(_traj([0, 1], [[0, 0], [0.3, 0]]))


def test_guarded_robot_sends_nothing_that_fails_the_check(cell) -> None:
    inner = RecordingRobot(["a", "b"])
    robot = GuardedRobot(inner, _guard(cell))
    with pytest.raises(ExecutionError):
        robot.execute(_traj([0, 1], [[0, 0], [2.0, 0]]))
    assert inner.executed == []
    ok = _traj([0, 1], [[0, 0], [0.2, 0]])
    robot.execute(ok)
    assert inner.executed == [ok]


@pytest.mark.slow
def test_guard_with_the_real_kinematics_accepts_a_planned_motion(cell) -> None:
    from anycell.planners.motion import MotionPlanner

    rid = cell.robots[0].id
    planner = MotionPlanner(cell, rid)
    guard = TrajectoryGuard.for_planner(cell, rid, planner)
    home = list(planner.kin.home)
    goal = list(home)
    goal[0] += 0.3
    traj = planner.plan_joint(home, goal)
    guard.check(traj)   # what anycell plans passes its own last check
    fast = SimpleNamespace(joint_names=traj.joint_names, times=[t * 0.2 for t in traj.times],
                           positions=traj.positions, velocities=[])
    with pytest.raises(ExecutionError):
        guard.check(fast)


# ---------------------------------------------------------------------------- API jobs and programs
def _with_file_program(job_doc, name: str):
    import copy

    doc = copy.deepcopy(job_doc)
    for part in doc["parts"]:
        prog = (part.get("source") or {}).get("program")
        if isinstance(prog, dict) and "name" not in prog:   # a G-code program (not one stored on a machine)
            part["source"]["program"] = {"file": name}
            return doc
    pytest.skip("the demo job has no machine program")


def test_api_programs_inline_or_from_the_program_folder_only(cell, tmp_path, job_doc) -> None:
    secret_dir = tmp_path / "server_side_secret_dir"
    secret_dir.mkdir()
    (secret_dir / "p.gcode").write_text("G28\n")
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None)
    r = svc.handle({"request_id": "a", "op": "submit", "job": _with_file_program(job_doc, "p.gcode")})
    assert not r["ok"] and "inline" in r["error"]["message"] and r["error"]["field"].startswith("job.parts")
    svc2 = CellService(cell, Journal(str(tmp_path / "j2.db")), None, program_dir=str(secret_dir))
    r = svc2.handle({"request_id": "b", "op": "submit", "job": _with_file_program(job_doc, "../j.db")})
    assert not r["ok"] and "outside" in r["error"]["message"]
    assert str(tmp_path) not in json_text(r)
    r = svc2.handle({"request_id": "c", "op": "submit", "job": _with_file_program(job_doc, "p.gcode")})
    assert r["ok"], r
    stored = svc2.journal.job(r["job_id"]).document
    progs = [p["source"]["program"] for p in stored["parts"] if (p.get("source") or {}).get("program")]
    assert {"inline": "G28\n"} in progs          # the journal keeps the program's text


def json_text(obj) -> str:  # noqa: ANN001
    import json

    return json.dumps(obj)


def test_request_id_reused_for_another_op_is_refused_and_quantity_is_bounded(cell, tmp_path, job_doc) -> None:
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None, max_quantity=3)
    r = svc.handle({"request_id": "x", "op": "submit", "job": dict(job_doc, quantity=4)})
    assert not r["ok"] and r["error"]["field"] == "job.quantity"
    assert svc.handle({"request_id": "s", "op": "submit", "job": job_doc})["ok"]
    r = svc.handle({"request_id": "s", "op": "cancel", "job_id": job_doc["id"]})
    assert not r["ok"] and r["error"]["field"] == "request_id"
    assert svc.journal.job(job_doc["id"]).status == "queued"    # nothing cancelled
    r = svc.handle({"request_id": "t", "op": "submit", "job": job_doc, "job_id": "../../etc/x"})
    assert not r["ok"] and r["error"]["field"] == "job_id"


# ---------------------------------------------------------------------------- recovery by step
def test_failed_job_resumes_with_per_step_decisions_and_the_summary_shows_them(cell, tmp_path, job_doc) -> None:
    from .helpers import GateRunner as Gate

    runner = Gate(auto=True)
    plan_ops = []

    def factory(plan, job):  # noqa: ANN001
        plan_ops[:] = [o.id for o in plan.operations]
        return runner

    svc = CellService(cell, Journal(str(tmp_path / "j.db")), factory)
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        # a step fails: the job is final-failed and the cell aborts
        first = {"v": None}
        original = runner.run

        def failing(op, plan):  # noqa: ANN001
            if first["v"] is None and op.kind == "run_program":
                first["v"] = op.id
                raise ExecutionError("machine alarm")
            return original(op, plan)

        runner.run = failing
        assert svc.handle({"request_id": "s", "op": "submit", "job": job_doc})["ok"]
        svc.command("start")
        assert svc.packml.wait_for([pm.ABORTED], 30)
        rec = svc.journal.job(job_doc["id"])
        assert rec.status == "failed" and first["v"]
        # bad decisions are refused with the field
        r = svc.handle({"request_id": "r0", "op": "resume", "job_id": job_doc["id"],
                        "decisions": {first["v"]: {"action": "skip"}}})
        assert not r["ok"] and r["error"]["field"].endswith(".reason")
        r = svc.handle({"request_id": "r1", "op": "resume", "job_id": job_doc["id"],
                        "decisions": {"nope": {"action": "done"}}})
        assert not r["ok"] and r["error"]["field"] == "decisions.nope"
        # the cause is fixed: retry the failed step, with a reason
        r = svc.handle({"request_id": "r2", "op": "resume", "job_id": job_doc["id"],
                        "decisions": {first["v"]: {"action": "retry", "reason": "alarm cleared"}}})
        assert r["ok"], r
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("start")
        assert wait_until(lambda: svc.journal.job(job_doc["id"]).status == "complete", 60)
        summary = svc.job_summary(job_doc["id"], steps=True)
        events = [e["event"] for e in summary["recovery"]]
        assert "step_failed" in events and "decision" in events and "resume" in events and "retries" in events
        decision = [e for e in summary["recovery"] if e["event"] == "decision"][0]
        assert decision["action"] == "retry" and decision["reason"] == "alarm cleared"
        retried = [e for e in summary["recovery"] if e["event"] == "retries"][0]["steps"]
        assert {"op": first["v"], "attempts": 2} in retried
    finally:
        svc.shutdown()


def test_stop_waits_for_the_machines_and_reset_needs_every_machine_reachable(cell, tmp_path) -> None:
    from anycell.errors import ConnectionLost

    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None)
    machine = {"state": "Stopping", "reachable": True}

    def wait_stopped() -> None:
        assert wait_until(lambda: machine["state"] == "Stopped", 5)

    def reachable() -> None:
        if not machine["reachable"]:
            raise ConnectionLost("machine printer is unreachable", field="machines.printer")

    svc.stop_hooks.append(wait_stopped)
    svc.reset_checks.append(reachable)
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("stop")
        assert not svc.packml.wait_for([pm.STOPPED], 0.5)     # the mill is still Stopping
        machine["state"] = "Stopped"
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")                                  # Stop, then Reset works
        assert svc.packml.wait_for([pm.IDLE], 5)
        svc.command("stop")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        machine["reachable"] = False                          # the printer vanished
        svc.command("reset")
        assert svc.packml.wait_for([pm.ABORTED], 5)
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        machine["reachable"] = True
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
    finally:
        svc.shutdown()


def test_jobs_snapshot_is_republished_with_every_state(cell, tmp_path) -> None:
    seen = []
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None, on_jobs=lambda snap: seen.append(snap["state"]))
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        assert wait_until(lambda: seen and seen[-1] == pm.IDLE, 5), seen
        svc.command("start")
        assert wait_until(lambda: seen[-1] == pm.EXECUTE, 5), seen
    finally:
        svc.shutdown()


def test_unknown_placeholder_is_refused_at_submit(cell, tmp_path, job_doc) -> None:
    import copy

    doc = copy.deepcopy(job_doc)
    for part in doc["parts"]:
        prog = (part.get("source") or {}).get("program")
        if isinstance(prog, dict) and "inline" in prog:
            prog["inline"] = prog["inline"] + "\nG1 X{nope}\n"
            break
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), None)
    r = svc.handle({"request_id": "p", "op": "submit", "job": doc})
    assert not r["ok"] and "nope" in r["error"]["message"] and r["error"]["field"].startswith("job.parts[")
    assert svc.handle({"request_id": "q", "op": "submit", "job": job_doc})["ok"]
