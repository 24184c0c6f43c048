"""Marlin over a serial port: numbered, checksummed lines with resends, as OctoPrint and printcore do.

Every line goes out as ``N<n> <cmd>*<cs>`` (``cs`` = XOR of the bytes before ``*``), one line in
flight at a time (Marlin's ``ok`` is the clear-to-send). The firmware executes a line only when
its number is the last one plus one, so:

* ``Resend: k`` (after ``Error:checksum mismatch`` or ``Line Number is not Last Line Number+1``)
  means lines before ``k`` were executed; the driver resends from ``k`` out of a bounded history
  when the ``ok`` that follows the resend request arrives;
* when no answer comes within the timeout, the driver resends the same numbered line: if the
  firmware had executed it (the ``ok`` was lost) it refuses the duplicate with ``Resend: n+1``,
  otherwise it executes it. Either way each line runs exactly once, in order.

``busy: processing`` keep-alives and temperature reports (``M155`` auto-report or ``M105``) push
the timeout back, so ``M109``/``M190`` heating waits and homing never trip it. ``Error:`` lines
other than the resend family (``Printer halted``, thermal runaway) raise :class:`MachineFault`.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from anycell.cell import MachineConfig
from anycell.errors import ConnectionLost, DriverError, DriverTimeout, MachineFault
from anycell.job import Program

from .gcode import GcodeLine, prepare_program
from .machine import ProgramResult, Progress, ProgressCallback
from .serial_stream import Deadline, SerialGcodeMachine

log = logging.getLogger(__name__)

TEMP_RE = re.compile(r"([TB]\d?):\s*(-?\d+\.?\d*)\s*/\s*(-?\d+\.?\d*)")
RESEND_RE = re.compile(r"^(?:Resend|rs)[: ]\s*N?(\d+)", re.IGNORECASE)
HISTORY = 256
MAX_RETRIES = 5


def checksum(text: str) -> int:
    """Marlin's line checksum: XOR of every byte of ``N<n> <cmd>``."""
    cs = 0
    for b in text.encode("ascii"):
        cs ^= b
    return cs


def numbered(n: int, cmd: str) -> str:
    """``N<n> <cmd>*<cs>``."""
    body = f"N{n} {cmd}"
    return f"{body}*{checksum(body)}"


def parse_temperatures(line: str) -> Dict[str, Tuple[float, float]]:
    """``ok T:201.5 /210.0 B:59.8 /60.0 @:0`` -> ``{"T": (201.5, 210.0), "B": (59.8, 60.0)}``."""
    return {k: (float(a), float(b)) for k, a, b in TEMP_RE.findall(line)}


