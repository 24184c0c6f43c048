"""Pictures of the simulated cell, rendered where they never hold up the physics.

Rendering a 480x360 TinyRenderer picture takes 50-170 ms, and PyBullet holds Python's GIL
for all of it. Done on the physics client, it needs the world to stand still that long.
Instead :func:`capture` copies what a picture shows (every robot's joint positions, every
part's pose) in a few milliseconds, and a render-only copy of the cell (the same cell built by
the same builder, no physics stepped) is posed from that copy and rendered while the robots go
on moving:

- :class:`PictureClient` renders on a second PyBullet client of the same process. It is enough
  where the physics is stepped by the process's own code (``anycell sim``): the render delays
  the next step but the simulated clock waits for it.
- :class:`PictureProcess` renders in a child process of its own (``python -m
  anycell.sim.pictures CELL``). The ``sim_cell`` node needs it: its physics thread publishes the
  joint states the agent's drivers watch and steps the world on the wall clock, and a render
  holding the GIL for a third of a second on a loaded machine looked, to the agent, like a
  frozen controller (and stopped every robot of the cell for that long).

Both render the same way (:func:`render_on`) and take the same arguments.
"""

from __future__ import annotations

import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from anycell.errors import AnycellError, ExecutionError, UnresolvedReference

if TYPE_CHECKING:
    from anycell.cell import CellConfig

    from .world import SimWorld

log = logging.getLogger(__name__)

Pq = Tuple[Tuple[float, ...], Tuple[float, ...]]
#: part id -> (shape, colour): what a part looks like (its shape as a Geometry, plain data or a box size)
Looks = Dict[str, Tuple[Any, Optional[Sequence[float]]]]

#: how long one picture may take in the child process before it is given up (a loaded machine
#: renders in under a second; the first picture also builds the cell)
RENDER_TIMEOUT = 60.0


#: How much lower the picture process's CPU priority is than its parent's: on two cores a render
#: (150 ms of CPU) at every step's end competed with the sim node and the agent for the CPU, and
#: delayed the calls that confirm the step.
PICTURE_NICENESS = 10


@dataclass
class Scene:
    """What one picture shows, copied out of the physics world."""

    joints: Dict[str, List[float]] = field(default_factory=dict)       # robot id -> every joint's position
    parts: Dict[str, Pq] = field(default_factory=dict)                 # part id -> (position, quaternion)

    def to_json(self) -> Dict[str, Any]:
        return {"joints": self.joints, "parts": {k: [list(v[0]), list(v[1])] for k, v in self.parts.items()}}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Scene":
        return cls(joints={k: [float(x) for x in v] for k, v in data["joints"].items()},
                   parts={k: (tuple(v[0]), tuple(v[1])) for k, v in data["parts"].items()})


