"""The job spec: what to make, in a form that means the same thing to every cell.

A job never names a cell's stations or machines. It names *part types* (which
a cell's feeders hold), *processes* (which a cell's machines offer as
capabilities) and poses in the *product frame* (which a cell puts on its
assembly fixture). That is what makes a spec portable: any cell with the
capabilities can make it, and its output can be checked against the spec.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional

from .documents import Document, PathKey, load_file
from .errors import UnresolvedReference
from .geometry import Pose
from .typed import Context, FileRef, convert_dataclass, spec

ID = r"[A-Za-z][A-Za-z0-9_\-]*"


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """The part's shape: a box with dimensions, or a mesh file."""

    box: Optional[List[float]] = spec("box size [x, y, z], meters", default=None, length=3, exclusive_minimum=0.0)
    mesh: Optional[FileRef] = spec("mesh file (OBJ/STL), relative to the job file", default=None)
    scale: float = spec("mesh scale to meters", default=1.0, exclusive_minimum=0.0)
    bounding_box: Optional[List[float]] = spec("mesh bounding box [x, y, z], meters (needed with mesh)",
                                               default=None, length=3, exclusive_minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if (self.box is None) == (self.mesh is None):
            raise ctx.error(path, "give exactly one of 'box' or 'mesh'", "box: [0.04, 0.04, 0.02]")
        if self.mesh is not None and self.bounding_box is None:
            raise ctx.error(path, "a mesh part needs 'bounding_box'",
                            "the planner grasps and stacks by the bounding box")

    @property
    def size(self) -> List[float]:
        """The part's extent in its own frame (box size, or the mesh bounding box)."""
        return list(self.box if self.box is not None else self.bounding_box)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class Program:
    """A machine program: a file, inline text, or the name of a program stored on the machine."""

    file: Optional[FileRef] = spec("program file (G-code), relative to the job file", default=None)
    inline: Optional[str] = spec("program text (G-code lines)", default=None)
    name: Optional[str] = spec("name of a program stored on the machine (OPC UA machines)", default=None)

    def check(self, path: PathKey, ctx: Context) -> None:
        given = [k for k in ("file", "inline", "name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ctx.error(path, "give exactly one of 'file', 'inline' or 'name'"
                            + (f" (found {', '.join(given)})" if given else ""),
                            "file: prints/cap.gcode, or name: POCKET_01")

    def text(self) -> Optional[str]:
        """The program's G-code text, or None for a named program stored on the machine."""
        if self.inline is not None:
            return self.inline
        if self.file is not None:
            with open(self.file, "r", encoding="utf-8") as handle:
                return handle.read()
        return None


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a part comes from: a feeder (by part type) or a process on a machine."""

    feeder: Optional[str] = spec("part type held by a feeder", default=None, pattern=ID)
    process: Optional[str] = spec("capability that makes the part (print, mill, engrave, ...)", default=None,
                                  pattern=ID)
    program: Optional[Program] = spec("the machine program for the process", default=None)
    parameters: Dict[str, float] = spec(
        "numeric program parameters, substituted as typed numbers (never as text)", default_factory=dict)
    stock: Optional[str] = spec("part type of the raw stock fetched from a feeder first (mill, engrave)",
                                default=None, pattern=ID)
    material: Optional[str] = spec("material, for costing (pla, aluminium, ...)", default=None)
    duration: Optional[float] = spec("expected program duration, seconds (else the machine's default)",
                                     default=None, exclusive_minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if (self.feeder is None) == (self.process is None):
            raise ctx.error(path, "give exactly one of 'feeder' or 'process'",
                            "feeder: peg  (from a feeder), or process: print with a program")
        if self.process is not None and self.program is None:
            raise ctx.error(path, f"process '{self.process}' needs a 'program'",
                            "program: {file: part.gcode} or program: {name: PROGRAM_01}")
        if self.feeder is not None and (self.program is not None or self.parameters or self.stock):
            raise ctx.error(path, "a feeder part has no program, parameters or stock",
                            "remove them, or make the part by a process")


@dataclass(frozen=True, kw_only=True)
class Part:
    """One part of the product: its shape, mass and where it comes from."""

    id: str = spec("part id, unique in the job", pattern=ID)
    geometry: Geometry = spec("shape")
    mass: float = spec("kilograms", exclusive_minimum=0.0)
    source: Source = spec("feeder or process")
    color: Optional[List[float]] = spec("RGBA for pictures, 0..1", default=None, length=4, minimum=0.0,
                                        maximum=1.0)


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """How far a placed part may be from its target."""

    position: float = spec("maximum position error, meters", default=0.002, exclusive_minimum=0.0)
    angle: float = spec("maximum orientation error, radians", default=0.05, exclusive_minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a part goes in the product frame (the frame a cell puts on its assembly fixture)."""

    part: str = spec("the part placed", pattern=ID)
    pose: Pose = spec("target pose of the part's centre in the product frame")
    tolerance: Tolerance = spec("allowed deviation", default_factory=Tolerance)
    after: List[str] = spec("parts that must be placed before this one, beyond what geometry implies",
                            default_factory=list, pattern=ID)
    insert: bool = spec("placed by a straight insertion move (peg in hole)", default=False)


@dataclass(frozen=True, kw_only=True)
class Assembly:
    """How the parts go together."""

    placements: List[Placement] = spec("one per part of the product", min_items=1)


@dataclass(frozen=True, kw_only=True)
class QualityCheck:
    """A measurement made on each finished unit."""

    id: str = spec("check id", pattern=ID)
    kind: Literal["placement", "presence"] = spec(
        "placement: every listed part within its tolerance; presence: every listed part present")
    parts: List[str] = spec("parts checked (default: all)", default_factory=list, pattern=ID)


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What to make: the product, its parts, how they go together, checks and quantity."""

    id: str = spec("job id", pattern=ID)
    product: str = spec("product name")
    quantity: int = spec("how many units", default=1, minimum=1, maximum=10000)
    parts: List[Part] = spec("the parts of one unit", min_items=1)
    assembly: Assembly = spec("how the parts go together")
    quality: List[QualityCheck] = spec("checks on each unit", default_factory=list)
    on_fail: Literal["reject", "stop"] = spec(
        "what to do with a unit that fails a check: put it in the reject tray, or stop the cell",
        default="reject")
    priority: int = spec("higher runs first", default=0, minimum=-100, maximum=100)
    due: Optional[str] = spec("due time, ISO 8601 (2026-12-01T12:00:00Z)", default=None)
    spec_version: int = spec("version of this format", default=1, minimum=1, maximum=1)
    source_file: Optional[str] = field(default=None, compare=False, repr=False, init=False)
    document: Optional[Document] = field(default=None, compare=False, repr=False, init=False)

    def check(self, path: PathKey, ctx: Context) -> None:
        ids: Dict[str, int] = {}
        for i, part in enumerate(self.parts):
            if part.id in ids:
                raise ctx.error(path + ("parts", i, "id"), f"duplicate part id '{part.id}'",
                                "part ids must be unique", cls=UnresolvedReference)
            ids[part.id] = i
        placed: Dict[str, int] = {}
        for i, pl in enumerate(self.assembly.placements):
            here = path + ("assembly", "placements", i)
            _must_be_part(ctx, here + ("part",), pl.part, ids)
            if pl.part in placed:
                raise ctx.error(here + ("part",), f"part '{pl.part}' is placed twice",
                                "each part has one placement; use quantity for more units")
            placed[pl.part] = i
            for j, dep in enumerate(pl.after):
                _must_be_part(ctx, here + ("after", j), dep, ids)
                if dep == pl.part:
                    raise ctx.error(here + ("after", j), f"part '{dep}' cannot come after itself")
        for part_id, i in ids.items():
            if part_id not in placed:
                raise ctx.error(path + ("parts", i), f"part '{part_id}' has no placement in the assembly",
                                "add it to assembly.placements, or remove the part")
        for i, chk in enumerate(self.quality):
            for j, part_id in enumerate(chk.parts):
                _must_be_part(ctx, path + ("quality", i, "parts", j), part_id, ids)
        if self.due is not None:
            try:
                _dt.datetime.fromisoformat(self.due.replace("Z", "+00:00"))
            except ValueError:
                raise ctx.error(path + ("due",), f"'{self.due}' is not an ISO 8601 time",
                                "write it like 2026-12-01T12:00:00Z") from None

    def part(self, part_id: str) -> Part:
        for part in self.parts:
            if part.id == part_id:
                return part
        raise UnresolvedReference(f"no part '{part_id}' in job '{self.id}'")

    def placement(self, part_id: str) -> Placement:
        for pl in self.assembly.placements:
            if pl.part == part_id:
                return pl
        raise UnresolvedReference(f"part '{part_id}' has no placement in job '{self.id}'")


def _must_be_part(ctx: Context, path: PathKey, ref: str, ids: Dict[str, int]) -> None:
    if ref not in ids:
        import difflib

        close = difflib.get_close_matches(ref, list(ids), n=1)
        raise ctx.error(path, f"no part '{ref}' in this job",
                        f"did you mean '{close[0]}'?" if close else "known parts: " + ", ".join(ids),
                        cls=UnresolvedReference)


def job_from_document(doc: Document, base_dir: Optional[str] = None) -> JobSpec:
    """Validate a parsed document as a job spec; ``base_dir`` resolves file references for API jobs."""
    job = convert_dataclass(JobSpec, doc.data, (), Context(doc, base_dir))
    object.__setattr__(job, "source_file", doc.file)
    object.__setattr__(job, "document", doc)
    return job


def load_job(path: str) -> JobSpec:
    """Load and validate a job spec file (YAML or JSON)."""
    return job_from_document(load_file(path))
