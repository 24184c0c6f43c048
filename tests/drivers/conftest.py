"""Fixtures that start simulated machines as real processes and always stop them."""

from __future__ import annotations

from typing import Any, Callable, List

import pytest

from anycell.cell import MachineConfig, Pose, SerialDriver, SimDriver, Tending


def machine_cfg(protocol: str, **driver: Any) -> MachineConfig:
    """A machine config for a simulated machine (serial dialect options when given)."""
    if driver:
        drv: Any = SerialDriver(kind="serial", port="/dev/null", dialect=protocol, **driver)
    else:
        drv = SimDriver(kind="sim", protocol=protocol)
    kind = {"grbl": "cnc_mill", "marlin": "3d_printer", "opcua": "cnc_mill"}[protocol]
    return MachineConfig(id=f"sim_{protocol}", kind=kind, capabilities=["mill"], tending=Tending(load=Pose()), driver=drv)


@pytest.fixture
def launch(tmp_path) -> Callable[..., Any]:
    """launch(machine_cfg, **faults) -> RunningSimMachine; all are stopped after the test."""
    from anycell.sim.machines import launch_sim_machine

    running: List[Any] = []
    drivers: List[Any] = []

    def start(cfg: MachineConfig, **faults: Any) -> Any:
        sim = launch_sim_machine(cfg, str(tmp_path / f"sim{len(running)}"), faults)
        running.append(sim)
        return sim

    start.drivers = drivers  # type: ignore[attr-defined]
    yield start
    for d in drivers:
        try:
            d.close()
        except Exception:  # noqa: BLE001
            pass
    for sim in running:
        sim.stop()
