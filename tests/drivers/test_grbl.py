"""GRBL driver against the simulated GRBL controller, over a real pty."""

import threading
import time

import pytest

from anycell.errors import ConnectionLost, MachineFault, ProgramRejected
from anycell.job import Program
from anycell.drivers.gcode import prepare_program
from anycell.drivers.grbl import GrblMachine, parse_status
from anycell.drivers.machine import open_machine

from .conftest import machine_cfg

#: G54 at machine (-250, -150, -50) mm: GRBL's machine space is negative from the homed corner.
WORK_OFFSET = [-0.25, -0.15, -0.05]


def grbl_cfg(**driver):
    return machine_cfg("grbl", work_offset=WORK_OFFSET, **driver)


PROGRAM = "G21 G90 ; metric, absolute\nG1 X5 Y5 F{feed}\n" + "\n".join(
    f"G1 X{5 + i % 40} Y{5 + (i * 7) % 30}" for i in range(120)) + "\nG0 X0 Y0\nM2\n"


def ran(sim):
    """The program lines GRBL received, without the G54 work offset the driver sets on connect."""
    return [ln for ln in sim.received_lines() if not ln.startswith(("G10 L2 P1", "G54"))]


def connect(launch, cfg=None, **faults):
    cfg = cfg or grbl_cfg()
    sim = launch(cfg, **faults)
    m = open_machine(cfg, sim.address)
    launch.drivers.append(m)
    m.connect()
    return sim, m


def test_parse_status_fields():
    st = parse_status("<Hold:0|MPos:1.000,-2.500,0.000|Bf:15,127|FS:500,12000|WCO:1.000,0.000,0.000|Ln:99>")
    assert st["state"] == "Hold" and st["substate"] == 0
    assert st["mpos"] == [1.0, -2.5, 0.0] and st["wco"] == [1.0, 0.0, 0.0]
    assert st["buffer"] == {"planner": 15, "rx": 127} and st["feed"] == 500 and st["speed"] == 12000
    assert st["line"] == 99
    assert parse_status("ok") is None


@pytest.mark.parametrize("streaming", ["character_counting", "send_response"])
def test_whole_program_received_exactly(launch, streaming):
    cfg = grbl_cfg(streaming=streaming)
    sim = launch(cfg, time_scale=0.001)
    m = open_machine(cfg, sim.address)
    assert isinstance(m, GrblMachine) and m.streaming == streaming
    launch.drivers.append(m)
    m.connect()
    seen = []
    result = m.run_program(Program(inline=PROGRAM), {"feed": 3000}, progress=seen.append)
    expected = [g.text for g in prepare_program(PROGRAM, {"feed": 3000})]
    assert result.status == "complete"
    assert result.lines_acknowledged == result.lines_executed == result.lines_total == len(expected)
    assert ran(sim) == expected
    assert "OVERFLOW" not in sim.log_lines()
    assert seen and seen[-1].done == len(expected)
    st = m.query_status()
    # work X0 Y0 is machine (-250, -150): the work offset from the cell config was written to G54
    assert st["state"] == "Idle" and st["mpos"][:2] == [-250.0, -150.0]
    assert any(ln.startswith("WCS G54 -250.000,-150.000,-50.000") for ln in sim.log_lines())
    assert m.state() == "Complete"
    m.reset()
    assert m.state() == "Idle"


def test_settings_homing_and_unlock(launch):
    sim, m = connect(launch, time_scale=0.01)
    settings = m.read_settings()
    assert float(settings[130]) == 300.0 and float(settings[20]) == 1
    m.write_setting(130, 250)
    assert float(m.read_settings()[130]) == 250.0
    m.home()
    assert "HOMED" in sim.log_lines()
    # homing runs to the positive end: machine position is minus the pull-off ($27 = 1 mm)
    assert m.query_status()["mpos"] == [-1.0, -1.0, -1.0]
    assert m.read_offsets()["G54"] == [-250.0, -150.0, -50.0]


@pytest.mark.slow
def test_soft_limit_alarm_stops_program_and_leaves_alarm_state(launch):
    sim, m = connect(launch, time_scale=0.001)
    prog = "G21 G90\nG1 X10 F3000\nG1 X20\nG1 X400 ; beyond the 300 mm travel\nG1 X30\nG1 X40\n"
    with pytest.raises(MachineFault) as err:
        m.run_program(Program(inline=prog), {})
    text = str(err.value)
    assert "ALARM:2" in text and "soft limit" in text and "line 4" in text
    # the lines after the alarm never ran, the controller is locked in Alarm
    assert ran(sim) == ["G21 G90", "G1 X10 F3000", "G1 X20", "G1 X400"]
    assert m.state() == "Aborted" and m.query_status()["state"] == "Alarm"
    assert m.health()["level"] == "error"
    assert "RESET_SWALLOWED" not in sim.log_lines()  # the driver waited for "Reset to continue"
    with pytest.raises(MachineFault, match="Alarm"):
        m.run_program(Program(inline="G1 X1"), {})
    m.reset()  # $X
    assert m.state() == "Idle"
    assert m.run_program(Program(inline="G1 X15 F3000"), {}).status == "complete"
    assert ran(sim)[-1] == "G1 X15 F3000"


