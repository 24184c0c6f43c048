"""Streaming a 10,000-line program to the simulated GRBL: character counting vs send-response.

Both modes run in the same process against the same simulator settings, each on a fresh
simulated controller. The simulator models what makes the difference on a real board:
115200 baud on the wire (10 bits a byte, ~1.9 ms for a 22-byte line), 0.5 ms to parse and plan a
line (an AVR GRBL needs 0.5-2 ms), and 2 ms of reply latency (USB frames and the adapter's
latency timer; an FTDI's default timer is 16 ms, so real boards are often worse). Motion time is
scaled to 0 (``--time-scale 0``) so the figure measures the protocol, not the feed rate.

    .venv/bin/python bench/bench_serial.py [--lines 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import MachineConfig, Pose, SimDriver, Tending  # noqa: E402
from anycell.drivers.gcode import prepare_program  # noqa: E402
from anycell.drivers.grbl import GrblMachine  # noqa: E402
from anycell.sim.machines import launch_sim_machine  # noqa: E402


def run(mode: str, lines, workdir: str) -> float:
    cfg = MachineConfig(id=f"bench_{mode}", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                  driver=SimDriver(kind="sim", protocol="grbl"))
    sim = launch_sim_machine(cfg, workdir, {"time_scale": 0, "line_time": 0.0005, "latency": 0.002,
                                            "baud": 115200})
    try:
        m = GrblMachine(cfg, sim.address, streaming=mode)
        m.connect()
        t0 = time.perf_counter()
        res = m.stream(lines)
        dt = time.perf_counter() - t0
        m.close()
        assert res.lines_acknowledged == len(lines)
        assert len(sim.received_lines()) == len(lines), "the firmware must receive every line"
        assert "OVERFLOW" not in sim.log_lines()
        return len(lines) / dt
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10000)
    args = ap.parse_args()
    text = "G21 G90\nG1 X0 Y0 F3000\n" + "\n".join(
        f"G1 X{10 + (i % 200) * 0.05:.3f} Y{20 + (i % 97) * 0.07:.3f}" for i in range(args.lines - 2))
    lines = prepare_program(text)
    with tempfile.TemporaryDirectory() as tmp:
        cc = run("character_counting", lines, os.path.join(tmp, "cc"))
        sr = run("send_response", lines, os.path.join(tmp, "sr"))
    print(f"GRBL streaming, {len(lines)} lines: character counting {cc:.0f} lines/s, "
          f"send-response {sr:.0f} lines/s (same run), ratio {cc / sr:.2f}x (goal >= 2x)")


if __name__ == "__main__":
    main()
