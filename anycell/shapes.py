"""Part shapes as solids: convex pieces, bounding boxes and free top-face areas.

A part's geometry (:class:`anycell.job.Geometry`) is a box, a cylinder or a
mesh, with optional features cut into its top face (holes, pockets, slots).
The planners and the simulator both need the *solid*, not its bounding box: a
peg goes into a hole only if the hole is there. This module turns a primitive
with features into an exact set of convex pieces (PyBullet and every physics
engine collide convex pieces well); meshes are read here (OBJ, STL ascii or
binary) for their size and faces, and decomposed by :mod:`anycell.sim.shapes`
with V-HACD, which needs PyBullet.

How a primitive with cavities is split: the solid is cut into horizontal
slabs at every cavity bottom. In a slab, each active cavity (a convex polygon)
owns the part of the outline nearest to it (a Voronoi cell of the cavity
centres, convex), and that cell is split into one wedge per cavity edge, cut
by the edge's line: every wedge piece is an intersection of half-planes, so it
is convex, and together they cover the cell minus the cavity exactly.

All coordinates are in the part frame: the origin at the centre of the part's
bounding box, z up, meters.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import ConfigError

Vec2 = Tuple[float, float]
Vec3 = Tuple[float, float, float]

#: Sides of the polygon that stands for a round outline or hole (an inscribed polygon for outlines,
#: a circumscribed one for holes, so the solid is never larger than the real part).
ROUND_SIDES = 24

#: Length units a mesh file may be written in, to meters.
UNITS: Dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}


@dataclass(frozen=True)
class Piece:
    """One convex piece of a solid, in the part frame.

    ``kind`` is ``box`` (``half`` extents about ``centre``), ``cylinder`` (``radius``
    and ``height`` about ``centre``, axis z) or ``hull`` (the convex hull of ``points``).
    """

    kind: str
    centre: Vec3 = (0.0, 0.0, 0.0)
    half: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 0.0
    height: float = 0.0
    points: Tuple[Vec3, ...] = ()

    def bounds(self) -> Tuple[Vec3, Vec3]:
        """Axis-aligned (min, max) of the piece in the part frame."""
        if self.kind == "hull":
            xs, ys, zs = zip(*self.points)
            return (min(xs), min(ys), min(zs)), (max(xs), max(ys), max(zs))
        if self.kind == "cylinder":
            h = (self.radius, self.radius, self.height / 2)
        else:
            h = self.half
        c = self.centre
        return (c[0] - h[0], c[1] - h[1], c[2] - h[2]), (c[0] + h[0], c[1] + h[1], c[2] + h[2])


@dataclass
class Mesh:
    """A triangle mesh in meters, recentred on its bounding-box centre."""

    vertices: List[Vec3]
    faces: List[Tuple[int, int, int]]
    size: Vec3
    offset: Vec3 = (0.0, 0.0, 0.0)      # what was subtracted from the file's coordinates (after scaling)
    source: str = ""
    digest: str = ""
    extra: Dict[str, str] = field(default_factory=dict)

    def to_obj(self) -> str:
        """The mesh as OBJ text (what V-HACD reads)."""
        lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in self.vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in self.faces]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- meshes
def cache_dir() -> str:
    """Where derived shape files are kept: ``$ANYCELL_CACHE`` or ``$XDG_CACHE_HOME/anycell`` (``~/.cache``)."""
    import tempfile

    root = os.environ.get("ANYCELL_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "anycell")
    path = os.path.join(root, "shapes")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        path = os.path.join(tempfile.gettempdir(), "anycell_shapes")
        os.makedirs(path, exist_ok=True)
    return path


def store_mesh_text(text: str, fmt: str) -> str:
    """Keep a mesh sent as text (a job over the API carries no files) as a file named by its content hash."""
    import hashlib

    if fmt not in ("obj", "stl"):
        raise ConfigError(f"unknown mesh format '{fmt}'", field="geometry.mesh_format", hint="obj or stl")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    path = os.path.join(cache_dir(), f"inline_{digest}.{fmt}")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    return path


_MESHES: Dict[Tuple[str, float, float], Mesh] = {}


def load_mesh(path: str, scale: float = 1.0) -> Mesh:
    """Read an OBJ or STL (ascii or binary) file, scale it to meters and centre it on its bounding box.

    Raises :class:`ConfigError` with the file named when it cannot be read or has no triangles.
    """
    import hashlib

    try:
        mtime = os.path.getmtime(path)
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"mesh file '{path}' cannot be read: {exc.strerror}", field="geometry.mesh",
                          hint="paths are relative to the job file") from None
    key = (os.path.abspath(path), mtime, float(scale))
    if key in _MESHES:
        return _MESHES[key]
    lower = path.lower()
    if lower.endswith(".obj"):
        verts, faces = _parse_obj(data.decode("utf-8", "replace"))
    elif lower.endswith(".stl"):
        verts, faces = _parse_stl(data)
    else:
        raise ConfigError(f"mesh file '{path}' is neither OBJ nor STL", field="geometry.mesh",
                          hint="export the part as .obj or .stl")
    if not faces:
        raise ConfigError(f"mesh file '{path}' has no triangles", field="geometry.mesh",
                          hint="check the export: the file must hold the part's surface")
    verts = [(x * scale, y * scale, z * scale) for x, y, z in verts]
    lo = [min(v[i] for v in verts) for i in range(3)]
    hi = [max(v[i] for v in verts) for i in range(3)]
    off = tuple((lo[i] + hi[i]) / 2 for i in range(3))
    size = tuple(hi[i] - lo[i] for i in range(3))
    if min(size) <= 0:
        raise ConfigError(f"mesh file '{path}' is flat (size {[round(s, 6) for s in size]} m)",
                          field="geometry.mesh", hint="a part needs a volume")
    centred = [(x - off[0], y - off[1], z - off[2]) for x, y, z in verts]
    digest = hashlib.sha256(data + struct.pack("<d", float(scale))).hexdigest()
    mesh = Mesh(centred, faces, size, off, source=os.path.abspath(path), digest=digest)  # type: ignore[arg-type]
    _MESHES[key] = mesh
    return mesh


def _parse_obj(text: str) -> Tuple[List[Vec3], List[Tuple[int, int, int]]]:
    verts: List[Vec3] = []
    faces: List[Tuple[int, int, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v" and len(parts) >= 4:
            verts.append((float(parts[1]), float(parts[2]), float(parts[3])))
        elif parts[0] == "f" and len(parts) >= 4:
            idx = []
            for tok in parts[1:]:
                i = int(tok.split("/")[0])
                idx.append(i - 1 if i > 0 else len(verts) + i)
            for k in range(1, len(idx) - 1):   # fan-triangulate polygons
                faces.append((idx[0], idx[k], idx[k + 1]))
    return verts, faces


def _parse_stl(data: bytes) -> Tuple[List[Vec3], List[Tuple[int, int, int]]]:
    verts: List[Vec3] = []
    faces: List[Tuple[int, int, int]] = []
    if data[:5].lower() == b"solid" and b"facet" in data[:1024]:
        tri: List[Vec3] = []
        for line in data.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "vertex":
                tri.append((float(parts[1]), float(parts[2]), float(parts[3])))
                if len(tri) == 3:
                    base = len(verts)
                    verts.extend(tri)
                    faces.append((base, base + 1, base + 2))
                    tri = []
        return verts, faces
    if len(data) < 84:
        return verts, faces
    (count,) = struct.unpack("<I", data[80:84])
    for k in range(count):
        off = 84 + 50 * k
        if off + 50 > len(data):
            break
        vals = struct.unpack("<12f", data[off:off + 48])
        base = len(verts)
        verts.extend([tuple(vals[3:6]), tuple(vals[6:9]), tuple(vals[9:12])])  # type: ignore[list-item]
        faces.append((base, base + 1, base + 2))
    return verts, faces


# ---------------------------------------------------------------------- 2-D polygons
def rect(cx: float, cy: float, sx: float, sy: float, yaw: float = 0.0) -> List[Vec2]:
    """A rectangle (counter-clockwise) of size sx x sy centred at (cx, cy), turned by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = []
    for dx, dy in ((-sx / 2, -sy / 2), (sx / 2, -sy / 2), (sx / 2, sy / 2), (-sx / 2, sy / 2)):
        out.append((cx + c * dx - s * dy, cy + s * dx + c * dy))
    return out


