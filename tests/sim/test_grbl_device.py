"""The simulated GRBL, spoken to raw over its pty (no anycell driver): it must behave like GRBL."""

import subprocess
import sys
import time

import pytest
import serial

from anycell.cell import MachineConfig, Pose, SimDriver, Tending
from anycell.sim.machines import launch_sim_machine


@pytest.fixture
def grbl(tmp_path):
    cfg = MachineConfig(id="g", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                  driver=SimDriver(kind="sim", protocol="grbl"))
    sim = launch_sim_machine(cfg, str(tmp_path), {"time_scale": 0.01})
    port = serial.Serial(sim.address, 115200, timeout=2)
    try:
        yield sim, port
    finally:
        port.close()
        sim.stop()


def read_until(port, predicate, seconds=5.0):
    lines = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raw = port.readline().decode("ascii", "replace").strip()
        if raw:
            lines.append(raw)
            if predicate(raw):
                return lines
    raise AssertionError(f"timed out; got {lines}")


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "anycell.sim.grbl_device", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "--alarm-at-line" in out.stdout and "--line-time" in out.stdout


def test_realtime_status_settings_and_overflow(grbl):
    sim, port = grbl
    port.write(b"\x18")
    read_until(port, lambda s: s.startswith("Grbl 1.1"))
    port.write(b"?")
    assert read_until(port, lambda s: s.startswith("<"))[-1].startswith("<Idle|MPos:0.000,0.000,0.000|Bf:16,128")
    port.write(b"$$\n")
    lines = read_until(port, lambda s: s == "ok")
    assert "$130=300.000" in lines and "$20=1" in lines
    # a sender that ignores the 128-byte buffer loses bytes, as on a real board
    port.write(b"G4 P0.5\n" + b"".join(b"G1 X%d F6000\n" % (i % 100) for i in range(60)))
    time.sleep(1.0)
    assert "OVERFLOW" in sim.log_lines()


def test_soft_limit_alarm_needs_reset_then_unlock(grbl):
    sim, port = grbl
    port.write(b"G1 X500 F1000\n")
    lines = read_until(port, lambda s: s.startswith("[MSG:Reset"))
    assert "ALARM:2" in lines
    port.write(b"G1 X1\n")  # ignored until reset
    port.write(b"\x18")
    lines = read_until(port, lambda s: "unlock" in s)
    port.write(b"G1 X1 F100\n")
    assert read_until(port, lambda s: s.startswith("error"))[-1] == "error:9"
    port.write(b"$X\n")
    read_until(port, lambda s: s == "ok")
    port.write(b"?")
    assert read_until(port, lambda s: s.startswith("<"))[-1].startswith("<Idle")


def read_for(port, seconds):
    lines = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raw = port.readline().decode("ascii", "replace").strip()
        if raw:
            lines.append(raw)
    return lines


def test_critical_alarm_swallows_an_early_reset_and_answers_nothing(grbl):
    sim, port = grbl
    port.timeout = 0.1
    port.write(b"G1 X10 F1000\n")  # machine space is [-300, 0]: +10 is beyond the homed corner
    assert read_until(port, lambda s: s.startswith("ALARM"))[-1] == "ALARM:2"
    port.write(b"\x18?")  # before "[MSG:Reset to continue]": lost, like GRBL 1.1h
    lines = read_until(port, lambda s: s.startswith("[MSG:Reset"), seconds=2)
    assert not any(s.startswith("Grbl") or s.startswith("<") for s in lines)
    assert "RESET_SWALLOWED" in sim.log_lines()
    port.write(b"?")
    assert read_for(port, 0.4) == []  # nothing, not even a status report, until a new reset
    port.write(b"\x18")
    lines = read_until(port, lambda s: "unlock" in s)
    assert any(s.startswith("Grbl 1.1") for s in lines)


def test_negative_machine_space_and_work_offsets(grbl):
    sim, port = grbl
    port.timeout = 0.5
    port.write(b"G10 L2 P2 X-200 Y-100 Z-40\n")
    read_until(port, lambda s: s == "ok")
    port.write(b"G55 G90 G1 X5 Y5 Z-2 F6000\n")  # below the work zero, inside the machine's travel
    read_until(port, lambda s: s == "ok")
    time.sleep(0.3)
    port.write(b"?")
    report = read_until(port, lambda s: s.startswith("<"))[-1]
    assert "MPos:-195.000,-95.000,-42.000" in report
    port.write(b"$#\n")
    lines = read_until(port, lambda s: s == "ok")
    assert "[G55:-200.000,-100.000,-40.000]" in lines and "[G54:0.000,0.000,0.000]" in lines
    port.write(b"$G\n")
    assert any(s.startswith("[GC:G1 G55") for s in read_until(port, lambda s: s == "ok"))