@pytest.mark.slow
def test_alarm_fault_switch_at_line(launch):
    sim, m = connect(launch, time_scale=0.001, alarm_at_line=32)  # 2 lines set G54 on connect
    with pytest.raises(MachineFault, match="ALARM:1"):
        m.run_program(Program(inline=PROGRAM), {"feed": 3000})
    assert len(ran(sim)) == 30
    assert m.query_status()["state"] == "Alarm"


def test_error_reply_names_the_line(launch):
    sim, m = connect(launch, time_scale=0.001)
    # G1 before any feed rate: GRBL's error:22
    with pytest.raises(MachineFault) as err:
        m.run_program(Program(inline="G21\nG1 X10\nG1 X20 F100"), {})
    assert "error:22" in str(err.value) and "feed rate" in str(err.value) and "line 2" in str(err.value)


def test_forbidden_or_injected_command_rejected_before_any_byte(launch):
    cfg = grbl_cfg(forbidden_gcodes=["M3"])
    sim, m = connect(launch, cfg, time_scale=0.001)
    before = m.link.bytes_written
    for prog, params in (("G1 X1 F100\nM3 S1000", {}), ("G1 X{x} F100", {"x": "1\n$H"}),
                         ("G1 X1 F100\nG1 X2 !", {}), ("G1 X1 F100\nM3.7 S1", {}), ("M{m} S1", {"m": 3.2})):
        with pytest.raises(ProgramRejected):
            m.run_program(Program(inline=prog), params)
    assert m.link.bytes_written == before
    assert ran(sim) == []


@pytest.mark.slow
def test_hold_and_resume(launch):
    sim, m = connect(launch, time_scale=0.3)
    prog = "G21 G90\nG1 X20 F1200\nG1 X0\n"  # 2 x 1 s of motion at time-scale 0.3
    states = []
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(inline=prog), {})))
    t.start()
    time.sleep(0.15)
    m.hold()
    time.sleep(0.2)
    states.append(m.query_status()["state"])
    m.resume()
    t.join(10)
    assert states == ["Hold"]
    assert out["r"].status == "complete"
    assert "FEED_HOLD" in sim.log_lines() and "CYCLE_START" in sim.log_lines()


def test_device_vanishing_reports_acknowledged_lines(launch):
    sim, m = connect(launch, time_scale=0.001, vanish_at_line=52)  # 2 lines set G54 on connect
    with pytest.raises(ConnectionLost) as err:
        m.run_program(Program(inline=PROGRAM), {"feed": 3000})
    acked = m.lines_acknowledged
    received = ran(sim)
    expected = [g.text for g in prepare_program(PROGRAM, {"feed": 3000})]
    # GRBL parsed 49 lines before it vanished; the oks of the last few may still have been on
    # their way. The driver counts exactly the oks it got, and those lines were all received.
    assert len(received) == 49 and received == expected[:49]
    assert 40 <= acked <= 49
    assert f"acknowledged {acked} of {len(expected)}" in str(err.value)
    assert m.health()["level"] == "error"


@pytest.mark.slow
def test_lost_ok_times_out_with_a_clear_error(launch):
    sim, m = connect(launch, time_scale=0.001, drop_ok_fraction=0.05, seed=2)
    m.timeout = 0.5
    from anycell.errors import DriverTimeout

    with pytest.raises(DriverTimeout, match="no reply to"):
        m.run_program(Program(inline=PROGRAM), {"feed": 3000})
    assert m.lines_acknowledged < m.lines_sent


def test_stop_mid_program_holds_then_resets_without_alarm(launch):
    sim, m = connect(launch, time_scale=0.05)
    out = {}
    prog = "G21 G90\n" + "\n".join(f"G1 X{10 + i % 2 * 10} F600" for i in range(40))  # 1 s a move x 0.05
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(inline=prog), {})))
    t.start()
    time.sleep(0.3)
    m.stop()
    t.join(10)
    res = out["r"]
    assert res.status == "stopped" and res.lines_acknowledged < 41
    # acknowledged is not executed: the moves still in GRBL's planner were flushed by the reset
    assert res.lines_executed < res.lines_acknowledged
    assert res.details["lines_flushed"] == res.lines_acknowledged - res.lines_executed
    log = sim.log_lines()
    assert "FEED_HOLD" in log and "RESET" in log
    assert m.query_status()["state"] == "Idle"  # a reset during a completed hold keeps the position


