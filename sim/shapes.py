"""PyBullet shapes of parts: the real solid, never its bounding box.

Box and cylinder parts without features use PyBullet's primitives. A part with
holes, pockets or slots is the exact set of convex pieces from
:func:`anycell.shapes.convex_pieces`; a mesh part is decomposed into convex
hulls by PyBullet's V-HACD. Both are written as one OBJ file with one object
per convex piece, which PyBullet loads as a compound of convex hulls. The
files live in a cache directory keyed by the content hash of what they were
made from, so V-HACD (seconds) runs once per mesh, across processes and runs.

The simulator and the motion planner's collision world both build parts here,
so the planner avoids exactly what the simulated robot meets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, List, Sequence, Tuple, Union

from anycell.errors import ConfigError
from anycell.job import Geometry
from anycell.shapes import Piece, cache_dir, convex_pieces, load_mesh

log = logging.getLogger(__name__)

#: V-HACD settings: fine enough that a 1 mm clearance of a hole survives the decomposition.
VHACD_SETTINGS: Dict[str, Any] = {"resolution": 400000, "concavity": 0.0005, "maxNumVerticesPerCH": 64,
                                  "minVolumePerCH": 0.00001, "depth": 20, "planeDownsampling": 2,
                                  "convexhullDownsampling": 2}
_LOCK = threading.Lock()
_PIECES: Dict[str, List[Piece]] = {}

GeometryLike = Union[Geometry, Dict[str, Any], Sequence[float]]


def as_geometry(shape: GeometryLike) -> Geometry:
    """A Geometry from a Geometry, its plain-data form, or a bare box size [x, y, z]."""
    if isinstance(shape, Geometry):
        return shape
    if isinstance(shape, dict):
        return Geometry.from_dict(shape)
    return Geometry(box=[float(v) for v in shape])


def shape_to_json(shape: Any) -> Any:
    """A part's shape for the wire: a Geometry as plain data (mesh path absolute), a box size as a list."""
    to_dict = getattr(shape, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(shape, dict):   # already plain data (a call served from the wire, a restored world)
        return dict(shape)
    return [float(v) for v in shape]


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _quietly(call: Any) -> None:
    """Run ``call`` with the C-level stdout sent to stderr (V-HACD prints its progress; JSON output stays pure)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        call()
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _parse_hulls(text: str) -> List[Piece]:
    """The convex hulls of a V-HACD output OBJ (one object per hull)."""
    hulls: List[List[Tuple[float, float, float]]] = []
    current: List[Tuple[float, float, float]] = []
    for line in text.splitlines():
        if line.startswith("o ") or line.startswith("g "):
            if current:
                hulls.append(current)
            current = []
        elif line.startswith("v "):
            x, y, z = (float(v) for v in line.split()[1:4])
            current.append((x, y, z))
    if current:
        hulls.append(current)
    return [Piece("hull", points=tuple(h)) for h in hulls if len(h) >= 4]


def _clamp(pieces: List[Piece], size: Sequence[float]) -> List[Piece]:
    """Hulls clamped to the mesh's bounding box: V-HACD's hulls bulge a fraction of a millimetre past the
    surface, which would lift a part off its seat or push it into what it rests on."""
    half = [float(v) / 2 for v in size]
    out = []
    for piece in pieces:
        pts = tuple(tuple(max(-h, min(h, c)) for c, h in zip(pt, half)) for pt in piece.points)
        out.append(Piece("hull", points=pts))  # type: ignore[arg-type]
    return out


def mesh_pieces(geometry: Geometry) -> List[Piece]:
    """Convex hulls of a mesh part (part frame), by V-HACD, cached on disk by the mesh's content hash."""
    mesh = load_mesh(str(geometry.mesh), geometry.length_scale)
    key = hashlib.sha256((mesh.digest + json.dumps(VHACD_SETTINGS, sort_keys=True)).encode()).hexdigest()[:20]
    with _LOCK:
        if key in _PIECES:
            return _PIECES[key]
        out = os.path.join(cache_dir(), f"vhacd_{key}.obj")
        if not os.path.exists(out):
            import pybullet as p

            src = os.path.join(cache_dir(), f"mesh_{key}.obj")
            _write_atomic(src, mesh.to_obj())
            tmp_out = f"{out}.{os.getpid()}.obj"
            log_path = os.path.join(cache_dir(), f"vhacd_{key}.log")
            log.info("V-HACD: decomposing %s (once; cached in %s)", mesh.source, out)
            _quietly(lambda: p.vhacd(src, tmp_out, log_path, **VHACD_SETTINGS))
            if not os.path.exists(tmp_out):
                raise ConfigError(f"V-HACD could not decompose mesh '{mesh.source}'", field="geometry.mesh",
                                  hint="check that the mesh is a closed surface")
            os.replace(tmp_out, out)
        with open(out, "r", encoding="utf-8") as handle:
            pieces = _clamp(_parse_hulls(handle.read()), mesh.size)
        if not pieces:
            raise ConfigError(f"V-HACD found no solid in mesh '{mesh.source}'", field="geometry.mesh",
                              hint="check that the mesh is a closed surface")
        _PIECES[key] = pieces
        return pieces


def part_pieces(shape: GeometryLike) -> List[Piece]:
    """The convex pieces of any part (primitives exactly, meshes by V-HACD), in the part frame."""
    geometry = as_geometry(shape)
    if geometry.mesh is not None:
        return mesh_pieces(geometry)
    return convex_pieces(geometry)


def _prism_faces(n_points: int) -> List[Tuple[int, int, int]]:
    """Triangles of a hull piece made of a polygon at two heights (points 0..n-1 low, n..2n-1 high)."""
    n = n_points // 2
    faces = [(0, k + 1, k) for k in range(1, n - 1)] + [(n, n + k, n + k + 1) for k in range(1, n - 1)]
    for k in range(n):
        a, b = k, (k + 1) % n
        faces += [(a, b, n + b), (a, n + b, n + a)]
    return faces


def pieces_obj(pieces: Sequence[Piece]) -> str:
    """OBJ text with one object per convex piece (PyBullet: a compound of convex hulls)."""
    lines: List[str] = []
    base = 0
    for k, piece in enumerate(pieces):
        lines.append(f"o piece{k}")
        if piece.kind == "hull":
            pts = list(piece.points)
        else:
            (x0, y0, z0), (x1, y1, z1) = piece.bounds()
            pts = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0),
                   (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]
        lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in pts]
        # faces matter for pictures only (collision takes each object's convex hull)
        faces = _prism_faces(len(pts)) if len(pts) % 2 == 0 and len(pts) >= 6 else \
            [(0, i, i + 1) for i in range(1, len(pts) - 1)]
        lines += [f"f {base + a + 1} {base + b + 1} {base + c + 1}" for a, b, c in faces]
        base += len(pts)
    return "\n".join(lines) + "\n"


