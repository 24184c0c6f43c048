"""The serial transport shared by the GRBL and Marlin drivers (pyserial).

A reader thread splits what the device says into lines and hands each to the dialect's
``on_line``. If the port goes away (USB unplugged, simulator process gone) the reader sees an
error, records it and calls ``on_lost``; every later write raises ``ConnectionLost``. Writes are
serialised by a lock so real-time bytes from another thread never split a line.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

import serial

from anycell.errors import ConnectionLost, DriverError

log = logging.getLogger(__name__)


class SerialLink:
    """A line-oriented serial connection with a reader thread."""

    def __init__(self, port: str, baud: int, on_line: Callable[[str], None],
                 on_lost: Callable[[str], None]) -> None:
        self.port_name = port
        self.baud = baud
        self._on_line = on_line
        self._on_lost = on_lost
        self._ser: Optional[serial.SerialBase] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self.lost: Optional[str] = None
        self.bytes_written = 0
        self.lines_read = 0

    def open(self) -> None:
        try:
            self._ser = serial.serial_for_url(self.port_name, baudrate=self.baud, timeout=0.05,
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
