"""Marlin driver against the simulated Marlin printer, over a real pty."""

import pytest

from anycell.errors import ConnectionLost, MachineFault, ProgramRejected
from anycell.job import Program
from anycell.drivers.gcode import prepare_program
from anycell.drivers.machine import open_machine
from anycell.drivers.marlin import checksum, numbered, parse_temperatures

from .conftest import machine_cfg

with open("examples/jobs/programs/cap.gcode", encoding="utf-8") as _fh:
    CAP = _fh.read()
PARAMS = {"hotend_temp": 210, "bed_temp": 60}
LONG = CAP + "\n" + "\n".join(f"G1 X{i % 50} Y{(i * 3) % 40} E{i * 0.1:.1f}" for i in range(200))


def connect(launch, cfg, timeout=None, **faults):
    sim = launch(cfg, **faults)
    m = open_machine(cfg, sim.address)
    if timeout:
        m.timeout = timeout
    launch.drivers.append(m)
    m.connect()
    return sim, m


def program_lines(sim):
    return [ln for ln in sim.received_lines() if not ln.startswith("M155")]


def test_checksum_and_temperature_parsing():
    assert numbered(1, "G28") == f"N1 G28*{checksum('N1 G28')}"
    assert checksum("N0 M110 N0") == 125  # the value OctoPrint sends
    assert parse_temperatures("ok T:201.5 /210.0 B:59.8 /60.0 @:0 B@:0") == {"T": (201.5, 210.0), "B": (59.8, 60.0)}


def test_cap_program_with_heating_waits(launch):
    # M190/M109 take ~0.5 s of modelled heating; busy/temperature lines keep the 0.3 s timeout alive
    sim, m = connect(launch, machine_cfg("marlin"), timeout=0.3, time_scale=0.002, busy_interval=0.1)
    result = m.run_program(Program(inline=CAP), PARAMS)
    expected = [g.text for g in prepare_program(CAP, PARAMS)]
    assert result.status == "complete" and result.lines_acknowledged == len(expected)
    assert program_lines(sim) == expected
    assert m.timeouts_recovered == 0
    temps = m.read_temperatures()
    assert temps["T"][1] == 0.0  # the program switched the heaters off at the end
    assert m.state() == "Complete"


def test_five_percent_corrupted_lines_delivered_exactly_once_in_order(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.0005, corrupt_fraction=0.05, seed=7)
    result = m.run_program(Program(inline=LONG), PARAMS)
    expected = [g.text for g in prepare_program(LONG, PARAMS)]
    assert result.status == "complete"
    assert program_lines(sim) == expected  # exactly once, in order
    corrupted = sum(1 for ln in sim.log_lines() if ln.startswith("CORRUPTED"))
    assert corrupted >= 5 and m.resends >= corrupted - 1


@pytest.mark.slow
def test_lost_and_late_oks_do_not_duplicate_lines(launch):
    sim, m = connect(launch, machine_cfg("marlin"), timeout=0.4, time_scale=0.0005, drop_ok_fraction=0.03,
                     late_ok_fraction=0.05, late_ok_delay=0.1, seed=3)
    result = m.run_program(Program(inline=LONG), PARAMS)
    assert result.status == "complete"
    assert program_lines(sim) == [g.text for g in prepare_program(LONG, PARAMS)]
    assert m.timeouts_recovered >= 1


@pytest.mark.slow
def test_oks_later_than_the_timeout_do_not_cascade_into_resends(launch):
    # an ok that arrives after the driver resent the line: the firmware refuses the duplicate,
    # and the driver must not answer that refusal by sending the next line twice
    sim, m = connect(launch, machine_cfg("marlin"), timeout=0.15, time_scale=0.0005, late_ok_fraction=0.03,
                     late_ok_delay=0.3, seed=5)
    result = m.run_program(Program(inline=LONG), PARAMS)
    expected = [g.text for g in prepare_program(LONG, PARAMS)]
    assert result.status == "complete" and program_lines(sim) == expected
    assert m.timeouts_recovered >= 1
    refused = sum(1 for ln in sim.log_lines() if ln.startswith("REJECTED"))
    assert refused <= 2 * m.timeouts_recovered  # one refused duplicate per late ok, not one per line after it


def test_printer_halt_is_a_machine_fault(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.0005, alarm_at_line=12)
    with pytest.raises(MachineFault, match="Thermal Runaway|halted"):
        m.run_program(Program(inline=LONG), PARAMS)
    assert m.state() == "Aborted" and m.health()["level"] == "error"


def test_forbidden_command_rejected_before_any_byte(launch):
    sim, m = connect(launch, machine_cfg("marlin", forbidden_gcodes=["M502", "M500"]), time_scale=0.001)
    before = m.link.bytes_written
    with pytest.raises(ProgramRejected, match="M502 is forbidden"):
        m.run_program(Program(inline=CAP + "\nM502\n"), PARAMS)
    with pytest.raises(ProgramRejected):
        m.run_program(Program(inline=CAP), {"hotend_temp": "210\nM500", "bed_temp": 60})
    assert m.link.bytes_written == before
    assert program_lines(sim) == []


def test_printer_vanishing_mid_program(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.0005, vanish_at_line=40)
    with pytest.raises(ConnectionLost) as err:
        m.run_program(Program(inline=LONG), PARAMS)
    received = program_lines(sim)
    assert len(received) == 38  # the 40th executed command (after M155) vanished
    assert m.lines_acknowledged <= len(received)
    assert f"acknowledged {m.lines_acknowledged} of" in str(err.value)


@pytest.mark.slow
def test_host_side_pause_and_resume(launch):
    import threading
    import time

    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.002)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(inline=LONG), PARAMS)))
    t.start()
    time.sleep(0.3)
    m.hold()
    time.sleep(0.2)
    assert m.state() == "Held"
    n1 = len(program_lines(sim))
    time.sleep(0.3)
    assert len(program_lines(sim)) == n1  # nothing fed while held
    m.resume()
    t.join(30)
    assert out["r"].status == "complete"
    assert program_lines(sim) == [g.text for g in prepare_program(LONG, PARAMS)]
