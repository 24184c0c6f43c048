"""The pty plumbing shared by the simulated serial firmwares (GRBL, Marlin).

A simulator opens a pseudo-terminal pair and puts the slave side in raw mode, so a driver opens
the slave path exactly like ``/dev/ttyUSB0``. The simulator reads and writes the master side.
The slave fd stays open in the simulator so that the master does not see EIO while no client
is connected; when the simulator process dies, the client's reads fail, as with an unplugged
USB adapter.

Output can be delayed by a fixed latency (USB frames, the FTDI latency timer) through a writer
thread that keeps order. Input arrives at the wire rate of the configured baud (10 bits a byte).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import tty
from typing import Any, Callable, Iterator, List, Optional, Tuple

log = logging.getLogger(__name__)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Command-line switches every serial simulator has (transport, timing, faults)."""
    g = parser.add_argument_group("transport and timing")
    g.add_argument("--link", help="also create this symlink to the pty slave (e.g. /tmp/ttyGRBL)")
    g.add_argument("--ready-file", help="write {\"address\": PTY} as JSON here once ready")
    g.add_argument("--log", help="append what the firmware received and did to this file")
    g.add_argument("--baud", type=int, default=115200, help="modelled wire rate, 10 bits a byte (0: infinite)")
    g.add_argument("--latency", type=float, default=0.002,
                   help="seconds added to every reply (USB frame + adapter latency timer)")
    g.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply modelled physical times (motion, heating) by this; 0 makes them instant")
    f = parser.add_argument_group("fault switches")
    f.add_argument("--seed", type=int, default=1, help="random seed for the faults")
    f.add_argument("--corrupt-fraction", type=float, default=0.0,
                   help="flip one byte in this fraction of received lines")
    f.add_argument("--drop-ok-fraction", type=float, default=0.0, help="never send this fraction of 'ok's")
    f.add_argument("--late-ok-fraction", type=float, default=0.0, help="send this fraction of 'ok's late")
    f.add_argument("--late-ok-delay", type=float, default=1.0, help="how late, seconds")
    f.add_argument("--vanish-at-line", type=int, default=0,
                   help="exit abruptly (port disappears) when the N-th program line arrives")
    f.add_argument("--alarm-at-line", type=int, default=0, help="raise an alarm when the N-th program line arrives")


class PtyDevice:
    """The simulator end of a pty: wire-rate input, delayed ordered output, a log, fault dice."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.rng = random.Random(args.seed)
        self._out: List[Tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self._out_cv = threading.Condition()
        self._last_due = 0.0
        self._wlock = threading.Lock()
        self._logf = open(args.log, "a", encoding="ascii", errors="replace", buffering=1) if args.log else None
        self._log_lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._writer, name="pty-writer", daemon=True).start()

    # -- output ---------------------------------------------------------------------------------
    def send(self, text: str, extra_delay: float = 0.0) -> None:
        """Queue one reply line (CRLF, as the firmwares send) after the modelled latency."""
        due = time.monotonic() + self.args.latency + extra_delay
        with self._out_cv:
            # a serial line is FIFO: a late reply also holds back everything said after it
            due = max(due, self._last_due)
            self._last_due = due
            heapq.heappush(self._out, (due, next(self._seq), (text + "\r\n").encode("ascii")))
            self._out_cv.notify()

    def _writer(self) -> None:
        while self.running:
            with self._out_cv:
                while not self._out and self.running:
                    self._out_cv.wait(0.2)
                if not self._out:
                    continue
                due, _, data = self._out[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._out_cv.wait(wait)
                    continue
                heapq.heappop(self._out)
            try:
                with self._wlock:
                    os.write(self.master, data)
            except OSError:
                return

    # -- input ----------------------------------------------------------------------------------
    def read(self) -> bytes:
        """Block for input; sleep as long as the bytes take on the wire."""
        data = os.read(self.master, 256)
        if self.args.baud:
            time.sleep(len(data) * 10.0 / self.args.baud)
        return data

    def chunks(self) -> Iterator[bytes]:
        """What arrives, chunk by chunk, for ever; a failed read (no client yet) is retried."""
        while True:
            try:
                yield self.read()
            except OSError:
                time.sleep(0.05)

    def corrupt(self, line: bytes) -> bytes:
        """Maybe flip one byte (the fault switch), never into a newline."""
        if self.args.corrupt_fraction and line and self.rng.random() < self.args.corrupt_fraction:
            i = self.rng.randrange(len(line))
            b = line[i] ^ (1 << self.rng.randrange(7))
            if b in (10, 13, 0x18, ord("?"), ord("!"), ord("~")):
                b = ord("#")
            self.record(f"CORRUPTED {line.decode('ascii', 'replace')!r}")
            return line[:i] + bytes([b]) + line[i + 1:]
        return line

    def ok_delay(self) -> Optional[float]:
        """None to drop this ok, else the extra delay for it."""
        if self.args.drop_ok_fraction and self.rng.random() < self.args.drop_ok_fraction:
            self.record("DROPPED ok")
            return None
        if self.args.late_ok_fraction and self.rng.random() < self.args.late_ok_fraction:
            return self.args.late_ok_delay
        return 0.0

    def record(self, text: str) -> None:
        if self._logf is not None:
            with self._log_lock:
                self._logf.write(text + "\n")

    def vanish(self) -> None:
        """Disappear like an unplugged board: no goodbye, the port goes away."""
        self.record("VANISHED")
        os._exit(3)

    def boot(self, *greeting: str) -> None:
        """Power up: log it, say the firmware's greeting lines, then tell the launcher the port."""
        self.record("BOOT")
        for text in greeting:
            self.send(text)
        self.announce()

    def announce(self) -> None:
        """Tell the launcher where the port is (ready file and/or symlink, and stdout)."""
        if self.args.link:
            try:
                os.unlink(self.args.link)
            except FileNotFoundError:
                pass
            os.symlink(self.path, self.args.link)
        info = json.dumps({"address": self.args.link or self.path, "pid": os.getpid()})
        if self.args.ready_file:
            tmp = self.args.ready_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(info)
            os.replace(tmp, self.args.ready_file)
        sys.stdout.write(info + "\n")
        sys.stdout.flush()


def install_signal_exit() -> None:
    """SIGTERM ends the simulator promptly."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def simulator_main(prog: str, doc: Optional[str], device: Callable[[argparse.Namespace], Any],
                   add_args: Callable[[argparse.ArgumentParser], None],
                   argv: Optional[List[str]] = None) -> None:
    """The command line of a serial simulator: common switches plus ``add_args``, then run.

    ``device(args)`` builds the firmware model, whose ``run()`` serves the pty until the process
    ends (SIGTERM exits at once).
    """
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_args(parser)
    args = parser.parse_args(argv)
    install_signal_exit()
    device(args).run()
