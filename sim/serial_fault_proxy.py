"""A serial fault proxy between a driver and a simulated (or real) serial device, on ptys.

    python -m anycell.sim.serial_fault_proxy --device /dev/pts/7 --ready-file r.json --log wire.log \
        --corrupt-fraction 0.05 --drop-line-fraction 0.01 --drop-ok-fraction 0.01 --garble-ok-fraction 0.01

It opens a new pty for the driver and the device's port as a client, then copies bytes both
ways, line by line, and damages them the way a noisy cable or a lost USB frame does:

* host -> device: a line is dropped (``--drop-line-fraction``) or has one bit flipped
  (``--corrupt-fraction``; never into a line end or a GRBL real-time byte). GRBL real-time bytes
  (``?``, ``!``, ``~``, 0x18) are passed through at once, undamaged, as GRBL's ISR takes them;
* device -> host: an ``ok`` is dropped (``--drop-ok-fraction``) or garbled so it is no longer
  an ``ok`` (``--garble-ok-fraction``). Other replies (``Resend``, ``Error``, reports) pass
  unharmed: a host cannot tell a garbled number from a true one, and no real host survives that.

The log (``--log``) records every line exactly as the device received it (``TX <line>``) and
every fault. :func:`replay_marlin` replays the ``TX`` lines through Marlin 2.1's acceptance rules
(line number first, repeats ignored, then the checksum, ``M110``), which gives the commands the
firmware executed, independently of the firmware's own log; :func:`check_exactly_once` proves
that a program's lines are among them exactly once and in order.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence


log = logging.getLogger(__name__)

REALTIME = {ord("?"), ord("!"), ord("~"), 0x18}
#: Package root for the child's PYTHONPATH, as in :mod:`anycell.sim.machines`.


class FaultProxy:
    """Copies bytes between the driver's pty and the device, damaging some lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.device = os.open(args.device, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.device)
        self._logf = open(args.log, "a", encoding="ascii", errors="replace", buffering=1) if args.log else None
        self._log_lock = threading.Lock()
        self.counts: Dict[str, int] = {}

    def record(self, text: str) -> None:
        if self._logf is not None:
            with self._log_lock:
                self._logf.write(text + "\n")

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- host -> device ---------------------------------------------------------------------------
    def _flip(self, line: bytes) -> bytes:
        i = self.rng.randrange(len(line))
        b = line[i] ^ (1 << self.rng.randrange(7))
        if b in (10, 13) or b in REALTIME:
            b = ord("#")
        return line[:i] + bytes([b]) + line[i + 1:]

    def host_to_device(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self.master, 256)
            except OSError:
                time.sleep(0.02)  # no driver connected yet
                continue
            for byte in data:
                if byte in REALTIME and not buf:
                    self._write(self.device, bytes([byte]))
                    continue
                buf += bytes([byte])
                if byte != 10:
                    continue
                line, buf = buf, b""
                text = line.rstrip(b"\r\n")
                roll = self.rng.random()
                if text and roll < self.args.drop_line_fraction:
                    self._count("dropped_lines")
                    self.record("DROP_TX " + text.decode("ascii", "replace"))
                    continue
                if text and roll < self.args.drop_line_fraction + self.args.corrupt_fraction:
                    bad = self._flip(text)
                    self._count("corrupted_lines")
                    self.record("CORRUPT_TX " + text.decode("ascii", "replace"))
                    text = bad
                    line = bad + b"\n"
                self.record("TX " + text.decode("ascii", "replace"))
                self._write(self.device, line)

    # -- device -> host ---------------------------------------------------------------------------
    def device_to_host(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self.device, 256)
            except OSError:
                data = b""
            if not data:
                self.record("DEVICE_GONE")
                os._exit(3)  # the device vanished: so does the port the driver holds
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line += b"\n"
                text = line.strip()
                if text.startswith(b"ok"):
                    roll = self.rng.random()
                    if roll < self.args.drop_ok_fraction:
                        self._count("dropped_oks")
                        self.record("DROP_RX " + text.decode("ascii", "replace"))
                        continue
                    if roll < self.args.drop_ok_fraction + self.args.garble_ok_fraction:
                        self._count("garbled_oks")
                        self.record("GARBLE_RX " + text.decode("ascii", "replace"))
                        line = b"#" + line[1:]
                self._write(self.master, line)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except OSError as exc:
            log.debug("write failed: %s", exc)

    def run(self) -> None:
        threading.Thread(target=self.host_to_device, daemon=True, name="h2d").start()
        threading.Thread(target=self.device_to_host, daemon=True, name="d2h").start()
        info = json.dumps({"address": self.path, "pid": os.getpid()})
        if self.args.ready_file:
            tmp = self.args.ready_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(info)
            os.replace(tmp, self.args.ready_file)
        while True:
            time.sleep(3600)


# -- replay -----------------------------------------------------------------------------------------
def _checksum(text: str) -> int:
    cs = 0
    for b in text.encode("ascii", "replace"):
        cs ^= b
    return cs


