"""A simulated GRBL 1.1 controller on a pty: ``python -m sim.grbl_device --help``.

What it models, because the driver depends on it:

* the 128-byte serial receive buffer: bytes beyond it are lost (and logged as ``OVERFLOW``),
  exactly what happens to a sender that counts characters wrong;
* the real-time bytes ``?`` (status report), ``!`` (feed hold), ``~`` (cycle start) and 0x18
  (soft reset), picked out of the stream before the buffer, as GRBL's serial ISR does;
* a 16-block planner: ``ok`` is sent when a line is parsed into the planner, so a sender that
  streams ahead sees ``ok``\\ s come back at the pace of motion once the planner is full;
* a per-line parse time (``--line-time``), the wire rate (``--baud``) and the reply latency
  (``--latency``), so that send-response and character counting differ the way they do on a
  real board; motion takes distance / feed, times ``--time-scale``;
* status reports ``<Idle|MPos:x,y,z|Bf:blocks,bytes|FS:feed,speed|WCO:x,y,z>`` (WCO every 10th
  report, as GRBL does), ``$$`` settings, ``$N=V``, ``$X``, ``$H``, ``$I``, ``$G``;
* GRBL's machine space: homing (``$H``) runs to the positive end of each axis and sets the
  machine position to ``-$27`` (the pull-off), so the travel is ``[-$130, 0]`` (``$131``,
  ``$132``); with soft limits (``$20=1``) a target outside it raises ``ALARM:2``. The
  position at power-up is 0 (the top corner, as if homed), or with ``--boot-alarm`` the
  controller starts in Alarm until ``$H``/``$X`` (HOMING_INIT_LOCK);
* work coordinate systems G54-G59 (``G10 L2 P<n>`` and ``G10 L20 P<n>`` set them, kept across
  resets as GRBL keeps them in EEPROM), ``G92`` offsets, ``$#`` prints them; WCO in the status
  report is the active system's offset plus G92;
* a critical alarm (hard limit, soft limit) as GRBL 1.1h handles it: ``ALARM:N``, then for
  ``--alarm-msg-delay`` (0.5 s) a reset is not taken, then ``[MSG:Reset to continue]``, and
  nothing at all is answered (not even ``?``) until a new 0x18; after it the controller greets
  and sits in ``Alarm`` until ``$X`` or ``$H``;
* G-code errors answered ``error:N`` with GRBL's codes.

Every program line it parses is logged as ``RX <line>`` in ``--log``.
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import threading
import time
from typing import Deque, Dict, List, Optional, Tuple

from anycell.sim.serial_device import PtyDevice, simulator_main

RX_BUFFER = 128
PLANNER_BLOCKS = 16
WELCOME = "Grbl 1.1h ['$' for help]"
DEFAULT_SETTINGS: Dict[int, float] = {
    0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 10: 1, 11: 0.010, 12: 0.002, 13: 0, 20: 1, 21: 0, 22: 1,
    23: 0, 24: 25.0, 25: 500.0, 26: 250, 27: 1.0, 30: 1000, 31: 0, 32: 0, 100: 250.0, 101: 250.0,
    102: 250.0, 110: 5000.0, 111: 5000.0, 112: 500.0, 120: 10.0, 121: 10.0, 122: 10.0, 130: 300.0,
    131: 200.0, 132: 100.0,
}
WORD = re.compile(r"([A-Z])([+-]?(?:\d+\.?\d*|\.\d+))")
SUPPORTED_G = {0, 1, 2, 3, 4, 10, 17, 18, 19, 20, 21, 28, 30, 40, 43.1, 49, 53, 54, 55, 56, 57, 58, 59, 80, 90,
               91, 92, 93, 94}
SUPPORTED_M = {0, 1, 2, 3, 4, 5, 7, 8, 9, 30, 56}


class GrblDevice:
    """The controller's state and its three activities: receive, parse, move."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dev = PtyDevice(args)
        self.settings = dict(DEFAULT_SETTINGS)
        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)
        self.rx: bytearray = bytearray()
        self.planner: Deque[Tuple[List[float], float]] = collections.deque()
        self.state = "Idle"
        self.hold = False
        self.locked_until_reset = False
        self.pos = [0.0, 0.0, 0.0]
        self.target_pos = [0.0, 0.0, 0.0]
        self.wcs = {n: [0.0, 0.0, 0.0] for n in range(1, 7)}  # G54..G59, millimetres (EEPROM)
        self.active_wcs = 1
        self.g92 = [0.0, 0.0, 0.0]
        self.alarm_window = False   # ALARM printed, "[MSG:Reset to continue]" not yet: resets are lost
        self.moving: Optional[Tuple[List[float], List[float], float, float]] = None
        self.feed = 0.0
        self.spindle = 0.0
        self.absolute = True
        self.inches = False
        self.motion_mode = 0
        self.status_count = 0
        self.program_lines = 0
        self.reset_gen = 0

    @property
    def wco(self) -> List[float]:
        """The work coordinate offset: the active G54-G59 system plus G92."""
        return [a + b for a, b in zip(self.wcs[self.active_wcs], self.g92)]

    # -- receive (the serial ISR) -----------------------------------------------------------------
    def receive_loop(self) -> None:
        for data in self.dev.chunks():
            for b in data:
                if b == ord("?"):
                    if self.locked_until_reset:
                        continue  # GRBL answers nothing in the critical-alarm loop
                    self.report_status()
                elif b == ord("!"):
                    with self.lock:
                        if self.state in ("Run", "Idle", "Jog") and not self.locked_until_reset:
                            self.hold = True
                            self.dev.record("FEED_HOLD")
                            self.cv.notify_all()
                elif b == ord("~"):
                    with self.lock:
                        if self.hold:
                            self.hold = False
                            self.dev.record("CYCLE_START")
                            self.cv.notify_all()
                elif b == 0x18:
                    if self.alarm_window:
                        self.dev.record("RESET_SWALLOWED")
                        continue  # GRBL clears a pending reset before "Reset to continue"
                    self.soft_reset()
                else:
                    with self.lock:
                        if len(self.rx) >= RX_BUFFER:
                            self.dev.record("OVERFLOW")
                            continue
                        self.rx.append(b)
                        if b == 10:
                            self.cv.notify_all()

    def soft_reset(self) -> None:
        with self.lock:
            in_motion = (self.moving is not None or bool(self.planner)) and not self.hold
            self.rx.clear()
            self.planner.clear()
            self.moving = None
            self.hold = False
            self.reset_gen += 1
            self.dev.record("RESET")
            if in_motion and not self.locked_until_reset:
                self.dev.send("ALARM:3")
                self.state = "Alarm"
            elif self.locked_until_reset:
                self.state = "Alarm"
            elif self.state != "Alarm":
                self.state = "Idle"
            self.locked_until_reset = False
            self.cv.notify_all()
        self.dev.send("")
        self.dev.send(WELCOME)
        if self.state == "Alarm":
            self.dev.send("[MSG:'$H'|'$X' to unlock]")

    def report_status(self) -> None:
        with self.lock:
            state = self.state
            if self.hold:
                state = "Hold:0"  # the modelled stop is immediate: the hold is complete
            elif state not in ("Alarm", "Home") and (self.moving is not None or self.planner):
                state = "Run"
            mpos = list(self.pos)
            if self.moving is not None and not self.hold:
                start, end, t0, dur = self.moving
                f = min(1.0, (time.monotonic() - t0) / dur) if dur > 0 else 1.0
                mpos = [a + (b - a) * f for a, b in zip(start, end)]
            self.status_count += 1
            parts = [state, "MPos:" + ",".join(f"{v:.3f}" for v in mpos),
                     f"Bf:{PLANNER_BLOCKS - len(self.planner) - (1 if self.moving else 0)},{RX_BUFFER - len(self.rx)}",
                     f"FS:{self.feed:.0f},{self.spindle:.0f}"]
            if self.status_count % 10 == 1:
                parts.append("WCO:" + ",".join(f"{v:.3f}" for v in self.wco))

        self.dev.send("<" + "|".join(parts) + ">")

    # -- parse (the protocol loop) ------------------------------------------------------------------
    def parse_loop(self) -> None:
        while True:
            with self.lock:
                while b"\n" not in self.rx:
                    self.cv.wait()
                raw, _, rest = bytes(self.rx).partition(b"\n")
                gen = self.reset_gen
            if self.args.line_time:
                time.sleep(self.args.line_time)
            with self.lock:
                if gen != self.reset_gen:
                    continue  # a reset flushed the buffer meanwhile
                del self.rx[:len(raw) + 1]
                self.cv.notify_all()
            line = raw.replace(b"\r", b"")
            self.handle_line(line)

    def reply(self, text: str) -> None:
        if text == "ok":
            delay = self.dev.ok_delay()
            if delay is None:
                return
            self.dev.send("ok", delay)
        else:
            self.dev.send(text)

    def handle_line(self, raw: bytes) -> None:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self.reply("error:1")
            return
        line = "".join(text.split()).upper()
        if not line:
            self.reply("ok")
            return
        if line.startswith("$"):
            self.system_command(line)
            return
        with self.lock:
            if self.locked_until_reset:
                return  # GRBL ignores everything but real-time bytes until reset
            alarm = self.state == "Alarm"
        if alarm:
            self.dev.record(f"LOCKED {line}")
            self.reply("error:9")
            return
        self.program_lines += 1
        n = self.program_lines
        if self.args.vanish_at_line and n >= self.args.vanish_at_line:
            self.dev.vanish()
        raw = self.dev.corrupt(raw)
        self.dev.record("RX " + raw.decode("ascii", "replace"))
        line = "".join(raw.decode("ascii", "replace").split()).upper()
        if self.args.alarm_at_line and n == self.args.alarm_at_line:
            self.raise_alarm(1, "hard limit (fault switch)")
            return
        err = self.execute_gcode(line)
        if err:
            self.dev.record(f"ERROR {err} {line}")
            self.reply(f"error:{err}")
        elif not self.locked_until_reset:
            self.reply("ok")

    def raise_alarm(self, code: int, why: str) -> None:
        with self.lock:
            self.planner.clear()
            self.moving = None
            self.reset_gen += 1  # the stepper drops the block it was on
            self.target_pos = list(self.pos)
            self.state = "Alarm"
            self.locked_until_reset = True
            self.alarm_window = True
            self.rx.clear()
            self.cv.notify_all()
        self.dev.record(f"ALARM {code} {why}")
        self.dev.send(f"ALARM:{code}")

        def reset_to_continue() -> None:
            time.sleep(self.args.alarm_msg_delay)
            with self.lock:
                self.alarm_window = False
            self.dev.send("[MSG:Reset to continue]")

        threading.Thread(target=reset_to_continue, daemon=True).start()

    def system_command(self, line: str) -> None:
        if line == "$$":
            for k in sorted(self.settings):
                v = self.settings[k]
                self.dev.send(f"${k}={v:.3f}" if isinstance(v, float) and not float(v).is_integer() or k >= 100
                              else f"${k}={int(v)}")
            self.reply("ok")
        elif line == "$X":
            with self.lock:
                if self.locked_until_reset:
                    return
                was = self.state
                self.state = "Idle"
            self.dev.record("UNLOCK")
            if was == "Alarm":
                self.dev.send("[MSG:Caution: Unlocked]")
            self.reply("ok")
        elif line == "$H":
            if not self.settings[22]:
                self.reply("error:5")
                return
            with self.lock:
                if self.locked_until_reset:
                    return
                self.state = "Home"
            time.sleep(0.5 * self.args.time_scale)
            with self.lock:
                pull = -float(self.settings[27])
                self.pos = [pull, pull, pull]
                self.target_pos = list(self.pos)
                self.state = "Idle"
            self.dev.record("HOMED")
            self.reply("ok")
        elif line == "$I":
            self.dev.send("[VER:1.1h.20190825:anycell-sim]")
            self.dev.send("[OPT:V,15,128]")
            self.reply("ok")
        elif line == "$G":
            self.dev.send(f"[GC:G{self.motion_mode} G{53 + self.active_wcs} G17 {'G20' if self.inches else 'G21'} "
                          f"{'G90' if self.absolute else 'G91'} G94 M5 M9 T0 F{self.feed:.0f} S{self.spindle:.0f}]")
            self.reply("ok")
        elif line == "$#":
            with self.lock:
                for n in range(1, 7):
                    self.dev.send(f"[G{53 + n}:" + ",".join(f"{v:.3f}" for v in self.wcs[n]) + "]")
                self.dev.send("[G28:0.000,0.000,0.000]")
                self.dev.send("[G30:0.000,0.000,0.000]")
                self.dev.send("[G92:" + ",".join(f"{v:.3f}" for v in self.g92) + "]")
                self.dev.send("[TLO:0.000]")
                self.dev.send("[PRB:0.000,0.000,0.000:0]")
            self.reply("ok")
        elif line in ("$N", "$C", "$"):
            self.reply("ok")
        else:
            m = re.fullmatch(r"\$(\d+)=([+-]?\d+\.?\d*)", line)
            if not m:
                self.reply("error:3")
                return
            key = int(m.group(1))
            if key not in self.settings:
                self.reply("error:3")
                return
            self.settings[key] = float(m.group(2))
            self.dev.record(f"SETTING ${key}={m.group(2)}")
            self.reply("ok")

    def execute_gcode(self, line: str) -> int:
        """Parse and plan one block; return a GRBL error code or 0."""
        pos = 0
        words: List[Tuple[str, float]] = []
        for m in WORD.finditer(line):
            if m.start() != pos:
                return 1 if not line[pos].isalpha() else 2
            words.append((m.group(1), float(m.group(2))))
            pos = m.end()
        if pos != len(line):
            return 1 if not line[pos].isalpha() else 2
        axes: Dict[str, float] = {}
        gs = [v for k, v in words if k == "G"]
        ms = [v for k, v in words if k == "M"]
        dwell = None
        for g in gs:
            if g not in SUPPORTED_G:
                return 20
        for mm in ms:
            if mm not in SUPPORTED_M:
                return 20
        motion = self.motion_mode
        set_offset = False
        l_word = next((v for k, v in words if k == "L"), None)
        p_word = next((v for k, v in words if k == "P"), None)
        for k, v in words:
            if k in "XYZ":
                axes[k] = v
            elif k == "F":
                self.feed = v * (25.4 if self.inches else 1.0)
            elif k == "S":
                self.spindle = v
            elif k in "PIJKRLNT":
                if k == "P":
                    dwell = v
            elif k not in "GM":
                return 20
        for g in gs:
            if g in (0, 1, 2, 3):
                motion = int(g)
            elif g == 90:
                self.absolute = True
            elif g == 91:
                self.absolute = False
            elif g == 20:
                self.inches = True
            elif g == 21:
                self.inches = False
            elif g == 92:
                set_offset = True
            elif g in (54, 55, 56, 57, 58, 59):
                self.active_wcs = int(g) - 53
            elif g == 10:
                if l_word not in (2, 20) or p_word is None or not 0 <= p_word <= 6 or not axes:
                    return 28 if l_word is None or p_word is None else 20
                n = int(p_word) or self.active_wcs
                unit = 25.4 if self.inches else 1.0
                for i, a in enumerate("XYZ"):
                    if a in axes:
                        # L2: the offset itself; L20: so that the current position reads as the value
                        self.wcs[n][i] = (axes[a] * unit if l_word == 2
                                          else self.target_pos[i] - self.g92[i] - axes[a] * unit)
                self.dev.record(f"WCS G{53 + n} " + ",".join(f"{v:.3f}" for v in self.wcs[n]))
                return 0
            elif g == 4:
                if dwell is None:
                    return 2
        self.motion_mode = motion
        if 4 in gs:
            self.plan([*self.target_pos], dwell * self.args.time_scale)
            return 0
        if set_offset:
            for i, a in enumerate("XYZ"):
                if a in axes:
                    base = self.wcs[self.active_wcs][i]
                    self.g92[i] = self.target_pos[i] - base - axes[a] * (25.4 if self.inches else 1.0)
            return 0
        if not axes:
            return 0
        if motion in (1, 2, 3) and self.feed <= 0:
            return 22
        unit = 25.4 if self.inches else 1.0
        target = list(self.target_pos)
        for i, a in enumerate("XYZ"):
            if a in axes:
                target[i] = (self.wco[i] + axes[a] * unit) if self.absolute else target[i] + axes[a] * unit
        if self.settings[20]:
            for i, key in enumerate((130, 131, 132)):
                if target[i] > 1e-6 or target[i] < -self.settings[key] - 1e-6:
                    self.raise_alarm(2, f"soft limit: machine {'XYZ'[i]}={target[i]:.3f} outside "
                                        f"-{self.settings[key]:g}..0")
                    return 0
        dist = math.dist(self.target_pos, target)
        rate = self.feed if motion else self.settings[110]
        duration = dist / (rate / 60.0) * self.args.time_scale if rate > 0 else 0.0
        self.target_pos = target
        self.plan(target, duration)
        return 0

    def plan(self, target: List[float], duration: float) -> None:
        """Put a block into the planner, waiting (without ok) while the planner is full."""
        with self.lock:
            gen = self.reset_gen
            while len(self.planner) >= PLANNER_BLOCKS and gen == self.reset_gen:
                self.cv.wait(0.1)
            if gen != self.reset_gen or self.locked_until_reset:
                return
            self.planner.append((target, duration))
            self.cv.notify_all()

    # -- move (the stepper) --------------------------------------------------------------------------
    def motion_loop(self) -> None:
        while True:
            with self.lock:
                while not self.planner or self.hold:
                    if not self.planner and self.state == "Run":
                        self.state = "Idle"
                    self.cv.wait(0.2)
                target, duration = self.planner[0]
                gen = self.reset_gen
                start = list(self.pos)
                if self.state == "Idle":
                    self.state = "Run"
                self.moving = (start, target, time.monotonic(), duration)
            left = duration
            while left > 0:
                step = min(left, 0.02)
                time.sleep(step)
                with self.lock:
                    if gen != self.reset_gen:
                        break
                    while self.hold and gen == self.reset_gen:
                        t_hold = time.monotonic()
                        self.cv.wait(0.1)
                        if self.moving:
                            s, e, t0, d = self.moving
                            self.moving = (s, e, t0 + (time.monotonic() - t_hold), d)
                left -= step
            with self.lock:
                if gen != self.reset_gen:
                    continue
                self.pos = list(target)
                self.planner.popleft()
                self.moving = None
                if not self.planner and self.state == "Run":
                    self.state = "Idle"
                self.cv.notify_all()

    def run(self) -> None:
        threading.Thread(target=self.receive_loop, daemon=True, name="rx").start()
        threading.Thread(target=self.parse_loop, daemon=True, name="parse").start()
        threading.Thread(target=self.motion_loop, daemon=True, name="motion").start()
        if self.args.boot_alarm:
            self.state = "Alarm"
            self.dev.boot(WELCOME, "[MSG:'$H'|'$X' to unlock]")
        else:
            self.dev.boot(WELCOME)
        while True:
            time.sleep(3600)


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--line-time", type=float, default=0.0005,
                        help="seconds to parse and plan one line (an AVR GRBL needs about 0.5-2 ms)")
    parser.add_argument("--alarm-msg-delay", type=float, default=0.5,
                        help="seconds between ALARM:N and [MSG:Reset to continue] (a reset meanwhile is lost)")
    parser.add_argument("--boot-alarm", action="store_true",
                        help="start in Alarm until $H or $X, as GRBL with homing enabled (HOMING_INIT_LOCK)")


def main(argv: Optional[List[str]] = None) -> None:
    simulator_main("python -m anycell.sim.grbl_device", __doc__, GrblDevice, _add_args, argv)


if __name__ == "__main__":
    main()
