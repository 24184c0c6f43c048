"""The simulated cell: a PyBullet world built from a CellConfig alone.

Headless (``DIRECT``) by default, with an optional GUI. A fixed time step, and
no pacing unless ``realtime=True``, so it runs as fast as the machine allows.
The same inputs give the same result: nothing random, no wall clock in the
physics. Snapshots render with the TinyRenderer, which works headless.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Generator, List, Optional, Sequence, Tuple, Union

from anycell.cell import CellConfig
from anycell.errors import ConfigError, UnresolvedReference
from anycell.geometry import Pose
from anycell.job import JobSpec

from .builder import CellBodies, RobotBody, build_cell, home_configuration
from .pictures import PictureClient, PictureProcess, camera_view, capture, render_on
from .shapes import GeometryLike
from .stepper import ConcurrentStepper

log = logging.getLogger(__name__)

#: Friction of parts and stations: enough to keep parts where they are put.
PART_FRICTION = 0.9


class SimWorld:
    """The PyBullet cell: static bodies, robots with their tools, and parts.

    ``client`` is the PyBullet client id; the simulated robot (``anycell.sim.robot.SimRobot``) works on it.
    """

    def __init__(self, cell: CellConfig, *, gui: bool = False, realtime: bool = False,
                 time_step: float = 1.0 / 240.0) -> None:
        import pybullet as p

        self.cell = cell
        self.gui = gui
        self.realtime = realtime
        self.time_step = float(time_step)
        self.client = p.connect(p.GUI if gui else p.DIRECT)
        p.resetSimulation(physicsClientId=self.client)
        p.setPhysicsEngineParameter(fixedTimeStep=self.time_step, numSolverIterations=80,
                                    deterministicOverlappingPairs=1, physicsClientId=self.client)
        p.setGravity(0, 0, -9.81, physicsClientId=self.client)
        # the physics: URDF cylinders (a suction cup) exactly as declared, not puffed up by a 1 mm margin
        self.bodies: CellBodies = build_cell(self.client, cell, exact_cylinders=True)
        self.robots: Dict[str, RobotBody] = self.bodies.robots
        self.parts: Dict[str, int] = {}
        self.part_sizes: Dict[str, List[float]] = {}
        self._looks: Dict[str, Tuple[GeometryLike, Optional[Sequence[float]]]] = {}   # for the picture client
        self._pictures: Optional[Union[PictureClient, PictureProcess]] = None
        self._holds: Dict[str, Tuple[int, str]] = {}    # station id -> (constraint id, part id)
        self._names: Dict[int, str] = {b: n for n, b in self.bodies.static.items()}
        for rid, rb in self.robots.items():
            self._names[rb.body] = rid
            for j, q in zip(rb.arm_joints, home_configuration(rb)):
                p.resetJointState(rb.body, j, q, physicsClientId=self.client)
            for j, q in zip(*rb.finger_targets(rb.finger_open)):
                p.resetJointState(rb.body, j, q, physicsClientId=self.client)
        for b in self.bodies.static.values():
            p.changeDynamics(b, -1, lateralFriction=PART_FRICTION, physicsClientId=self.client)
        self._steps = 0
        self._wall0 = time.monotonic()
        #: several robots moving at once share one physics clock (see anycell.sim.stepper)
        self.stepper = ConcurrentStepper(self)

    # ------------------------------------------------------------------ time
    @property
    def sim_time(self) -> float:
        """Simulated seconds since the world was built."""
        return self._steps * self.time_step

    def resume_clock(self) -> None:
        """Re-anchor realtime pacing at the current simulated time (after the world stood still).

        Without it a world that was not stepped for a while would run flat out to catch the
        wall clock up, and the robots' first motion after an idle spell would play too fast.
        """
        self._wall0 = time.monotonic() - self.sim_time

    def at_rest(self, linear: float = 1e-3, angular: float = 1e-2) -> bool:
        """True when no part and no robot joint moves faster than ``linear`` m/s / ``angular`` rad/s.

        A world at rest stays at rest when nobody commands anything, so it need not be stepped.
        """
        import pybullet as p

        for body in self.parts.values():
            lin, ang = p.getBaseVelocity(body, physicsClientId=self.client)
            if max(abs(v) for v in lin) > linear or max(abs(v) for v in ang) > angular:
                return False
        for rb in self.robots.values():
            n = p.getNumJoints(rb.body, physicsClientId=self.client)
            for state in p.getJointStates(rb.body, list(range(n)), physicsClientId=self.client):
                if abs(state[1]) > angular:
                    return False
        return True

    def step(self, n: int = 1) -> None:
        """Advance the physics by ``n`` fixed steps (paced to the wall clock when realtime)."""
        import pybullet as p

        for _ in range(int(n)):
            with self.stepper.lock:
                p.stepSimulation(physicsClientId=self.client)
                self._steps += 1
            if self.realtime:
                ahead = self.sim_time - (time.monotonic() - self._wall0)
                if ahead > 0:
                    time.sleep(ahead)

    # ------------------------------------------------------------------ parts
    def add_part(self, part_id: str, shape: GeometryLike, mass: float, pose: Pose,
                 color: Optional[Sequence[float]] = None) -> int:
        """Add a part with its real solid (its bounding-box centre at ``pose``); returns the PyBullet body id.

        ``shape`` is the part's :class:`anycell.job.Geometry` (or its plain-data form, or a bare box size).
        """
        import pybullet as p

        from .shapes import as_geometry, collision_shape, tune_body, visual_shape

        if part_id in self.parts:
            raise ConfigError(f"part '{part_id}' is already in the simulated cell")
        geometry = as_geometry(shape)
        col = collision_shape(self.client, geometry)
        vis = visual_shape(self.client, geometry, list(color or [0.8, 0.8, 0.2, 1.0]))
        body = p.createMultiBody(float(mass), col, vis, pose.position, pose.quaternion, physicsClientId=self.client)
        p.changeDynamics(body, -1, lateralFriction=PART_FRICTION, spinningFriction=0.002, rollingFriction=0.0,
                         physicsClientId=self.client)
        tune_body(self.client, body, geometry)
        self.parts[part_id] = body
        self.part_sizes[part_id] = [float(s) for s in geometry.size]
        self._looks[part_id] = (geometry, list(color) if color else None)
        self._names[body] = f"part:{part_id}"
        return body

    # ------------------------------------------------------------------ fixtures that hold
    def hold(self, part_id: str, station_id: str) -> bool:
        """The fixture ``station_id`` holds ``part_id`` where it is now (its declared clamp or vacuum).

        Modelled as a fixed constraint between the station and the part, limited to the declared
        force. Returns False (and does nothing) when the station declares no hold.
        """
        import pybullet as p

        station = self.cell.station(station_id)
        if station.hold.kind == "none":
            return False
        self.release_hold(station_id)
        body = self._part(part_id)
        fixture = self.bodies.static[station_id]
        fpos, forn = p.getBasePositionAndOrientation(fixture, physicsClientId=self.client)
        ppos, porn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        inv_pos, inv_orn = p.invertTransform(fpos, forn)
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, ppos, porn)
        cid = p.createConstraint(fixture, -1, body, -1, p.JOINT_FIXED, [0, 0, 0], rel_pos, [0, 0, 0],
                                 parentFrameOrientation=rel_orn, physicsClientId=self.client)
        p.changeConstraint(cid, maxForce=float(station.hold.force), physicsClientId=self.client)
        self._holds[station_id] = (cid, part_id)
        log.info("sim: %s %s holds %s", station.hold.kind, station_id, part_id)
        return True

    def release_hold(self, station_id: str) -> Optional[str]:
        """Open the fixture's clamp (or vacuum); returns the part it held, or None."""
        import pybullet as p

        held = self._holds.pop(station_id, None)
        if held is None:
            return None
        p.removeConstraint(held[0], physicsClientId=self.client)
        return held[1]

    def holding(self, station_id: str) -> Optional[str]:
        """The part the fixture holds now, or None."""
        held = self._holds.get(station_id)
        return held[1] if held else None

    def remove_part(self, part_id: str) -> None:
        import pybullet as p

        body = self._part(part_id)
        for station_id, (_cid, held) in list(self._holds.items()):
            if held == part_id:
                self.release_hold(station_id)
        p.removeBody(body, physicsClientId=self.client)
        del self.parts[part_id]
        self.part_sizes.pop(part_id, None)
        self._looks.pop(part_id, None)
        self._names.pop(body, None)

    def _part(self, part_id: str) -> int:
        if part_id not in self.parts:
            raise UnresolvedReference(f"no part '{part_id}' in the simulated cell",
                                      hint="known: " + (", ".join(sorted(self.parts)) or "none"))
        return self.parts[part_id]

    def part_pose(self, part_id: str) -> Pose:
        """The part's centre pose in the cell frame, as the physics has it now."""
        import pybullet as p

        pos, orn = p.getBasePositionAndOrientation(self._part(part_id), physicsClientId=self.client)
        return Pose.from_pq(pos, orn)

    def populate_job(self, job: JobSpec, sites: Dict[Tuple[int, str], "object"], unit: int) -> Dict[str, str]:
        """Put one unit's feeder parts into their feeder slots.

        ``sites`` maps ``(unit, part_id)`` to a :class:`anycell.plan.Site` (the caller gets it from
        ``planners.sites.allocate_feeder_slots``; the simulator does not plan). Returns part id ->
        world part id (``u<unit>.<part_id>``).
        """
        out: Dict[str, str] = {}
        for part in job.parts:
            site = sites.get((unit, part.id))
            if site is None:
                continue
            wid = f"u{unit}.{part.id}"
            self.add_part(wid, part.geometry, part.mass, Pose(xyz=list(site.xyz), rpy=list(site.rpy)),  # type: ignore[attr-defined]
                          part.color)
            out[part.id] = wid
        return out

    def settle(self, seconds: float = 0.2) -> None:
        """Let freshly added parts come to rest.

        Through the stepper: a robot moving meanwhile keeps following its trajectory in the
        same physics steps (stepping the world beside it would run it on a stale command).
        """
        n = max(1, int(round(seconds / self.time_step)))

        def idle() -> Generator[None, None, None]:
            for _ in range(n):
                yield

        self.stepper.run(idle())

    # ------------------------------------------------------------------ names
    def body_name(self, body: int, link: int = -1) -> str:
        """A readable name of a body (and link) for error messages: ``panda/panda_link5``, ``feeder``."""
        import pybullet as p

        name = self._names.get(body, f"body{body}")
        if link >= 0 and any(rb.body == body for rb in self.robots.values()):
            name += "/" + p.getJointInfo(body, link, physicsClientId=self.client)[12].decode()
        elif link < 0 and any(rb.body == body for rb in self.robots.values()):
            name += "/" + p.getBodyInfo(body, physicsClientId=self.client)[0].decode()
        return name

    # ------------------------------------------------------------------ pictures
    def camera_names(self) -> List[str]:
        return [c.id for c in self.cell.cameras] or ["overview"]

    def snapshot(self, path: str, camera: Optional[str] = None, width: int = 480, height: int = 360) -> str:
        """Render a PNG from a named viewpoint (the cell's cameras, or overview/top/front) headless."""
        return render_on(self.client, self.cell, path, camera, width, height)

    def render_pictures_apart(self) -> bool:
        """Render later pictures in a child process (:class:`~anycell.sim.pictures.PictureProcess`).

        For a world stepped on the wall clock by a thread that must never stall (the ``sim_cell``
        node). It needs the cell's file; a cell built in memory keeps the in-process client
        (returns False).
        """
        if not self.cell.source_file:
            return False
        if self._pictures is not None:
            self._pictures.close()
        self._pictures = PictureProcess(self.cell, self.cell.source_file)
        return True

    def snapshot_later(self, path: str, camera: Optional[str] = None) -> Callable[[], str]:
        """Copy the scene now (milliseconds); the returned call renders it off the physics client.

        So a picture never holds the physics still while it renders (see :mod:`anycell.sim.pictures`).
        An unknown camera is refused here, at once.
        """
        camera_view(self.cell, camera)
        if self._pictures is None:
            self._pictures = PictureClient(self.cell)
        pictures = self._pictures
        with self.stepper.lock:
            scene = capture(self)
            looks = {pid: self._looks[pid] for pid in scene.parts}
        return lambda: pictures.render(scene, path, camera, looks)

    def close(self) -> None:
        import pybullet as p

        if self._pictures is not None:
            self._pictures.close()
            self._pictures = None
        if self.client is not None and self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.client = -1

    def __enter__(self) -> "SimWorld":
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()
