"""CPU shares of process trees from /proc, for the benchmarks that measure idle cells.

Kept apart from the benchmarks themselves: importing ``bench_api`` sets a ROS environment and
imports rclpy, which ``bench_cells`` only needs for its own cells.
"""

from __future__ import annotations

import os
import time


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and all its live descendants (from /proc)."""
    parents, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, ppid in parents.items() if ppid == pid and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def idle_cpu_share(procs, seconds: float) -> list:
    """The share of one core each process tree used over the same ``seconds``."""
    before = [tree_cpu_seconds(p.pid) for p in procs]
    t0 = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    return [(tree_cpu_seconds(p.pid) - b) / wall for p, b in zip(procs, before)]
