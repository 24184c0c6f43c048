"""The serial transport shared by the GRBL and Marlin drivers (pyserial).

A reader thread splits what the device says into lines and hands each to the dialect's
``on_line``. If the port goes away (USB unplugged, simulator process gone) the reader sees an
error, records it and calls ``on_lost``; every later write raises ``ConnectionLost``. Writes are
serialised by a lock so real-time bytes from another thread never split a line.

:class:`SerialGcodeMachine` is the part of a serial G-code driver that does not depend on the
dialect: the link, the reply queue the reader thread fills, the line counters, closing, and
turning a job's program into checked G-code lines. GRBL and Marlin keep their protocols
(``_on_line``, ``connect``, streaming) in their own modules.
"""

from __future__ import annotations

import abc
import collections
import logging
import queue
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import serial

from anycell.cell import MachineConfig
from anycell.errors import ConnectionLost, DriverError, ProgramRejected
from anycell.job import Program

from .gcode import GcodeLine, prepare_program
from .machine import Machine, program_source, serial_settings

log = logging.getLogger(__name__)


class SerialLink:
    """A line-oriented serial connection with a reader thread."""

    def __init__(self, port: str, baud: int, on_line: Callable[[str], None],
                 on_lost: Callable[[str], None]) -> None:
        self.port_name = port
        self.baud = baud
        self._on_line = on_line
        self._on_lost = on_lost
        self._ser: Optional[serial.Serial] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self.lost: Optional[str] = None
        self.bytes_written = 0
        self.lines_read = 0

    def open(self) -> None:
        try:
            # a read returns as soon as a byte arrives; the timeout only bounds how late the reader
            # notices close(), so an idle line wakes the thread a few times a second, not twenty
            self._ser = serial.serial_for_url(self.port_name, baudrate=self.baud, timeout=0.2,
                                              write_timeout=5.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionLost(f"cannot open serial port {self.port_name}: {exc}",
                                 hint="check the cable, the port name and that no other program holds it") from exc
        self._closing = False
        self.lost = None
        self._thread = threading.Thread(target=self._read_loop, name=f"serial-{self.port_name}", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        buf = b""
        ser = self._ser
        assert ser is not None
        while not self._closing:
            try:
                chunk = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._closing:
                    self._mark_lost(f"serial port {self.port_name} failed: {exc}")
                return
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                text = raw.decode("ascii", errors="replace").strip("\r").strip()
                if not text:
                    continue
                self.lines_read += 1
                try:
                    self._on_line(text)
                except Exception:  # noqa: BLE001 - a parser bug must not kill the reader
                    log.exception("error handling line %r from %s", text, self.port_name)

    def _mark_lost(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            log.warning("%s", why)
            self._on_lost(why)

    def write(self, data: bytes) -> None:
        if self.lost is not None:
            raise ConnectionLost(self.lost)
        if self._ser is None:
            raise DriverError(f"serial port {self.port_name} is not open", hint="call connect() first")
        with self._lock:
            try:
                self._ser.write(data)
                self.bytes_written += len(data)
            except (serial.SerialException, OSError) as exc:
                self._mark_lost(f"write to {self.port_name} failed: {exc}")
                raise ConnectionLost(self.lost or str(exc)) from exc

    def close(self) -> None:
        self._closing = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._thread = None
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None


class Deadline:
    """A timeout that can be pushed back when the device shows it is alive (busy:, status)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = time.monotonic() + seconds

    def extend(self) -> None:
        self.until = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.until - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left() <= 0


class SerialGcodeMachine(Machine):
    """The dialect-independent half of a G-code machine on a serial port.

    A subclass sets ``dialect`` (the firmware's name in messages), implements ``_on_line`` (the
    reader thread's parser, which puts ``(kind, value)`` pairs on ``_replies``) and the protocol
    itself. A lost port always reaches the waiting thread as a ``("lost", why)`` reply.
    """

    dialect: str = ""

    def __init__(self, machine_cfg: MachineConfig, port: str, *, boot_timeout: float) -> None:
        self.cfg = machine_cfg
        self.machine_id = machine_cfg.id
        self.port = port
        self.settings_cfg = serial_settings(machine_cfg)
        self.timeout = float(self.settings_cfg["timeout"])
        self.boot_timeout = boot_timeout
        self.link = SerialLink(port, self.settings_cfg["baud"], self._on_line, self._on_lost)
        self._replies: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        self.messages: Deque[str] = collections.deque(maxlen=50)
        self.lines_sent = 0
        self.lines_acknowledged = 0
        self._stop = threading.Event()
        self._connected = False

    @abc.abstractmethod
    def _on_line(self, line: str) -> None:
        """Handle one line from the device (called on the reader thread)."""

    def _on_lost(self, why: str) -> None:
        self._replies.put(("lost", why))

    def close(self) -> None:
        self._connected = False
        self.link.close()

    def _drain(self) -> None:
        """Forget replies nobody waits for any more (boot chatter, the tail of an aborted run)."""
        while True:
            try:
                self._replies.get_nowait()
            except queue.Empty:
                return

    def _poll_reply(self, wait: float) -> Optional[Tuple[str, Any]]:
        """The next ``(kind, value)`` reply within ``wait`` seconds, or None.

        A lost port raises :class:`ConnectionLost`, whether the reader reported it or the queue
        merely stayed empty on a dead link.
        """
        try:
            kind, val = self._replies.get(timeout=wait)
        except queue.Empty:
            if self.link.lost:
                raise ConnectionLost(self.link.lost)
            return None
        if kind == "lost":
            raise ConnectionLost(val)
        return kind, val

    def _require_connected(self) -> None:
        if not self._connected:
            raise DriverError(f"{self.machine_id} is not connected", hint="call connect() first")

    def _program_lines(self, program: Program, parameters: Dict[str, float]) -> List[GcodeLine]:
        """The program's G-code with ``parameters`` filled in, checked against the allow/deny lists.

        Serial firmwares have no stored programs, so a program without text is refused here.
        """
        text = program.text()
        if text is None:
            raise ProgramRejected(f"{self.machine_id} is a {self.dialect} machine and has no stored program "
                                  f"'{program.name}'", hint="give the program as file: or inline: G-code")
        return prepare_program(text, parameters, allowed=self.settings_cfg["allowed"],
                               forbidden=self.settings_cfg["forbidden"], source=program_source(program),
                               dialect=self.protocol)

    def _link_health(self, details: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The health report when the link itself is down (lost or never connected), else None."""
        if self.link.lost:
            return {"level": "error", "message": f"connection lost: {self.link.lost}", **details}
        if not self._connected:
            return {"level": "error", "message": "not connected", **details}
        return None
