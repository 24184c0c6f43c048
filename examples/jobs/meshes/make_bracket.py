"""Write bracket.obj: a U-channel bracket (millimetres), the mesh part of examples/jobs/bracket_clip.yaml.

The bracket is the U outline below, extruded along y. It is concave: a clip sits in its channel,
which its bounding box would fill. Run ``python make_bracket.py`` to write the file again.
"""

from __future__ import annotations

import os

#: The U outline in the x/z plane (mm), counter-clockwise seen from -y: floor 8 mm, walls 22 mm, channel 46 mm.
OUTLINE = [(-45, 0), (-23, 0), (23, 0), (45, 0), (45, 28), (23, 28), (23, 8), (-23, 8), (-23, 28), (-45, 28)]
#: The outline split into convex polygons (indices into OUTLINE) for the end caps.
CAPS = [[0, 1, 7, 8, 9], [1, 2, 6, 7], [2, 3, 4, 5, 6]]
LENGTH = 40.0


def _inside(x: float, z: float) -> bool:
    """Point in the U outline (even-odd rule)."""
    hit = False
    n = len(OUTLINE)
    for i in range(n):
        (x0, z0), (x1, z1) = OUTLINE[i], OUTLINE[(i + 1) % n]
        if (z0 > z) != (z1 > z) and x < x0 + (z - z0) * (x1 - x0) / (z1 - z0):
            hit = not hit
    return hit


def build() -> str:
    verts = [(x, -LENGTH / 2, z) for x, z in OUTLINE] + [(x, LENGTH / 2, z) for x, z in OUTLINE]
    n = len(OUTLINE)
    faces = []
    for cap in CAPS:
        for k in range(1, len(cap) - 1):
            # front cap (y = -20) faces -y, back cap faces +y
            faces.append((cap[0], cap[k], cap[k + 1]))
            faces.append((n + cap[0], n + cap[k + 1], n + cap[k]))
    for i in range(n):
        j = (i + 1) % n
        (x0, z0), (x1, z1) = OUTLINE[i], OUTLINE[j]
        # outward normal of the edge in x/z: flip the quad when the default winding points inside
        nx, nz = (z1 - z0), -(x1 - x0)
        mx, mz = (x0 + x1) / 2, (z0 + z1) / 2
        a, b, c, d = i, j, n + j, n + i
        if _inside(mx + 0.01 * nx, mz + 0.01 * nz):
            nx, nz = -nx, -nz
        quad = [(a, b, c), (a, c, d)]
        # winding a->b->c gives the normal (b-a) x (c-a); with b-a along the edge and c-a along +y the normal
        # is edge x y = (-ez, 0, ex) in (x, z); flip when it disagrees with the outward normal
        ex, ez = x1 - x0, z1 - z0
        if (-ez) * nx + ex * nz < 0:
            quad = [(a, c, b), (a, d, c)]
        faces += quad
    lines = ["# U-channel bracket, millimetres (written by make_bracket.py)"]
    lines += [f"v {x:g} {y:g} {z:g}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bracket.obj")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(build())
