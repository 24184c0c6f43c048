"""A simulated machine does not outlive the process that launched it."""

from __future__ import annotations

import pytest

from tests.orphans import assert_child_dies_with_parent
from tests.paths import DEMO_CELL


@pytest.mark.slow
def test_simulator_dies_with_its_launcher_even_on_kill_9(tmp_path) -> None:
    assert_child_dies_with_parent(
        "import time\n"
        "from anycell.cell import load_cell\n"
        "from anycell.sim.machines import launch_sim_machine\n"
        f"m = launch_sim_machine(load_cell({DEMO_CELL!r}).machine('printer'), {str(tmp_path)!r})\n"
        "print('PID', m.process.pid, flush=True)\n"
        "time.sleep(60)\n", "a simulated machine")


def _printer_and_mill():
    from anycell.cell import load_cell

    cell = load_cell(DEMO_CELL)
    return cell.machine("printer"), cell.machine("mill")


def test_simulators_started_by_one_process_are_taken_over_from_the_handover_file(tmp_path) -> None:
    """What `anycell up --sim` and the cell agent do: one starts, the other waits for, uses and stops."""
    from anycell.childproc import ProcessById
    from anycell.drivers.machine import open_machine
    from anycell.sim.machines import adopt_sim_machines, start_sim_machines, write_handover

    printer, mill = _printer_and_mill()
    started = start_sim_machines([printer], str(tmp_path), 0.02, {"printer": {"busy_interval": 2.0}})
    handover = str(tmp_path / "handover.json")
    write_handover(handover, started, 0.02, {"printer": {"busy_interval": 2.0}})
    try:
        adopted = adopt_sim_machines(handover, [printer, mill], 0.02, {"printer": {"busy_interval": 2.0}})
        assert list(adopted) == ["printer"]              # the mill was not started: the caller starts it
        running = adopted["printer"].wait()
        assert isinstance(running.process, ProcessById) and running.process.pid == started["printer"].child.proc.pid
        assert running.alive()
        drv = open_machine(printer, address=running.address)
        drv.connect()
        try:
            assert drv.state()                           # it answers on its real transport
        finally:
            drv.close()
        running.stop()
        assert not running.alive()
    finally:
        for sm in started.values():
            sm.kill()


def test_a_handover_with_other_settings_or_unreadable_takes_nothing(tmp_path) -> None:
    from anycell.sim.machines import adopt_sim_machines, start_sim_machines, write_handover

    printer, _ = _printer_and_mill()
    started = start_sim_machines([printer], str(tmp_path), 0.02)
    handover = str(tmp_path / "handover.json")
    write_handover(handover, started, 0.02, None)
    try:
        assert adopt_sim_machines(handover, [printer], 0.5, None) == {}                       # another time scale
        assert adopt_sim_machines(handover, [printer], 0.02, {"printer": {"alarm_at_line": 3}}) == {}
        assert adopt_sim_machines(str(tmp_path / "missing.json"), [printer], 0.02, None) == {}
        (tmp_path / "bad.json").write_text("{not json")
        assert adopt_sim_machines(str(tmp_path / "bad.json"), [printer], 0.02, None) == {}
    finally:
        for sm in started.values():
            sm.kill()


def test_simulator_settings_come_from_one_place() -> None:
    from anycell.sim.machines import sim_machine_settings

    assert sim_machine_settings({}) == (None, None)
    scale, faults = sim_machine_settings({"ANYCELL_SIM_TIME_SCALE": "0.1",
                                          "ANYCELL_SIM_FAULTS": '{"mill": {"alarm_at_progress": 0.5}}'})
    assert scale == 0.1 and faults == {"mill": {"alarm_at_progress": 0.5}}
