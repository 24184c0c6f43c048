"""Marlin driver against the simulated Marlin printer, over real ptys (and the serial fault proxy)."""

import threading
import time

import pytest

from anycell.drivers.gcode import prepare_program
from anycell.drivers.machine import open_machine
from anycell.drivers.marlin import checksum, numbered, parse_temperatures
from anycell.errors import ConnectionLost, DriverTimeout, MachineFault, ProgramRejected
from anycell.job import Program
from anycell.sim.serial_fault_proxy import check_exactly_once, launch_fault_proxy, replay_marlin

from .conftest import machine_cfg

with open("examples/jobs/programs/cap.gcode", encoding="utf-8") as _fh:
    CAP = _fh.read()
PARAMS = {"hotend_temp": 210, "bed_temp": 60}
LONG = CAP + "\n" + "\n".join(f"G1 X{i % 50} Y{(i * 3) % 40} E{i * 0.1:.1f}" for i in range(200))
DRIVER_OWN = ("M105", "M155", "M410")


def connect(launch, cfg, timeout=None, **faults):
    sim = launch(cfg, **faults)
    m = open_machine(cfg, sim.address)
    if timeout:
        m.timeout = timeout
    launch.drivers.append(m)
    m.connect()
    return sim, m


@pytest.fixture
def proxied(launch, tmp_path):
    """proxied(cfg, proxy_faults, timeout=..., **sim_faults) -> (sim, proxy, driver) through the fault proxy."""
    proxies = []

    def start(cfg, proxy_faults, timeout=None, **faults):
        sim = launch(cfg, **faults)
        proxy = launch_fault_proxy(sim.address, str(tmp_path / f"proxy{len(proxies)}"), proxy_faults)
        proxies.append(proxy)
        m = open_machine(cfg, proxy.address)
        if timeout:
            m.timeout = timeout
        launch.drivers.append(m)
        m.connect()
        return sim, proxy, m

    yield start
    for p in proxies:
        p.stop()


def program_lines(sim):
    """What the firmware executed, without the driver's own sync, probe and auto-report commands."""
    return [ln for ln in sim.received_lines() if ln.split(" ")[0] not in DRIVER_OWN]


def expected(text=LONG, params=PARAMS):
    return [g.text for g in prepare_program(text, params)]


def test_checksum_and_temperature_parsing():
    assert numbered(1, "G28") == f"N1 G28*{checksum('N1 G28')}"
    assert checksum("N0 M110 N0") == 125  # the value OctoPrint sends
    assert parse_temperatures("ok T:201.5 /210.0 B:59.8 /60.0 @:0 B@:0") == {"T": (201.5, 210.0), "B": (59.8, 60.0)}


def test_replay_follows_marlin_rules():
    wire = [numbered(0, "M110 N0"), numbered(1, "G28"), numbered(1, "G28"),  # repeat: ignored
            numbered(2, "G1 X5").rsplit("*", 1)[0] + "*0",                       # bad checksum: refused
            numbered(3, "G1 X6"),                                               # wrong number: refused
            numbered(2, "G1 X5"), numbered(3, "G1 X6"), "M410"]
    assert replay_marlin(wire) == ["G28", "G1 X5", "G1 X6", "M410"]
    assert check_exactly_once(replay_marlin(wire), ["G28", "G1 X5", "G1 X6"]).ok
    report = check_exactly_once(["G28", "G1 X6", "G1 X6"], ["G28", "G1 X5", "G1 X6"])
    assert not report.ok and "position 1" in report.problems[0]


def test_cap_program_with_heating_waits(launch):
    # M190/M109 take ~0.5 s of modelled heating; busy: lines keep the 0.3 s timeout alive
    sim, m = connect(launch, machine_cfg("marlin"), timeout=0.3, time_scale=0.002, busy_interval=0.1)
    result = m.run_program(Program(inline=CAP), PARAMS)
    want = expected(CAP)
    assert result.status == "complete" and result.lines_executed == result.lines_acknowledged == len(want)
    assert program_lines(sim) == want
    assert m.probes_sent == 0
    temps = m.read_temperatures()
    assert temps["T"][1] == 0.0  # the program switched the heaters off at the end
    assert m.state() == "Complete"


