"""Judging a unit against its spec, with the measurement uncertainty as a guard band."""

from __future__ import annotations

from anycell.conformance import check_unit
from anycell.geometry import Pose
from anycell.job import load_job
from tests.paths import DEMO_JOB


def _perfect(job) -> dict:
    return {pl.part: pl.pose for pl in job.assembly.placements}


def test_a_perfect_unit_passes_every_check() -> None:
    job = load_job(DEMO_JOB)
    res = check_unit(job, 1, _perfect(job), 0.0002, 0.002)
    assert res.passed and res.checks == {"placement": True, "presence": True}
    assert all(p.position_error == 0.0 for p in res.parts)


def test_a_part_out_of_tolerance_fails_with_its_deviation() -> None:
    job = load_job(DEMO_JOB)
    measured = _perfect(job)
    measured["cap"] = Pose(xyz=[-0.0125 + 0.006, 0.0, 0.040])  # 6 mm off, tolerance 5 mm
    res = check_unit(job, 2, measured, 0.0002, 0.002)
    assert not res.passed and res.checks["placement"] is False and res.checks["presence"] is True
    cap = next(p for p in res.parts if p.part == "cap")
    assert abs(cap.position_error - 0.006) < 1e-9
    assert res.failures() == ["cap: position off by 6.00 mm (+0.40 mm uncertainty) > tolerance 5.00 mm"]


def test_uncertainty_is_taken_off_the_tolerance() -> None:
    """4.8 mm off with a 5 mm tolerance passes only if the instrument is good enough to prove it."""
    job = load_job(DEMO_JOB)
    measured = _perfect(job)
    measured["cap"] = Pose(xyz=[-0.0125 + 0.0048, 0.0, 0.040])
    assert check_unit(job, 1, measured, 0.00005, 0.002).passed
    assert not check_unit(job, 1, measured, 0.0002, 0.002).passed


def test_a_missing_part_fails_presence() -> None:
    job = load_job(DEMO_JOB)
    measured = _perfect(job)
    measured["peg"] = None
    res = check_unit(job, 1, measured, 0.0002, 0.002)
    assert not res.passed and res.checks["presence"] is False
    assert "peg: not found" in res.failures()


def test_angle_error_is_measured() -> None:
    job = load_job(DEMO_JOB)
    measured = _perfect(job)
    measured["block"] = Pose(xyz=[-0.0125, 0.0, 0.022], rpy=[0.0, 0.0, 0.2])  # tolerance 0.08 rad
    res = check_unit(job, 1, measured, 0.0002, 0.002)
    block = next(p for p in res.parts if p.part == "block")
    assert abs(block.angle_error - 0.2) < 1e-9 and not block.passed and "angle off" in block.reason
