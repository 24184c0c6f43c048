"""Child processes that do not outlive their parent, started without Python between fork and exec.

anycell starts processes (the nodes of ``anycell up``, simulated machines).
If the parent dies without cleaning up (``kill -9``, a crash), its children
must not keep running, holding ports, ptys and ROS names. On Linux the kernel
can signal a child when its parent dies (``PR_SET_PDEATHSIG``).

That request must be made *in the child*. Doing it with ``Popen(preexec_fn=...)``
runs Python code (and a ``dlopen`` for ctypes) between fork and exec, which can
deadlock when the parent has other threads (a lock held by another thread at
fork time is never released in the child): a cell agent was seen hanging
silently at start that way. So the child asks for it itself, first thing:
:func:`guarded_argv` wraps a command line so that it starts as
``python -m anycell.childproc <parent pid> ...``, which sets the signal, checks
that the parent is still the one that started it (it may have died in between),
and then runs the real module in the same interpreter, or execs the real program.

Linux ties the signal to the *thread* that started the child: start such
children from a thread that lives as long as they should (the main thread, as
anycell does).
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import time
from typing import List, Optional, Sequence

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up still ends the child
        pass


def guarded_argv(argv: Sequence[str], python: str = "") -> List[str]:
    """``argv`` wrapped so the child dies with this process (see the module docstring).

    ``[python, "-m", module, *args]`` becomes one interpreter that runs ``module``;
    any other command is exec'd after the signal is set.
    """
    argv = list(argv)
    py = python or sys.executable
    parent = str(os.getpid())
    if len(argv) >= 3 and argv[1] == "-m":
        return [argv[0], "-m", "anycell.childproc", parent, "-m"] + argv[2:]
    return [py, "-m", "anycell.childproc", parent, "--exec"] + argv


def cpu_seconds(pid: int) -> Optional[float]:
    """CPU time (user + system) a process has used so far, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class ReadinessWait:
    """Wait for a child to get ready with a deadline that scales with the machine's load.

    A fixed deadline fails healthy children on a loaded machine (eight cells
    starting on two cores) and waits too long for a stuck one. Here the child
    fails only when it has used no CPU for ``idle_timeout`` seconds (it is
    stuck, not slow) or when ``max_timeout`` passes; :meth:`expired` says which.
    """

    def __init__(self, pid: int, idle_timeout: float = 20.0, max_timeout: float = 180.0) -> None:
        self.pid, self.idle_timeout, self.max_timeout = pid, idle_timeout, max_timeout
        self.start = time.monotonic()
        self._cpu = cpu_seconds(pid)
        self._progress_at = self.start

    def expired(self) -> Optional[str]:
        """None while waiting makes sense; else the reason to give up."""
        now = time.monotonic()
        cpu = cpu_seconds(self.pid)
        if cpu is not None and (self._cpu is None or cpu > self._cpu + 0.01):
            self._cpu, self._progress_at = cpu, now
        elif cpu is None and self._cpu is None:  # no /proc: fall back to a plain deadline
            self._progress_at = self.start
        if now - self._progress_at > self.idle_timeout:
            return f"used no CPU for {self.idle_timeout:g} s (stuck)"
        if now - self.start > self.max_timeout:
            return f"not ready within {self.max_timeout:g} s"
        return None

    def elapsed(self) -> float:
        return time.monotonic() - self.start


class ProcessById:
    """A process another one started, watched and stopped by its pid, with the part of
    :class:`subprocess.Popen`'s interface the simulated machines' handles use.

    ``anycell up`` starts the simulated machines itself, before the cell agent has imported
    anything, and the agent takes them over (see :mod:`anycell.sim.machines`). They are not the
    agent's children, so it cannot ``waitpid`` them: it reads their state from ``/proc``
    instead. Their exit code stays with their parent, so :attr:`returncode` is -1 once one is gone.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None and not running(self.pid):
            self.returncode = -1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                self.returncode = -1

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Until the process is gone (``subprocess.TimeoutExpired`` after ``timeout`` seconds)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return -1


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X", "x")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):   # no /proc (not Linux): a signal 0 tells whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def main(args: List[str]) -> int:
    """``python -m anycell.childproc PARENT_PID (-m MODULE | --exec PROGRAM) ARGS...``."""
    if len(args) < 3 or args[1] not in ("-m", "--exec"):
        print("usage: python -m anycell.childproc PARENT_PID (-m MODULE | --exec PROGRAM) [ARGS...]",
              file=sys.stderr)
        return 2
    die_with_parent()
    if os.getppid() != int(args[0]):  # the parent died before the signal was armed
        return 1
    if args[1] == "--exec":
        os.execvp(args[2], args[2:])
    sys.argv = [args[2]] + args[3:]
    runpy.run_module(args[2], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
