"""Test helper: kill -9 a parent process and check that a child it started does not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.paths import ROOT


def assert_child_dies_with_parent(parent_code: str, what: str, timeout: float = 10.0) -> None:
    """Run ``parent_code`` (it prints ``PID <child pid>`` once its child runs), kill -9 it, watch the child."""
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("PID "):
            line = parent.stdout.readline()
            if not line and parent.poll() is not None:
                raise AssertionError(f"the parent exited before starting {what}")
        child = int(line.split()[1])
        os.kill(child, 0)                      # the child runs
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(child, signal.SIGKILL)
        raise AssertionError(f"{what} outlived the process that started it")
    finally:
        if parent.poll() is None:
            parent.kill()