def write_png(path: str, rgb: Sequence[Sequence[Sequence[int]]] | bytes, width: int, height: int) -> None:
    """Write an 8-bit RGB PNG with the standard library only (no imaging dependency)."""
    raw = rgb if isinstance(rgb, (bytes, bytearray)) else bytes(v for row in rgb for px in row for v in px)
    stride = width * 3
    rows = b"".join(b"\x00" + raw[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as handle:
        handle.write(png)


def camera_view(cell: "CellConfig", camera: Optional[str]) -> Tuple[List[float], List[float], float]:
    """(eye, target, field of view) of ``camera``: one of the cell's cameras, or overview/top/front."""
    if camera is None:
        if cell.cameras:
            c = cell.cameras[0]
            return list(c.eye), list(c.target), float(c.fov)
        camera = "overview"
    for c in cell.cameras:
        if c.id == camera:
            return list(c.eye), list(c.target), float(c.fov)
    ws = cell.safety.workspace
    centre = [(ws.min[0] + ws.max[0]) / 2, (ws.min[1] + ws.max[1]) / 2, 0.1]
    defaults = {"overview": ([centre[0] + 1.4, centre[1] - 1.0, 1.0], centre, 55.0),
                "top": ([centre[0], centre[1], 2.2], centre, 50.0),
                "front": ([centre[0] + 1.6, centre[1], 0.5], centre, 50.0)}
    if camera not in defaults:
        raise UnresolvedReference(f"no camera '{camera}' in cell '{cell.cell.id}'",
                                  hint="known: " + ", ".join([c.id for c in cell.cameras] + list(defaults)))
    return defaults[camera]


def render_on(client: int, cell: "CellConfig", path: str, camera: Optional[str], width: int = 480,
              height: int = 360) -> str:
    """Render ``cell``'s camera ``camera`` as PyBullet ``client`` has it now, into a PNG at ``path``."""
    import numpy as np
    import pybullet as p

    eye, target, fov = camera_view(cell, camera)
    up = [0, 0, 1] if abs(eye[0] - target[0]) + abs(eye[1] - target[1]) > 1e-6 else [1, 0, 0]
    view = p.computeViewMatrix(eye, target, up, physicsClientId=client)
    proj = p.computeProjectionMatrixFOV(fov, width / height, 0.02, 10.0, physicsClientId=client)
    img = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER,
                           lightDirection=[0.6, -0.4, 1.0], shadow=1, physicsClientId=client)
    rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
    write_png(path, rgba[:, :, :3].tobytes(), width, height)
    return path


def capture(world: "SimWorld") -> Scene:
    """Copy the robots' joints and the parts' poses (call it where the physics stands still)."""
    import pybullet as p

    scene = Scene()
    for rid, rb in world.robots.items():
        n = p.getNumJoints(rb.body, physicsClientId=world.client)
        scene.joints[rid] = [s[0] for s in p.getJointStates(rb.body, list(range(n)), physicsClientId=world.client)]
    for pid, body in world.parts.items():
        scene.parts[pid] = p.getBasePositionAndOrientation(body, physicsClientId=world.client)
    return scene


class PictureClient:
    """A render-only copy of ``cell`` on a PyBullet client of this process; parts are added as they appear."""

    def __init__(self, cell: "CellConfig") -> None:
        self.cell = cell
        self._client: Optional[int] = None
        self._robots: Dict[str, int] = {}
        self._parts: Dict[str, int] = {}
        self._lock = threading.Lock()       # one render at a time on the render client

    def render(self, scene: Scene, path: str, camera: Optional[str], shapes: Looks,
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
            return render_on(client, self.cell, path, camera, width, height)

    def _connect(self) -> int:
        if self._client is None:
            import pybullet as p

            from .builder import build_cell

            self._client = p.connect(p.DIRECT)
            bodies = build_cell(self._client, self.cell)
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


class PictureProcess:
    """Renders in a child process of its own, so a picture never takes this process's GIL.

    The child (started at the first picture, restarted if it died) builds the cell from
    ``cell_file``, then renders one request per line of its stdin and answers one line each.
    A part's shape goes with every request that shows it: a restored world may reuse an id.
    """

    def __init__(self, cell: "CellConfig", cell_file: str, timeout: float = RENDER_TIMEOUT) -> None:
        self.cell = cell
        self.cell_file = os.path.abspath(cell_file)
        self.timeout = timeout
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()       # one request at a time on the pipe

    def render(self, scene: Scene, path: str, camera: Optional[str], shapes: Looks,
               width: int = 480, height: int = 360) -> str:
        from .shapes import shape_to_json

        camera_view(self.cell, camera)      # an unknown camera is refused here, with the cameras known
        request = {"scene": scene.to_json(), "path": os.path.abspath(path), "camera": camera,
                   "width": width, "height": height,
                   "shapes": {pid: [shape_to_json(s), list(c) if c else None]
                              for pid, (s, c) in shapes.items() if pid in scene.parts}}
        with self._lock:
            proc = self._started()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write((json.dumps(request) + "\n").encode())
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
                line = proc.stdout.readline() if ready else b""
            except OSError as exc:
                self._stop()
                raise ExecutionError(f"the picture process is gone: {exc}",
                                     hint="the next picture starts a new one") from exc
            if not line:
                try:    # the answers ended: the child is exiting; or no answer in time: it hangs
                    code: Optional[int] = proc.wait(timeout=5.0) if ready else None
                except subprocess.TimeoutExpired:
                    code = None
                self._stop()
                raise ExecutionError("the picture process " + (f"exited (code {code})" if code is not None
                                                               else f"gave no picture within {self.timeout:.0f} s"),
                                     hint="its error is in the simulator's log; the next picture starts a new one")
        answer = json.loads(line)
        if not answer.get("ok"):
            err = answer.get("error") or {}
            raise ExecutionError(f"picture not rendered: {err.get('message', 'failed')}", hint=err.get("hint"))
        return str(answer["path"])

    def _started(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        from anycell.childproc import guarded_argv

        # the child's stderr is ours (its errors reach the node's log); its stdout is the answers only
        self._proc = subprocess.Popen(guarded_argv([sys.executable, "-m", "anycell.sim.pictures", self.cell_file]),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        log.debug("picture process %d started for %s", self._proc.pid, self.cell_file)
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()      # end of input: the child exits on its own
            proc.wait(timeout=5.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def abort(self) -> None:
        """Kill the child now, without waiting for a picture in progress (which then fails at once):
        a node shutting down must not wait out a render, let alone a hung one."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """End the child; a picture in progress fails at once (nobody waits for pictures any more)."""
        self.abort()
        with self._lock:
            self._stop()


def serve(cell_file: str, requests: Any, answers: Any) -> None:
    """The child's loop: one JSON request per line of ``requests``, one answer per line of ``answers``."""
    from anycell.cell import load_cell

    client = PictureClient(load_cell(cell_file))
    try:
        for line in requests:
            try:
                req = json.loads(line)
                shapes = {pid: (s, c) for pid, (s, c) in req["shapes"].items()}
                path = client.render(Scene.from_json(req["scene"]), req["path"], req.get("camera"), shapes,
                                     int(req.get("width", 480)), int(req.get("height", 360)))
                answer: Dict[str, Any] = {"ok": True, "path": path}
            except AnycellError as exc:
                answer = {"ok": False, "error": exc.to_dict()}
            except (OSError, KeyError, TypeError, ValueError) as exc:
                answer = {"ok": False, "error": {"message": f"{type(exc).__name__}: {exc}"}}
            answers.write((json.dumps(answer) + "\n").encode())
            answers.flush()
    finally:
        client.close()


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m anycell.sim.pictures CELL``: render pictures of CELL asked for on stdin (one JSON per line)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m anycell.sim.pictures CELL_FILE  (requests on stdin, one JSON object per line)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:    # a picture may wait; the physics, the agent and the machines beside it may not
        os.nice(PICTURE_NICENESS)
    except OSError:
        pass
    # PyBullet and mesh tools print to the C-level stdout: the answers get a descriptor of their own
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        serve(args[0], sys.stdin.buffer, answers)
    except AnycellError as exc:         # the cell does not load: said once, and every picture fails
        print(f"anycell.sim.pictures: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
