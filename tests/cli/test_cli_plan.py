"""`anycell plan` and `anycell quote` as a person runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import DEMO_CELL, DEMO_JOB, ROOT


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycell", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_plan_prints_a_followable_plan_and_writes_the_gantt_chart(tmp_path) -> None:
    png = tmp_path / "gantt.png"
    res = run("plan", DEMO_CELL, DEMO_JOB, "--gantt", str(png), "--time-limit", "5")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Plan for job 'demo_widget' on cell 'demo_cell': 2 unit(s), 18 operations" in out
    assert "assembly order of one unit: base -> block -> cap -> peg" in out
    assert "why: block after base: block rests on base" in out
    assert "why: tending: load before run" in out
    assert "holds mill until u1.unload.block ends" in out
    # Operations are listed in start order, numbered.
    lines = [ln for ln in out.splitlines() if ln[:4].strip().rstrip(".").isdigit()]
    starts = [float(ln.split()[1].split("-")[0]) for ln in lines]
    assert len(lines) == 18 and starts == sorted(starts)
    assert "Schedule: makespan 121.0 s, lower bound 121.0 s, gap 0.0%, solver cp-sat" in out
    for res_name in ("panda", "printer", "mill", "fixture", "inspection"):
        assert any(ln.strip().startswith(f"{res_name} ") and "|" in ln for ln in out.splitlines())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.slow
def test_plan_json_round_trips_and_svg(tmp_path) -> None:
    from anycell.plan import Plan

    svg = tmp_path / "g.svg"
    res = run("plan", DEMO_CELL, DEMO_JOB, "--json", "--gantt", str(svg))
    assert res.returncode == 0, res.stderr
    plan = Plan.from_dict(json.loads(res.stdout))
    assert plan.schedule is not None and plan.schedule.makespan == 121.0
    assert plan.op("u1.run.cap").params["parameters"] == {"hotend_temp": 210, "bed_temp": 60}
    assert "<svg" in svg.read_text()


@pytest.mark.slow
def test_quote_text_and_json() -> None:
    res = run("quote", DEMO_CELL, DEMO_JOB)
    assert res.returncode == 0, res.stderr
    assert "total (makespan)        121.0 s" in res.stdout
    assert "setup" in res.stdout and "pla for cap" in res.stdout
    res = run("quote", DEMO_CELL, DEMO_JOB, "--json")
    assert res.returncode == 0, res.stderr
    q = json.loads(res.stdout)
    assert q["makespan"] == 121.0 and q["currency"] == "EUR"
    assert q["total"] == round(sum(ln["amount"] for ln in q["lines"]), 2)


def test_infeasible_job_is_one_line_error_without_traceback(tmp_path) -> None:
    import os
    import shutil

    shutil.copytree(os.path.join(os.path.dirname(DEMO_JOB), "programs"), tmp_path / "programs")
    job = tmp_path / "tight.yaml"
    job.write_text(open(DEMO_JOB).read().replace("tolerance: {position: 0.003", "tolerance: {position: 0.0001"))
    res = run("plan", DEMO_CELL, str(job))
    assert res.returncode == 2
    assert "operation 'u1.place.base' (part 'base'): position tolerance 0.1 mm is tighter than robot 'panda'" \
        in res.stderr
    assert "Traceback" not in res.stderr


def test_help() -> None:
    for cmd in ("plan", "quote"):
        res = run(cmd, "--help")
        assert res.returncode == 0 and "--json" in res.stdout
    assert "--gantt" in run("plan", "--help").stdout


@pytest.mark.slow
def test_quote_with_motion_durations_is_shorter_than_config_defaults() -> None:
    base = json.loads(run("quote", DEMO_CELL, DEMO_JOB, "--json").stdout)
    res = run("quote", DEMO_CELL, DEMO_JOB, "--json", "--durations", "motion")
    assert res.returncode == 0, res.stderr
    motion = json.loads(res.stdout)
    # The demo's 8 s config default is conservative; the Panda's own limits give about 5 s a move.
    assert 0 < motion["makespan"] < base["makespan"]
