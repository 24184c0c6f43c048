"""The simulated Marlin printer, spoken to raw over its pty: checksums, resends, heating."""

import subprocess
import sys
import time

import pytest
import serial

from anycell.cell import MachineConfig, Pose, SimDriver, Tending
from anycell.drivers.marlin import numbered
from anycell.sim.machines import launch_sim_machine


@pytest.fixture
def printer(tmp_path):
    cfg = MachineConfig(id="p", kind="3d_printer", capabilities=["print"], tending=Tending(load=Pose()),
                  driver=SimDriver(kind="sim", protocol="marlin"))
    sim = launch_sim_machine(cfg, str(tmp_path), {"time_scale": 0.002, "busy_interval": 0.1})
    port = serial.Serial(sim.address, 115200, timeout=2)
    try:
        yield sim, port
    finally:
        port.close()
        sim.stop()


def exchange(port, line, until="ok", seconds=5.0):
    port.write((line + "\n").encode("ascii"))
    lines = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raw = port.readline().decode("ascii", "replace").strip()
        if raw:
            lines.append(raw)
            if raw.startswith(until):
                return lines
    raise AssertionError(f"timed out; got {lines}")


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "anycell.sim.marlin_printer", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "--corrupt-fraction" in out.stdout


def read_for(port, seconds):
    """Everything the printer says within ``seconds`` (to show that it says nothing)."""
    lines = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raw = port.readline().decode("ascii", "replace").strip()
        if raw:
            lines.append(raw)
    return lines


def test_checksums_line_numbers_and_resend(printer):
    sim, port = printer
    assert exchange(port, numbered(0, "M110 N0"))[-1] == "ok"
    assert exchange(port, numbered(1, "G28"))[-1] == "ok"
    bad = numbered(2, "G1 X5").rsplit("*", 1)[0] + "*0"
    lines = exchange(port, bad)
    assert "Error:checksum mismatch, Last Line: 1" in lines and "Resend: 2" in lines
    lines = exchange(port, numbered(3, "G1 X6"))
    assert "Error:Line Number is not Last Line Number+1, Last Line: 1" in lines and "Resend: 2" in lines
    exchange(port, numbered(2, "G1 X5"))
    exchange(port, numbered(3, "G1 X6"))
    assert sim.received_lines() == ["G28", "G1 X5", "G1 X6"]


@pytest.mark.slow
def test_repeated_lines_are_ignored_silently_like_marlin_2_1(printer):
    sim, port = printer
    exchange(port, numbered(0, "M110 N0"))
    exchange(port, numbered(1, "G28"))
    exchange(port, numbered(2, "G1 X5"))
    # the last line and the one before: no answer at all (no ok, no Resend), and not run again
    port.write((numbered(2, "G1 X5") + "\n" + numbered(1, "G28") + "\n").encode("ascii"))
    assert read_for(port, 0.5) == []
    # an older one is a line-number error with a Resend
    lines = exchange(port, numbered(0, "G1 X7"))
    assert "Resend: 3" in lines
    assert sim.received_lines() == ["G28", "G1 X5"]
    assert sum(1 for ln in sim.log_lines() if ln.startswith("IGNORED repeat")) == 2


@pytest.mark.slow
def test_unknown_command_and_homing_failure_halt(tmp_path):
    cfg = MachineConfig(id="p", kind="3d_printer", capabilities=["print"], tending=Tending(load=Pose()),
                        driver=SimDriver(kind="sim", protocol="marlin"))
    sim = launch_sim_machine(cfg, str(tmp_path), {"time_scale": 0.001, "homing_fails": True})
    port = serial.Serial(sim.address, 115200, timeout=2)
    try:
        lines = exchange(port, "M9999")
        assert lines[-2:] == ['echo:Unknown command: "M9999"', "ok"]
        lines = exchange(port, "G28", until="Error:Printer halted")
        assert lines[-2:] == ["Error:Homing Failed", "Error:Printer halted. kill() called!"]
        port.write(b"M105\n")
        assert read_for(port, 0.3) == []  # a killed printer answers nothing
    finally:
        port.close()
        sim.stop()


def test_heating_takes_time_and_reports(printer):
    sim, port = printer
    lines = exchange(port, "M109 S200", seconds=10)  # 180 K at 3 K/s x 0.002 = ~0.12 s of model time
    assert lines[-1] == "ok"
    temps = exchange(port, "M105")[-1]
    assert temps.startswith("ok T:") and "/200.00" in temps