def circle(cx: float, cy: float, r: float, *, outside: bool) -> List[Vec2]:
    """A regular polygon for a circle: circumscribed (``outside``, for holes) or inscribed (outlines)."""
    rr = r / math.cos(math.pi / ROUND_SIDES) if outside else r
    return [(cx + rr * math.cos(2 * math.pi * (k + 0.5) / ROUND_SIDES),
             cy + rr * math.sin(2 * math.pi * (k + 0.5) / ROUND_SIDES)) for k in range(ROUND_SIDES)]


def clip(poly: List[Vec2], a: float, b: float, c: float) -> List[Vec2]:
    """The part of convex ``poly`` where ``a*x + b*y <= c`` (Sutherland-Hodgman, one half-plane)."""
    out: List[Vec2] = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        fp, fq = a * p[0] + b * p[1] - c, a * q[0] + b * q[1] - c
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def polygon_area(poly: Sequence[Vec2]) -> float:
    return 0.5 * abs(sum(poly[i][0] * poly[(i + 1) % len(poly)][1] - poly[(i + 1) % len(poly)][0] * poly[i][1]
                         for i in range(len(poly))))


def centroid(poly: Sequence[Vec2]) -> Vec2:
    return (sum(p[0] for p in poly) / len(poly), sum(p[1] for p in poly) / len(poly))


