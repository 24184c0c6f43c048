"""``anycell network demo``: every job released or refunded, a killed cell's job re-awarded, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import ROOT


@pytest.mark.slow
def test_the_demo_settles_every_job_after_killing_a_cell(tmp_path) -> None:
    report = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "anycell", "network", "demo", "--cells", "4", "--jobs", "10", "--json",
                          "--report", str(report)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["posted"] == 10 and out["released"] + out["refunded"] == 10
    assert out["lost"] == 0 and out["double_awarded"] == 0 and out["not_settled"] == 0
    assert out["killed_cell"] and out["reawarded"] >= 1 and out["jobs_by_cell"][out["killed_cell"]] == 0
    assert out["ledger_sum_cents"] == 0 and out["chains_verified"]
    assert out["jobs_by_cell"]["cell-01"] >= 1          # the full simulated cell (cheapest) built at least one job
    for key in ("awarded", "completed", "verified", "refunded", "post_to_award_p50_s", "post_to_award_p99_s"):
        assert key in out
    files = [os.path.join(r, n) for r, _d, names in os.walk(report) for n in names]
    assert len(files) == out["records"] and all("record" in os.path.basename(f) for f in files)
    ver = subprocess.run([sys.executable, "-m", "anycell", "verify", str(report), "--json"], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert ver.returncode == 0 and json.loads(ver.stdout)["ok"]


def test_bad_demo_arguments_are_refused_without_a_traceback() -> None:
    run = subprocess.run([sys.executable, "-m", "anycell", "network", "demo", "--cells", "1", "--jobs", "3"],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "cells" in run.stderr and "Traceback" not in run.stderr
