"""A one-line live progress display for long work (a job's steps), tty-aware.

On a terminal the line is redrawn in place; in a log or a pipe each change is
one plain line, so CI output stays readable.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, TextIO


def progress_line(p: Dict[str, Any], width: int = 30) -> str:
    """``[#####.........]  5/18  running: unit 1: load block on panda`` from a progress dict.

    ``p`` has ``done``, ``total`` and optionally ``running`` (dicts with
    ``what`` or ``op``) and ``status``.
    """
    total = max(1, int(p.get("total") or 0))
    done = int(p.get("done") or 0)
    filled = int(width * done / total)
    running = "; ".join(r.get("what", r.get("op", "")) for r in p.get("running", []))
    tail = f"running: {running}" if running else p.get("status", "")
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total:<3} {tail}".rstrip()


class ProgressDisplay:
    """Shows progress dicts as they come; call :meth:`close` at the end."""

    def __init__(self, stream: Optional[TextIO] = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, p: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = progress_line(p)
        if line == self._last:
            return
        self._last = line
        if self.tty:
            self.stream.write("\r\033[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def follow_job(client: Any, job_id: str, timeout: float, stream: Optional[TextIO] = None) -> Dict[str, Any]:
    """Show a job's progress until it ends; return its full summary (with the report, when there is one).

    ``client`` is an :class:`anycell.agent.ros.client.CellClient`.
    """
    display = ProgressDisplay(stream or sys.stdout)
    try:
        final = client.wait_job(job_id, timeout, on_update=display.show)
    finally:
        display.close()
    return client.get(job_id).get("job") or final