@pytest.mark.slow
def test_limit_alarm_then_packml_reset_then_a_program_completes(launch):
    # a hard limit at the 10th line: ALARM:1, 0.5 s later "[MSG:Reset to continue]", then silence
    sim, m = connect(launch, time_scale=0.001, alarm_at_line=10, alarm_msg_delay=0.5)
    with pytest.raises(MachineFault, match="ALARM:1.*hard limit"):
        m.run_program(Program(inline=PROGRAM), {"feed": 3000})
    log = sim.log_lines()
    assert "RESET_SWALLOWED" not in log and log.index("RESET") > log.index("ALARM 1 hard limit (fault switch)")
    assert m.state() == "Aborted"
    m.reset()  # what the agent's PackML Reset calls: soft reset done, $X now
    assert m.state() == "Idle" and "UNLOCK" in sim.log_lines()
    before = len(ran(sim))
    result = m.run_program(Program(inline="G21 G90\nG1 X1 Y1 F3000\nG0 X0 Y0\n"), {})
    assert result.status == "complete" and result.lines_executed == 3
    assert ran(sim)[before:] == ["G21 G90", "G1 X1 Y1 F3000", "G0 X0 Y0"]


def test_reset_recovers_an_alarm_raised_outside_a_program(launch):
    sim, m = connect(launch, time_scale=0.001, alarm_msg_delay=0.3)
    with pytest.raises(MachineFault):
        m.command("G1 X400 F3000")  # soft limit from a single command; GRBL locks up
    assert m.locked and m.state() == "Aborted"
    m.reset()
    assert m.state() == "Idle"


@pytest.mark.slow
def test_program_started_while_an_earlier_clients_lines_are_buffered(launch):
    import serial

    sim, m = connect(launch, time_scale=1.0)
    # another client (a sender that crashed) left slow moves in GRBL's planner and buffer
    other = serial.Serial(sim.address, 115200, timeout=0.1)
    other.write(b"G21 G90\nG1 X10 F300\nG1 X0\nG1 X10\nG1 X0\n")
    other.flush()
    deadline = time.monotonic() + 5
    while len(ran(sim)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    other.close()
    mine = "G21 G90\nG1 Y2 F6000\nG1 Y0\n"
    result = m.run_program(Program(inline=mine), {})
    assert result.status == "complete" and result.lines_executed == result.lines_acknowledged == 3
    theirs = ["G21 G90", "G1 X10 F300", "G1 X0", "G1 X10", "G1 X0"]
    assert ran(sim) == theirs + ["G21 G90", "G1 Y2 F6000", "G1 Y0"]
    # their moves still queued were flushed (feed hold + reset) before our first line went out,
    # so none ran between ours and none of their oks was counted for ours
    log = sim.log_lines()
    reset = log.index("RESET")
    ours = [i for i, ln in enumerate(log) if ln == "RX G21 G90"][-1]
    assert m.flushes == 1 and log.index("RX G1 X0") < reset < ours


def test_status_queries_are_resent_across_a_reset(launch):
    sim, m = connect(launch, time_scale=0.001)
    m.timeout = 2.0
    m.link.write(b"\x18")  # a reset swallows any pending '?'
    t0 = time.monotonic()
    assert m.query_status()["state"] == "Idle"
    assert time.monotonic() - t0 < 1.0


@pytest.mark.slow
def test_packml_reset_of_the_cell_clears_a_grbl_limit_alarm(launch, tmp_path):
    """The cell's PackML Reset calls Machine.reset() (agent reset hook): the alarm clears, Idle."""
    from anycell.agent import packml as pm
    from anycell.agent.cell_service import CellService
    from anycell.agent.journal import Journal
    from anycell.cell import load_cell
    from tests.paths import DEMO_CELL

    sim, m = connect(launch, time_scale=0.001, alarm_at_line=6)
    with pytest.raises(MachineFault, match="ALARM:1"):
        m.run_program(Program(inline=PROGRAM), {"feed": 3000})
    assert m.state() == "Aborted"
    svc = CellService(load_cell(DEMO_CELL), Journal(str(tmp_path / "journal.db")))
    svc.reset_hooks.append(m.reset)
    svc.start()
    try:
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 15), svc.packml.state
    finally:
        svc.shutdown()
    assert m.state() == "Idle"
    assert m.run_program(Program(inline="G21 G90\nG1 X2 F3000\n"), {}).status == "complete"


def test_board_booting_in_alarm_is_homed_then_gets_its_work_offset(launch):
    # GRBL with homing enabled starts locked ('$H'|'$X' to unlock): no offset can be written yet
    sim, m = connect(launch, time_scale=0.001, boot_alarm=True)
    assert m.state() == "Aborted" and not any(ln.startswith("WCS") for ln in sim.log_lines())
    with pytest.raises(MachineFault, match="Alarm"):
        m.run_program(Program(inline="G1 X1 F3000"), {})
    m.home()
    result = m.run_program(Program(inline="G21 G90\nG1 X5 Y5 Z-2 F3000\n"), {})
    assert result.status == "complete"
    assert any(ln.startswith("WCS G54 -250.000,-150.000,-50.000") for ln in sim.log_lines())
    assert m.query_status()["mpos"] == [-245.0, -145.0, -52.0]
