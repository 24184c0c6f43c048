"""A whole simulated cell for the executor, without ROS: world, robots, planners, machines.

``anycell sim`` and the cell agent in sim mode build one of these from the
CellConfig alone. The PyBullet world runs in this process; every machine runs
its simulator as its own process on its real transport (a pty for G-code, TCP
for OPC UA), and is driven by the same driver a real machine would be.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from anycell.cell import CellConfig
from anycell.job import JobSpec
from anycell.sim.machines import DEFAULT_MACHINE_TIME_SCALE   # light: no simulator starts on import

from anycell.agent.cell_runner import CellRunner
from anycell.agent.simulation.hooks import WorldHooks

if TYPE_CHECKING:  # pybullet, the simulators and the drivers load only when a cell is built
    from anycell.drivers.machine import Machine
    from anycell.drivers.robot import Robot
    from anycell.planners.motion import MotionPlanner
    from anycell.sim.machines import RunningSimMachine, StartingSimMachine
    from anycell.sim.world import SimWorld

log = logging.getLogger(__name__)


class SimulatedCell:
    """The simulated counterpart of every device of a cell; :meth:`close` tears it all down."""

    def __init__(self, cell: CellConfig, workdir: str, *, gui: bool = False, realtime: bool = False,
                 machine_time_scale: float = DEFAULT_MACHINE_TIME_SCALE,
                 machine_faults: Optional[Dict[str, Dict[str, Any]]] = None,
                 with_world: bool = True, meanwhile: Optional[Callable[[], None]] = None,
                 started: Optional[Dict[str, "StartingSimMachine"]] = None) -> None:
        """``started``: simulators another process already started for some machines (see
        :func:`anycell.sim.machines.adopt_sim_machines`); the others are started here."""
        from anycell.drivers.machine import open_machine
        from anycell.sim.machines import start_sim_machines

        self.cell = cell
        self.workdir = workdir
        self.machine_time_scale = machine_time_scale
        os.makedirs(workdir, exist_ok=True)
        self.world: Optional[SimWorld] = None
        self.hooks: Optional[WorldHooks] = None
        self.robots: Dict[str, Robot] = {}
        self.planners: Dict[str, MotionPlanner] = {}
        self.sims: Dict[str, RunningSimMachine] = {}
        self.machines: Dict[str, Machine] = {}
        starting: Dict[str, StartingSimMachine] = dict(started or {})
        try:
            # every simulator boots side by side, and beside the world and planners built here meanwhile
            starting.update(start_sim_machines([m for m in cell.machines if m.id not in starting],
                                               os.path.join(workdir, "machines"), machine_time_scale, machine_faults))
            if with_world:
                from anycell.sim.robot import SimRobot
                from anycell.planners.motion import MotionPlanner
                from anycell.sim.world import SimWorld

                self.world = SimWorld(cell, gui=gui, realtime=realtime)
                self.hooks = WorldHooks(self.world)
                for r in cell.robots:
                    self.robots[r.id] = SimRobot(self.world, r.id)
                    self.planners[r.id] = MotionPlanner(cell, r.id)
            if meanwhile is not None:
                meanwhile()     # the caller's own start-up work, while the simulators boot
            for m in cell.machines:
                self.sims[m.id] = starting.pop(m.id).wait()
                drv = open_machine(m, address=self.sims[m.id].address)
                drv.connect()
                self.machines[m.id] = drv
                log.info("machine %s: simulated %s at %s", m.id, self.sims[m.id].protocol, self.sims[m.id].address)
        except BaseException:
            for pending in starting.values():
                pending.kill()
            self.close()
            raise

    def runner(self, job: JobSpec, *, report_dir: Optional[str] = None,
               on_event: Optional[Callable[[Dict[str, Any]], None]] = None, plan_ahead: bool = True) -> CellRunner:
        """A step runner for one job on this simulated cell; it writes its report into ``report_dir``.

        ``plan_ahead=False`` plans each motion whole before it moves (to compare, see bench_plan_ahead).
        """
        return CellRunner(self.cell, job, robots=self.robots, planners=self.planners, machines=self.machines,
                          sim=self.hooks, report_dir=report_dir, on_event=on_event,
                          machine_time_scale=self.machine_time_scale, plan_ahead=plan_ahead)

    def close(self) -> None:
        for mid, drv in list(self.machines.items()):
            try:
                drv.close()
            except Exception as exc:  # noqa: BLE001 - tear down everything
                log.warning("closing machine %s: %s", mid, exc)
        for sim in self.sims.values():
            sim.stop()
        for planner in self.planners.values():
            close = getattr(planner, "close", None)
            if close:
                close()
        if self.world is not None:
            self.world.close()
            self.world = None
        self.machines.clear()
        self.sims.clear()
