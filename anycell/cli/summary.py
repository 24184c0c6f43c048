"""Short, human-readable summaries of a cell and a job (for `anycell validate` and logs)."""

from __future__ import annotations

from typing import Any, Dict, List

from anycell.cell import CellConfig
from anycell.job import JobSpec


def cell_summary(cell: CellConfig) -> Dict[str, Any]:
    """What the cell can do, as JSON-ready data."""
    return {
        "id": cell.cell.id,
        "name": cell.cell.name,
        "robots": [{"id": r.id, "model": r.model or r.urdf, "tool": r.tool.kind} for r in cell.robots],
        "machines": [{"id": m.id, "kind": m.kind, "capabilities": list(m.capabilities),
                      "driver": _driver_text(m.driver)} for m in cell.machines],
        "stations": [{"id": s.id, "kind": s.kind} for s in cell.stations],
        "capabilities": cell.capabilities,
        "part_types": cell.part_types,
        "max_speed_fraction": cell.safety.max_speed_fraction,
    }


def job_summary(job: JobSpec) -> Dict[str, Any]:
    """What the job asks for, as JSON-ready data."""
    return {
        "id": job.id,
        "product": job.product,
        "quantity": job.quantity,
        "parts": [{"id": p.id, "from": _source_text(p)} for p in job.parts],
        "processes": sorted({p.source.process for p in job.parts if p.source.process}),
        "quality_checks": [q.id for q in job.quality],
    }


def _driver_text(driver: Any) -> str:
    if driver.kind == "serial":
        return f"serial {driver.dialect} on {driver.port} @ {driver.baud}"
    if driver.kind == "opcua":
        return f"opcua {driver.endpoint} (security {driver.security.policy}/{driver.security.mode})"
    return f"simulated {driver.protocol}"


def _source_text(part: Any) -> str:
    src = part.source
    if src.feeder:
        return f"feeder part type '{src.feeder}'"
    text = f"process '{src.process}'"
    if src.stock:
        text += f" from stock '{src.stock}'"
    return text


def format_cell(cell: CellConfig) -> str:
    """A few lines a person reads in a terminal."""
    s = cell_summary(cell)
    lines: List[str] = [f"cell {s['id']}: {s['name']}" if s["name"] else f"cell {s['id']}"]
    for r in s["robots"]:
        lines.append(f"  robot    {r['id']}: {r['model']} with {r['tool']}")
    for m in s["machines"]:
        lines.append(f"  machine  {m['id']}: {m['kind']} [{', '.join(m['capabilities'])}] via {m['driver']}")
    for st in s["stations"]:
        lines.append(f"  station  {st['id']}: {st['kind']}")
    lines.append(f"  capabilities: {', '.join(s['capabilities']) or 'none'}")
    lines.append(f"  part types in feeders: {', '.join(s['part_types']) or 'none'}")
    lines.append(f"  speed limited to {s['max_speed_fraction']:.0%} of each joint's limits")
    return "\n".join(lines)


def format_job(job: JobSpec) -> str:
    """A few lines a person reads in a terminal."""
    s = job_summary(job)
    lines = [f"job {s['id']}: {s['quantity']} x {s['product']}"]
    for p in s["parts"]:
        lines.append(f"  part     {p['id']}: {p['from']}")
    if s["quality_checks"]:
        lines.append(f"  checks: {', '.join(s['quality_checks'])}")
    return "\n".join(lines)
