"""The cell agent's step runners: how a job's operations reach the cell's devices over ROS 2.

``cell_agent`` (parameter ``runner:=auto``) calls :func:`make_runner_factory`
once at start-up. The factory builds, for each job, a
:class:`anycell.agent.cell_runner.CellRunner` over:

* each robot as a :class:`anycell.agent.ros.robot.RosRobot`: JointTrajectory out to the
  robot's controller, completion confirmed from JointState (the contract of
  ros2_control's joint trajectory controller, so a real arm replaces the
  simulated one unchanged);
* each machine through its driver (:func:`anycell.drivers.machine.open_machine`), over
  serial G-code or OPC UA. With ``sim:=true`` the agent first starts each
  machine's simulator as its own process on its real transport;
* with ``sim:=true``, :class:`anycell.agent.ros.sim_bridge.RosSimHooks` to the ``sim_cell``
  node, which presents feeder parts, places what machines made and measures
  units for inspection.

Motion is planned in the agent with :class:`anycell.planners.motion.MotionPlanner`,
which keeps its model of where parts lie across jobs.
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from anycell.cell import CellConfig
from anycell.errors import AnycellError
from anycell.job import JobSpec
from anycell.plan import Plan
from anycell.drivers.machine import Machine

from anycell.agent.cell_runner import CellRunner

if TYPE_CHECKING:
    from rclpy.node import Node

    from anycell.agent.ros.cell_agent_node import CellAgentNode
    from anycell.agent.simulation.runtime import SimulatedCell

log = logging.getLogger(__name__)

LEVELS = {"ok": 0, "warn": 1, "error": 2}


class CellDevices:
    """The devices of one cell as the agent reaches them; built once, shared by every job."""

    def __init__(self, node: "Node", cell: CellConfig, *, sim: bool, machine_time_scale: Optional[float] = None,
                 journal_path: Optional[str] = None,
                 machine_faults: Optional[Dict[str, Dict[str, Any]]] = None, sim_machines: str = "") -> None:
        """``sim_machines``: the file in which ``anycell up`` handed over the simulated machines it
        started (:func:`anycell.sim.machines.write_handover`); empty: the agent starts them."""
        from anycell.drivers.machine import open_machine

        from anycell.agent.ros.robot import RosRobot

        self.cell = cell
        self.sim = sim
        self.node = node
        self.journal_path = journal_path
        self.machine_time_scale: Optional[float] = None
        self.sim_cell: Optional[SimulatedCell] = None
        self.machines: Dict[str, Machine] = {}
        self._lock = threading.Lock()
        self.planners: Dict[str, Any] = {}   # robot id -> MotionPlanner
        if sim:
            from anycell.agent.simulation.runtime import DEFAULT_MACHINE_TIME_SCALE, SimulatedCell
            from anycell.sim.machines import adopt_sim_machines

            workdir = tempfile.mkdtemp(prefix=f"anycell-{cell.cell.id}-")
            scale = DEFAULT_MACHINE_TIME_SCALE if machine_time_scale is None else machine_time_scale
            self.machine_time_scale = scale
            started = adopt_sim_machines(sim_machines, cell.machines, scale, machine_faults) if sim_machines else {}
            if started:
                log.info("took over the simulated machine(s) %s that anycell up started", ", ".join(sorted(started)))
            self.sim_cell = SimulatedCell(cell, workdir, machine_time_scale=scale, with_world=False,
                                          machine_faults=machine_faults, meanwhile=self._build_planners,
                                          started=started)
            self.machines = self.sim_cell.machines
        else:
            for m in cell.machines:
                drv = open_machine(m)
                try:
                    drv.connect()
                except AnycellError as exc:
                    log.error("machine %s is not reachable: %s (jobs that need it will fail)", m.id, exc)
                self.machines[m.id] = drv
        from anycell.agent.safety import GuardedRobot, TrajectoryGuard

        ns = node.get_namespace()
        self.ros_robots = {r.id: RosRobot(node, r.id, namespace=ns, controller_topic=r.controller_topic,
                                          joint_states_topic=r.joint_states_topic, gripper=r.gripper)
                           for r in cell.robots}
        if not self.planners:
            self._build_planners()
        # every trajectory is checked again at the last moment, whatever planned it
        self.robots = {rid: GuardedRobot(robot, TrajectoryGuard.for_planner(cell, rid, self.planners[rid]))
                       for rid, robot in self.ros_robots.items()}
        self.hooks = None
        self._restored = False
        if sim:
            from anycell.agent.ros.sim_bridge import RosSimHooks

            self.hooks = RosSimHooks(node)
        atexit.register(self.close)

    def _build_planners(self) -> None:
        """One motion planner per robot (a second or so each: URDF, collision world)."""
        from anycell.planners.motion import MotionPlanner

        self.planners = {r.id: MotionPlanner(self.cell, r.id) for r in self.cell.robots}

    def halt_all(self) -> None:
        """The halt path: every robot's stop now, every machine's stop on its own thread."""
        from anycell.agent.safety import halt_devices

        halt_devices(self.ros_robots, self.machines)

    def wait_machines_stopped(self, timeout: float = 10.0) -> None:
        """Return once no machine reports a moving or acting state (PackML Stopping waits on this)."""
        import time

        busy = ("Stopping", "Aborting", "Execute", "Starting", "Completing", "Holding", "Unholding", "Run",
                "Resetting", "Clearing", "Jog", "Home", "Printing", "Busy")
        end = time.monotonic() + timeout
        for mid, drv in list(self.machines.items()):
            while True:
                try:
                    st = str(drv.state())
                except AnycellError:
                    break   # unreachable: the reset check keeps the cell out of Idle
                if not st.startswith(busy):
                    break
                if time.monotonic() > end:
                    raise AnycellError(f"machine {mid} still {st} after {timeout:.0f} s")
                time.sleep(0.05)

    def check_reachable(self) -> None:
        """Reset check: every configured machine answers (a vanished printer keeps the cell out of Idle)."""
        from anycell.errors import ConnectionLost

        for mid, drv in list(self.machines.items()):
            try:
                level = str(drv.health().get("level", "ok"))
                drv.state()
            except AnycellError as exc:
                raise ConnectionLost(f"machine {mid} is unreachable: {exc}", field=f"machines.{mid}",
                                     hint="reconnect the machine, then Clear and Reset") from None
            if level == "error" and not self._connected(drv):
                raise ConnectionLost(f"machine {mid} is unreachable", field=f"machines.{mid}",
                                     hint="reconnect the machine, then Clear and Reset")

    @staticmethod
    def _connected(drv: Any) -> bool:
        link = getattr(drv, "link", None)
        if link is not None and getattr(link, "lost", None):
            return False
        for attr in ("_connected", "connected"):
            v = getattr(drv, attr, None)
            if isinstance(v, bool):
                return v
        return True

    def robot_health(self) -> List[Dict[str, Any]]:
        """One /diagnostics entry per robot: controller connection and tracking."""
        out = []
        for rid, robot in self.ros_robots.items():
            h = robot.health()
            out.append({"name": f"{self.cell.cell.id}/robot/{rid}", "level": h["level"], "message": h["message"],
                        "hardware_id": f"robot:{rid}:{robot.trajectory_topic}", "values": h["values"]})
        return out

    def health(self) -> List[Dict[str, Any]]:
        """One /diagnostics entry per machine driver and per robot; hardware ids name the device."""
        out = self.robot_health()
        for mid, drv in self.machines.items():
            try:
                h = dict(drv.health())
            except AnycellError as exc:
                h = {"level": "error", "message": str(exc)}
            if self.sim_cell is not None and mid in self.sim_cell.sims and not self.sim_cell.sims[mid].alive():
                h = {"level": "error", "message": "the simulated machine process exited"}
            level = h.pop("level", "ok")
            message = str(h.pop("message", ""))
            out.append({"name": f"{self.cell.cell.id}/machine/{mid}", "level": LEVELS.get(str(level), 2),
                        "message": message, "hardware_id": _hardware_id(mid, drv),
                        "values": {k: str(v) for k, v in h.items()}})
        return out

    def reset_machines(self) -> None:
        """PackML Reset of the cell: every machine back to Idle (clearing an abort); errors propagate."""
        for mid, drv in self.machines.items():
            log.info("resetting machine %s", mid)
            drv.reset()

    @property
    def world_file(self) -> Optional[str]:
        """Where the simulated world is saved: beside the journal (sim mode only)."""
        if not self.sim or not self.journal_path:
            return None
        return os.path.join(os.path.dirname(os.path.abspath(self.journal_path)), "sim_world.json")

    def save_world(self, job_id: str = "", op_id: str = "") -> None:
        """After each confirmed step: the simulated parts where they lie, saved with the journal."""
        if self.hooks is not None and self.world_file:
            self.hooks.save(self.world_file)

    def restore_world(self) -> None:
        """Once, before the first job of this agent: put back the parts of the saved world."""
        if self._restored or self.hooks is None or not self.world_file or not os.path.exists(self.world_file):
            self._restored = True
            return
        self._restored = True
        added = self.hooks.restore(self.world_file)
        log.info("restored %d simulated part(s) from %s", added, self.world_file)

    def runner(self, plan: Plan, job: JobSpec) -> CellRunner:
        """A step runner for one job; its report goes beside the journal (see anycell.agent.report.report_dir_for)."""
        from anycell.agent.report import report_dir_for

        self.restore_world()
        report_dir = report_dir_for(self.journal_path, plan.job_id) if self.journal_path else None
        return CellRunner(self.cell, job, robots=self.robots, planners=self.planners, machines=self.machines,
                          sim=self.hooks, report_dir=report_dir, machine_time_scale=self.machine_time_scale)

    def close(self) -> None:
        with self._lock:
            if self.sim_cell is not None:
                self.sim_cell.close()
                self.sim_cell = None
            else:
                for drv in self.machines.values():
                    try:
                        drv.close()
                    except Exception as exc:  # noqa: BLE001 - tear everything down
                        log.warning("closing a machine driver: %s", exc)
            self.machines = {}


def make_runner_factory(node: "CellAgentNode", cell: CellConfig, sim: bool) -> Callable[[Plan, JobSpec], CellRunner]:
    """The factory ``cell_agent`` uses for ``runner:=auto``: one CellRunner per job over the cell's devices."""
    from anycell.sim.machines import sim_machine_settings

    scale, faults = sim_machine_settings() if sim else (None, None)
    if faults:
        log.warning("simulated machines start with fault switches: %s", faults)
    handover = node.get_parameter("sim_machines").value if node.has_parameter("sim_machines") else ""
    devices = CellDevices(node, cell, sim=sim, journal_path=node.service.journal.path, machine_faults=faults,
                          machine_time_scale=scale, sim_machines=str(handover or ""))
    node.service.health_sources.append(devices.health)
    node.service.reset_checks.append(devices.check_reachable)
    node.service.reset_hooks.append(devices.reset_machines)
    node.service.halt_hooks.append(devices.halt_all)
    node.service.stop_hooks.append(devices.wait_machines_stopped)
    if sim:
        node.service.step_hooks.append(devices.save_world)
    node.cell_devices = devices
    return devices.runner


def _hardware_id(mid: str, drv: Any) -> str:
    """The device behind a machine id: its OPC UA endpoint or serial port."""
    for attr in ("endpoint", "port"):
        v = getattr(drv, attr, None)
        if isinstance(v, str) and v:
            return f"{mid}@{v}"
    return mid