def inside(poly: Sequence[Vec2], pt: Sequence[float], margin: float = 0.0) -> bool:
    """True when ``pt`` is inside convex counter-clockwise ``poly`` by at least ``margin``."""
    n = len(poly)
    for i in range(n):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        length = math.hypot(ex, ey) or 1.0
        if (ex * (pt[1] - y0) - ey * (pt[0] - x0)) / length < margin:
            return False
    return True


def _ccw(poly: List[Vec2]) -> List[Vec2]:
    s = sum(poly[i][0] * poly[(i + 1) % len(poly)][1] - poly[(i + 1) % len(poly)][0] * poly[i][1]
            for i in range(len(poly)))
    return poly if s >= 0 else list(reversed(poly))


# ---------------------------------------------------------------------- solids
@dataclass(frozen=True)
class Cavity:
    """A cut into the top face: a convex polygon (part frame x/y) going ``depth`` down from the top."""

    kind: str
    polygon: Tuple[Vec2, ...]
    depth: float

    @property
    def centre(self) -> Vec2:
        return centroid(self.polygon)


def outline(geometry) -> List[Vec2]:  # noqa: ANN001 - anycell.job.Geometry (no import cycle)
    """The part's footprint as a convex polygon (box: its rectangle, cylinder: an inscribed polygon)."""
    if geometry.cylinder is not None:
        return circle(0.0, 0.0, geometry.cylinder.radius, outside=False)
    sx, sy, _sz = geometry.size
    return rect(0.0, 0.0, sx, sy)


