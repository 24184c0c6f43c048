"""How a cell node builds a job it won: the :class:`Builder` interface and the plan-walking builder.

The network does not run robots itself: a cell node hands the won job to a
builder and turns what comes back (per unit: steps, programs, measurements,
snapshots) into signed records. Builders:

* :class:`PlanWalkBuilder` (here): follows the cell's own scheduled plan step by
  step in (scaled) time, the programs from the spec, and measurements drawn
  around the nominal poses with the inspection station's uncertainty. It is
  the fast runner the demo gives most cells: every job is still planned.
* the CLI plugs in the agent's executive with its dry-run runner, and the full
  simulated cell (``anycell sim``'s job runner) for a few demo cells;
* the ROS bridge submits the job to a real cell agent through its API.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Protocol

from anycell.cell import CellConfig
from anycell.errors import ExecutionError
from anycell.job import JobSpec
from anycell.plan import Plan

from .records import UnitBuild

log = logging.getLogger(__name__)

Progress = Callable[[Dict[str, Any]], None]


class Builder(Protocol):
    """Builds one job on the cell; returns one :class:`UnitBuild` per unit, or raises.

    ``cancel`` is set when the cell is shutting down or killed: the builder
    stops as soon as it can and raises :class:`~anycell.errors.ExecutionError`.
    """

    def build(self, job: JobSpec, plan: Plan, cancel: threading.Event, progress: Progress) -> List[UnitBuild]: ...


def inspection_uncertainty(cell: CellConfig) -> Dict[str, float]:
    """The standard uncertainty of the cell's inspection station (the first one), or the default."""
    for st in cell.stations_of("inspection"):
        return {"position": float(st.uncertainty.position), "angle": float(st.uncertainty.angle)}
    return {"position": 0.0002, "angle": 0.002}


def program_digests(job: JobSpec) -> List[Dict[str, Any]]:
    """Per machined or printed part: the program and the digest of its lines (what the firmware acknowledges)."""
    out = []
    for part in job.parts:
        src = part.source
        if getattr(src, "process", None) is None or src.program is None:
            continue
        text = src.program.text()
        if text is None:
            lines = [f"CALL {src.program.name}"]
        else:
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(";")]
        out.append({"part": part.id, "process": src.process, "program": src.program.name or "inline",
                    "lines": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()})
    return out


def nominal_measurements(job: JobSpec, unit: int, uncertainty: Dict[str, float], rng: random.Random,
                         offset: float = 0.0) -> List[Dict[str, Any]]:
    """Measured poses around each placement's nominal pose (noise of the station; ``offset`` m in x for a bad unit)."""
    out = []
    for pl in job.assembly.placements:
        xyz = [float(v) + rng.gauss(0.0, uncertainty["position"]) for v in pl.pose.xyz]
        xyz[0] += offset
        rpy = [float(v) + rng.gauss(0.0, uncertainty["angle"]) for v in pl.pose.rpy]
        out.append({"part": pl.part, "xyz": [round(v, 7) for v in xyz], "rpy": [round(v, 7) for v in rpy]})
    return out


