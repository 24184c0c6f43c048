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
from .errors import ConfigError, UnresolvedReference
from .geometry import Pose
from .typed import Context, FileRef, convert_dataclass, spec

ID = r"[A-Za-z][A-Za-z0-9_\-]*"


@dataclass(frozen=True, kw_only=True)
class Cylinder:
    """A round part standing on its flat end: its axis is the part's z axis."""

    radius: float = spec("radius, meters", exclusive_minimum=0.0)
    height: float = spec("height along z, meters", exclusive_minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Feature:
    """A cut into the part's top face that another part goes into: a hole, a pocket or a slot.

    Features are declared on a box or cylinder; a mesh part carries its cuts in the mesh itself.
    """

    kind: Literal["hole", "pocket", "slot"] = spec("hole: round; pocket and slot: rectangular (a slot may run "
                                                   "through an edge)")
    at: List[float] = spec("centre of the opening on the top face [x, y] from the part's centre, meters",
                           default_factory=lambda: [0.0, 0.0], length=2)
    diameter: Optional[float] = spec("hole diameter, meters", default=None, exclusive_minimum=0.0)
    size: Optional[List[float]] = spec("pocket or slot opening [x, y], meters", default=None, length=2,
                                       exclusive_minimum=0.0)
    yaw: float = spec("turn of a pocket or slot about z, radians", default=0.0)
    depth: Optional[float] = spec("depth below the top face, meters (default: through the part)", default=None,
                                  exclusive_minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if self.kind == "hole" and (self.diameter is None or self.size is not None):
            raise ctx.error(path, "a hole needs 'diameter' (and no 'size')", "diameter: 0.0162")
        if self.kind != "hole" and (self.size is None or self.diameter is not None):
            raise ctx.error(path, f"a {self.kind} needs 'size' [x, y] (and no 'diameter')", "size: [0.03, 0.02]")


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """The part's shape: a box, a cylinder or a mesh file (OBJ/STL), with optional features on its top face.

    The part's frame is the centre of its bounding box (for a mesh: of the scaled mesh's bounding box).
    """

    box: Optional[List[float]] = spec("box size [x, y, z], meters", default=None, length=3, exclusive_minimum=0.0)
    cylinder: Optional[Cylinder] = spec("a cylinder standing on its end", default=None)
    mesh: Optional[FileRef] = spec("mesh file (OBJ/STL), relative to the job file", default=None)
    mesh_inline: Optional[str] = spec("the mesh file's text (OBJ or ASCII STL) instead of a file: how a job sent "
                                      "over the API carries its mesh", default=None)
    mesh_format: Literal["obj", "stl"] = spec("format of mesh_inline", default="obj")
    units: Literal["m", "cm", "mm", "in"] = spec("length unit the mesh file is written in", default="m")
    scale: float = spec("extra mesh scale factor (after units)", default=1.0, exclusive_minimum=0.0)
    bounding_box: Optional[List[float]] = spec("expected mesh bounding box [x, y, z], meters (optional: "
                                               "read from the file; checked when given)",
                                               default=None, length=3, exclusive_minimum=0.0)
    features: List[Feature] = spec("holes, pockets and slots cut into the top face (box and cylinder)",
                                   default_factory=list)

    def __post_init__(self) -> None:
        if self.mesh_inline is not None and self.mesh is None:
            from .shapes import store_mesh_text

            # a mesh sent as text is kept as a file (by its content hash), so every layer reads it alike
            object.__setattr__(self, "mesh", FileRef(store_mesh_text(self.mesh_inline, self.mesh_format)))

    def check(self, path: PathKey, ctx: Context) -> None:
        given = [k for k in ("box", "cylinder", "mesh_inline") if getattr(self, k) is not None]
        if self.mesh is not None and self.mesh_inline is None:
            given.append("mesh")
        if len(given) != 1:
            raise ctx.error(path, "give exactly one of 'box', 'cylinder', 'mesh' or 'mesh_inline'"
                            + (f" (found {', '.join(given)})" if given else ""), "box: [0.04, 0.04, 0.02]")
        if self.mesh is not None:
            from .shapes import load_mesh

            if self.features:
                raise ctx.error(path + ("features",), "a mesh part carries its holes and pockets in the mesh",
                                "remove 'features', or model the cut in the mesh file")
            try:
                mesh = load_mesh(self.mesh, self.length_scale)
            except ConfigError as exc:
                raise ctx.error(path + ("mesh",), exc.message, exc.hint) from None
            if self.bounding_box is not None and any(abs(a - b) > max(0.0005, 0.01 * b)
                                                     for a, b in zip(mesh.size, self.bounding_box)):
                raise ctx.error(path + ("bounding_box",),
                                f"the mesh measures {[round(v, 5) for v in mesh.size]} m, not {self.bounding_box}",
                                "check 'units' and 'scale', or drop 'bounding_box'")
        elif self.units != "m" or self.scale != 1.0:
            raise ctx.error(path, "'units' and 'scale' apply to mesh parts only", "remove them")
        if self.features:
            from .shapes import convex_pieces

            size = self.size
            for i, f in enumerate(self.features):
                if f.depth is not None and f.depth > size[2] + 1e-9:
                    raise ctx.error(path + ("features", i, "depth"),
                                    f"depth {f.depth} m is deeper than the part ({size[2]} m)",
                                    "leave depth out for a through cut")
                if abs(f.at[0]) > size[0] / 2 or abs(f.at[1]) > size[1] / 2:
                    raise ctx.error(path + ("features", i, "at"), f"feature centre {f.at} is off the top face",
                                    f"the face spans +-{size[0] / 2:g} x +-{size[1] / 2:g} m")
            try:
                convex_pieces(self)
            except ConfigError as exc:
                raise ctx.error(path + ("features",), exc.message, exc.hint) from None

    @property
    def length_scale(self) -> float:
        """Mesh file units to meters (units times scale)."""
        from .shapes import UNITS

        return UNITS[self.units] * float(self.scale)

    @property
    def size(self) -> List[float]:
        """The part's extent in its own frame (box size, cylinder diameter and height, or the mesh's bounds)."""
        if self.box is not None:
            return [float(v) for v in self.box]
        if self.cylinder is not None:
            d = 2 * float(self.cylinder.radius)
            return [d, d, float(self.cylinder.height)]
        from .shapes import load_mesh

        return list(load_mesh(str(self.mesh), self.length_scale).size)

    def to_dict(self) -> Dict[str, object]:
        """The geometry as plain data (mesh as an absolute path), e.g. to send to a simulator process."""
        out: Dict[str, object] = {}
        if self.box is not None:
            out["box"] = list(self.box)
        if self.cylinder is not None:
            out["cylinder"] = {"radius": self.cylinder.radius, "height": self.cylinder.height}
        if self.mesh_inline is not None:
            out.update(mesh_inline=self.mesh_inline, mesh_format=self.mesh_format, units=self.units, scale=self.scale)
        elif self.mesh is not None:
            out.update(mesh=str(self.mesh), units=self.units, scale=self.scale)
        if self.features:
            out["features"] = [{k: v for k, v in (("kind", f.kind), ("at", list(f.at)), ("diameter", f.diameter),
                                                  ("size", f.size), ("yaw", f.yaw), ("depth", f.depth))
                                if v is not None} for f in self.features]
        return out

    @staticmethod
    def from_dict(data: Dict[str, object]) -> "Geometry":
        """The inverse of :meth:`to_dict` (trusted data from this process or a sibling)."""
        cyl = data.get("cylinder")
        feats = [Feature(**f) for f in data.get("features", [])]  # type: ignore[arg-type, union-attr, attr-defined]
        return Geometry(box=data.get("box"), cylinder=Cylinder(**cyl) if cyl else None,  # type: ignore[arg-type]
                        mesh=FileRef(data["mesh"]) if data.get("mesh") else None,
                        mesh_inline=data.get("mesh_inline"),  # type: ignore[arg-type]
                        mesh_format=data.get("mesh_format", "obj"),  # type: ignore[arg-type]
                        units=data.get("units", "m"), scale=float(data.get("scale", 1.0)),  # type: ignore[arg-type]
                        features=feats)


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
class Insertion:
    """A straight insertion: the part moves along ``axis`` (product frame) for its last ``depth``."""

    axis: List[float] = spec("direction of the insertion move in the product frame (unit vector; straight down "
                             "is [0, 0, -1])", default_factory=lambda: [0.0, 0.0, -1.0], length=3)
    depth: float = spec("how far the part travels inside the receiving part, meters", default=0.01,
                        exclusive_minimum=0.0)
    speed: float = spec("fraction of the robot's speed for the insertion stroke", default=0.2,
                        exclusive_minimum=0.0, maximum=1.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        n = sum(v * v for v in self.axis) ** 0.5
        if abs(n - 1.0) > 1e-3:
            raise ctx.error(path + ("axis",), f"axis {self.axis} is not a unit vector (length {n:.3f})",
                            "straight down is [0, 0, -1]")
        if self.axis[2] > -0.7:
            raise ctx.error(path + ("axis",), f"axis {self.axis} is not a downward insertion",
                            "this cell inserts from above (within 45 degrees of [0, 0, -1])")


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a part goes in the product frame (the frame a cell puts on its assembly fixture)."""

    part: str = spec("the part placed", pattern=ID)
    pose: Pose = spec("target pose of the part's centre in the product frame")
    tolerance: Tolerance = spec("allowed deviation", default_factory=Tolerance)
    after: List[str] = spec("parts that must be placed before this one, beyond what geometry implies",
                            default_factory=list, pattern=ID)
    insert: bool = spec("placed by a straight insertion move (peg in hole) straight down, with the default depth",
                        default=False)
    insertion: Optional["Insertion"] = spec("placed by a straight insertion along an axis, to a depth",
                                            default=None)

    def insertion_move(self) -> Optional["Insertion"]:
        """The insertion of this placement (from ``insertion``, or ``insert: true`` as straight down), or None."""
        if self.insertion is not None:
            return self.insertion
        return Insertion() if self.insert else None


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