def footprint(geometry) -> List[Vec2]:  # noqa: ANN001 - anycell.job.Geometry (no import cycle)
    """All the part covers seen from above, as a convex polygon (counter-clockwise, part frame): a box's
    rectangle, a circumscribed polygon for a cylinder, the convex hull of a mesh's vertices. Never smaller
    than the part, for clearances between parts."""
    if geometry.mesh is not None:
        mesh = load_mesh(str(geometry.mesh), geometry.length_scale)
        return convex_hull_2d([(v[0], v[1]) for v in mesh.vertices])
    if geometry.cylinder is not None:
        return circle(0.0, 0.0, geometry.cylinder.radius, outside=True)
    sx, sy, _sz = geometry.size
    return rect(0.0, 0.0, sx, sy)


def convex_hull_2d(points: Sequence[Vec2]) -> List[Vec2]:
    """The convex hull of ``points``, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(set((float(x), float(y)) for x, y in points))
    if len(pts) < 3:
        return list(pts)

    def cross(o: Vec2, a: Vec2, b: Vec2) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: List[Vec2] = []
    upper: List[Vec2] = []
    for pt in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], pt) <= 0:
            lower.pop()
        lower.append(pt)
    for pt in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], pt) <= 0:
            upper.pop()
        upper.append(pt)
    return lower[:-1] + upper[:-1]


def polygon_gap(a: Sequence[Vec2], b: Sequence[Vec2]) -> float:
    """The distance between two convex polygons (0 when they touch or overlap)."""
    def edges(poly: Sequence[Vec2]) -> List[Tuple[Vec2, Vec2]]:
        return [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]

    def crosses(p: Tuple[Vec2, Vec2], q: Tuple[Vec2, Vec2]) -> bool:
        def side(o: Vec2, a_: Vec2, b_: Vec2) -> float:
            return (a_[0] - o[0]) * (b_[1] - o[1]) - (a_[1] - o[1]) * (b_[0] - o[0])

        d1, d2 = side(q[0], q[1], p[0]), side(q[0], q[1], p[1])
        d3, d4 = side(p[0], p[1], q[0]), side(p[0], p[1], q[1])
        if d1 == d2 == 0.0:   # on one line: they cross only where their extents overlap
            return all(min(p[0][k], p[1][k]) <= max(q[0][k], q[1][k]) and
                       min(q[0][k], q[1][k]) <= max(p[0][k], p[1][k]) for k in (0, 1))
        return d1 * d2 <= 0 and d3 * d4 <= 0

    def to_segment(c: Vec2, seg: Tuple[Vec2, Vec2]) -> float:
        (x0, y0), (x1, y1) = seg
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        t = 0.0 if ll == 0 else max(0.0, min(1.0, ((c[0] - x0) * dx + (c[1] - y0) * dy) / ll))
        return math.hypot(x0 + t * dx - c[0], y0 + t * dy - c[1])

    a, b = _ccw(list(a)), _ccw(list(b))
    if inside(a, b[0]) or inside(b, a[0]) or any(crosses(p, q) for p in edges(a) for q in edges(b)):
        return 0.0
    return min(min(to_segment(v, e) for v in a for e in edges(b)), min(to_segment(v, e) for v in b for e in edges(a)))


def cavities(geometry) -> List[Cavity]:  # noqa: ANN001
    """The declared features as cavities in the part frame."""
    height = geometry.size[2]
    out: List[Cavity] = []
    for f in geometry.features:
        depth = min(float(f.depth) if f.depth is not None else height, height)
        if f.kind == "hole":
            poly = circle(f.at[0], f.at[1], f.diameter / 2, outside=True)
        else:
            poly = rect(f.at[0], f.at[1], f.size[0], f.size[1], f.yaw)
        out.append(Cavity(f.kind, tuple(_ccw(poly)), depth))
    return out


def convex_pieces(geometry) -> List[Piece]:  # noqa: ANN001
    """The solid of a box or cylinder part (with its features) as convex pieces, exactly.

    Mesh parts are decomposed by :func:`anycell.sim.shapes.mesh_pieces` (V-HACD), not here.
    """
    if geometry.mesh is not None:
        raise ConfigError("mesh parts are decomposed by the simulator (anycell.sim.shapes)")
    sx, sy, sz = geometry.size
    cuts = cavities(geometry)
    if not cuts:
        if geometry.cylinder is not None:
            return [Piece("cylinder", radius=geometry.cylinder.radius, height=sz)]
        return [Piece("box", half=(sx / 2, sy / 2, sz / 2))]
    top = sz / 2
    levels = sorted({top - c.depth for c in cuts} | {-sz / 2})
    levels = [z for z in levels if z >= -sz / 2 - 1e-12] + [top]
    base = outline(geometry)
    pieces: List[Piece] = []
    for z0, z1 in zip(levels[:-1], levels[1:]):
        if z1 - z0 < 1e-7:
            continue
        active = [c for c in cuts if top - c.depth < z1 - 1e-9]
        for poly in _slab_regions(base, active):
            if polygon_area(poly) < 1e-10:
                continue
            pts = tuple([(x, y, z0) for x, y in poly] + [(x, y, z1) for x, y in poly])
            pieces.append(Piece("hull", points=pts))
    return pieces


def _slab_regions(base: List[Vec2], active: List[Cavity]) -> List[List[Vec2]]:
    """Convex polygons covering ``base`` minus the ``active`` cavities."""
    if not active:
        return [base]
    out: List[List[Vec2]] = []
    centres = [c.centre for c in active]
    for k, cav in enumerate(active):
        cell = list(base)
        ck = centres[k]
        for j, cj in enumerate(centres):
            if j == k:
                continue
            # the half-plane nearer to ck than to cj (a Voronoi cell of the cavity centres)
            a, b = cj[0] - ck[0], cj[1] - ck[1]
            c = (cj[0] ** 2 + cj[1] ** 2 - ck[0] ** 2 - ck[1] ** 2) / 2
            cell = clip(cell, a, b, c)
            for v in cav.polygon:
                if a * v[0] + b * v[1] > c + 1e-9 and inside(base, v):
                    raise ConfigError(f"features at {[round(x, 4) for x in ck]} and "
                                      f"{[round(x, 4) for x in cj]} overlap or are too close",
                                      field="geometry.features",
                                      hint="move the features apart, or model the part as a mesh")
        if len(cell) < 3:
            continue
        poly = list(cav.polygon)
        n = len(poly)
        for i in range(n):
            p, q = poly[i], poly[(i + 1) % n]
            u = (p[0] - ck[0], p[1] - ck[1])
            v = (q[0] - ck[0], q[1] - ck[1])
            e = (q[0] - p[0], q[1] - p[1])
            piece = clip(list(cell), u[1], -u[0], u[1] * ck[0] - u[0] * ck[1])      # ccw of the ray to p
            piece = clip(piece, -v[1], v[0], -v[1] * ck[0] + v[0] * ck[1])         # cw of the ray to q
            piece = clip(piece, -e[1], e[0], -e[1] * p[0] + e[0] * p[1])           # beyond the edge p-q
            if len(piece) >= 3 and polygon_area(piece) > 1e-12:
                out.append(piece)
    return out


# ---------------------------------------------------------------------- top faces
def top_height(geometry) -> float:  # noqa: ANN001
    """The z of the part's top face in the part frame (half its height)."""
    return float(geometry.size[2]) / 2


