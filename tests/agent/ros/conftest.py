"""ROS test isolation: a unique ROS_DOMAIN_ID per test, loopback-only discovery, the quick-discovery
Fast DDS profile, and processes that are always torn down (even when a test fails).

Waits are for matches, services or states with timeouts; never fixed sleeps.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from typing import Dict, List, Optional

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.agent.supervision.nodes import ros_environment  # noqa: E402
from tests.paths import ROOT  # noqa: E402

_counter = itertools.count()


PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def _domain_id() -> int:
    # 0..232 are valid; keep clear of 0 (the default) and spread by process so parallel runs differ
    return 1 + (os.getpid() * 31 + next(_counter)) % 200


@pytest.fixture
def ros_env(monkeypatch) -> Dict[str, str]:
    """This test's ROS environment, also applied to os.environ for the in-process client."""
    # the legacy variable only where Fast DDS 2 needs it (Humble, Iron): Fast DDS 3 reads both,
    # adds the same profile twice and logs "Error adding profile" in every node
    base = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    env = ros_environment(base, domain_id=_domain_id())
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY") + PROFILE_VARIABLES:
        if key in env:
            monkeypatch.setenv(key, env[key])
        else:
            monkeypatch.delenv(key, raising=False)
    return env


@pytest.fixture
def rclpy_context(ros_env):
    """rclpy initialised in this test's domain, shut down afterwards."""
    rclpy.init()
    yield
    if rclpy.ok():
        rclpy.shutdown()


class Processes:
    """Start processes with a deadline; stop them all (SIGINT, then SIGKILL) at teardown."""

    def __init__(self, env: Dict[str, str], log_dir: str) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: List[subprocess.Popen] = []

    def start(self, argv: List[str], name: str, timeout: float = 120.0) -> subprocess.Popen:
        log = open(os.path.join(self.log_dir, f"{name}-{len(self.procs)}.log"), "wb")
        # `timeout` is the process's hard deadline even if teardown never ran (a crashed pytest)
        proc = subprocess.Popen(["timeout", "-s", "KILL", str(int(timeout))] + argv, env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        with open(proc.log_path, "rb") as handle:  # type: ignore[attr-defined]
            return handle.read().decode(errors="replace")

    def kill9(self, proc: subprocess.Popen) -> None:
        """kill -9 the program (its whole process group: the `timeout` wrapper and the program)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # `proc` is the timeout wrapper; wait until the program itself is gone too
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)
        raise AssertionError(f"process group {proc.pid} still alive after SIGKILL")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def processes(ros_env, tmp_path):
    procs = Processes(ros_env, str(tmp_path))
    yield procs
    procs.stop_all()


def agent_argv(cell: str, journal: str, runner: str = "dry_run", scale: float = 0.01,
               extra: Optional[List[str]] = None) -> List[str]:
    return [sys.executable, "-m", "anycell.agent.ros.cell_agent_node", "--ros-args", "-r", "__ns:=/demo_cell",
            "-p", f"cell:={cell}", "-p", f"journal:={journal}", "-p", f"runner:={runner}",
            "-p", f"dry_run_scale:={scale}"] + (extra or [])
