"""Safety that acts, without ROS: the e-stop watch, the halt fan-out and the last-moment trajectory check.

* :class:`EStopWatch` polls one e-stop source (an OPC UA variable, a ROS topic, ...) on its own
  thread and calls ``on_trip(reason)`` the moment the source reads tripped *or cannot be read*:
  a lost source counts as tripped, because a disconnected e-stop button protects nobody.
  Sources may also push a value (:meth:`EStopWatch.feed`) so a topic callback trips at once.
* :func:`halt_devices` stops every robot first, on the caller's thread (a stop is one message),
  then sends every machine its stop on a thread of its own so a slow serial line or OPC UA call
  never delays another device. This is the one halt path used by the e-stop, SIGINT/SIGTERM and
  a crashed worker; none of it depends on the ROS context still being up.
* :class:`TrajectoryGuard` and :class:`GuardedRobot` check every trajectory at the last moment
  before it leaves the agent: joint limits, the speed fraction, the safety workspace and the
  keep-out boxes, whatever planned it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from anycell.cell import CellConfig
from anycell.drivers.robot import Robot, TrajectoryLike
from anycell.errors import ExecutionError

log = logging.getLogger(__name__)


class EStopLost(Exception):
    """The e-stop source cannot be read (disconnected, no publisher, timed out)."""


class EStopWatch:
    """Watches one e-stop source; trips on a true reading or on a lost source.

    ``read()`` returns the source's value (truthy = tripped) or raises (lost). ``on_trip(reason)``
    runs once per trip (on the watch thread, or on the thread that called :meth:`feed`); the
    watch re-arms when the source reads clear again, but :attr:`active` stays true until then,
    which is what keeps the cell from being reset under a pressed e-stop.
    """

    def __init__(self, name: str, read: Callable[[], Any], on_trip: Callable[[str], None], *,
                 period: float = 0.01) -> None:
        self.name = name
        self._read = read
        self._on_trip = on_trip
        self.period = period
        self._lock = threading.Lock()
        self._active = False
        self.reason = ""
        self.trips = 0
        self.last_trip_at: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def active(self) -> bool:
        """True while the source reads tripped or is lost."""
        return self._active

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"estop-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def feed(self, value: Any, lost: Optional[str] = None) -> None:
        """Push one reading (``lost`` names why the source is gone); trips at once when tripped."""
        if lost is not None:
            self._set(True, f"e-stop source {self.name} lost: {lost}")
        elif value:
            self._set(True, f"e-stop {self.name} tripped")
        else:
            self._set(False, "")

    def _set(self, tripped: bool, reason: str) -> None:
        with self._lock:
            edge = tripped and not self._active
            self._active = tripped
            if tripped:
                self.reason = reason
            if edge:
                self.trips += 1
                self.last_trip_at = time.monotonic()
        if edge:
            log.error("%s", reason)
            try:
                self._on_trip(reason)
            except Exception:  # noqa: BLE001 - the watch must keep watching
                log.exception("e-stop trip handler failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                value = self._read()
            except Exception as exc:  # noqa: BLE001 - any failure to read is a lost source
                self.feed(None, lost=str(exc) or type(exc).__name__)
            else:
                self.feed(value)
            self._stop.wait(self.period)

    def health(self) -> Dict[str, Any]:
        """The /diagnostics entry of the e-stop."""
        if self._active:
            return {"level": 2, "message": self.reason, "values": {"trips": str(self.trips)}}
        return {"level": 0, "message": "clear", "values": {"trips": str(self.trips)}}


def halt_devices(robots: Dict[str, Robot], machines: Dict[str, Any], *, wait: float = 0.0) -> Dict[str, float]:
    """Stop every robot now (caller's thread), then every machine (one thread each).

    Returns the monotonic time each robot's stop was commanded. ``wait`` > 0 joins the machine
    threads up to that many seconds (a shutdown wants the stops on the wire before it exits).
    """
    stamps: Dict[str, float] = {}
    for rid, robot in list(robots.items()):
        try:
            robot.stop()
            stamps[rid] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - halting must reach every device
            log.error("robot %s did not stop cleanly: %s", rid, exc)

    def stop_machine(mid: str, machine: Any) -> None:
        try:
            machine.stop()
        except Exception as exc:  # noqa: BLE001
            log.error("machine %s did not stop cleanly: %s", mid, exc)

    threads = [threading.Thread(target=stop_machine, args=(mid, m), name=f"halt-{mid}", daemon=True)
               for mid, m in list(machines.items())]
    for t in threads:
        t.start()
    if wait > 0:
        end = time.monotonic() + wait
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
    return stamps


# ---------------------------------------------------------------------------- trajectory guard
#: rad: what a time-parameterised spline may overshoot a joint limit by (TOPP-RA's interpolation), no more
LIMIT_SLACK = 2e-3


class TrajectoryGuard:
    """The last check of a trajectory before it is sent: limits, speed, workspace, keep-outs.

    ``lower``/``upper`` are the joint limits, ``vmax`` the allowed speed per joint (already
    scaled by ``safety.max_speed_fraction``), and ``tcp_points(q)`` returns the cell-frame
    points to check against the workspace and the keep-out boxes for joint positions ``q``
    (the TCP and the link origins); None skips the Cartesian checks.
    """

    def __init__(self, cell: CellConfig, robot_id: str, *, joint_names: Sequence[str], lower: Sequence[float],
                 upper: Sequence[float], vmax: Sequence[float],
                 tcp_points: Optional[Callable[[Sequence[float]], List[Sequence[float]]]] = None,
                 tolerance: float = 0.05, step: float = 0.02) -> None:
        self.cell = cell
        self.robot_id = robot_id
        self.joint_names = list(joint_names)
        self.lower = [float(v) for v in lower]
        self.upper = [float(v) for v in upper]
        self.vmax = [float(v) for v in vmax]
        self.tcp_points = tcp_points
        self.tolerance = tolerance
        self.step = step
        self.checked = 0

    @classmethod
    def for_planner(cls, cell: CellConfig, robot_id: str, planner: Any) -> "TrajectoryGuard":
        """A guard with the limits of a :class:`anycell.planners.motion.MotionPlanner` and its own FK."""
        from anycell.planners.kinematics import Kinematics

        kin = Kinematics(cell, robot_id)
        lock = threading.Lock()

        def points(q: Sequence[float]) -> List[Sequence[float]]:
            with lock:
                return [kin.fk(q).position]

        return cls(cell, robot_id, joint_names=planner.joint_names, lower=planner.lower, upper=planner.upper,
                   vmax=planner.vmax, tcp_points=points)

    def _fail(self, what: str, hint: str) -> None:
        raise ExecutionError(f"robot '{self.robot_id}': trajectory refused before sending: {what}", hint=hint)

    def check(self, traj: TrajectoryLike) -> None:
        """Raise :class:`ExecutionError` when any point breaks a limit; nothing moves then."""
        if list(traj.joint_names) != self.joint_names:
            self._fail(f"joints {list(traj.joint_names)} are not {self.joint_names}", "plan for this robot")
        times = [float(t) for t in traj.times]
        if len(times) != len(traj.positions) or not times:
            self._fail("times and positions differ in length (or are empty)", "re-plan the motion")
        n = len(self.joint_names)
        tol = self.tolerance
        for k, q in enumerate(traj.positions):
            if len(q) != n or not all(math.isfinite(float(v)) for v in q):
                self._fail(f"point {k} is not {n} finite numbers", "re-plan the motion")
            for j, v in enumerate(q):
                if v < self.lower[j] - LIMIT_SLACK or v > self.upper[j] + LIMIT_SLACK:
                    self._fail(f"point {k}: joint {self.joint_names[j]}={float(v):.4f} is outside its limits "
                               f"[{self.lower[j]:.4f}, {self.upper[j]:.4f}]", "re-plan inside the joint limits")
            if k and times[k] <= times[k - 1]:
                self._fail(f"time of point {k} ({times[k]}) does not increase", "re-time the trajectory")
            if k:
                dt = times[k] - times[k - 1]
                prev = traj.positions[k - 1]
                for j in range(n):
                    speed = abs(float(q[j]) - float(prev[j])) / dt
                    if speed > self.vmax[j] * (1 + tol) + 1e-3:
                        self._fail(f"joint {self.joint_names[j]} moves at {speed:.3f} rad/s between points "
                                   f"{k - 1} and {k}, over the allowed {self.vmax[j]:.3f} "
                                   f"(safety.max_speed_fraction {self.cell.safety.max_speed_fraction})",
                                   "re-time the trajectory with the cell's speed fraction")
        for k, qd in enumerate(getattr(traj, "velocities", None) or []):
            for j, v in enumerate(qd):
                if abs(float(v)) > self.vmax[j] * (1 + tol) + 1e-3:
                    self._fail(f"point {k}: joint {self.joint_names[j]} velocity {float(v):.3f} rad/s is over the "
                               f"allowed {self.vmax[j]:.3f}", "re-time the trajectory with the cell's speed fraction")
        if self.tcp_points is not None:
            self._check_space(traj)
        self.checked += 1

    def _samples(self, traj: TrajectoryLike) -> List[Sequence[float]]:
        """The trajectory's points, with extra points so no joint moves more than ``step`` between checks."""
        out: List[Sequence[float]] = [traj.positions[0]]
        for a, b in zip(traj.positions, traj.positions[1:]):
            jump = max(abs(float(x) - float(y)) for x, y in zip(a, b))
            pieces = max(1, int(math.ceil(jump / self.step)))
            for i in range(1, pieces + 1):
                s = i / pieces
                out.append([float(x) + (float(y) - float(x)) * s for x, y in zip(a, b)])
        return out

    def _check_space(self, traj: TrajectoryLike) -> None:
        ws = self.cell.safety.workspace
        zones = self.cell.safety.keep_out
        assert self.tcp_points is not None
        for q in self._samples(traj):
            for p in self.tcp_points(q):
                if not ws.contains(p, margin=1e-3):
                    self._fail(f"the tool passes {[round(float(v), 3) for v in p]}, outside the safety workspace "
                               f"{ws.min}..{ws.max}", "keep targets and paths inside safety.workspace")
                for zone in zones:
                    if zone.box.contains(p):
                        self._fail(f"the tool enters keep-out zone '{zone.id}' at {[round(float(v), 3) for v in p]}",
                                   "plan around safety.keep_out")


class GuardedRobot(Robot):
    """A robot whose every trajectory passes :class:`TrajectoryGuard` first; everything else is delegated."""

    def __init__(self, inner: Robot, guard: TrajectoryGuard) -> None:
        self.inner = inner
        self.guard = guard

    @property
    def joint_names(self) -> List[str]:
        return self.inner.joint_names

    def execute(self, trajectory: TrajectoryLike) -> None:
        self.guard.check(trajectory)
        self.inner.execute(trajectory)

    def joint_positions(self) -> List[float]:
        return self.inner.joint_positions()

    def grasp(self, part_id: Optional[str] = None) -> bool:
        return self.inner.grasp(part_id)

    def release(self) -> None:
        self.inner.release()

    def stop(self) -> None:
        self.inner.stop()

    def expect_contact(self, part_id: Optional[str]) -> None:
        self.inner.expect_contact(part_id)

    def holding(self) -> Optional[str]:
        return self.inner.holding()

    def __getattr__(self, name: str) -> Any:   # wait_ready, health, ... of the inner driver
        return getattr(self.inner, name)