def up_faces(geometry) -> List[Tuple[float, List[List[Vec2]]]]:  # noqa: ANN001
    """The flat faces looking up, highest first: (height in the part frame, convex polygons in x/y).

    A box or cylinder has its top face (features are holes in it). A mesh has every horizontal
    upward face, grouped by height (the tops of a bracket's walls, the floor between them).
    """
    if geometry.mesh is None:
        return [(float(geometry.size[2]) / 2, [outline(geometry)])]
    mesh = load_mesh(geometry.mesh, geometry.length_scale)
    levels: Dict[float, List[List[Vec2]]] = {}
    for a, b, c in mesh.faces:
        va, vb, vc = mesh.vertices[a], mesh.vertices[b], mesh.vertices[c]
        ux, uy, uz = vb[0] - va[0], vb[1] - va[1], vb[2] - va[2]
        wx, wy, wz = vc[0] - va[0], vc[1] - va[1], vc[2] - va[2]
        nx, ny, nz = uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx
        norm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if norm <= 0 or nz / norm < 0.999:
            continue
        tri = _ccw([(va[0], va[1]), (vb[0], vb[1]), (vc[0], vc[1])])
        if polygon_area(tri) > 1e-12:
            levels.setdefault(round((va[2] + vb[2] + vc[2]) / 3, 5), []).append(tri)
    return sorted(levels.items(), key=lambda kv: -kv[0])


