"""``anycell sim`` runs the assembly job headless and writes pictures and a summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.paths import DEMO_CELL, DEMO_JOB, ROOT, STACK_JOB


def _run(args, timeout=240):
    return subprocess.run([sys.executable, "-m", "anycell", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_sim_writes_report_with_pictures_and_errors_within_tolerance(tmp_path) -> None:
    out = tmp_path / "report"
    proc = _run(["sim", DEMO_CELL, STACK_JOB, "--report", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "[####" in proc.stderr                      # the progress bar
    summary = json.loads((out / "summary.json").read_text())
    assert summary["result"] == "ok" and summary["collisions"] == []
    assert {p["part"] for p in summary["placements"]} == {"base", "block", "peg"}
    assert all(p["error_m"] <= p["tolerance_m"] for p in summary["placements"])
    assert summary["cycle_time_s"] > 5.0
    for name in summary["snapshots"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert summary["snapshots"][0] == "00_start.png" and summary["snapshots"][-1] == "99_end.png"
    assert len(summary["snapshots"]) >= 5              # start, three placements, end
    md = (out / "summary.md").read_text()
    assert "| 1 | peg |" in md and "cycle time" in md


def test_sim_lists_machine_parts_as_skipped(tmp_path) -> None:
    from anycell.cell import load_cell
    from anycell.cli_sim import derive_steps
    from anycell.job import load_job

    steps = derive_steps(load_cell(DEMO_CELL), load_job(DEMO_JOB))
    skipped = {(s["unit"], s["part"]) for s in steps if s["kind"] == "skipped"}
    assert skipped == {(u, p) for u in (1, 2) for p in ("block", "cap")}
    picks = [(s["unit"], s["part"]) for s in steps if s["kind"] == "pick_place"]
    assert picks == [(1, "base"), (1, "peg"), (2, "base"), (2, "peg")]


def test_units_are_carried_to_the_tray_by_their_base(tmp_path) -> None:
    """demo_widget: feeder parts placed, machine parts skipped, each unit (base + peg) carried out whole."""
    from anycell.cell import load_cell
    from anycell.cli_sim import run_sim_job
    from anycell.job import load_job

    s = run_sim_job(load_cell(DEMO_CELL), load_job(DEMO_JOB), str(tmp_path), progress=False)
    assert s["result"] == "ok" and s["collisions"] == [] and s["errors"] == []
    assert [(p["unit"], p["part"]) for p in s["placements"]] == [(1, "base"), (1, "peg"), (2, "base"), (2, "peg")]
    assert all(p["ok"] for p in s["placements"])
    assert {(k["unit"], k["part"]) for k in s["skipped"]} == {(u, p) for u in (1, 2) for p in ("block", "cap")}
    assert [o["position"] for o in s["outputs"]] == [0, 1]
    for o in s["outputs"]:
        assert o["base_error_m"] < 0.003 and o["worst_part_shift_m"] < 0.002   # the peg rode along


def test_sim_refuses_bad_input(tmp_path) -> None:
    proc = _run(["sim", DEMO_CELL, os.path.join(ROOT, "nope.yaml"), "--report", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "error" in proc.stderr
