"""GRBL 1.1 over a serial port: character-counting streaming, real-time commands, status reports.

Flow control follows the GRBL wiki's "streaming protocol": by default the driver counts the
characters in flight and keeps GRBL's 128-byte receive buffer as full as possible without
overflowing it (``character_counting``); ``send-response`` (one line, wait for ``ok``) is the
simple option. Every ``ok``/``error:N`` answers the oldest line in flight, so the driver always
knows which lines the controller accepted.

``error:N`` stops the stream: the driver sends a soft reset so nothing after the bad line runs,
and raises :class:`MachineFault` naming the line and GRBL's meaning of the code. ``ALARM:N``
(limits, soft limits) does the same; GRBL then sits in ``Alarm`` until ``reset()`` (``$X``) or
``home()`` (``$H``). At the end of a program the driver waits for ``Idle`` in the status reports.
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from anycell.cell import MachineConfig
from anycell.errors import ConnectionLost, DriverError, DriverTimeout, MachineFault, ProgramRejected
from anycell.job import Program

from .gcode import GcodeLine
from .machine import ProgramResult, Progress, ProgressCallback
from .serial_stream import Deadline, SerialGcodeMachine

log = logging.getLogger(__name__)

RX_BUFFER_SIZE = 128

#: GRBL 1.1 error codes (doc/csv/error_codes_en_US.csv in the GRBL repository).
ERRORS: Dict[int, str] = {
    1: "G-code words consist of a letter and a value; the letter was not found",
    2: "missing or malformed number in a G-code word",
    3: "GRBL '$' system command was not recognised or supported",
    4: "negative value received for an expected positive value",
    5: "homing cycle failure: homing is not enabled in the settings ($22)",
    6: "minimum step pulse time must be greater than 3 microseconds",
    7: "EEPROM read failed; settings restored to defaults",
    8: "'$' command only valid when GRBL is idle",
    9: "G-code commands are locked out during alarm or jog state",
    10: "soft limits cannot be enabled without homing also enabled",
    11: "maximum line length exceeded; the line was not executed",
    12: "a '$' setting value makes the step rate exceed the maximum",
    13: "safety door detected as opened and door state initiated",
    14: "build info or startup line exceeded the EEPROM line length limit",
    15: "jog target exceeds machine travel; the jog was ignored",
    16: "jog command has no '=' or contains prohibited G-code",
    17: "laser mode requires PWM output",
    20: "unsupported or invalid G-code command found in the block",
    21: "more than one G-code command from the same modal group in the block",
    22: "feed rate has not yet been set or is undefined",
    23: "G-code command in the block requires an integer value",
    24: "more than one G-code command that requires axis words in the block",
    25: "repeated G-code word found in the block",
    26: "no axis words found in a block that requires them",
    27: "line number value is invalid",
    28: "G-code command is missing a required value word",
    29: "G59.x work coordinate systems are not supported",
    30: "G53 only allowed with G0 and G1 motion modes",
    31: "axis words found in a block where no command or modal state uses them",
    32: "G2 and G3 arcs require at least one in-plane axis word",
    33: "motion command target is invalid",
    34: "arc radius value is invalid",
    35: "G2 and G3 arcs require at least one in-plane offset word",
    36: "unused value words found in the block",
    37: "G43.1 dynamic tool length offset is not assigned to the configured tool length axis",
    38: "tool number greater than the maximum supported value",
}
#: GRBL 1.1 alarm codes.
ALARMS: Dict[int, str] = {
    1: "hard limit triggered; machine position is likely lost, re-homing is recommended",
    2: "soft limit: the motion target exceeds the machine travel; position kept, unlock to continue",
    3: "reset while in motion; position is likely lost, re-homing is recommended",
    4: "probe fail: the probe is not in the expected initial state before the cycle",
    5: "probe fail: the probe did not contact the workpiece within the programmed travel",
    6: "homing fail: reset during the homing cycle",
    7: "homing fail: safety door opened during the homing cycle",
    8: "homing fail: pull-off did not clear the limit switch",
    9: "homing fail: could not find the limit switch within the search distance",
}
GRBL_TO_PACKML = {"Idle": "Idle", "Run": "Execute", "Jog": "Execute", "Home": "Execute", "Hold": "Held",
                  "Door": "Suspended", "Alarm": "Aborted", "Check": "Idle", "Sleep": "Stopped"}
STATUS_RE = re.compile(r"^<(.*)>$")


def parse_status(line: str) -> Optional[Dict[str, Any]]:
    """Parse a GRBL 1.1 status report into a dict.

    ``<Hold:0|MPos:1.000,2.000,0.000|Bf:15,128|FS:500,0|WCO:0.000,0.000,0.000>`` ->
    ``{"state": "Hold", "substate": 0, "mpos": [1.0, 2.0, 0.0], "buffer": {"planner": 15,
    "rx": 128}, "feed": 500.0, "speed": 0.0, "wco": [...], "wpos": [...]}``. Unknown fields
    are kept as text under their own name. Returns None for a line that is not a report.
    """
    m = STATUS_RE.match(line.strip())
    if not m:
        return None
    fields = m.group(1).split("|")
    state, _, sub = fields[0].partition(":")
    out: Dict[str, Any] = {"state": state}
    if sub:
        out["substate"] = int(sub) if sub.isdigit() else sub
    for f in fields[1:]:
        key, _, val = f.partition(":")
        nums = val.split(",")
        try:
            if key in ("MPos", "WPos", "WCO"):
                out[key.lower()] = [float(v) for v in nums]
            elif key == "Bf":
                out["buffer"] = {"planner": int(nums[0]), "rx": int(nums[1])}
            elif key == "FS":
                out["feed"], out["speed"] = float(nums[0]), float(nums[1])
            elif key == "F":
                out["feed"] = float(nums[0])
            elif key == "Ln":
                out["line"] = int(nums[0])
            elif key == "Ov":
                out["overrides"] = [int(v) for v in nums]
            elif key == "Pn":
                out["pins"] = val
            else:
                out[key] = val
        except (ValueError, IndexError):
            out[key] = val
    return out


def explain(line: str) -> str:
    """``error:22`` -> ``error:22 (feed rate has not yet been set or is undefined)``."""
    m = re.match(r"(error|ALARM):(\d+)", line)
    if not m:
        return line
    table = ERRORS if m.group(1) == "error" else ALARMS
    return f"{line} ({table.get(int(m.group(2)), 'unknown code')})"


class GrblMachine(SerialGcodeMachine):
    """A GRBL controller (a CNC mill, router or laser) on a serial port."""

    protocol = "grbl"
    dialect = "GRBL"

    def __init__(self, machine_cfg: MachineConfig, port: str, *, streaming: str = "character_counting",
                 status_interval: float = 0.2, boot_timeout: float = 5.0) -> None:
        if streaming not in ("character_counting", "send_response"):
            raise DriverError(f"unknown streaming mode '{streaming}'", hint="character_counting or send_response")
        super().__init__(machine_cfg, port, boot_timeout=boot_timeout)
        self.streaming = streaming
        self.status_interval = status_interval
        self._status_cv = threading.Condition()
        self.status: Dict[str, Any] = {}
        self._status_seq = 0
        self._welcome = threading.Event()
        self.settings: Dict[int, str] = {}
        self.alarm: Optional[str] = None
        self.last_error: Optional[str] = None
        self._program_state = "Idle"
        self._wco: Optional[List[float]] = None

    # -- the reader thread -----------------------------------------------------------------------
    def _on_line(self, line: str) -> None:
        if line.startswith("<"):
            st = parse_status(line)
            if st is not None:
                if "wco" in st:
                    self._wco = st["wco"]
                if self._wco is not None and "mpos" in st:
                    st["wpos"] = [m - w for m, w in zip(st["mpos"], self._wco)]
                with self._status_cv:
                    self.status = st
                    self._status_seq += 1
                    self._status_cv.notify_all()
            return
        if line == "ok" or line.startswith("error:"):
            self._replies.put(("reply", line))
        elif line.startswith("ALARM:"):
            self.alarm = explain(line)
            self._replies.put(("alarm", line))
        elif line.startswith("Grbl "):
            self._welcome.set()
            self._replies.put(("welcome", line))
        elif line.startswith("$") and "=" in line:
            key, _, val = line[1:].partition("=")
            if key.isdigit():
                self.settings[int(key)] = val
        else:
            self.messages.append(line)
            log.debug("%s: %s", self.machine_id, line)

    def _on_lost(self, why: str) -> None:
        super()._on_lost(why)
        # query_status() waits on the status condition, not on the reply queue
        with self._status_cv:
            self._status_cv.notify_all()

    # -- connection -------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the port and make sure a GRBL answers.

        Most boards reset when the port opens and greet with ``Grbl 1.1x`` after their boot
        loader (1-2 s). A board that does not reset stays silent, so every 0.5 s the driver also
        asks for a status report (``?``, harmless, unlike a reset): either answer will do.
        """
        self.link.open()
        with self._status_cv:
            seq = self._status_seq
        deadline = time.monotonic() + self.boot_timeout
        while not self._welcome.is_set():
            if self.link.lost:
                raise ConnectionLost(self.link.lost)
            with self._status_cv:
                if self._status_seq != seq:
                    break
            if time.monotonic() > deadline:
                self.link.close()
                raise DriverTimeout(f"no GRBL greeting or status report from {self.port} within "
                                    f"{self.boot_timeout:g} s",
                                    hint="check the baud rate and that the board runs GRBL 1.1")
            self.link.write(b"?")
            self._welcome.wait(0.5)
        self._drain()
        self._connected = True
        self.query_status()

    # -- real-time commands ----------------------------------------------------------------------
    def query_status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send ``?`` and wait for the next status report."""
        with self._status_cv:
            seq = self._status_seq
        self.link.write(b"?")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._status_cv:
            while self._status_seq == seq:
                if self.link.lost:
                    raise ConnectionLost(self.link.lost)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DriverTimeout(f"{self.machine_id}: no status report within {timeout or self.timeout} s")
                self._status_cv.wait(left)
            return dict(self.status)

    def hold(self) -> None:
        self.link.write(b"!")
        self._program_state = "Held" if self._program_state == "Execute" else self._program_state

    def resume(self) -> None:
        self.link.write(b"~")
        if self._program_state == "Held":
            self._program_state = "Execute"

    def soft_reset(self, wait: bool = True) -> None:
        """0x18: stop everything now and flush GRBL's buffers."""
        self._welcome.clear()
        self.link.write(b"\x18")
        if wait and not self._welcome.wait(self.timeout):
            raise DriverTimeout(f"{self.machine_id}: GRBL did not restart after a soft reset")

    def stop(self) -> None:
        """Feed hold, then soft reset: motion stops under control, the buffers are flushed."""
        self._stop.set()

    # -- system commands -------------------------------------------------------------------------
    def command(self, line: str, timeout: Optional[float] = None) -> str:
        """Send one line (a ``$`` command or G-code) outside a program and wait for its reply."""
        if any(ch in line for ch in "\n\r?!~\x18"):
            raise ProgramRejected(f"'{line!r}' contains a line break or a real-time byte")
        self._drain()
        self.link.write(line.encode("ascii") + b"\n")
        kind, reply = self._next_reply(Deadline(timeout or self.timeout), what=line)
        if reply != "ok":
            raise MachineFault(f"{self.machine_id}: '{line}' answered {explain(reply)}")
        return reply

    def read_settings(self) -> Dict[int, str]:
        """``$$``: the controller's settings, ``{number: value}``."""
        self.settings.clear()
        self.command("$$")
        return dict(self.settings)

    def write_setting(self, number: int, value: float) -> None:
        """``$N=V`` with a typed number."""
        from .gcode import format_number

        self.command(f"${int(number)}={format_number(value)}")

    def unlock(self) -> None:
        """``$X``: leave Alarm without homing."""
        self.command("$X")
        self.alarm = None

    def home(self, timeout: float = 120.0) -> None:
        """``$H``: run the homing cycle (long; its own timeout)."""
        self.command("$H", timeout=timeout)
        self.alarm = None

    def reset(self) -> None:
        st = self.query_status()
        if st.get("state") == "Alarm":
            self.unlock()
        elif st.get("state") == "Hold":
            self.soft_reset()
        self._program_state = "Idle"

    def state(self) -> str:
        st = self.query_status()
        grbl = st.get("state", "Idle")
        if grbl == "Idle" and self._program_state == "Complete":
            return "Complete"
        return GRBL_TO_PACKML.get(grbl, "Idle")

    # -- streaming -------------------------------------------------------------------------------
    def _next_reply(self, deadline: Deadline, what: str) -> Tuple[str, str]:
        """The next ok/error/alarm; while GRBL shows it is busy (Run/Hold), keep waiting."""
        next_poll = time.monotonic() + self.status_interval
        while True:
            if self._stop.is_set():
                return ("stop", "")
            reply = self._poll_reply(min(0.05, max(0.001, deadline.left())))
            if reply is None:
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self.status_interval
                    with self._status_cv:
                        busy = self.status.get("state") in ("Run", "Hold", "Home", "Jog")
                        fresh = self._status_seq
                    self.link.write(b"?")
                    if busy and fresh:
                        deadline.extend()
                if deadline.expired:
                    raise DriverTimeout(f"{self.machine_id}: no reply to '{what}' within {deadline.seconds:g} s",
                                        hint="the controller stopped answering; check the cable and power")
                continue
            kind, line = reply
            if kind == "welcome":
                raise MachineFault(f"{self.machine_id}: GRBL reset itself while '{what}' was pending",
                                   hint="power or a reset button; re-home before continuing")
            return kind, line

    def run_program(self, program: Program, parameters: Dict[str, float],
                    progress: Optional[ProgressCallback] = None, timeout: Optional[float] = None) -> ProgramResult:
        lines = self._program_lines(program, parameters)
        return self.stream(lines, progress=progress, timeout=timeout)

    def stream(self, lines: List[GcodeLine], progress: Optional[ProgressCallback] = None,
               timeout: Optional[float] = None) -> ProgramResult:
        """Stream prepared lines; see the module docstring for the protocol."""
        self._require_connected()
        st = self.query_status()
        if st.get("state") == "Alarm":
            raise MachineFault(f"{self.machine_id} is in Alarm ({self.alarm or 'after reset'})",
                               hint="reset() unlocks ($X); home() re-homes ($H)")
        self._stop.clear()
        self._drain()
        t0 = time.monotonic()
        total = len(lines)
        payload = [(g.text + "\n").encode("ascii") for g in lines]
        in_flight: Deque[int] = collections.deque()
        used = 0
        sent = acked = 0
        self.lines_sent = self.lines_acknowledged = 0
        self._program_state = "Execute"
        whole = Deadline(timeout) if timeout else None
        limit = RX_BUFFER_SIZE if self.streaming == "character_counting" else 0
        last_report = 0.0

        def report(force: bool = False) -> None:
            nonlocal last_report
            if progress is not None:
                now = time.monotonic()
                if force or now - last_report > 0.05:
                    last_report = now
                    progress(Progress(acked, total, "lines", self._program_state))

        try:
            while acked < total:
                while sent < total and (
                        (limit and used + len(payload[sent]) <= limit) or (not limit and not in_flight)):
                    if self._stop.is_set():
                        break
                    self.link.write(payload[sent])
                    in_flight.append(sent)
                    used += len(payload[sent])
                    sent += 1
                    self.lines_sent = sent
                if whole is not None and whole.expired:
                    raise DriverTimeout(f"{self.machine_id}: program not finished within {timeout:g} s "
                                        f"({acked}/{total} lines acknowledged)")
                kind, reply = self._next_reply(Deadline(self.timeout),
                                               what=lines[in_flight[0]].text if in_flight else "")
                if kind == "stop":
                    self._abort_motion()
                    self._program_state = "Stopped"
                    return ProgramResult("stopped", total, sent, acked, time.monotonic() - t0,
                                         {"stopped_before_line": lines[acked].source_line if acked < total else None})
                if kind == "alarm":
                    bad = lines[in_flight[0]] if in_flight else None
                    self._after_fault()
                    where = f" at line {bad.source_line} '{bad.text}'" if bad else ""
                    raise MachineFault(f"{self.machine_id}: {explain(reply)}{where}; {acked}/{total} lines "
                                       "acknowledged; GRBL is in Alarm",
                                       hint="fix the cause, then reset() ($X) or home() ($H)")
                idx = in_flight.popleft()
                used -= len(payload[idx])
                if reply != "ok":
                    bad = lines[idx]
                    self.last_error = explain(reply)
                    self._after_fault()
                    raise MachineFault(f"{self.machine_id}: line {bad.source_line} '{bad.text}' was refused: "
                                       f"{explain(reply)}; {acked}/{total} lines acknowledged, the rest was "
                                       "flushed by a soft reset", hint="fix the program line")
                acked += 1
                self.lines_acknowledged = acked
                report()
            self._wait_idle(whole)
        except ConnectionLost as exc:
            self._program_state = "Aborted"
            raise ConnectionLost(f"{self.machine_id}: {exc.message}; the firmware acknowledged {acked} of "
                                 f"{total} lines (up to source line "
                                 f"{lines[acked - 1].source_line if acked else 0})",
                                 hint="reconnect the controller; re-home before resuming") from exc
        self._program_state = "Complete"
        report(force=True)
        return ProgramResult("complete", total, sent, acked, time.monotonic() - t0,
                             {"streaming": self.streaming, "final_status": self.status})

    def _wait_idle(self, whole: Optional[Deadline]) -> None:
        """Poll ``?`` until GRBL reports Idle (the planner has run out)."""
        quiet = Deadline(self.timeout)
        while True:
            if self._stop.is_set():
                self._abort_motion()
                return
            st = self.query_status()
            state = st.get("state")
            if state == "Idle":
                return
            if state == "Alarm":
                raise MachineFault(f"{self.machine_id}: {self.alarm or 'Alarm'} after the last line",
                                   hint="reset() ($X) or home() ($H)")
            if state in ("Run", "Hold", "Home", "Jog"):
                quiet.extend()
            if quiet.expired or (whole is not None and whole.expired):
                raise DriverTimeout(f"{self.machine_id}: did not become Idle (last state {state})")
            try:
                kind, line = self._replies.get(timeout=self.status_interval)
                if kind == "alarm":
                    raise MachineFault(f"{self.machine_id}: {explain(line)} after the last line",
                                       hint="reset() ($X) or home() ($H)")
                if kind == "lost":
                    raise ConnectionLost(line)
            except queue.Empty:
                pass

    def _abort_motion(self) -> None:
        """Feed hold, let it decelerate, then a soft reset flushes the buffers (no lost position)."""
        try:
            self.link.write(b"!")
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                st = self.query_status()
                if st.get("state") == "Idle" or (st.get("state") == "Hold" and st.get("substate") == 0):
                    break
                time.sleep(0.02)
            self.soft_reset()
            self._drain()
        finally:
            self._stop.clear()

    def _after_fault(self) -> None:
        """Flush what is still buffered so nothing after the fault runs; leave a known state."""
        self._program_state = "Aborted"
        try:
            if self.alarm is None:
                self._abort_motion()
            else:
                self.soft_reset()
        except DriverError as exc:
            log.warning("%s: soft reset after a fault failed: %s", self.machine_id, exc)
        self._drain()

    # -- reports ---------------------------------------------------------------------------------
    def counters(self) -> Dict[str, int]:
        return {"lines_sent": self.lines_sent, "lines_acknowledged": self.lines_acknowledged,
                "bytes_written": self.link.bytes_written}

    def health(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"protocol": "grbl", "port": self.port, "streaming": self.streaming,
                                   **self.counters()}
        down = self._link_health(details)
        if down is not None:
            return down
        st = dict(self.status)
        details.update({"grbl_state": st.get("state"), "mpos": st.get("mpos"), "wpos": st.get("wpos")})
        if self.alarm or st.get("state") == "Alarm":
            return {"level": "error", "message": self.alarm or "Alarm", **details}
        if self.last_error:
            return {"level": "warn", "message": f"last error: {self.last_error}", **details}
        return {"level": "ok", "message": f"GRBL {st.get('state', 'connected')}", **details}