def disc_fits(solid: Sequence[Sequence[Vec2]], blocked: Sequence[Sequence[Vec2]], centre: Vec2, r: float) -> bool:
    """True when a disc of radius ``r`` at ``centre`` lies on ``solid`` and off every ``blocked`` polygon."""
    samples = [centre] + [(centre[0] + r * math.cos(2 * math.pi * k / 16), centre[1] + r * math.sin(2 * math.pi * k / 16))
                          for k in range(16)]
    samples += [(centre[0] + 0.5 * r * math.cos(2 * math.pi * k / 8), centre[1] + 0.5 * r * math.sin(2 * math.pi * k / 8))
                for k in range(8)]
    for s in samples:
        if not any(inside(poly, s, -1e-9) for poly in solid):
            return False
    for poly in blocked:
        if any(inside(poly, s, 1e-9) for s in samples):
            return False
        if any(math.hypot(v[0] - centre[0], v[1] - centre[1]) < r for v in poly):
            return False
        if segment_near(poly, centre, r):
            return False
    return True


def segment_near(poly: Sequence[Vec2], c: Vec2, r: float) -> bool:
    n = len(poly)
    for i in range(n):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        t = 0.0 if ll == 0 else max(0.0, min(1.0, ((c[0] - x0) * dx + (c[1] - y0) * dy) / ll))
        if math.hypot(x0 + t * dx - c[0], y0 + t * dy - c[1]) < r - 1e-9:
            return True
    return False


def free_spots(solid: Sequence[Sequence[Vec2]], holes: Sequence[Sequence[Vec2]], r: float,
               blocked: Sequence[Sequence[Vec2]] = (), body: Optional[float] = None,
               step: Optional[float] = None) -> List[Vec2]:
    """Centres where a cup fits: its seal (radius ``r``) on ``solid`` and off the ``holes`` in it, its body
    (radius ``body``, default ``r``) clear of the ``blocked`` areas (parts standing there, higher faces).
    Nearest the middle of the face first.

    A grid search over the face's bounds: every free area is tried, not only the centre.
    """
    pts = [v for poly in solid for v in poly]
    if not pts:
        return []
    body = r if body is None else max(r, body)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    mid = ((x0 + x1) / 2, (y0 + y1) / 2)
    step = step or max(0.001, min(r / 2, max(x1 - x0, y1 - y0) / 40))
    out: List[Vec2] = []
    nx, ny = int((x1 - x0) / step) + 1, int((y1 - y0) / step) + 1
    for i in range(nx + 1):
        for j in range(ny + 1):
            c = (x0 + i * step, y0 + j * step)
            if disc_fits(solid, holes, c, r) and (not blocked or disc_fits([_square(c, body)], blocked, c, body)):
                out.append(c)
    out.sort(key=lambda c: (round(math.hypot(c[0] - mid[0], c[1] - mid[1]), 6), c))
    return out


def _square(c: Vec2, r: float) -> List[Vec2]:
    return rect(c[0], c[1], 2 * r + 1e-6, 2 * r + 1e-6)