def test_autoreport_interval_zero_turns_auto_report_off(launch):
    sim, m = connect(launch, machine_cfg("marlin", autoreport_interval=0), time_scale=0.001)
    assert "M155 S0" in sim.received_lines()
    sim2, m2 = connect(launch, machine_cfg("marlin"), time_scale=0.001)
    assert "M155 S1" in sim2.received_lines()


@pytest.mark.slow
@pytest.mark.parametrize("autoreport", [1, 0])
@pytest.mark.parametrize("faults", [
    {"drop_line_fraction": 0.03},
    {"drop_ok_fraction": 0.03, "garble_ok_fraction": 0.02},
    {"corrupt_fraction": 0.05},
    {"corrupt_fraction": 0.03, "drop_line_fraction": 0.02, "drop_ok_fraction": 0.02, "garble_ok_fraction": 0.01},
], ids=["lost-lines", "lost-oks", "corruption", "everything"])
def test_every_line_exactly_once_through_the_fault_proxy(proxied, faults, autoreport):
    # auto-report every second keeps the printer chatty: it must not hide a lost ok or line
    cfg = machine_cfg("marlin", autoreport_interval=autoreport)
    sim, proxy, m = proxied(cfg, {**faults, "seed": 11}, timeout=0.3, time_scale=0.0005, busy_interval=0.1)
    result = m.run_program(Program(inline=LONG), PARAMS, timeout=120)
    want = expected()
    assert result.status == "complete" and result.lines_executed == len(want)
    report = check_exactly_once(replay_marlin(proxy.wire()), want)
    assert report.ok, report.problems
    assert program_lines(sim) == want  # the firmware's own log agrees with the replay
    injected = sum(proxy.count(e) for e in ("DROP_TX", "CORRUPT_TX", "DROP_RX", "GARBLE_RX"))
    assert injected >= 3


@pytest.mark.slow
def test_lost_ok_is_recovered_by_a_probe_not_by_repeating_the_line(proxied):
    sim, proxy, m = proxied(machine_cfg("marlin"), {"drop_ok_fraction": 0.05, "seed": 4}, timeout=0.3,
                            time_scale=0.0005)
    result = m.run_program(Program(inline=LONG), PARAMS, timeout=60)
    assert result.status == "complete" and m.probes_sent >= 1
    assert check_exactly_once(replay_marlin(proxy.wire()), expected()).ok
    # a repeated line would be ignored silently by Marlin 2.1: the driver never sends one
    repeats = [ln for ln in sim.log_lines() if ln.startswith("IGNORED repeat")]
    assert repeats == []


def test_stop_mid_program_then_the_next_program_runs_from_its_first_line(proxied):
    sim, proxy, m = proxied(machine_cfg("marlin"), {}, time_scale=0.01)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(inline=LONG), PARAMS)))
    t.start()
    deadline = time.monotonic() + 20
    while len(program_lines(sim)) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    m.stop()
    t.join(20)
    first = out["r"]
    assert first.status == "stopped" and first.lines_executed < len(expected())
    executed_before = len(program_lines(sim))
    assert executed_before <= first.lines_executed + 1  # at most the line in doubt, never more after stop
    second_prog = "G28\nG90\nG1 X1 Y1 F3000\nG1 X2 Y2\n"
    wire_before = len(proxy.wire())
    result = m.run_program(Program(inline=second_prog), {})
    assert result.status == "complete" and result.lines_executed == 4
    # the second program re-synchronised first and ran from its first line, each line once
    second_wire = proxy.wire()[wire_before:]
    assert " M110 N" in second_wire[0]
    assert program_lines(sim)[executed_before:] == expected(second_prog, {})
    assert m.resyncs >= 2


