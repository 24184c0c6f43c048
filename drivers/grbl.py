"""GRBL 1.1 over a serial port: streaming, real-time commands, status reports, alarm recovery.

Flow control follows the GRBL wiki's "streaming protocol", chosen per machine (``streaming`` in
the cell config, ``anycell machine --streaming``): ``character_counting`` keeps GRBL's 128-byte
receive buffer as full as possible without overflowing it (fast on many short segments), and
``send_response`` sends one line per ``ok`` (slower over the link, but nothing is queued behind a
line GRBL refuses). Every ``ok``/``error:N`` answers the oldest line in flight.

Before streaming, the controller must be Idle with an empty receive buffer: lines another
client left behind are flushed (feed hold, soft reset), never run as part of this program and
never counted for it. ``error:N`` stops the stream with a feed hold and a soft reset, and raises
:class:`MachineFault` naming the line. An ``ok`` means GRBL put the line into its planner, not
that it ran: the driver counts *executed* lines from GRBL's planner fill (``Bf:``), and a
result or an error says how many acknowledged lines a reset flushed.

Critical alarms (hard and soft limits) are handled as GRBL 1.1h does them: ``ALARM:N``, then
after ~0.5 s ``[MSG:Reset to continue]``; a reset sent before that message is lost, and GRBL
answers nothing (not even ``?``) until a new one. The driver waits for the message, sends the
soft reset, and GRBL sits in ``Alarm``; :meth:`GrblMachine.reset` (PackML Reset) unlocks it with
``$X`` (``home()`` re-homes with ``$H``). Status queries are re-sent every ``status_interval``
until a report comes, since GRBL drops a pending one across a reset.

GRBL's machine space is negative (homing at the positive end); a ``work_offset`` in the cell
config (meters) is written to G54 with ``G10 L2 P1`` on connect when the controller's differs,
so a CAM program with its zero on the stock top runs where it should.
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from anycell.errors import ConnectionLost, DriverError, DriverTimeout, MachineFault, ProgramRejected
from anycell.job import Program

from .gcode import WORD, GcodeLine, format_number
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
OFFSET_RE = re.compile(r"^\[(G5[4-9]|G28|G30|G92):([-\d.]+),([-\d.]+),([-\d.]+)")
#: Alarms after which GRBL waits in a loop for a reset ("[MSG:Reset to continue]").
CRITICAL_ALARMS = {1, 2}


def makes_block(text: str) -> bool:
    """Whether a program line puts a motion block into GRBL's planner (axis words or an arc)."""
    words = WORD.findall(text)
    if any(k in "XYZABC" for k, _ in words):
        return not any(k == "G" and float(v) in (10.0, 92.0, 28.1, 30.1) for k, v in words)
    return False


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

    def __init__(self, machine_cfg: Any, port: str, *, streaming: Optional[str] = None,
                 status_interval: float = 0.2, boot_timeout: float = 5.0,
                 alarm_message_timeout: float = 2.0) -> None:
        super().__init__(machine_cfg, port, boot_timeout=boot_timeout)
        streaming = streaming or self.settings_cfg["streaming"]
        if streaming not in ("character_counting", "send_response"):
            raise DriverError(f"unknown streaming mode '{streaming}'", hint="character_counting or send_response")
        self.streaming = streaming
        self.status_interval = status_interval
        self.alarm_message_timeout = alarm_message_timeout
        self._status_cv = threading.Condition()
        self.status: Dict[str, Any] = {}
        self._status_seq = 0
        self._welcome = threading.Event()
        self._reset_to_continue = threading.Event()
        self.locked = False          # in GRBL's critical-alarm loop: only a reset is taken
        self.settings: Dict[int, str] = {}
        self.offsets: Dict[str, List[float]] = {}
        self.alarm: Optional[str] = None
        self.last_error: Optional[str] = None
        self._program_state = "Idle"
        self._wco: Optional[List[float]] = None
        self.planner_blocks = 15     # learnt from the Idle status report (Bf: at rest)
        self._offset_applied = False
        self.lines_executed = 0
        self.flushes = 0

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
            code = line.split(":", 1)[1]
            if code.isdigit() and int(code) in CRITICAL_ALARMS:
                self.locked = True
                self._reset_to_continue.clear()
            self._replies.put(("alarm", line))
        elif line.startswith("[MSG:Reset to continue]"):
            self.locked = True
            self._reset_to_continue.set()
        elif line.startswith("Grbl "):
            self.locked = False
            self._welcome.set()
            self._replies.put(("welcome", line))
        elif line.startswith("$") and "=" in line:
            key, _, val = line[1:].partition("=")
            if key.isdigit():
                self.settings[int(key)] = val
        elif OFFSET_RE.match(line):
            m = OFFSET_RE.match(line)
            assert m is not None
            self.offsets[m.group(1)] = [float(m.group(i)) for i in (2, 3, 4)]
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
        """Open the port, make sure a GRBL answers, and set the configured work offset.

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
        st = self.query_status()
        if st.get("state") == "Idle" and "buffer" in st:
            self.planner_blocks = st["buffer"]["planner"]
        if st.get("state") != "Alarm":  # locked (homing lock at boot): set it before the first program
            self._apply_work_offset()

    def _apply_work_offset(self) -> None:
        offset = self.settings_cfg.get("work_offset")
        if offset is not None and not self._offset_applied:
            self.set_work_offset(offset)
        self._offset_applied = True

    def set_work_offset(self, offset_m: List[float], system: int = 1) -> None:
        """Write G54 (``system`` 1) .. G59 with ``G10 L2`` if the controller's differs; select it.

        ``offset_m`` is the machine position of the work zero in meters (the cell config's unit).
        GRBL keeps work offsets in EEPROM, so an unchanged offset is not written again.
        """
        want = [v * 1000.0 for v in offset_m]
        name = f"G{53 + system}"
        self.offsets.clear()
        self.command("$#")
        have = self.offsets.get(name)
        if have is None or any(abs(a - b) > 0.0005 for a, b in zip(have, want)):
            self.command(f"G10 L2 P{system} " + " ".join(f"{a}{format_number(round(v, 3))}"
                                                       for a, v in zip("XYZ", want)))
            log.info("%s: %s set to %s mm", self.machine_id, name, want)
        self.command(name)

    # -- real-time commands ----------------------------------------------------------------------
    def query_status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send ``?`` (again every ``status_interval``) and return the next status report.

        GRBL drops a pending status request across a reset, so one ``?`` is never waited on for
        the whole timeout.
        """
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        with self._status_cv:
            seq = self._status_seq
        while True:
            self.link.write(b"?")
            resend_at = time.monotonic() + max(self.status_interval, 0.05)
            with self._status_cv:
                while self._status_seq == seq:
                    if self.link.lost:
                        raise ConnectionLost(self.link.lost)
                    now = time.monotonic()
                    if now >= deadline:
                        raise DriverTimeout(f"{self.machine_id}: no status report within {limit:g} s",
                                            hint="GRBL answers nothing while locked after a critical alarm; "
                                                 "reset() recovers it")
                    if now >= resend_at:
                        break
                    self._status_cv.wait(min(resend_at, deadline) - now)
                else:
                    return dict(self.status)

    def hold(self) -> None:
        self.link.write(b"!")
        self._program_state = "Held" if self._program_state == "Execute" else self._program_state

    def resume(self) -> None:
        self.link.write(b"~")
        if self._program_state == "Held":
            self._program_state = "Execute"

    def soft_reset(self, wait: bool = True) -> None:
        """0x18: stop everything now and flush GRBL's buffers.

        In the critical-alarm loop a reset is only taken after ``[MSG:Reset to continue]``, so
        the driver waits for that message first (a reset sent earlier is lost).
        """
        if self.locked:
            self.wait_reset_to_continue()
        self._welcome.clear()
        self.link.write(b"\x18")
        if wait and not self._welcome.wait(self.timeout):
            raise DriverTimeout(f"{self.machine_id}: GRBL did not restart after a soft reset")

    def wait_reset_to_continue(self) -> None:
        """Wait (bounded) for GRBL's ``[MSG:Reset to continue]`` after a critical alarm."""
        if not self._reset_to_continue.wait(self.alarm_message_timeout):
            log.warning("%s: no '[MSG:Reset to continue]' within %g s; resetting anyway", self.machine_id,
                        self.alarm_message_timeout)

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
        if kind == "alarm":
            raise MachineFault(f"{self.machine_id}: '{line}' raised {explain(reply)}",
                               hint="reset() recovers the controller")
        if reply != "ok":
            raise MachineFault(f"{self.machine_id}: '{line}' answered {explain(reply)}")
        return reply

    def read_settings(self) -> Dict[int, str]:
        """``$$``: the controller's settings, ``{number: value}``."""
        self.settings.clear()
        self.command("$$")
        return dict(self.settings)

    def read_offsets(self) -> Dict[str, List[float]]:
        """``$#``: work offsets G54-G59, G28, G30, G92 in millimetres."""
        self.offsets.clear()
        self.command("$#")
        return dict(self.offsets)

    def write_setting(self, number: int, value: float) -> None:
        """``$N=V`` with a typed number."""
        self.command(f"${int(number)}={format_number(value)}")

    def unlock(self) -> None:
        """``$X``: leave Alarm without homing."""
        self.command("$X")
        self.alarm = None

    def home(self, timeout: float = 120.0) -> None:
        """``$H``: run the homing cycle (long; its own timeout)."""
        if self.locked:
            self.soft_reset()
        self.command("$H", timeout=timeout)
        self.alarm = None

    def reset(self) -> None:
        """PackML Reset: recover from an alarm (wait, soft reset, ``$X``) or a hold, back to Idle."""
        if self.locked:
            self.soft_reset()
            self._drain()
        st = self.query_status()
        if st.get("state") == "Alarm":
            self.unlock()
        elif st.get("state") in ("Hold", "Door"):
            self.soft_reset()
            self._drain()
        st = self.query_status()
        if st.get("state") == "Alarm":
            raise MachineFault(f"{self.machine_id}: still in Alarm after $X ({self.alarm or 'unknown cause'})",
                               hint="clear the cause (a pressed limit switch?) and home() the machine")
        self.alarm = None
        self._program_state = "Idle"

    def state(self) -> str:
        if self.locked:
            return "Aborted"
        st = self.query_status()
        grbl = st.get("state", "Idle")
        if grbl == "Idle" and self._program_state in ("Complete", "Stopped"):
            return self._program_state
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
                    if not self.locked:
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

    def ensure_ready(self) -> None:
        """Make sure GRBL is Idle with empty buffers before a program: flush what another client left.

        Lines left in GRBL's receive buffer or planner would run as part of our program and their
        ``ok`` replies would be counted for our lines. So: two clean reports (Idle, receive buffer
        empty) in a row, or a feed hold and a soft reset that flushes them.
        """
        if self.locked:
            raise MachineFault(f"{self.machine_id} is locked after {self.alarm or 'an alarm'}",
                               hint="reset() recovers it ($X after a soft reset); home() re-homes")
        clean = 0
        for _ in range(3):
            st = self.query_status()
            state = st.get("state")
            if state == "Alarm":
                raise MachineFault(f"{self.machine_id} is in Alarm ({self.alarm or 'after reset'})",
                                   hint="reset() unlocks ($X); home() re-homes ($H)")
            rx_free = st.get("buffer", {}).get("rx", RX_BUFFER_SIZE)
            if state == "Idle" and rx_free >= RX_BUFFER_SIZE - 1:
                clean += 1
                if clean == 2:
                    self._apply_work_offset()
                    self._drain()
                    return
                time.sleep(self.status_interval / 2)
                continue
            break
        log.warning("%s: controller busy before the program (state %s, %s); flushing it", self.machine_id,
                    self.status.get("state"), self.status.get("buffer"))
        self.flushes += 1
        self._stop.set()  # _abort_motion clears it
        self._abort_motion()
        self._drain()
        st = self.query_status()
        if st.get("state") != "Idle":
            raise MachineFault(f"{self.machine_id}: not Idle after flushing another client's lines "
                               f"(state {st.get('state')})", hint="reset() or home() the controller")
        self._apply_work_offset()

    def run_program(self, program: Program, parameters: Dict[str, float],
                    progress: Optional[ProgressCallback] = None, timeout: Optional[float] = None) -> ProgramResult:
        lines = self._program_lines(program, parameters)
        return self.stream(lines, progress=progress, timeout=timeout)

    def _executed(self, blocks: List[bool], acked: int, in_planner: int) -> int:
        """Acknowledged lines that ran, when ``in_planner`` blocks are still queued (and get flushed)."""
        i = acked
        left = in_planner
        while left > 0 and i > 0:
            i -= 1
            if blocks[i]:
                left -= 1
        return i if in_planner > 0 else acked

    def _in_planner(self) -> int:
        buf = self.status.get("buffer")
        if not buf or self.status.get("state") == "Idle":
            return 0
        return max(0, self.planner_blocks - int(buf.get("planner", self.planner_blocks)))

    def stream(self, lines: List[GcodeLine], progress: Optional[ProgressCallback] = None,
               timeout: Optional[float] = None) -> ProgramResult:
        """Stream prepared lines; see the module docstring for the protocol."""
        self._require_connected()
        self.ensure_ready()
        self._stop.clear()
        t0 = time.monotonic()
        total = len(lines)
        payload = [(g.text + "\n").encode("ascii") for g in lines]
        blocks = [makes_block(g.text) for g in lines]
        in_flight: Deque[int] = collections.deque()
        used = 0
        sent = acked = 0
        self.lines_sent = self.lines_acknowledged = self.lines_executed = 0
        self._program_state = "Execute"
        whole = Deadline(timeout) if timeout else None
        limit = RX_BUFFER_SIZE if self.streaming == "character_counting" else 0
        last_report = 0.0

        def report(force: bool = False) -> None:
            """Progress in executed lines: acknowledged minus the blocks still in GRBL's planner."""
            nonlocal last_report
            if progress is not None:
                now = time.monotonic()
                if force or now - last_report > 0.05:
                    last_report = now
                    done = acked if force else self._executed(blocks, acked, self._in_planner())
                    progress(Progress(done, total, "lines", self._program_state))

        def executed_now(flushed_in_planner: int) -> int:
            self.lines_executed = self._executed(blocks, acked, flushed_in_planner)
            return self.lines_executed

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
                    queued = self._abort_motion()
                    self._program_state = "Stopped"
                    done = executed_now(queued)
                    return ProgramResult("stopped", total, sent, acked, time.monotonic() - t0,
                                         {"stopped_before_line": lines[done].source_line if done < total else None,
                                          "lines_flushed": acked - done, "streaming": self.streaming},
                                         lines_executed=done)
                if kind == "alarm":
                    bad = lines[in_flight[0]] if in_flight else None
                    queued = self._in_planner()
                    self._after_fault()
                    done = executed_now(queued)
                    where = f" at line {bad.source_line} '{bad.text}'" if bad else ""
                    raise MachineFault(f"{self.machine_id}: {explain(reply)}{where}; {acked}/{total} lines "
                                       f"acknowledged, about {done} executed (the rest was flushed); GRBL is in "
                                       "Alarm", hint="fix the cause, then reset() ($X) or home() ($H)")
                idx = in_flight.popleft()
                used -= len(payload[idx])
                if reply != "ok":
                    bad = lines[idx]
                    self.last_error = explain(reply)
                    queued = self._after_fault()
                    done = executed_now(queued)
                    raise MachineFault(f"{self.machine_id}: line {bad.source_line} '{bad.text}' was refused: "
                                       f"{explain(reply)}; {acked}/{total} lines acknowledged, {done} executed, "
                                       f"{acked - done} flushed with the rest by a soft reset",
                                       hint="fix the program line; streaming: send_response queues nothing "
                                            "behind a line")
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
        if self._program_state == "Stopped":
            done = executed_now(0)
            return ProgramResult("stopped", total, sent, acked, time.monotonic() - t0,
                                 {"streaming": self.streaming, "lines_flushed": 0}, lines_executed=done)
        self._program_state = "Complete"
        self.lines_executed = acked
        report(force=True)
        return ProgramResult("complete", total, sent, acked, time.monotonic() - t0,
                             {"streaming": self.streaming, "final_status": self.status, "lines_flushed": 0},
                             lines_executed=acked)

    def _wait_idle(self, whole: Optional[Deadline]) -> None:
        """Poll ``?`` until GRBL reports Idle (the planner has run out)."""
        quiet = Deadline(self.timeout)
        while True:
            if self._stop.is_set():
                self._abort_motion()
                self._program_state = "Stopped"
                return
            try:
                kind, line = self._replies.get_nowait()
                if kind == "alarm":
                    self._after_fault()
                    raise MachineFault(f"{self.machine_id}: {explain(line)} after the last line",
                                       hint="reset() ($X) or home() ($H)")
                if kind == "lost":
                    raise ConnectionLost(line)
            except queue.Empty:
                pass
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
            self._stop.wait(self.status_interval)

    def _abort_motion(self) -> int:
        """Feed hold, let it decelerate, then a soft reset flushes the buffers (no lost position).

        Returns how many planner blocks were still queued when the reset flushed them.
        """
        queued = 0
        try:
            self.link.write(b"!")
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                st = self.query_status()
                queued = self._in_planner()
                if st.get("state") == "Idle" or (st.get("state") == "Hold" and st.get("substate") == 0):
                    break
                time.sleep(0.02)
            self.soft_reset()
            self._drain()
        finally:
            self._stop.clear()
        return queued

    def _after_fault(self) -> int:
        """Flush what is still buffered so nothing after the fault runs; leave a known state.

        After a critical alarm GRBL takes a reset only after ``[MSG:Reset to continue]``.
        Returns the planner blocks flushed (as far as known).
        """
        self._program_state = "Aborted"
        queued = self._in_planner()
        try:
            if self.alarm is None:
                queued = self._abort_motion()
            else:
                self.soft_reset()
        except DriverError as exc:
            log.warning("%s: soft reset after a fault failed: %s", self.machine_id, exc)
        self._drain()
        return queued

    # -- reports ---------------------------------------------------------------------------------
    def counters(self) -> Dict[str, int]:
        return {"lines_sent": self.lines_sent, "lines_acknowledged": self.lines_acknowledged,
                "lines_executed": self.lines_executed, "flushes": self.flushes,
                "bytes_written": self.link.bytes_written}

    def health(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"protocol": "grbl", "port": self.port, "streaming": self.streaming,
                                   **self.counters()}
        down = self._link_health(details)
        if down is not None:
            return down
        st = dict(self.status)
        details.update({"grbl_state": st.get("state"), "mpos": st.get("mpos"), "wpos": st.get("wpos"),
                        "locked": self.locked})
        if self.alarm or self.locked or st.get("state") == "Alarm":
            return {"level": "error", "message": self.alarm or "Alarm", **details}
        if self.last_error:
            return {"level": "warn", "message": f"last error: {self.last_error}", **details}
        return {"level": "ok", "message": f"GRBL {st.get('state', 'connected')}", **details}
