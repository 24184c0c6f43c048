"""Marlin over a serial port: numbered, checksummed lines with resends, as OctoPrint and printcore do.

Every line goes out as ``N<n> <cmd>*<cs>`` (``cs`` = XOR of the bytes before ``*``), one line in
flight at a time (Marlin's ``ok`` is the clear-to-send). Marlin executes a numbered line only
when its number is its ``Last Line`` plus one, answers a wrong one with ``Error:...Last Line: k``,
``Resend: k+1`` and ``ok``, and (2.1) *silently ignores* a repeat of its last line or the one
before. The driver keeps its numbering true, so the firmware's answers say what ran:

* the driver's ``line_number`` is the firmware's ``Last Line``, known from an ``ok`` or from a
  ``Resend`` (whose number is the firmware's own). After a stop, a timeout, a halt or an error
  the driver re-synchronises (``M110 N0`` then a numbered ``M105``) before anything else is sent;
* a lost ``ok`` or a lost line is recovered the way hosts do it: when the line in flight has
  no sign of life (its ``ok``, a ``Resend`` or ``busy:``; temperature auto-reports do not count)
  for ``timeout`` seconds, the driver sends a numbered ``M105`` probe after it. Its ``ok T:``
  proves the line ran; a ``Resend: k`` says where to go on from. Nothing is inferred beyond the
  firmware's ``Last Line``, and a line is never sent twice under two numbers;
* every wait has a deadline that fires, including ``run_program(timeout=...)``.

``echo:Unknown command`` fails the program (``unknown_command: warn`` only logs it).
``Error:Printer halted`` is a :class:`MachineFault` naming the cause Marlin printed before it
(``Homing Failed``, ``Thermal Runaway``).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from anycell.errors import ConnectionLost, DriverError, DriverTimeout, MachineFault
from anycell.job import Program

from .gcode import GcodeLine, prepare_program
from .machine import ProgramResult, Progress, ProgressCallback
from .serial_stream import Deadline, SerialGcodeMachine

log = logging.getLogger(__name__)

TEMP_RE = re.compile(r"([TB]\d?):\s*(-?\d+\.?\d*)\s*/\s*(-?\d+\.?\d*)")
RESEND_RE = re.compile(r"^(?:Resend|rs)[: ]\s*N?(\d+)", re.IGNORECASE)
HISTORY = 256
#: Probes in a row without progress before the driver gives up on the link.
MAX_PROBES = 5


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



class _Run:
    """The bookkeeping of one streamed program (or single command): what the firmware confirmed."""

    def __init__(self, cmds: List[str]) -> None:
        self.cmds = cmds
        self.done = 0                 # cmds[:done] confirmed executed by the firmware
        self.acked = 0                # oks received for program lines
        self.sent: Dict[int, Optional[int]] = {}  # line number -> program index (None: a probe), > Last Line
        self.probes: List[int] = []   # outstanding probe numbers, oldest first
        self.skip_oks = 0             # oks that belong to a Resend, not to our line
        self.last_ok = "ok"
        self.unknown: List[Tuple[int, str]] = []  # (index, echo) of unknown commands
        self.own_m105_seen = False    # while probing, the program's own M105 answered ``ok T:`` once
        self.probed = False           # a probe went out during this run

    @property
    def total(self) -> int:
        return len(self.cmds)


class MarlinMachine(SerialGcodeMachine):
    """A Marlin printer (or any Marlin-protocol machine) on a serial port."""

    protocol = "marlin"
    dialect = "Marlin"

    def __init__(self, machine_cfg: Any, port: str, *, boot_timeout: float = 5.0,
                 autoreport_interval: Optional[int] = None, unknown_command: Optional[str] = None) -> None:
        super().__init__(machine_cfg, port, boot_timeout=boot_timeout)
        self.autoreport_interval = int(self.settings_cfg["autoreport_interval"] if autoreport_interval is None
                                       else autoreport_interval)
        self.unknown_command = unknown_command or self.settings_cfg["unknown_command"]
        if self.unknown_command not in ("fail", "warn"):
            raise DriverError(f"unknown_command must be fail or warn, not '{self.unknown_command}'")
        self._started = threading.Event()
        self._lock = threading.RLock()
        self.temperatures: Dict[str, Tuple[float, float]] = {}
        self.temperature_time = 0.0
        self.errors: Deque[str] = collections.deque(maxlen=20)
        self.fault: Optional[str] = None
        self.line_number = 0          # the firmware's Last Line, when synced
        self._synced = False
        self._sync_count = 0
        self._skip_after_sync = 0
        self.history: "collections.OrderedDict[int, str]" = collections.OrderedDict()
        self.resends = 0
        self.probes_sent = 0
        self.timeouts_recovered = 0
        self.resyncs = 0
        self.lines_executed = 0
        self._state = "Idle"
        self._hold = threading.Event()
        self._last_error = ""

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
            self._replies.put(("resend", int(m.group(1))))
            return
        if line.startswith("start"):
            self._started.set()
            self._replies.put(("start", line))
            return
        if "busy:" in line:
            self._replies.put(("alive", line))
            return
        if temps:
            return  # auto-report or a heating wait's report: the printer lives, but says nothing of our line
        if line.startswith("Error:") or line.startswith("!!"):
            text = line[6:].strip() if line.startswith("Error:") else line
            if re.search(r"checksum|Line Number|No Checksum|No Line Number", text, re.IGNORECASE):
                self.messages.append(line)
                return
            self.errors.append(text)
            if "halted" in text.lower() or "kill" in text.lower():
                cause = self._last_error
                self.fault = f"{text} (cause: {cause})" if cause else text
                self._replies.put(("fault", self.fault))
            else:
                self._last_error = text
            return
        self.messages.append(line)
        if line.startswith("echo:Unknown command"):
            self.errors.append(line[5:])
            log.warning("%s: %s", self.machine_id, line)
            self._replies.put(("unknown", line[5:]))

    # -- connection and line numbers -------------------------------------------------------------
    def connect(self) -> None:
        """Open the port, synchronise line numbers, set the temperature auto-report.

        Most boards reset when the port opens and ignore input while booting, so the sync
        (``M110 N0`` + a numbered ``M105``) is repeated every 0.5 s until it is answered.
        ``M155 S<autoreport_interval>`` is always sent (``S0`` turns a running auto-report off).
        """
        self.link.open()
        self._connected = True
        try:
            self._resync(self.boot_timeout + self.timeout, attempt_wait=0.5)
        except DriverError:
            self.link.close()
            self._connected = False
            raise
        self.send_command(f"M155 S{int(self.autoreport_interval)}")

    def _write_numbered(self, n: int, cmd: str) -> None:
        payload = numbered(n, cmd)
        self.history[n] = payload
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)
        self.link.write((payload + "\n").encode("ascii"))

    def _resync(self, seconds: Optional[float] = None, attempt_wait: Optional[float] = None) -> None:
        """Make the firmware's Last Line ``b + 1`` and know it, whatever came before.

        ``N<b> M110 N<b>``, ``N<b+1> M105``, then ``N<b+3> M105``, a gap Marlin can only refuse
        with ``Resend: <b+2>``. That answer carries its number, so it cannot be mistaken for the
        late ``ok`` (or ``ok T:``) of a line from before the sync: everything the firmware says
        about older lines comes before it on the wire. ``b`` changes from one sync to the next.
        """
        deadline = time.monotonic() + (seconds if seconds is not None else self.timeout)
        wait = attempt_wait if attempt_wait is not None else min(self.timeout, 2.0)
        while True:
            if time.monotonic() > deadline:
                raise DriverTimeout(f"{self.machine_id}: Marlin did not answer the line-number sync (M110) on "
                                    f"{self.port}", hint="check the baud rate and that the printer runs Marlin")
            base = 100 + (self._sync_count % 50) * 10
            self._sync_count += 1
            self._drain()
            self._write_numbered(base, f"M110 N{base}")
            self._write_numbered(base + 1, "M105")
            self._write_numbered(base + 3, "M105")
            until = time.monotonic() + wait
            while time.monotonic() < until:
                reply = self._poll_reply(max(0.001, min(0.05, until - time.monotonic())))
                if reply is None:
                    continue
                kind, val = reply
                if kind == "fault":
                    raise MachineFault(f"{self.machine_id}: {val}", hint="a halted Marlin needs a power cycle")
                if kind == "resend" and val == base + 2:
                    self.line_number = base + 1
                    self._synced = True
                    self._skip_after_sync = 1  # the ok that follows this Resend
                    self.resyncs += 1
                    return
                if kind == "start":
                    break  # the board rebooted: say it again

    # -- single commands -------------------------------------------------------------------------
    def send_command(self, cmd: str, timeout: Optional[float] = None) -> str:
        """Send one numbered command outside a program; return its ok line once the firmware ran it."""
        with self._lock:
            lines = prepare_program(cmd, {}, allowed=self.settings_cfg["allowed"],
                                    forbidden=self.settings_cfg["forbidden"], dialect="marlin")
            state, sent, acked, executed = self._state, self.lines_sent, self.lines_acknowledged, self.lines_executed
            try:
                res = self._stream([g.text for g in lines], None, timeout)
            finally:  # a single command is not a program: keep the program's state and counters
                if self._state != "Aborted":
                    self._state = state
                self.lines_sent, self.lines_acknowledged, self.lines_executed = sent, acked, executed
            if res.status != "complete":
                raise MachineFault(f"{self.machine_id}: '{cmd}' was stopped before Marlin confirmed it")
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
                sources: Optional[List[GcodeLine]] = None) -> ProgramResult:
        self._require_connected()
        if self.fault:
            raise MachineFault(f"{self.machine_id} halted earlier: {self.fault}", hint="power-cycle the printer")
        self._stop.clear()
        t0 = time.monotonic()
        whole = Deadline(timeout) if timeout else None
        if not self._synced:
            self._resync(min(self.timeout * 3, whole.left()) if whole else self.timeout * 3)
        if self._skip_after_sync == 0:
            self._drain()  # stale chatter (busy:, echoes) of earlier commands is not about this run
        run = _Run(cmds)
        run.skip_oks, self._skip_after_sync = self._skip_after_sync, 0
        self._state = "Execute"
        self.lines_sent = self.lines_acknowledged = self.lines_executed = 0

        def src(idx: int) -> str:
            if sources and 0 <= idx < len(sources):
                return f"source line {sources[idx].source_line} '{cmds[idx]}'"
            return f"'{cmds[idx]}'" if 0 <= idx < len(cmds) else "-"

        def where() -> str:
            if sources and run.done:
                return f" (up to source line {sources[run.done - 1].source_line})"
            return ""

        try:
            self._pump(run, progress, whole)
        except ConnectionLost as exc:
            self._fail_state()
            raise ConnectionLost(f"{self.machine_id}: {exc.message}; the firmware executed {run.done} of "
                                 f"{run.total} lines{where()}",
                                 hint="reconnect the printer and check the part") from exc
        except (MachineFault, DriverTimeout) as exc:
            self._fail_state()
            if run.done < run.total and "executed" not in exc.message:
                exc.message = f"{exc.message}; the firmware executed {run.done} of {run.total} lines{where()}"
                exc.args = (exc.message,)
            raise
        if run.probed or run.skip_oks or run.sent:
            # answers to probes or to a Resend may still be on their way: the next command must
            # not take them for its own, so it re-synchronises first
            self._synced = False
        result_details: Dict[str, Any] = {"resends": self.resends, "probes": self.probes_sent,
                                          "last_ok": run.last_ok, "temperatures": dict(self.temperatures)}
        if self._stop.is_set() and run.done < run.total:
            self._state = "Stopped"
            self._synced = False  # the line in flight may or may not run: re-sync before anything else
            in_doubt = [i for i in run.sent.values() if i is not None]
            result_details.update({"stopped_before": src(run.done),
                                   "in_doubt": src(in_doubt[0]) if in_doubt else None})
            return ProgramResult("stopped", run.total, self.lines_sent, run.acked, time.monotonic() - t0,
                                 result_details, lines_executed=run.done)
        if run.unknown:
            idx, echo = run.unknown[0]
            result_details["unknown_commands"] = [f"{src(i)}: {e}" for i, e in run.unknown]
            if self.unknown_command == "fail":
                self._state = "Aborted"
                raise MachineFault(f"{self.machine_id}: {src(idx)} is not a command this Marlin knows ({echo}); "
                                   f"{run.done} of {run.total} lines executed",
                                   hint="fix the program, or set unknown_command: warn in the machine's driver")
        self._state = "Complete"
        return ProgramResult("complete", run.total, self.lines_sent, run.acked, time.monotonic() - t0,
                             result_details, lines_executed=run.done)

    def _fail_state(self) -> None:
        self._state = "Aborted"
        self._synced = False

    def _send_next(self, run: _Run) -> None:
        """Send the first unconfirmed program line as Last Line + 1 (nothing else is in flight)."""
        n = self.line_number + 1
        run.sent = {n: run.done}
        run.probes = []
        self._write_numbered(n, run.cmds[run.done])
        self.lines_sent += 1

    def _confirm_upto(self, run: _Run, last: int) -> None:
        """The firmware's Last Line is ``last``: every program line we numbered up to it ran."""
        for n in sorted(k for k in run.sent if k <= last):
            idx = run.sent.pop(n)
            if idx is not None and idx == run.done:
                run.done += 1
        self.line_number = last
        self.lines_executed = run.done
        run.probes = [p for p in run.probes if p > last]

    def _pump(self, run: _Run, progress: Optional[ProgressCallback], whole: Optional[Deadline]) -> None:
        """Feed lines one at a time until all ran, a stop, or a failure (raised)."""
        probes_in_a_row = 0
        alive = Deadline(self.timeout)
        report_done = -1
        while run.done < run.total:
            if progress is not None and run.done != report_done:
                report_done = run.done
                progress(Progress(run.done, run.total, "lines", self.state()))
            idle = not run.sent
            if idle:
                if self._stop.is_set():
                    return
                if self._hold.is_set():
                    self._stop.wait(0.02)
                    if whole is not None:
                        whole.extend()
                    continue
                self._send_next(run)
                alive.extend()
            if self._stop.is_set() and not run.probes:
                return  # nothing more goes out; the line in flight is reported as in doubt
            if whole is not None and whole.expired:
                raise DriverTimeout(f"{self.machine_id}: program not finished within {whole.seconds:g} s",
                                    hint="raise the program timeout, or check the printer")
            wait = max(0.001, min(0.05, alive.left(), whole.left() if whole else 1.0))
            reply = self._poll_reply(wait)
            if reply is None:
                if alive.expired:
                    probes_in_a_row += 1
                    if probes_in_a_row > MAX_PROBES:
                        raise DriverTimeout(f"{self.machine_id}: no answer for {src_text(run)} after "
                                            f"{MAX_PROBES} probes of {self.timeout:g} s",
                                            hint="the printer stopped answering; check the cable and power")
                    self._probe(run)
                    alive.extend()
                continue
            kind, val = reply
            if kind == "alive":
                alive.extend()
            elif kind == "fault":
                raise MachineFault(f"{self.machine_id}: {val} (while {src_text(run)} was in flight)",
                                   hint="the printer halted; power-cycle it after checking the cause")
            elif kind == "start":
                raise MachineFault(f"{self.machine_id}: the printer restarted while {src_text(run)} was in flight",
                                   hint="check the power supply; re-home before continuing")
            elif kind == "unknown":
                idx = next((i for i in run.sent.values() if i is not None), run.done)
                run.unknown.append((idx, val))
            elif kind == "resend":
                alive.extend()
                if self._on_resend(run, val):
                    probes_in_a_row = 0
            elif kind == "ok":
                alive.extend()
                if self._on_ok(run, val):
                    probes_in_a_row = 0

    def _probe(self, run: _Run) -> None:
        """No sign of life for the line in flight: ask the firmware where it is.

        First a numbered ``M105`` after everything sent: its ``ok T:`` proves every line before it
        ran, a ``Resend: k`` gives the Last Line. If that probe's answer is lost too, an ``M105``
        numbered one beyond the next free number: Marlin can never execute it, and always answers
        it with ``Resend: <Last Line + 1>``, so the answer cannot be mistaken for another's.
        """
        top = max([self.line_number, *run.sent])
        run.probed = True
        run.skip_oks = 0  # from here on only a probe's ``ok T:`` or a Resend decides
        self.probes_sent += 1
        self.timeouts_recovered += 1
        if not run.probes:
            n = top + 1
            run.probes.append(n)
        else:
            n = top + 2  # a gap: refused with the firmware's Last Line, never executed
        run.sent[n] = None
        log.info("%s: no answer for N%d within %g s, probing with N%d M105", self.machine_id,
                 self.line_number + 1, self.timeout, n)
        self._write_numbered(n, "M105")

    def _on_resend(self, run: _Run, k: int) -> bool:
        """``Resend: k``: the firmware's Last Line is k-1. True when that is progress or a known retry."""
        self.resends += 1
        top = max([self.line_number, *run.sent])
        if k - 1 > top:
            log.warning("%s: ignoring Resend: %d beyond the last line sent (N%d)", self.machine_id, k, top)
            return False
        if k - 1 < self.line_number:
            raise MachineFault(f"{self.machine_id}: Marlin asked for N{k}, before its confirmed Last Line "
                               f"N{self.line_number}: line numbers out of step",
                               hint="the driver re-synchronises (M110) before the next program")
        self._confirm_upto(run, k - 1)
        run.skip_oks += 1  # the ok that follows the Resend
        if run.done < run.total and not self._stop.is_set():
            self._send_next(run)
        else:
            run.sent = {}
            run.probes = []
        return True

    def _on_ok(self, run: _Run, line: str) -> bool:
        """An ``ok``: confirms the line in flight, or (while probing) only the probe's ``ok T:`` counts."""
        if run.probes:
            if "T:" not in line:
                return False  # an old line's late ok or a Resend's ok: the probe will tell
            in_flight = [i for n, i in sorted(run.sent.items()) if i is not None]
            if in_flight and run.cmds[in_flight[0]].split(" ")[0] == "M105" and not run.own_m105_seen:
                # our own program line is an M105: its ok T: confirms it, the probe still decides the rest
                run.own_m105_seen = True
                n = min(k for k, i in run.sent.items() if i == in_flight[0])
                self._confirm_upto(run, n)
                run.acked += 1
                return True
            run.own_m105_seen = False
            self._confirm_upto(run, run.probes[0])
            if not run.probes:
                run.sent = {}
            return True
        if run.skip_oks:
            run.skip_oks -= 1
            return False
        if not run.sent:
            return False  # a stray ok (e.g. the M410 of a stop)
        n = min(run.sent)
        self._confirm_upto(run, n)
        run.acked += 1
        self.lines_acknowledged = run.acked
        run.last_ok = line
        return True

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
        """Stop feeding lines (none goes out after this) and ask for a quick stop (M410, handled by
        Marlin's emergency parser). The next program re-synchronises line numbers first."""
        self._stop.set()
        self._hold.clear()
        self._synced = False
        try:
            self.link.write(b"M410\n")
        except DriverError:
            pass

    def reset(self) -> None:
        """Back to Idle with true line numbers (a halted Marlin cannot be reset from the host)."""
        if self.fault:
            raise MachineFault(f"{self.machine_id}: {self.fault}", hint="a halted Marlin needs a power cycle")
        with self._lock:
            if not self._synced and self._connected:
                self._resync(self.timeout * 3)
            self._state = "Idle"

    def counters(self) -> Dict[str, int]:
        return {"lines_sent": self.lines_sent, "lines_acknowledged": self.lines_acknowledged,
                "lines_executed": self.lines_executed, "resends": self.resends, "probes": self.probes_sent,
                "timeouts_recovered": self.timeouts_recovered, "resyncs": self.resyncs,
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


def src_text(run: _Run) -> str:
    """The program line in flight, for messages."""
    idx = next((i for i in run.sent.values() if i is not None), run.done)
    return f"'{run.cmds[idx]}'" if 0 <= idx < len(run.cmds) else "the last line"
