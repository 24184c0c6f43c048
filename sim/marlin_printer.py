"""A simulated Marlin 2 3D printer on a pty: ``python -m sim.marlin_printer --help``.

What it models, because the driver depends on it:

* ``N<n> <cmd>*<cs>`` lines, checked in Marlin 2.1's order (``GCodeQueue::get_serial_commands``):
  first the line number, then the XOR checksum. A repeat of the last line or the one before
  (``N == Last Line`` or ``Last Line - 1``) is *silently ignored*, no answer at all; any other
  wrong number is answered ``Error:Line Number is not Last Line Number+1, Last Line: <n>``, a
  bad checksum ``Error:checksum mismatch, Last Line: <n>`` (or ``No Checksum with line
  number``), each followed by ``Resend: <n+1>`` and ``ok``. A line is executed only if its
  number is the last one plus one, so a host that recovers correctly gets every line executed
  exactly once, in order;
* ``M110 N<k>`` resets the line number (whatever the line's own number);
* heating that takes time (hotend 3 K/s, bed 1 K/s, times ``--time-scale``): ``M104``/``M140``
  set targets, ``M109``/``M190`` block until reached and print a temperature report each second
  and ``busy: processing`` (Marlin's default BUSY_WHILE_HEATING) meanwhile, ``M105`` answers
  ``ok T:.. /.. B:.. /..``, ``M155 S<n>`` auto-reports;
* ``busy: processing`` every ``--busy-interval`` seconds during long commands (G28, long moves);
* motion that takes distance / feed times ``--time-scale``;
* ``echo:Unknown command: "<cmd>"`` then ``ok`` for what it does not know; the ``--alarm-at-line``
  fault is a thermal runaway: ``Error:Thermal Runaway, system stopped! Heater_ID: 0`` then
  ``Error:Printer halted. kill() called!``, and silence; ``--homing-fails`` makes ``G28`` end the
  same way with ``Error:Homing Failed``.

Every executed command (without its number and checksum) is logged as ``RX <cmd>`` in ``--log``.
"""

from __future__ import annotations

import argparse
import math
import re
import threading
import time
from typing import Dict, List, Optional

from anycell.sim.serial_device import PtyDevice, simulator_main

WORD = re.compile(r"([A-Z])([+-]?(?:\d+\.?\d*|\.\d+))")
RATES = {"T": 3.0, "B": 1.0}  # K/s


def checksum(text: str) -> int:
    cs = 0
    for ch in text.encode("ascii", "replace"):
        cs ^= ch
    return cs


