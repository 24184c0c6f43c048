"""Pictures of the simulated cell rendered on a client of their own, so they never hold up the physics.

Rendering a 480x360 TinyRenderer picture takes ~170 ms. Done on the physics client, it needs
the world to stand still that long. Instead :meth:`PictureClient.capture` copies what a picture
shows (every robot's joint positions, every part's pose) in a few milliseconds, and
:meth:`PictureClient.render` poses a second, render-only PyBullet client (the same cell built by
the same builder, no physics stepped) from that copy and renders it, on whatever thread the
caller likes, while the robots go on moving in the physics world.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .world import SimWorld

Pq = Tuple[Tuple[float, ...], Tuple[float, ...]]


@dataclass
class Scene:
    """What one picture shows, copied out of the physics world."""

    joints: Dict[str, List[float]] = field(default_factory=dict)       # robot id -> every joint's position
    parts: Dict[str, Pq] = field(default_factory=dict)                 # part id -> (position, quaternion)


class PictureClient:
    """A render-only copy of ``world``'s cell; parts are added as they appear (their shapes and colours)."""

    def __init__(self, world: "SimWorld") -> None:
        self.world = world
        self._client: Optional[int] = None
        self._robots: Dict[str, int] = {}
        self._parts: Dict[str, int] = {}
        self._lock = threading.Lock()       # one render at a time on the render client

    def capture(self) -> Scene:
        """Copy the robots' joints and the parts' poses (call it where the physics stands still)."""
        import pybullet as p

        w = self.world
        scene = Scene()
        for rid, rb in w.robots.items():
            n = p.getNumJoints(rb.body, physicsClientId=w.client)
            scene.joints[rid] = [s[0] for s in p.getJointStates(rb.body, list(range(n)), physicsClientId=w.client)]
        for pid, body in w.parts.items():
            scene.parts[pid] = p.getBasePositionAndOrientation(body, physicsClientId=w.client)
        return scene

    def render(self, scene: Scene, path: str, camera: Optional[str], shapes: Dict[str, Tuple[Any, Optional[Sequence[float]]]],
               width: int = 480, height: int = 360) -> str:
        """Pose the render client as ``scene`` and write the PNG; ``shapes``: part id -> (shape, colour)."""
        import pybullet as p

        from .shapes import as_geometry, visual_shape

        with self._lock:
            client = self._connect()
            for pid in [pid for pid in self._parts if pid not in scene.parts]:
                p.removeBody(self._parts.pop(pid), physicsClientId=client)
            for pid, (pos, orn) in scene.parts.items():
                if pid not in self._parts:
                    shape, color = shapes[pid]
                    vis = visual_shape(client, as_geometry(shape), list(color or [0.8, 0.8, 0.2, 1.0]))
                    self._parts[pid] = p.createMultiBody(0.0, -1, vis, pos, orn, physicsClientId=client)
                p.resetBasePositionAndOrientation(self._parts[pid], pos, orn, physicsClientId=client)
            for rid, q in scene.joints.items():
                for j, v in enumerate(q):
                    p.resetJointState(self._robots[rid], j, v, physicsClientId=client)
            return self.world.render_on(client, path, camera, width, height)

    def _connect(self) -> int:
        if self._client is None:
            import pybullet as p

            from .builder import build_cell

            self._client = p.connect(p.DIRECT)
            bodies = build_cell(self._client, self.world.cell)
            self._robots = {rid: rb.body for rid, rb in bodies.robots.items()}
        return self._client

    def close(self) -> None:
        import pybullet as p

        with self._lock:
            if self._client is not None:
                try:
                    p.disconnect(physicsClientId=self._client)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                self._client = None