def _cached_file(prefix: str, text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    path = os.path.join(cache_dir(), f"{prefix}_{digest}.obj")
    if not os.path.exists(path):
        _write_atomic(path, text)
    return path


def collision_shape(client: int, shape: GeometryLike) -> int:
    """A PyBullet collision shape of the part's real solid (centred on its bounding box)."""
    import pybullet as p

    geometry = as_geometry(shape)
    pieces = part_pieces(geometry)
    if len(pieces) == 1 and pieces[0].kind == "box":
        return p.createCollisionShape(p.GEOM_BOX, halfExtents=list(pieces[0].half), physicsClientId=client)
    if len(pieces) == 1 and pieces[0].kind == "cylinder":
        return p.createCollisionShape(p.GEOM_CYLINDER, radius=pieces[0].radius, height=pieces[0].height,
                                      physicsClientId=client)
    path = _cached_file("pieces", pieces_obj(pieces))
    return p.createCollisionShape(p.GEOM_MESH, fileName=path, physicsClientId=client)


#: m: collision margin of convex-hull pieces. Bullet's default (about 1 mm) puffs a hull up, so a mesh
#: part would rest 1 mm high and a 0.3 mm clearance hole would close; primitives keep their own margin.
HULL_MARGIN = 0.0001


def tune_body(client: int, body: int, shape: GeometryLike) -> None:
    """Give a body made by :func:`collision_shape` the collision margin its shape needs."""
    import pybullet as p

    pieces = part_pieces(shape)
    if not (len(pieces) == 1 and pieces[0].kind in ("box", "cylinder")):
        p.changeDynamics(body, -1, collisionMargin=HULL_MARGIN, physicsClientId=client)


def visual_shape(client: int, shape: GeometryLike, color: Sequence[float]) -> int:
    """A PyBullet visual shape: the primitive, the pieces of a part with features, or the mesh itself."""
    import pybullet as p

    geometry = as_geometry(shape)
    rgba = list(color)
    if geometry.mesh is not None:
        mesh = load_mesh(str(geometry.mesh), geometry.length_scale)
        path = _cached_file("visual", mesh.to_obj())
        return p.createVisualShape(p.GEOM_MESH, fileName=path, rgbaColor=rgba, physicsClientId=client)
    pieces = convex_pieces(geometry)
    if len(pieces) == 1 and pieces[0].kind == "box":
        return p.createVisualShape(p.GEOM_BOX, halfExtents=list(pieces[0].half), rgbaColor=rgba,
                                   physicsClientId=client)
    if len(pieces) == 1 and pieces[0].kind == "cylinder":
        return p.createVisualShape(p.GEOM_CYLINDER, radius=pieces[0].radius, length=pieces[0].height,
                                   rgbaColor=rgba, physicsClientId=client)
    path = _cached_file("pieces", pieces_obj(pieces))
    return p.createVisualShape(p.GEOM_MESH, fileName=path, rgbaColor=rgba, physicsClientId=client)