class MarlinPrinter:
    """The printer's state and its command loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dev = PtyDevice(args)
        self.last_n = 0
        self.temp = {"T": 21.0, "B": 21.0}
        self.target = {"T": 0.0, "B": 0.0}
        self.t_update = time.monotonic()
        self.lock = threading.Lock()
        self.autoreport = 0.0
        self.pos = [0.0, 0.0, 0.0]
        self.feed = 1500.0
        self.absolute = True
        self.killed = False
        self.executed = 0

    # -- physics ---------------------------------------------------------------------------------
    def update_temps(self) -> None:
        with self.lock:
            now = time.monotonic()
            dt = now - self.t_update
            self.t_update = now
            scale = self.args.time_scale
            for h in ("T", "B"):
                goal = self.target[h] if self.target[h] > 0 else 21.0
                step = (RATES[h] * dt / scale) if scale > 0 else 1e9
                cur = self.temp[h]
                self.temp[h] = min(goal, cur + step) if goal > cur else max(goal, cur - step)

    def temp_report(self) -> str:
        self.update_temps()
        return (f"T:{self.temp['T']:.2f} /{self.target['T']:.2f} B:{self.temp['B']:.2f} /{self.target['B']:.2f} "
                "@:0 B@:0")

    def busy_wait(self, seconds: float) -> None:
        """Spend modelled time, saying busy: as Marlin's host keepalive does."""
        end = time.monotonic() + seconds
        next_busy = time.monotonic() + self.args.busy_interval
        while True:
            now = time.monotonic()
            if now >= end:
                return
            if now >= next_busy:
                self.dev.send("echo:busy: processing")
                next_busy = now + self.args.busy_interval
            time.sleep(min(0.02, end - now))

    def autoreport_loop(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(0.05)
            if self.killed:
                return
            if self.autoreport and time.monotonic() - last >= self.autoreport:
                last = time.monotonic()
                self.dev.send(" " + self.temp_report())

    # -- protocol --------------------------------------------------------------------------------
    def ok(self, extra: str = "") -> None:
        delay = self.dev.ok_delay()
        if delay is None:
            return
        self.dev.send("ok" + extra, delay)

    def resend(self, why: str) -> None:
        self.dev.record(f"REJECTED {why}")
        self.dev.send(f"Error:{why}, Last Line: {self.last_n}")
        self.dev.send(f"Resend: {self.last_n + 1}")
        self.dev.send("ok")

    def handle(self, raw: bytes) -> None:
        if self.killed:
            return
        raw = self.dev.corrupt(raw)
        text = raw.decode("ascii", "replace").strip()
        if not text:
            return
        if text.startswith("N"):
            m = re.match(r"N(-?\d+)\s*(.*)$", text)
            if not m:
                self.resend("No Line Number with checksum")
                return
            n = int(m.group(1))
            is_m110 = "M110" in text.upper()
            if n != self.last_n + 1 and not is_m110:
                if self.last_n - 1 <= n <= self.last_n:
                    self.dev.record(f"IGNORED repeat N{n}")
                    return  # Marlin 2.1: a repeated line is dropped without an answer
                self.resend("Line Number is not Last Line Number+1")
                return
            star = text.rfind("*")
            if star < 0:
                self.resend("No Checksum with line number")
                return
            body, cs_text = text[:star], text[star + 1:].strip()
            if not cs_text.isdigit() or int(cs_text) != checksum(body):
                self.resend("checksum mismatch")
                return
            cmd = re.match(r"N-?\d+\s*(.*)$", body).group(1).strip()  # type: ignore[union-attr]
            self.last_n = n
            if cmd.upper().startswith("M110"):
                nm = re.search(r"N(-?\d+)", cmd[4:])
                self.last_n = int(nm.group(1)) if nm else n
                self.dev.record(f"LINE_RESET {self.last_n}")
                self.ok()
                return
        elif "*" in text:
            self.resend("No Line Number with checksum")
            return
        else:
            cmd = text
        self.executed += 1
        if self.args.vanish_at_line and self.executed >= self.args.vanish_at_line:
            self.dev.vanish()
        self.dev.record("RX " + cmd)
        if self.args.alarm_at_line and self.executed == self.args.alarm_at_line:
            self.killed = True
            self.dev.record("KILLED thermal runaway (fault switch)")
            self.dev.send("Error:Thermal Runaway, system stopped! Heater_ID: 0")
            self.dev.send("Error:Printer halted. kill() called!")
            return
        self.execute(cmd)

    def execute(self, cmd: str) -> None:
        words = [(k, float(v)) for k, v in WORD.findall(cmd.upper())]
        if not words:
            self.dev.send(f'echo:Unknown command: "{cmd}"')
            self.ok()
            return
        letter, num = words[0]
        code = f"{letter}{int(num) if float(num).is_integer() else num}"
        args: Dict[str, float] = {k: v for k, v in words[1:]}
        if code == "M105":
            self.ok(" " + self.temp_report())
        elif code in ("M104", "M140"):
            with self.lock:
                self.target["T" if code == "M104" else "B"] = args.get("S", 0.0)
            self.update_temps()
            self.ok()
        elif code in ("M109", "M190"):
            heater = "T" if code == "M109" else "B"
            with self.lock:
                if "S" in args:
                    self.target[heater] = args["S"]
            next_report = time.monotonic()
            next_busy = time.monotonic() + self.args.busy_interval
            while True:
                self.update_temps()
                if abs(self.temp[heater] - self.target[heater]) < 1.0:
                    break
                if time.monotonic() >= next_report:
                    self.dev.send(" " + self.temp_report() + " W:?")
                    next_report = time.monotonic() + 1.0
                if time.monotonic() >= next_busy:
                    self.dev.send("echo:busy: processing")
                    next_busy = time.monotonic() + self.args.busy_interval
                time.sleep(0.02)
            self.ok()
        elif code == "M155":
            self.autoreport = args.get("S", 0.0)
            self.ok()
        elif code == "G28":
            self.busy_wait(3.0 * self.args.time_scale)
            if self.args.homing_fails:
                self.killed = True
                self.dev.record("KILLED homing failed (fault switch)")
                self.dev.send("Error:Homing Failed")
                self.dev.send("Error:Printer halted. kill() called!")
                return
            self.pos = [0.0, 0.0, 0.0]
            self.ok()
        elif code in ("G0", "G1"):
            if "F" in args:
                self.feed = args["F"]
            target = list(self.pos)
            for i, a in enumerate("XYZ"):
                if a in args:
                    target[i] = args[a] if self.absolute else target[i] + args[a]
            dist = math.dist(self.pos, target)
            self.pos = target
            if self.feed > 0:
                self.busy_wait(dist / (self.feed / 60.0) * self.args.time_scale)
            self.ok()
        elif code == "G4":
            self.busy_wait((args.get("S", 0.0) + args.get("P", 0.0) / 1000.0) * self.args.time_scale)
            self.ok()
        elif code == "G90":
            self.absolute = True
            self.ok()
        elif code == "G91":
            self.absolute = False
            self.ok()
        elif code == "M112":
            self.killed = True
            self.dev.send("Error:Printer halted. kill() called!")
        elif code in ("G21", "G92", "M82", "M83", "M84", "M106", "M107", "M400", "M410", "M18", "M17", "M114",
                      "M115", "M108", "M220", "M221", "M500", "M501", "M502", "M503", "G29"):
            if code == "M115":
                self.dev.send("FIRMWARE_NAME:Marlin 2.1.2 (anycell-sim) PROTOCOL_VERSION:1.0 "
                              "MACHINE_TYPE:sim EXTRUDER_COUNT:1")
                self.dev.send("Cap:AUTOREPORT_TEMP:1")
            self.ok()
        else:
            self.dev.send(f'echo:Unknown command: "{cmd}"')
            self.ok()

    def run(self) -> None:
        threading.Thread(target=self.autoreport_loop, daemon=True, name="autoreport").start()
        self.dev.boot("start", "echo:Marlin 2.1.2 (anycell-sim)")
        buf = b""
        for data in self.dev.chunks():
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self.handle(raw.replace(b"\r", b""))


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--busy-interval", type=float, default=2.0,
                        help="seconds between busy: keep-alives during long commands (Marlin's default 2)")
    parser.add_argument("--homing-fails", action="store_true",
                        help="G28 fails: 'Error:Homing Failed', then the printer halts (kill)")


def main(argv: Optional[List[str]] = None) -> None:
    simulator_main("python -m anycell.sim.marlin_printer", __doc__, MarlinPrinter, _add_args, argv)


if __name__ == "__main__":
    main()