def replay_marlin(wire: Iterable[str]) -> List[str]:
    """The commands Marlin 2.1 executes from these received lines, in order.

    Marlin's rules (``GCodeQueue::get_serial_commands``): a numbered line's number is checked
    first (``M110`` is exempt; a repeat of the last line or the one before is ignored, any other
    wrong number refused), then its checksum; ``M110 N<k>`` sets the last line to ``k``. A line
    without a number is executed as it is.
    """
    last = 0
    out: List[str] = []
    for raw in wire:
        text = raw.strip()
        if not text:
            continue
        if not text.startswith("N"):
            if "*" not in text:
                out.append(text)
            continue
        m = re.match(r"N(-?\d+)\s*(.*)$", text)
        if not m:
            continue
        n = int(m.group(1))
        if n != last + 1 and "M110" not in text.upper():
            continue
        star = text.rfind("*")
        if star < 0:
            continue
        body, cs = text[:star], text[star + 1:].strip()
        if not cs.isdigit() or int(cs) != _checksum(body):
            continue
        cmd = re.match(r"N-?\d+\s*(.*)$", body).group(1).strip()  # type: ignore[union-attr]
        last = n
        if cmd.upper().startswith("M110"):
            nm = re.search(r"N(-?\d+)", cmd[4:])
            last = int(nm.group(1)) if nm else n
            continue
        out.append(cmd)
    return out


@dataclass
class ReplayReport:
    """Whether a program's lines ran exactly once and in order, and what went wrong if not."""

    ok: bool
    executed: int
    expected: int
    problems: List[str] = field(default_factory=list)


def check_exactly_once(executed: Sequence[str], expected: Sequence[str],
                       ignore: Iterable[str] = ("M105", "M155", "M110", "M410")) -> ReplayReport:
    """Compare executed commands (without the driver's own ``ignore`` commands) with the program.

    ``ignore`` holds command words the driver itself sends (probes, auto-report, re-sync, quick
    stop); a program that uses them itself is compared with them removed on both sides.
    """
    skip = set(ignore)

    def keep(cmds: Sequence[str]) -> List[str]:
        return [c for c in cmds if c.split(" ")[0] not in skip]

    got, want = keep(executed), keep(expected)
    problems: List[str] = []
    for i in range(max(len(got), len(want))):
        a = got[i] if i < len(got) else None
        b = want[i] if i < len(want) else None
        if a != b:
            problems.append(f"position {i}: executed {a!r}, program {b!r}")
            if len(problems) >= 5:
                break
    return ReplayReport(ok=not problems, executed=len(got), expected=len(want), problems=problems)


# -- launching --------------------------------------------------------------------------------------
@dataclass
class RunningProxy:
    """A fault proxy process: ``address`` is the pty the driver opens."""

    address: str
    log_path: str
    process: subprocess.Popen
    argv: List[str] = field(default_factory=list)

    def log_lines(self) -> List[str]:
        try:
            with open(self.log_path, "r", encoding="ascii", errors="replace") as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def wire(self) -> List[str]:
        """The lines exactly as the device received them."""
        return [ln[3:] for ln in self.log_lines() if ln.startswith("TX ")]

    def count(self, event: str) -> int:
        """How many ``event`` entries (``DROP_TX``, ``CORRUPT_TX``, ``DROP_RX``, ``GARBLE_RX``) were logged."""
        return sum(1 for ln in self.log_lines() if ln.startswith(event + " "))

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def launch_fault_proxy(device: str, workdir: str, faults: Optional[Dict[str, Any]] = None,
                       ready_timeout: float = 20.0, name: str = "proxy") -> RunningProxy:
    """Start a proxy in front of ``device`` (a pty path) and wait until its own pty is ready."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    ready = os.path.join(workdir, f"{name}.ready.json")
    log_path = os.path.join(workdir, f"{name}.log")
    for p in (ready, log_path):
        if os.path.exists(p):
            os.unlink(p)
    argv = [sys.executable, "-m", "anycell.sim.serial_fault_proxy", "--device", device, "--ready-file", ready,
            "--log", log_path]
    for key, value in (faults or {}).items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    from .machines import start_and_wait

    proc, info = start_and_wait(argv, ready, os.path.join(workdir, f"{name}.stderr"), "fault proxy", ready_timeout)
    return RunningProxy(info["address"], log_path, proc, argv)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m anycell.sim.serial_fault_proxy",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", required=True, help="the device's serial port (a pty path)")
    parser.add_argument("--ready-file", help="write {\"address\": PTY} as JSON here once ready")
    parser.add_argument("--log", help="append every line the device received (TX) and every fault here")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the faults")
    parser.add_argument("--corrupt-fraction", type=float, default=0.0, help="flip one bit in this fraction of lines")
    parser.add_argument("--drop-line-fraction", type=float, default=0.0, help="drop this fraction of lines")
    parser.add_argument("--drop-ok-fraction", type=float, default=0.0, help="drop this fraction of oks")
    parser.add_argument("--garble-ok-fraction", type=float, default=0.0, help="garble this fraction of oks")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    FaultProxy(args).run()


if __name__ == "__main__":
    main()
