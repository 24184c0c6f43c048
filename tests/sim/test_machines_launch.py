"""A simulated machine does not outlive the process that launched it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.paths import DEMO_CELL, ROOT


def test_simulator_dies_with_its_launcher_even_on_kill_9(tmp_path) -> None:
    code = (
        "import sys, time\n"
        "from anycell.cell import load_cell\n"
        "from sim.machines import launch_sim_machine\n"
        f"m = launch_sim_machine(load_cell({DEMO_CELL!r}).machine('printer'), {str(tmp_path)!r})\n"
        "print(m.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = int(launcher.stdout.readline())
        os.kill(child, 0)                      # the simulator runs
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            try:                               # reap it if it became our zombie (it did not: init reaps)
                os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the simulated machine outlived its launcher")
    finally:
        if launcher.poll() is None:
            launcher.kill()
