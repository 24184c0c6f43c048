"""Does a job's vocabulary resolve on a cell? The cheap checks, before any planning.

A job names part types and processes; a cell offers feeders and capabilities.
These checks say, with the job file's position, which name has no match on
this cell. Deeper feasibility (reach, tolerances a robot can hold) belongs to
the planners, which have the kinematics.
"""

from __future__ import annotations

import difflib
from typing import List

from .cell import CellConfig
from .documents import Document, PathKey, format_path
from .errors import InfeasibleError
from .job import JobSpec


def _error(job: JobSpec, path: PathKey, message: str, hint: str) -> InfeasibleError:
    doc = job.document or Document(data=None, file=job.source_file)
    return InfeasibleError(message, field=format_path(path), location=doc.location(path), hint=hint)


def _suggest(name: str, known: List[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"this cell's {what}: " + (", ".join(known) or "none")


def check_job_fits_cell(cell: CellConfig, job: JobSpec) -> None:
    """Raise :class:`InfeasibleError` for the first job reference the cell cannot satisfy."""
    part_types = cell.part_types
    capabilities = cell.capabilities
    for i, part in enumerate(job.parts):
        src = part.source
        path: PathKey = ("parts", i, "source")
        if src.feeder is not None and src.feeder not in part_types:
            raise _error(job, path + ("feeder",), f"part '{part.id}' needs part type '{src.feeder}', "
                         f"which no feeder of cell '{cell.cell.id}' holds",
                         _suggest(src.feeder, part_types, "part types"))
        if src.stock is not None and src.stock not in part_types:
            raise _error(job, path + ("stock",), f"part '{part.id}' needs stock '{src.stock}', "
                         f"which no feeder of cell '{cell.cell.id}' holds",
                         _suggest(src.stock, part_types, "part types"))
        if src.process is not None and src.process not in capabilities:
            raise _error(job, path + ("process",), f"part '{part.id}' needs process '{src.process}', "
                         f"which no machine of cell '{cell.cell.id}' offers",
                         _suggest(src.process, capabilities, "capabilities"))
    if not cell.stations_of("fixture"):
        raise _error(job, ("assembly",), f"cell '{cell.cell.id}' has no assembly fixture",
                     "add a station of kind 'fixture' to the cell config")
    if job.quality and not cell.stations_of("inspection"):
        raise _error(job, ("quality",), f"the job asks for quality checks but cell '{cell.cell.id}' "
                     "has no inspection station", "add a station of kind 'inspection', or drop the checks")
    if job.on_fail == "reject" and job.quality and not cell.stations_of("reject_tray"):
        raise _error(job, ("on_fail",), f"on_fail is 'reject' but cell '{cell.cell.id}' has no reject tray",
                     "add a station of kind 'reject_tray', or set on_fail: stop")