class PlanWalkBuilder:
    """Walks the scheduled plan in scaled time and reports each unit as the plan says it was made.

    ``time_scale`` shrinks the plan's seconds (0.01: a 120 s job takes 1.2 s);
    ``defect`` (meters) shifts every measured part, for a cell whose units
    fail verification (a fault the demo and the tests inject).
    """

    def __init__(self, cell: CellConfig, *, time_scale: float = 0.01, defect: float = 0.0) -> None:
        self.cell = cell
        self.time_scale = time_scale
        self.defect = defect
        self.uncertainty = inspection_uncertainty(cell)

    def build(self, job: JobSpec, plan: Plan, cancel: threading.Event, progress: Progress) -> List[UnitBuild]:
        t0 = time.time()
        ops = {op.id: op for op in plan.operations}
        entries = sorted(plan.schedule.entries, key=lambda e: (e.end, e.op)) if plan.schedule else []
        steps: Dict[int, List[Dict[str, Any]]] = {}
        for i, e in enumerate(entries):
            if cancel.wait(max(0.0, t0 + e.end * self.time_scale - time.time())):
                raise ExecutionError(f"job '{job.id}' cancelled at step {e.op}", hint="the cell stopped")
            op = ops[e.op]
            steps.setdefault(op.unit, []).append({"op": op.id, "kind": op.kind, "resource": op.resource,
                                                  "start": round(t0 + e.start * self.time_scale, 4),
                                                  "end": round(t0 + e.end * self.time_scale, 4)})
            progress({"event": "step", "op": op.id, "done": i + 1, "total": len(entries)})
        programs = program_digests(job)
        units = []
        for unit in range(1, job.quantity + 1):
            rng = random.Random(int(hashlib.sha256(f"{job.id}/{unit}/{self.cell.cell.id}".encode())
                                    .hexdigest()[:8], 16))
            units.append(UnitBuild(unit=unit, measurements=nominal_measurements(job, unit, self.uncertainty, rng,
                                                                                self.defect),
                                   uncertainty=dict(self.uncertainty), steps=steps.get(unit, []),
                                   programs=programs, snapshots=[]))
        return units


def cancelled(cancel: Optional[threading.Event]) -> bool:
    return bool(cancel is not None and cancel.is_set())


def units_from_report(job: JobSpec, report: Dict[str, Any], uncertainty: Dict[str, float],
                      report_dir: Optional[str] = None) -> List[UnitBuild]:
    """Per-unit builds from a cell's job report (``anycell sim``'s runner, or a cell agent's ``report.json``).

    The report gives each part's measured deviation (position error, angle
    error) rather than its pose, so the measured pose is written as the
    nominal pose displaced by that deviation (along x, and about z): the
    verifier re-decides exactly the same errors against the spec's tolerances.
    Programs carry the lines the firmware acknowledged; snapshots their SHA-256.
    """
    import os

    placements = {pl.part: pl for pl in job.assembly.placements}
    steps: Dict[int, List[Dict[str, Any]]] = {}
    acked: Dict[str, int] = {}
    for s in report.get("steps", []):
        steps.setdefault(int(s.get("unit") or 0), []).append(
            {"op": s["op"], "kind": s["kind"], "resource": s["resource"], "start": s["start_s"], "end": s["end_s"]})
        if s["kind"] == "run_program":
            acked[s["op"]] = int((s.get("detail") or {}).get("lines_acknowledged", 0))
    programs = program_digests(job)
    for p in programs:
        p["acknowledged"] = sum(n for op, n in acked.items() if op.endswith(f".{p['part']}"))
    snapshots = []
    for name in report.get("snapshots", []):
        path = os.path.join(report_dir, name) if report_dir else None
        if path and os.path.isfile(path):
            with open(path, "rb") as handle:
                snapshots.append({"name": name, "sha256": hashlib.sha256(handle.read()).hexdigest()})
    out = []
    for u in report.get("units", []):
        parts = {p["part"]: p for p in ((u.get("result") or {}).get("parts") or [])}
        measurements = []
        for part_id, pl in placements.items():
            p = parts.get(part_id)  # type: ignore[assignment]
            if p is None or not p.get("present") or p.get("position_error") is None:
                measurements.append({"part": part_id, "found": False, "xyz": [0.0, 0.0, 0.0], "rpy": [0.0, 0.0, 0.0]})
                continue
            xyz = [float(v) for v in pl.pose.xyz]
            rpy = [float(v) for v in pl.pose.rpy]
            xyz[0] += float(p["position_error"])
            rpy[2] += float(p.get("angle_error") or 0.0)
            measurements.append({"part": part_id, "xyz": xyz, "rpy": rpy})
        unit = int(u["unit"])
        out.append(UnitBuild(unit=unit, measurements=measurements, uncertainty=dict(uncertainty),
                             steps=steps.get(unit, []), programs=programs, snapshots=snapshots))
    return out
