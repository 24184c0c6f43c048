"""``anycell machine``: an integrator's check that a configured machine answers, and a program run.

    anycell machine CELL.yaml printer                         # connect, print state and health
    anycell machine CELL.yaml printer --address /dev/ttyUSB1  # another port / endpoint
    anycell machine CELL.yaml mill --sim                      # against its simulator instead
    anycell machine CELL.yaml printer --run part.gcode -p hotend_temp=210 -p bed_temp=60
    anycell machine CELL.yaml mill --program-name POCKET_01 -p depth=0.002
    anycell machine CELL.yaml router --run pocket.nc --streaming send_response   # GRBL flow control

Programs are validated before anything is sent, exactly as the executor does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any, Dict

from anycell.cli.main import EXIT_FAILED, EXIT_OK, command
from anycell.errors import ConfigError


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("machine", help="machine id in the cell config")
    p.add_argument("--address", help="override the serial port or the OPC UA endpoint")
    p.add_argument("--sim", action="store_true", help="start the machine's simulator and connect to it")
    p.add_argument("--run", metavar="FILE", help="stream this G-code file (serial machines)")
    p.add_argument("--program-name", help="run this program stored on the machine (OPC UA machines)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=NUMBER",
                   help="a numeric program parameter (repeatable)")
    p.add_argument("--streaming", choices=["character_counting", "send_response"],
                   help="GRBL flow control for this run (default: the cell config's driver.streaming): "
                        "character_counting keeps GRBL's 128-byte buffer full, send_response sends one line "
                        "per ok and queues nothing behind a refused line")
    p.add_argument("--timeout", type=float, default=None, help="bound the whole program, seconds")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _params(items: list) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"parameter '{item}' is not NAME=NUMBER", hint="-p hotend_temp=210") from None
    return out


@command("machine", "connect to one configured machine, show its state and health, optionally run a program",
         _args)
def _machine(args: argparse.Namespace) -> int:
    from anycell.drivers.machine import open_machine

    from anycell.cell import load_cell
    from anycell.job import Program

    cell = load_cell(args.cell)
    cfg = cell.machine(args.machine)
    params = _params(args.param)
    sim: Any = None
    workdir = None
    address = args.address
    if args.sim:
        from anycell.sim.machines import launch_sim_machine

        workdir = tempfile.TemporaryDirectory(prefix="anycell-machine-")
        sim = launch_sim_machine(cfg, workdir.name, {"time_scale": 0.05})
        address = sim.address
    try:
        drv = open_machine(cfg, address)
        if args.streaming:
            if drv.protocol != "grbl":
                raise ConfigError(f"--streaming is a GRBL option; machine '{cfg.id}' speaks {drv.protocol}",
                                  field="--streaming", hint="leave it out for Marlin and OPC UA machines")
            drv.streaming = args.streaming  # type: ignore[attr-defined]
        drv.connect()
        try:
            out: Dict[str, Any] = {"machine": cfg.id, "protocol": drv.protocol, "state": drv.state(),
                                   "health": drv.health()}
            if args.run or args.program_name:
                program = Program(file=args.run) if args.run else Program(name=args.program_name)

                def progress(p: Any) -> None:
                    if not args.json:
                        print(f"\r{cfg.id}: {p.done}/{p.total} {p.unit}  {p.state:10s}", end="", file=sys.stderr)

                result = drv.run_program(program, params, progress=progress, timeout=args.timeout)
                if not args.json:
                    print(file=sys.stderr)
                out["result"] = {"status": result.status, "lines_total": result.lines_total,
                                 "lines_acknowledged": result.lines_acknowledged,
                                 "lines_executed": result.lines_executed,
                                 "lines_flushed": result.details.get("lines_flushed"),
                                 "duration_s": round(result.duration, 3)}
                out["state"] = drv.state()
            out["counters"] = drv.counters()
        finally:
            drv.close()
    finally:
        if sim is not None:
            sim.stop()
        if workdir is not None:
            workdir.cleanup()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        h = out["health"]
        print(f"{cfg.id} ({out['protocol']}): state {out['state']}, health {h['level']}: {h['message']}")
        if "result" in out:
            r = out["result"]
            executed = "" if r["lines_executed"] is None else f", {r['lines_executed']} executed"
            print(f"program {r['status']}: {r['lines_acknowledged']}/{r['lines_total']} lines acknowledged"
                  f"{executed} in {r['duration_s']} s")
        print("counters: " + ", ".join(f"{k}={v}" for k, v in out["counters"].items()))
    return EXIT_OK if out.get("result", {}).get("status", "complete") == "complete" else EXIT_FAILED
