"""Benchmark: many simulated cells starting at once on one machine, against one cell alone (same run).

Starts ``N`` copies of ``anycell up demo_cell --sim --startup idle`` at the same moment, each in
its own ROS domain with its own journal (the agent, the PyBullet sim node and the simulated
machines of every cell: 4 processes per cell), and measures:

1. the wall time until every cell has said it is Idle (its ``cell '...' up: state Idle`` line),
   against the time one cell alone takes in the same run; every cell must get there (goal: all
   ``N`` reliably, with readiness waits that scale with load, and no silent hang);
2. the idle CPU of all the cells together over ``IDLE_WINDOW`` seconds, per cell;
3. that each ``anycell up`` stops cleanly on SIGINT (exit 0 within its own shutdown time).

Run: .venv/bin/python bench/bench_cells.py [N]   (N defaults to 8; about a minute)
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.proc_cpu import idle_cpu_share  # noqa: E402

IDLE_WINDOW = 10.0
DEADLINE_S = 180.0
IDLE_LINE = "up: state Idle"


class Cell:
    """One ``anycell up`` in its own ROS domain; notes when it reaches Idle."""

    def __init__(self, domain: int, workdir: str) -> None:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        argv = [sys.executable, "-m", "anycell", "up", "demo_cell", "--sim", "--startup", "idle",
                "--journal", os.path.join(workdir, f"j{domain}.db"), "--no-color", "--domain", str(domain)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.idle_after: Optional[float] = None
        self.tail: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail = (self.tail + [line.rstrip()])[-20:]
            if self.idle_after is None and IDLE_LINE in line:
                self.idle_after = time.perf_counter() - self.t0

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode


def wait_idle(cells: List[Cell], deadline: float) -> bool:
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        if all(c.idle_after is not None for c in cells):
            return True
        if any(c.proc.poll() is not None and c.idle_after is None for c in cells):
            return False
        time.sleep(0.05)
    return False


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="many simulated demo cells starting at once, against one alone")
    parser.add_argument("n", nargs="?", type=int, default=8, help="how many cells start at once (default 8)")
    n = parser.parse_args().n
    base = 120 + os.getpid() % 40 * 2   # domains base .. base + n (0-232 are valid)
    tmp = tempfile.mkdtemp(prefix="bench_cells_")
    alone = Cell(base, tmp)
    ok = wait_idle([alone], DEADLINE_S)
    alone_code = alone.stop()
    if not ok:
        print("one cell alone never reached Idle:\n" + "\n".join(alone.tail))
        return 1
    cells = [Cell(base + 1 + i, tmp) for i in range(n)]
    t0 = time.perf_counter()
    all_idle = wait_idle(cells, DEADLINE_S)
    all_after = time.perf_counter() - t0
    shares: List[float] = []
    if all_idle:
        time.sleep(3.0)   # let the sim nodes rest
        shares = idle_cpu_share([c.proc for c in cells], IDLE_WINDOW)
    codes: Dict[int, Optional[int]] = {}
    for i, c in enumerate(cells):
        codes[i] = c.stop()
    reached = [c.idle_after for c in cells if c.idle_after is not None]
    print(f"one cell alone -> Idle: {alone.idle_after:.2f} s (stopped with code {alone_code})")
    print(f"{n} cells at once -> all Idle: {'%.2f s' % all_after if all_idle else 'NOT all'}   "
          f"({len(reached)} of {n} reached Idle; per cell median {statistics.median(reached):.2f} s, "
          f"max {max(reached):.2f} s)   ratio to one alone: {max(reached) / alone.idle_after:.1f}x"
          if reached else f"{n} cells at once: none reached Idle")
    if shares:
        print(f"idle CPU of the {n} cells over {IDLE_WINDOW:.0f} s: {sum(shares) * 100:.1f} % of a core in all, "
              f"{statistics.mean(shares) * 100:.1f} % per cell   goal <= 3 % per cell: "
              f"{'met' if statistics.mean(shares) <= 0.03 else 'NOT met'}")
    clean = sum(1 for code in codes.values() if code == 0)
    print(f"clean SIGINT stops: {clean} of {n}")
    for i, c in enumerate(cells):
        if c.idle_after is None or codes[i] != 0:
            print(f"--- cell {i} (code {codes[i]}):\n" + "\n".join(c.tail))
    return 0 if all_idle and clean == n else 1


if __name__ == "__main__":
    sys.exit(main())