@pytest.mark.slow
def test_program_deadline_fires_and_the_next_program_resyncs_first(launch):
    # a 1.5 s dwell without busy: keep-alives: probes go unanswered, the program deadline fires
    sim, m = connect(launch, machine_cfg("marlin"), timeout=0.2, time_scale=1.0, busy_interval=30)
    t0 = time.monotonic()
    with pytest.raises(DriverTimeout, match="not finished within 0.6 s"):
        m.run_program(Program(inline="G4 S1.5\nG1 X9 F3000\nG1 X8\n"), {}, timeout=0.6)
    assert time.monotonic() - t0 < 2.0
    m.timeout = 3.0
    result = m.run_program(Program(inline="G1 X3 F3000\nG1 X4\n"), {})
    assert result.status == "complete" and result.lines_executed == 2
    # the old program's next line never ran; the new one ran from its first line
    assert program_lines(sim) == ["G4 S1.5", "G1 X3 F3000", "G1 X4"]


def test_unknown_command_fails_the_program_or_warns(launch):
    prog = "G28\nM9999\nG1 X1 F3000\n"
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.001)
    with pytest.raises(MachineFault, match="M9999.*not a command this Marlin knows"):
        m.run_program(Program(inline=prog), {})
    assert m.state() == "Aborted"
    sim2, m2 = connect(launch, machine_cfg("marlin", unknown_command="warn"), time_scale=0.001)
    result = m2.run_program(Program(inline=prog), {})
    assert result.status == "complete" and "M9999" in result.details["unknown_commands"][0]
    assert m2.health()["level"] == "warn"


def test_printer_halt_is_a_machine_fault_with_its_cause(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.0005, alarm_at_line=12)
    with pytest.raises(MachineFault, match="halted.*cause: Thermal Runaway"):
        m.run_program(Program(inline=LONG), PARAMS)
    assert m.state() == "Aborted" and m.health()["level"] == "error"
    sim2, m2 = connect(launch, machine_cfg("marlin"), time_scale=0.0005, homing_fails=True)
    with pytest.raises(MachineFault, match="cause: Homing Failed"):
        m2.run_program(Program(inline=CAP), PARAMS)
    with pytest.raises(MachineFault, match="power cycle"):
        m2.reset()


def test_forbidden_command_rejected_before_any_byte(launch):
    sim, m = connect(launch, machine_cfg("marlin", forbidden_gcodes=["M502", "M500"]), time_scale=0.001)
    before = m.link.bytes_written
    for prog, params in ((CAP + "\nM502\n", PARAMS), (CAP + "\nM500.5\n", PARAMS),
                         (CAP + "\nM{p}\n", {**PARAMS, "p": 502.9}), (CAP, {"hotend_temp": "210\nM500", "bed_temp": 60})):
        with pytest.raises(ProgramRejected):
            m.run_program(Program(inline=prog), params)
    assert m.link.bytes_written == before
    assert program_lines(sim) == []


def test_printer_vanishing_mid_program(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.0005, vanish_at_line=40)
    with pytest.raises(ConnectionLost) as err:
        m.run_program(Program(inline=LONG), PARAMS)
    received = program_lines(sim)
    assert m.lines_executed <= len(received)
    assert f"executed {m.lines_executed} of" in str(err.value)


@pytest.mark.slow
def test_host_side_pause_and_resume(launch):
    sim, m = connect(launch, machine_cfg("marlin"), time_scale=0.002)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(inline=LONG), PARAMS)))
    t.start()
    deadline = time.monotonic() + 20
    while len(program_lines(sim)) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    m.hold()
    deadline = time.monotonic() + 5
    while m.state() != "Held" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert m.state() == "Held"
    time.sleep(0.2)
    n1 = len(program_lines(sim))
    time.sleep(0.3)
    assert len(program_lines(sim)) == n1  # nothing fed while held
    m.resume()
    t.join(30)
    assert out["r"].status == "complete"
    assert program_lines(sim) == expected()


@pytest.mark.slow
def test_single_commands_return_only_once_marlin_ran_them(proxied):
    sim, proxy, m = proxied(machine_cfg("marlin"), {"corrupt_fraction": 0.3, "seed": 9}, timeout=0.3,
                            time_scale=0.0005)
    cmds = [f"G1 X{i} F3000" for i in range(1, 16)]
    for cmd in cmds:
        assert m.send_command(cmd).startswith("ok")
    assert program_lines(sim) == cmds  # each exactly once, in order, although ~30% arrived corrupted
    assert check_exactly_once(replay_marlin(proxy.wire()), cmds).ok
    assert proxy.count("CORRUPT_TX") >= 3