class MarlinMachine(SerialGcodeMachine):
    """A Marlin printer (or any Marlin-protocol machine) on a serial port."""

    protocol = "marlin"
    dialect = "Marlin"

    def __init__(self, machine_cfg: MachineConfig, port: str, *, boot_timeout: float = 5.0,
                 autoreport_interval: int = 1) -> None:
        super().__init__(machine_cfg, port, boot_timeout=boot_timeout)
        self.autoreport_interval = autoreport_interval
        self._started = threading.Event()
        self._lock = threading.Lock()
        self.temperatures: Dict[str, Tuple[float, float]] = {}
        self.temperature_time = 0.0
        self.errors: Deque[str] = collections.deque(maxlen=20)
        self.fault: Optional[str] = None
        self.line_number = 0
        self.history: "collections.OrderedDict[int, str]" = collections.OrderedDict()
        self.resends = 0
        self.timeouts_recovered = 0
        self._state = "Idle"
        self._hold = threading.Event()
        self._resend_reason = "unknown"

    # -- reader thread ---------------------------------------------------------------------------
    def _on_line(self, line: str) -> None:
        temps = parse_temperatures(line) if "T:" in line or "B:" in line else {}
        if temps:
            self.temperatures.update(temps)
            self.temperature_time = time.monotonic()
        if line.startswith("ok"):
            self._replies.put(("ok", line))
            return
        m = RESEND_RE.match(line)
        if m:
            self._replies.put(("resend", (int(m.group(1)), self._resend_reason)))
            self._resend_reason = "unknown"
            return
        if line.startswith("start"):
            self._started.set()
            self._replies.put(("start", line))
            return
        if "busy:" in line:
            self._replies.put(("alive", line))
            return
        if temps:
            self._replies.put(("alive", line))
            return
        if line.startswith("Error:") or line.startswith("!!"):
            text = line[6:] if line.startswith("Error:") else line
            if re.search(r"checksum|Line Number|No Checksum|No Line Number", text, re.IGNORECASE):
                self.messages.append(line)
                # "Line Number is not Last Line Number+1" comes only from a well-formed line with an
                # unexpected number (a duplicate); corruption shows as a checksum error.
                self._resend_reason = "line_number" if "Line Number is not" in text else "corrupt"
                return
            self.errors.append(text)
            if "halted" in text.lower() or "kill" in text.lower() or "stopped" in text.lower():
                self.fault = text
                self._replies.put(("fault", text))
            return
        self.messages.append(line)
        if line.startswith("echo:Unknown command"):
            self.errors.append(line[5:])
            log.warning("%s: %s", self.machine_id, line)

    # -- connection ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the port and synchronise line numbers with ``M110 N0``.

        Most boards reset when the port opens and ignore input while booting, so ``M110`` is
        repeated every 0.5 s (and right after ``start``) until an ``ok`` comes back.
        """
        self.link.open()
        self._connected = True
        self.line_number = 0
        self.history.clear()
        deadline = time.monotonic() + self.boot_timeout + self.timeout
        while True:
            if time.monotonic() > deadline:
                self.link.close()
                self._connected = False
                raise DriverTimeout(f"{self.machine_id}: Marlin did not answer M110 on {self.port}",
                                    hint="check the baud rate and that the printer runs Marlin")
            self._drain()
            self.link.write((numbered(0, "M110 N0") + "\n").encode("ascii"))
            try:
                kind, _ = self._wait_ok(Deadline(0.5), "M110 N0")
            except DriverTimeout:
                continue
            except MachineFault:  # "start": the board just booted; say it again
                continue
            if kind == "ok":
                break
        time.sleep(0.05)
        self._drain()
        if self.autoreport_interval:
            self.send_command(f"M155 S{int(self.autoreport_interval)}")

    def _wait_ok(self, deadline: Deadline, what: str) -> Tuple[str, Any]:
        """Wait for ok/resend/fault; keep-alives and temperature reports extend the deadline."""
        while True:
            reply = self._poll_reply(max(0.001, min(0.1, deadline.left())))
            if reply is None:
                if deadline.expired:
                    raise DriverTimeout(f"{self.machine_id}: no 'ok' for '{what}' within {deadline.seconds:g} s")
                continue
            kind, val = reply
            if kind == "alive":
                deadline.extend()
                continue
            if kind == "fault":
                raise MachineFault(f"{self.machine_id}: {val} (while '{what}' was pending)",
                                   hint="the printer halted; power-cycle it after checking the heaters")
            if kind == "start":
                raise MachineFault(f"{self.machine_id}: the printer restarted while '{what}' was pending")
            return kind, val

    # -- single commands -------------------------------------------------------------------------
    def send_command(self, cmd: str, timeout: Optional[float] = None) -> str:
        """Send one numbered command outside a program, with resends; return its ok line."""
        with self._lock:
            lines = prepare_program(cmd, {}, allowed=self.settings_cfg["allowed"],
                                    forbidden=self.settings_cfg["forbidden"])
            state, sent, acked = self._state, self.lines_sent, self.lines_acknowledged
            try:
                res = self._stream([g.text for g in lines], None, timeout, per_line_timeout=timeout)
            finally:  # a single command is not a program: keep the program's state and counters
                if self._state != "Aborted":
                    self._state = state
                self.lines_sent, self.lines_acknowledged = sent, acked
            return res.details.get("last_ok", "ok")

    def read_temperatures(self) -> Dict[str, Tuple[float, float]]:
        """M105: ``{"T": (current, target), "B": (...)}``."""
        self.send_command("M105")
        return dict(self.temperatures)

    # -- programs --------------------------------------------------------------------------------
    def run_program(self, program: Program, parameters: Dict[str, float],
                    progress: Optional[ProgressCallback] = None, timeout: Optional[float] = None) -> ProgramResult:
        lines = self._program_lines(program, parameters)
        with self._lock:
            return self._stream([g.text for g in lines], progress, timeout, sources=lines)

    def _stream(self, cmds: List[str], progress: Optional[ProgressCallback], timeout: Optional[float],
                sources: Optional[List[GcodeLine]] = None, per_line_timeout: Optional[float] = None) -> ProgramResult:
        self._require_connected()
        if self.fault:
            raise MachineFault(f"{self.machine_id} halted earlier: {self.fault}", hint="power-cycle the printer")
        self._stop.clear()
        self._drain()
        t0 = time.monotonic()
        total = len(cmds)
        base = self.line_number + 1
        acked = 0          # commands known executed: numbers base .. base+acked-1
        sent = 0
        last_ok = "ok"
        whole = Deadline(timeout) if timeout else None
        resend_from: Optional[int] = None
        timeout_resent: Dict[int, int] = {}  # line -> copies resent after timeouts (duplicates in flight)
        skip_ok = 0                   # oks that belong to a refused duplicate, not to our line
        retries = 0
        self._state = "Execute"
        self.lines_sent = 0
        self.lines_acknowledged = 0

        def send(index: int) -> None:
            n = base + index
            payload = numbered(n, cmds[index])
            self.history[n] = payload
            while len(self.history) > HISTORY:
                self.history.popitem(last=False)
            self.link.write((payload + "\n").encode("ascii"))
            self.lines_sent += 1

        def where() -> str:
            if sources and acked:
                return f" (up to source line {sources[acked - 1].source_line})"
            return ""

        try:
            in_flight = 0
            if total:
                send(0)
                sent = 1
            while acked < total:
                if self._stop.is_set():
                    self._state = "Stopped"
                    return ProgramResult("stopped", total, sent, acked, time.monotonic() - t0)
                if whole is not None and whole.expired:
                    raise DriverTimeout(f"{self.machine_id}: program not finished within {timeout:g} s "
                                        f"({acked}/{total} lines acknowledged)")
                try:
                    kind, val = self._wait_ok(Deadline(per_line_timeout or self.timeout), cmds[in_flight])
                except DriverTimeout:
                    retries += 1
                    if retries > MAX_RETRIES:
                        raise
                    # The ok may have been lost: resend the same numbered line; Marlin refuses a
                    # duplicate with Resend: n+1, so it cannot run twice.
                    self.timeouts_recovered += 1
                    timeout_resent[base + in_flight] = timeout_resent.get(base + in_flight, 0) + 1
                    log.info("%s: no ok for N%d, resending it", self.machine_id, base + in_flight)
                    self.link.write((self.history[base + in_flight] + "\n").encode("ascii"))
                    continue
                if kind == "resend":
                    k, reason = val
                    self.resends += 1
                    if reason == "line_number" and timeout_resent.get(k - 1, 0) > 0:
                        timeout_resent[k - 1] -= 1
                        if k == base + in_flight:
                            # The late original of N(k-1) was acknowledged and N(k) is already on its
                            # way; this refusal is of our own duplicate of N(k-1). Nothing to resend,
                            # and the ok that follows belongs to the refusal.
                            acked = max(acked, min(k - base, total))
                            skip_ok += 1
                            continue
                    if k < base + acked or k > base + in_flight + 1:
                        if k < base + acked and (base + acked - k) > HISTORY:
                            raise MachineFault(f"{self.machine_id}: resend of N{k} requested, beyond the "
                                               f"history of {HISTORY} lines")
                    # lines before k were executed
                    acked = max(acked, min(k - base, total))
                    self.lines_acknowledged = acked
                    resend_from = k
                    continue
                # an ok
                if skip_ok:
                    skip_ok -= 1
                    continue
                retries = 0
                last_ok = val
                if resend_from is not None:
                    k, resend_from = resend_from, None
                    idx = k - base
                    if idx >= total:
                        acked = total
                        break
                    if idx < 0:
                        raise MachineFault(f"{self.machine_id}: firmware asked for line N{k}, before this program")
                    in_flight = idx
                    self.link.write((self.history.get(k) or numbered(k, cmds[idx]) + "").encode("ascii") + b"\n")
                    self.lines_sent += 1
                    sent = max(sent, idx + 1)
                    continue
                acked = max(acked, in_flight + 1)
                self.lines_acknowledged = acked
                if progress is not None:
                    progress(Progress(acked, total, "lines", self._state))
                while self._hold.is_set() and not self._stop.is_set():
                    time.sleep(0.02)
                if acked < total:
                    in_flight = acked
                    send(in_flight)
                    sent = max(sent, in_flight + 1)
        except ConnectionLost as exc:
            self._state = "Aborted"
            self.line_number = base + acked - 1
            raise ConnectionLost(f"{self.machine_id}: {exc.message}; the firmware acknowledged {acked} of "
                                 f"{total} lines{where()}", hint="reconnect the printer and check the part") from exc
        except MachineFault:
            self._state = "Aborted"
            self.line_number = base + acked - 1
            raise
        self.lines_acknowledged = acked
        self.line_number = base + total - 1
        self._state = "Complete"
        return ProgramResult("complete", total, self.lines_sent, acked, time.monotonic() - t0,
                             {"resends": self.resends, "last_ok": last_ok, "temperatures": dict(self.temperatures)})

    # -- control ---------------------------------------------------------------------------------
    def state(self) -> str:
        if self.fault:
            return "Aborted"
        if self._hold.is_set() and self._state == "Execute":
            return "Held"
        return self._state

    def hold(self) -> None:
        """Host-side pause (as OctoPrint): stop feeding lines; moves already queued finish."""
        self._hold.set()

    def resume(self) -> None:
        self._hold.clear()

    def stop(self) -> None:
        """Stop feeding lines and ask for a quick stop (M410, handled by Marlin's emergency parser)."""
        self._stop.set()
        self._hold.clear()
        try:
            self.link.write(b"M410\n")
        except DriverError:
            pass

    def reset(self) -> None:
        if self.fault:
            raise MachineFault(f"{self.machine_id}: {self.fault}", hint="a halted Marlin needs a power cycle")
        self._state = "Idle"

    def counters(self) -> Dict[str, int]:
        return {"lines_sent": self.lines_sent, "lines_acknowledged": self.lines_acknowledged,
                "resends": self.resends, "timeouts_recovered": self.timeouts_recovered,
                "bytes_written": self.link.bytes_written}

    def health(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"protocol": "marlin", "port": self.port, **self.counters()}
        for k, (cur, tgt) in self.temperatures.items():
            details[f"temp_{k}"] = cur
            details[f"target_{k}"] = tgt
        down = self._link_health(details)
        if down is not None:
            return down
        if self.fault:
            return {"level": "error", "message": self.fault, **details}
        if self.errors:
            return {"level": "warn", "message": self.errors[-1], **details}
        return {"level": "ok", "message": f"Marlin {self._state}", **details}
