"""Serial streaming benchmarks: GRBL flow control, and Marlin over a noisy link.

1. GRBL, character counting against send-response, in the same run, each on a fresh simulated
   controller, on two programs, counting *executed* lines (the program must complete: every
   acknowledged line ran, none was flushed):

   * link-limited: short lines with motion time scaled to 0, so only the protocol counts
     (115200 baud on the wire, 0.5 ms to parse a line, 2 ms reply latency: USB frames and the
     adapter's latency timer; an FTDI's default timer is 16 ms, so real boards are often worse);
   * motion-limited: many 0.1 mm segments at real feed (F3000, 2 ms of motion each), where the
     question is whether the planner ever starves between segments.

2. Marlin through the serial fault proxy at 1% and 5% corrupted lines, against a clean link
   (the same proxy with no faults), in the same run: lines per second, every line checked by
   the proxy's replay to have run exactly once and in order.

    .venv/bin/python bench/bench_serial.py [--grbl-lines 4000] [--motion-lines 1500] [--marlin-lines 1500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import MachineConfig, Pose, SerialDriver, SimDriver, Tending  # noqa: E402
from anycell.drivers.gcode import GcodeLine, prepare_program  # noqa: E402
from anycell.drivers.grbl import GrblMachine  # noqa: E402
from anycell.drivers.machine import open_machine  # noqa: E402
from anycell.job import Program  # noqa: E402
from anycell.sim.machines import launch_sim_machine  # noqa: E402
from anycell.sim.serial_fault_proxy import check_exactly_once, launch_fault_proxy, replay_marlin  # noqa: E402

#: G54 so that the programs' positive work coordinates lie in GRBL's negative machine space.
WORK_OFFSET = [-0.25, -0.15, -0.05]


def grbl_cfg(mode: str) -> MachineConfig:
    drv = SerialDriver(kind="serial", port="/dev/null", dialect="grbl", streaming=mode, work_offset=WORK_OFFSET)
    return MachineConfig(id=f"bench_{mode}", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                         driver=drv)


def run_grbl(mode: str, lines: List[GcodeLine], workdir: str, time_scale: float) -> float:
    """Executed lines per second for one streaming mode on a fresh simulated GRBL."""
    cfg = grbl_cfg(mode)
    sim = launch_sim_machine(cfg, workdir, {"time_scale": time_scale, "line_time": 0.0005, "latency": 0.002,
                                            "baud": 115200})
    try:
        m = open_machine(cfg, sim.address)
        assert isinstance(m, GrblMachine)
        m.connect()
        t0 = time.perf_counter()
        res = m.stream(lines)
        dt = time.perf_counter() - t0
        m.close()
        assert res.status == "complete" and res.lines_executed == len(lines), "every line must have run"
        assert sim.received_lines()[2:] == [g.text for g in lines], "the firmware must receive every line once"
        assert "OVERFLOW" not in sim.log_lines()
        return len(lines) / dt
    finally:
        sim.stop()


def run_marlin(faults: Dict[str, Any], text: str, workdir: str) -> float:
    """Lines per second for one program through the fault proxy; checks exactly-once by replay."""
    cfg = MachineConfig(id="bench_marlin", kind="3d_printer", capabilities=["print"], tending=Tending(load=Pose()),
                        driver=SimDriver(kind="sim", protocol="marlin"))
    sim = launch_sim_machine(cfg, workdir, {"time_scale": 0, "latency": 0.002, "baud": 115200})
    proxy = launch_fault_proxy(sim.address, workdir, {**faults, "seed": 5})
    try:
        m = open_machine(cfg, proxy.address)
        m.timeout = 0.5
        m.connect()
        t0 = time.perf_counter()
        res = m.run_program(Program(inline=text), {}, timeout=600)
        dt = time.perf_counter() - t0
        m.close()
        want = [g.text for g in prepare_program(text)]
        assert res.status == "complete" and res.lines_executed == len(want)
        report = check_exactly_once(replay_marlin(proxy.wire()), want)
        assert report.ok, report.problems
        return len(want) / dt
    finally:
        proxy.stop()
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grbl-lines", type=int, default=4000, help="lines of the link-limited GRBL program")
    ap.add_argument("--motion-lines", type=int, default=1500, help="segments of the motion-limited GRBL program")
    ap.add_argument("--marlin-lines", type=int, default=1500, help="lines of the Marlin program")
    args = ap.parse_args()
    link = prepare_program("G21 G90\nG1 X0 Y0 F3000\n" + "\n".join(
        f"G1 X{10 + (i % 200) * 0.05:.3f} Y{20 + (i % 97) * 0.07:.3f}" for i in range(args.grbl_lines - 2)))
    motion = prepare_program("G21 G90\nG1 X0 Y0 F3000\n" + "\n".join(
        f"G1 X{10 + (i % 400) * 0.1 if (i // 400) % 2 == 0 else 50 - (i % 400) * 0.1:.1f} Y20"
        for i in range(args.motion_lines - 2)))
    marlin = "G90\nG1 X0 Y0 F6000\n" + "\n".join(
        f"G1 X{(i % 100) * 0.5:.1f} Y{(i % 37) * 0.3:.1f} E{i * 0.01:.2f}" for i in range(args.marlin_lines - 2))
    with tempfile.TemporaryDirectory() as tmp:
        cc = run_grbl("character_counting", link, os.path.join(tmp, "cc"), 0)
        sr = run_grbl("send_response", link, os.path.join(tmp, "sr"), 0)
        mcc = run_grbl("character_counting", motion, os.path.join(tmp, "mcc"), 1.0)
        msr = run_grbl("send_response", motion, os.path.join(tmp, "msr"), 1.0)
        bound = 1.0 / 0.002  # 0.1 mm at 50 mm/s: 2 ms of motion a segment
        clean = run_marlin({}, marlin, os.path.join(tmp, "m0"))
        one = run_marlin({"corrupt_fraction": 0.01}, marlin, os.path.join(tmp, "m1"))
        five = run_marlin({"corrupt_fraction": 0.05}, marlin, os.path.join(tmp, "m5"))
    print(f"GRBL link-limited, {len(link)} lines executed: character counting {cc:.0f} lines/s, "
          f"send-response {sr:.0f} lines/s (same run), ratio {cc / sr:.2f}x (goal >= 2x)")
    print(f"GRBL motion-limited, {len(motion)} x 0.1 mm segments at F3000 executed: character counting "
          f"{mcc:.0f} lines/s, send-response {msr:.0f} lines/s (same run), ratio {mcc / msr:.2f}x; "
          f"motion bound {bound:.0f} lines/s: {mcc / bound:.2f} / {msr / bound:.2f} of it")
    print(f"Marlin through the fault proxy, {args.marlin_lines} lines, each run exactly once (replayed): "
          f"clean {clean:.0f} lines/s, 1% corrupted {one:.0f} lines/s ({one / clean:.2f}x), "
          f"5% corrupted {five:.0f} lines/s ({five / clean:.2f}x)")


if __name__ == "__main__":
    main()
