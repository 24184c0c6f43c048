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
    assert exchange(port, numbered(3, "G1 X6"))[-3] .startswith("Error:Line Number")  # a duplicate is refused
    assert sim.received_lines() == ["G28", "G1 X5", "G1 X6"]


def test_heating_takes_time_and_reports(printer):
    sim, port = printer
    lines = exchange(port, "M109 S200", seconds=10)  # 180 K at 3 K/s x 0.002 = ~0.12 s of model time
    assert lines[-1] == "ok"
    temps = exchange(port, "M105")[-1]
    assert temps.startswith("ok T:") and "/200.00" in temps
