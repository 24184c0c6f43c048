"""Every CLI command that waits on the cell exits within 2 s of SIGINT or SIGTERM (``submit --wait`` included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import agent_argv

pytest.importorskip("rclpy")

from tests.paths import DEMO_CELL, DEMO_JOB  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CLI = [sys.executable, "-c", "import sys; from anycell.cli.main import main; sys.exit(main())"]


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_submit_wait_exits_on_a_signal(processes, ros_env, tmp_path, sig) -> None:
    processes.start(agent_argv(DEMO_CELL, str(tmp_path / "j.db"), scale=0.5), "agent")
    assert _cli(ros_env, "reset", "--cell", "demo_cell", "--timeout", "30").returncode == 0
    assert _cli(ros_env, "start", "--cell", "demo_cell").returncode == 0
    out = tmp_path / "submit.out"
    with open(out, "w") as handle:
        proc = subprocess.Popen(CLI + ["submit", DEMO_JOB, "--cell", "demo_cell", "--wait"], env=ros_env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "accepted job" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.1)
        assert "accepted job" in out.read_text()
        time.sleep(0.5)   # inside the wait
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
        assert took < 2.0, f"exited {took:.1f} s after {sig.name}"
        assert rc != 0 and "Traceback" not in out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
