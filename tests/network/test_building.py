"""Builders' reports become records the verifier re-decides to the same verdict."""

from __future__ import annotations

import os

from anycell.documents import from_data
from anycell.job import job_from_document
from anycell.network.building import program_digests, units_from_report
from anycell.network.buyer import portable_spec
from anycell.network.records import decide
from tests.paths import ROOT

JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")


def _report(errors):
    parts = [{"part": p, "present": e is not None, "position_error": e, "angle_error": 0.01 if e is not None else None,
              "passed": True, "reason": ""} for p, e in errors.items()]
    return {"units": [{"unit": 1, "inspected": True, "passed": True, "result": {"parts": parts}}],
            "steps": [{"op": "u1.run.cap", "kind": "run_program", "unit": 1, "resource": "printer", "start_s": 1.0,
                       "end_s": 3.0, "detail": {"lines_acknowledged": 28}}],
            "snapshots": ["missing.png"]}


def test_a_report_s_deviations_re_decide_to_the_same_errors() -> None:
    spec = portable_spec(JOB)
    job = job_from_document(from_data(spec))
    unc = {"position": 0.0002, "angle": 0.002}
    units = units_from_report(job, _report({"base": 0.0005, "block": 0.001, "cap": 0.0047, "peg": None}), unc)
    got = {p["part"]: p for p in decide(spec, 1, units[0].measurements, unc)["parts"]}
    assert abs(got["block"]["position_error"] - 0.001) < 1e-9 and abs(got["block"]["angle_error"] - 0.01) < 1e-9
    assert got["base"]["passed"] and not got["cap"]["passed"]      # 4.7 mm + 0.4 mm guard band > 5 mm tolerance
    assert not got["peg"]["present"]
    cap = [p for p in units[0].programs if p["part"] == "cap"][0]
    assert cap["acknowledged"] == 28 and cap["lines"] > 0 and units[0].steps[0]["op"] == "u1.run.cap"
    assert units[0].snapshots == []        # a snapshot that is not there is not vouched for


def test_program_digests_change_with_the_program() -> None:
    spec = portable_spec(JOB)
    first = program_digests(job_from_document(from_data(spec)))
    cap = [p for p in spec["parts"] if p["id"] == "cap"][0]
    cap["source"]["program"]["inline"] += "\nG1 X1\n"
    second = program_digests(job_from_document(from_data(spec)))
    assert [p["sha256"] for p in first if p["part"] == "cap"] != [p["sha256"] for p in second if p["part"] == "cap"]
