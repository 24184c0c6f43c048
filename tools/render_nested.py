"""Render the README's picture of nested products, headless (PyBullet's TinyRenderer).

The two example products with real shapes stand on the demo cell's fixture side by side, as the
simulator builds them: a pin over its holder's hole at the start of its insertion stroke (so the hole
shows), and the clip in the channel of the mesh bracket.

Run: .venv/bin/python tools/render_nested.py  (writes docs/img/nested_product.png)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import load_cell  # noqa: E402
from anycell.geometry import Pose  # noqa: E402
from anycell.job import load_job  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    import numpy as np
    import pybullet as p

    from anycell.sim.pictures import write_png
    from anycell.sim.world import SimWorld

    cell = load_cell(os.path.join(ROOT, "cell_configs", "demo_cell.yaml"))
    world = SimWorld(cell)
    try:
        x, y, z = cell.station("fixture").pose.xyz
        for job_name, dx in (("peg_in_hole", -0.035), ("bracket_clip", 0.045)):
            job = load_job(os.path.join(ROOT, "examples", "jobs", f"{job_name}.yaml"))
            for pl in job.assembly.placements:
                part = job.part(pl.part)
                color = list(part.color or [0.8, 0.8, 0.2, 1.0])
                lift = 0.032 if pl.part == "pin" else 0.0      # at the start of its stroke: the hole shows
                pose = Pose(xyz=[x + pl.pose.xyz[0], y + dx + pl.pose.xyz[1], z + pl.pose.xyz[2] + lift])
                world.add_part(f"{job_name}.{pl.part}", part.geometry, 0.0, pose, color)   # static: a still
        width, height = 640, 420
        view = p.computeViewMatrix([x + 0.09, y - 0.06, z + 0.16], [x, y + 0.005, z + 0.012], [0, 0, 1],
                                   physicsClientId=world.client)
        proj = p.computeProjectionMatrixFOV(40, width / height, 0.01, 5.0, physicsClientId=world.client)
        img = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER,
                               lightDirection=[0.6, -0.4, 1.0], shadow=1, physicsClientId=world.client)
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
        out = os.path.join(ROOT, "docs", "img", "nested_product.png")
        write_png(out, rgba[:, :, :3].tobytes(), width, height)
        print(out)
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
