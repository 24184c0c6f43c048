"""Checking a built unit against its job spec: the verdict any cell's output can be held to.

A spec means the same thing to every cell, so the check of what a cell built
lives with the spec, not with a cell. Inputs are the measured pose of each part
(in the product frame) and the measuring station's uncertainty; the verdict
follows ISO 14253-1's rule for proving conformance: a part passes only if its
measured deviation plus the expanded uncertainty (k = 2) stays within the
tolerance. A measurement that cannot prove conformance is a fail, never a pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from .geometry import Pose, distance, quat_angle
from .job import JobSpec

COVERAGE_FACTOR = 2.0  # expanded uncertainty U = k * u, k = 2 (about 95 %)


@dataclass
class PartResult:
    """One part of one unit, measured against its placement and tolerance."""

    part: str
    present: bool
    position_error: Optional[float]  # meters, measured
    angle_error: Optional[float]     # radians, measured
    position_tolerance: float
    angle_tolerance: float
    position_uncertainty: float      # expanded, meters
    angle_uncertainty: float         # expanded, radians
    passed: bool
    reason: str = ""


@dataclass
class UnitResult:
    """The verdict on one unit: every check, every part."""

    job_id: str
    unit: int
    passed: bool
    parts: List[PartResult] = field(default_factory=list)
    checks: Dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def failures(self) -> List[str]:
        """Readable lines for the parts that failed."""
        out = []
        for p in self.parts:
            if not p.passed:
                out.append(f"{p.part}: {p.reason}")
        return out


def check_unit(job: JobSpec, unit: int, measured: Dict[str, Optional[Pose]], position_uncertainty: float,
               angle_uncertainty: float) -> UnitResult:
    """Judge one unit from measured part poses in the product frame (None: part not found).

    ``position_uncertainty`` and ``angle_uncertainty`` are the station's
    standard uncertainties; they are expanded with k = 2 and taken off the
    tolerance (a guard band), so that a pass is proven, not guessed.
    """
    u_pos = COVERAGE_FACTOR * position_uncertainty
    u_ang = COVERAGE_FACTOR * angle_uncertainty
    results: List[PartResult] = []
    for pl in job.assembly.placements:
        pose = measured.get(pl.part)
        tol = pl.tolerance
        if pose is None:
            results.append(PartResult(pl.part, False, None, None, tol.position, tol.angle, u_pos, u_ang, False,
                                      "not found"))
            continue
        perr = distance(pose.position, pl.pose.position)
        aerr = quat_angle(pose.quaternion, pl.pose.quaternion)
        ok_pos = perr + u_pos <= tol.position
        ok_ang = aerr + u_ang <= tol.angle
        reason = ""
        if not ok_pos:
            reason = (f"position off by {perr * 1000:.2f} mm (+{u_pos * 1000:.2f} mm uncertainty) "
                      f"> tolerance {tol.position * 1000:.2f} mm")
        if not ok_ang:
            reason = (reason + "; " if reason else "") + (
                f"angle off by {math.degrees(aerr):.2f} deg (+{math.degrees(u_ang):.2f} deg uncertainty) "
                f"> tolerance {math.degrees(tol.angle):.2f} deg")
        results.append(PartResult(pl.part, True, perr, aerr, tol.position, tol.angle, u_pos, u_ang,
                                  ok_pos and ok_ang, reason))
    by_part = {r.part: r for r in results}
    checks: Dict[str, bool] = {}
    for chk in job.quality:
        parts = chk.parts or [pl.part for pl in job.assembly.placements]
        if chk.kind == "presence":
            checks[chk.id] = all(by_part[p].present for p in parts)
        else:
            checks[chk.id] = all(by_part[p].passed for p in parts)
    passed = all(checks.values()) if checks else all(r.passed for r in results)
    return UnitResult(job_id=job.id, unit=unit, passed=passed, parts=results, checks=checks)
