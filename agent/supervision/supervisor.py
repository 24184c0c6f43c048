"""``anycell up``'s process supervisor: start the cell's nodes, prefix their output, stop them cleanly.

Plain Python (no rclpy): each :class:`~anycell.agent.supervision.nodes.NodeSpec` becomes a child
process in its own session, so a Ctrl-C reaches the supervisor first and it
shuts the children down in reverse start order (SIGINT, then SIGTERM, then
SIGKILL after ``grace`` seconds each).

A child that exits while the cell should be running is *reported* and not
restarted: ``on_crash(spec, returncode)`` is called (``anycell up`` sends the
cell to Aborted there), because a cell must not carry on blindly with a piece
missing. When the crashed child is required and nothing can take the cell to
Aborted (the agent itself died), the supervisor shuts the rest down and
returns non-zero; the journal tells the restarted agent what was interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, IO, List, Optional

from anycell.childproc import guarded_argv

from anycell.agent.supervision.nodes import NodeSpec

log = logging.getLogger(__name__)

COLORS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[91m"]
RESET = "\033[0m"
BOLD_RED = "\033[1;31m"


class Supervisor:
    """Runs the children until Ctrl-C/SIGTERM (returns 0) or a required child dies (returns 1)."""

    def __init__(self, specs: List[NodeSpec], env: Optional[Dict[str, str]] = None, *,
                 on_crash: Optional[Callable[[NodeSpec, int], bool]] = None, out: Optional[IO[str]] = None,
                 color: Optional[bool] = None, grace: float = 8.0, python: Optional[str] = None) -> None:
        self.specs = specs
        self.env = env
        self.on_crash = on_crash
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.grace = grace
        self.python = python or sys.executable
        self.procs: Dict[str, subprocess.Popen] = {}
        #: processes started before the nodes (the simulated machines ``anycell up`` hands to the agent)
        self.watched: Dict[str, subprocess.Popen] = {}
        self._print_lock = threading.Lock()
        self._readers: List[threading.Thread] = []
        self._stopping = threading.Event()
        self._width = max([len(s.name) for s in specs] + [10])

    # ---- output
    def say(self, name: str, text: str, color: str = "") -> None:
        prefix = f"[{name:<{self._width}}]"
        with self._print_lock:
            if self.color and color:
                self.out.write(f"{color}{prefix}{RESET} {text}\n")
            else:
                self.out.write(f"{prefix} {text}\n")
            self.out.flush()

    def _pump(self, spec: NodeSpec, stream: IO[bytes], color: str) -> None:
        for raw in iter(stream.readline, b""):
            self.say(spec.name, raw.decode(errors="replace").rstrip("\n"), color)
        stream.close()

    # ---- lifecycle
    def start(self) -> None:
        for i, spec in enumerate(self.specs):
            argv = spec.argv(self.python)
            proc = subprocess.Popen(guarded_argv(argv), env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs[spec.name] = proc
            color = COLORS[i % len(COLORS)]
            reader = threading.Thread(target=self._pump, args=(spec, proc.stdout, color), daemon=True)
            reader.start()
            self._readers.append(reader)
            self.say("anycell", f"started {spec.name} (pid {proc.pid}): {' '.join(argv[1:4])} ...")

    def watch(self, name: str, proc: subprocess.Popen) -> None:
        """Look after a process started before the nodes: report its unexpected exit, stop it after them.

        Not a required node: the agent reports a lost simulated machine on /diagnostics and
        keeps the cell out of Idle, as it does for a real machine that vanished.
        """
        self.watched[name] = proc

    def _check_watched(self, reported: set) -> None:
        for name, proc in self.watched.items():
            rc = proc.poll()
            if rc is not None and name not in reported:
                reported.add(name)
                self.say("anycell", f"{name} exited unexpectedly with code {rc}", BOLD_RED)

    def run(self) -> int:
        """Supervise until Ctrl-C / SIGTERM or a required child's crash. Returns the exit code."""
        in_main = threading.current_thread() is threading.main_thread()
        # Signal handlers only set plain flags: taking a lock there (Event.set) can deadlock when the
        # signal lands while the main thread holds that same lock (inside Event.wait).
        flags = {"int": False, "term": False}

        def on_int(*_: object) -> None:   # Ctrl-C (any number of times): one orderly shutdown
            flags["int"] = True

        def on_term(*_: object) -> None:
            flags["term"] = True

        previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
        previous_int = signal.signal(signal.SIGINT, on_int) if in_main else None
        code = 0
        try:
            self.start()
            reported: set = set()
            while not (self._stopping.is_set() or flags["int"] or flags["term"]):
                for spec in self.specs:
                    proc = self.procs[spec.name]
                    rc = proc.poll()
                    if rc is None or spec.name in reported:
                        continue
                    reported.add(spec.name)
                    self.say("anycell", f"{spec.name} exited unexpectedly with code {rc}", BOLD_RED)
                    handled = False
                    if self.on_crash is not None:
                        try:
                            handled = bool(self.on_crash(spec, rc))
                        except Exception as exc:  # reporting must go on
                            self.say("anycell", f"could not handle the crash of {spec.name}: {exc}", BOLD_RED)
                        if in_main:   # the handler may have initialised rclpy, which installs its own
                            signal.signal(signal.SIGINT, on_int)
                            signal.signal(signal.SIGTERM, on_term)
                    if spec.required and not handled:
                        self.say("anycell", "a required node is gone: shutting the cell down", BOLD_RED)
                        code = 1
                        self._stopping.set()
                self._check_watched(reported)
                time.sleep(0.1)   # not Event.wait: see the signal handlers above
            if flags["int"]:
                self.say("anycell", "Ctrl-C: shutting the cell down")
        except KeyboardInterrupt:   # off the main thread there is no handler of ours
            self.say("anycell", "Ctrl-C: shutting the cell down")
        finally:
            try:
                self.shutdown()
            finally:
                if in_main:
                    signal.signal(signal.SIGINT, previous_int)
                    signal.signal(signal.SIGTERM, previous)
        return code

    def _stop_group(self, name: str, proc: subprocess.Popen) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the child's process group, ``grace`` seconds apart."""
        t0 = time.monotonic()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=self.grace)
                break
            except subprocess.TimeoutExpired:
                self.say("anycell", f"{name} did not stop on {signal.Signals(sig).name}", BOLD_RED)
        self.say("anycell", f"{name} stopped (code {proc.returncode}) in {time.monotonic() - t0:.1f} s")

    def stop(self) -> None:
        """Ask run() to shut the cell down (what SIGTERM does), from any thread."""
        self._stopping.set()

    def shutdown(self) -> None:
        """Stop every child still running, the cell agent first; wait for their output to drain.

        The agent goes first: on SIGINT it sends the stop trajectory and the machine stops while the
        robots' controllers (sim_cell) are still there to receive them.
        """
        self._stopping.set()
        for spec in self.specs:
            proc = self.procs.get(spec.name)
            if proc is None or proc.poll() is not None:
                continue
            self._stop_group(spec.name, proc)
        for name, proc in self.watched.items():
            if proc.poll() is None:
                self._stop_group(name, proc)
        for reader in self._readers:
            reader.join(timeout=2.0)

