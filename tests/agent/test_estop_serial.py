"""E-stop from a serial machine (simulated GRBL on a pty, through the real driver): an alarm trips the cell,
a vanished serial line counts as tripped; kinds that cannot work are refused when the config is validated."""

from __future__ import annotations

import dataclasses

import pytest

from anycell.agent import packml as pm
from anycell.agent.cell_service import CellService, wait_until
from anycell.agent.estop_sources import serial_estop_read
from anycell.agent.journal import Journal
from anycell.agent.safety import halt_devices
from anycell.cell import load_cell
from anycell.errors import AnycellError
from tests.paths import DEMO_CELL, ROOT

from .test_safety import RecordingRobot

pytestmark = pytest.mark.slow


def _cell_with(estop: dict, extra_machine: bool = True):
    import os

    import yaml

    from anycell.cell import cell_from_document
    from anycell.documents import from_data

    with open(DEMO_CELL, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if extra_machine:
        data["machines"].append({"id": "router", "kind": "cnc_mill", "capabilities": ["engrave"],
                                 "pose": {"xyz": [0.0, 0.6, 0.0]}, "tending": {"load": {"xyz": [0.0, 0.6, 0.2]}},
                                 "driver": {"kind": "sim", "protocol": "grbl"}})
    data["safety"]["estop"] = estop
    return cell_from_document(from_data(data, file=os.path.join(ROOT, "cell_configs", "x.yaml")))


@pytest.mark.parametrize("estop,words", [
    ({"kind": "serial_pin", "source": "router/Q"}, "pin letter"),
    ({"kind": "serial_pin", "source": "printer/D"}, "GRBL"),
    ({"kind": "serial_state", "source": "mill"}, "not a serial"),
    ({"kind": "opcua", "source": "printer/EStop"}, "OPC UA"),
    ({"kind": "pneumatic", "source": "x"}, "kind"),
])
def test_kinds_that_cannot_work_are_refused_at_validation(estop, words) -> None:
    with pytest.raises(AnycellError) as info:
        _cell_with(estop)
    assert words in str(info.value) and "estop" in str(info.value)


def test_grbl_alarm_trips_and_a_vanished_line_trips(tmp_path) -> None:
    from anycell.drivers.machine import open_machine
    from anycell.sim.machines import launch_sim_machine

    cell = _cell_with({"kind": "serial_state", "source": "router"})
    mcfg = cell.machine("router")
    sim = launch_sim_machine(mcfg, str(tmp_path / "router"))
    drv = open_machine(mcfg, sim.address)
    svc = None
    try:
        drv.connect()
        robot = RecordingRobot(["j1"])
        svc = CellService(cell, Journal(str(tmp_path / "j.db")))
        svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))
        watch = svc.add_estop("serial_state:router", serial_estop_read(cell, drv), period=0.05)
        svc.start()
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5), watch.reason
        try:
            drv.command("G0 X5000")          # beyond the soft limits: ALARM:2, the controller sits in Alarm
        except AnycellError:
            pass
        assert wait_until(lambda: robot.stopped_at, 5), "the GRBL alarm did not trip the e-stop"
        assert svc.packml.wait_for([pm.ABORTED], 5)
        drv.soft_reset()                      # GRBL after a soft-limit alarm: soft reset, then $X
        drv.unlock()
        assert wait_until(lambda: not watch.active, 5)
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        n = len(robot.stopped_at)
        sim.stop()                            # the serial line goes away
        assert wait_until(lambda: len(robot.stopped_at) > n, 10)
        assert svc.packml.wait_for([pm.ABORTED], 5) and "lost" in watch.reason
    finally:
        if svc is not None:
            svc.shutdown()
        drv.close()
        sim.stop()


def test_demo_cell_still_validates() -> None:
    cell = load_cell(DEMO_CELL)
    assert dataclasses.asdict(cell.safety.estop)["kind"] == "none"


def test_reset_check_refuses_a_vanished_printer(tmp_path) -> None:
    from types import SimpleNamespace

    from anycell.agent.ros.runners import CellDevices
    from anycell.drivers.machine import open_machine
    from anycell.sim.machines import launch_sim_machine

    cell = load_cell(DEMO_CELL)
    mcfg = cell.machine("printer")
    sim = launch_sim_machine(mcfg, str(tmp_path / "printer"))
    drv = open_machine(mcfg, sim.address)
    try:
        drv.connect()
        devices = SimpleNamespace(machines={"printer": drv}, _connected=CellDevices._connected)
        CellDevices.check_reachable(devices)          # reachable: no error
        sim.stop()                                    # the printer's USB cable is pulled
        assert wait_until(lambda: not CellDevices._connected(drv) or drv.health()["level"] == "error", 10)
        with pytest.raises(AnycellError) as info:
            CellDevices.check_reachable(devices)
        assert info.value.field == "machines.printer"
    finally:
        drv.close()
        sim.stop()
