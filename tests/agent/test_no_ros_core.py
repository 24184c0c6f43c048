"""The executor core (PackML, journal, executor, API, cell service, node list, supervisor) runs without ROS."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import ROOT


def test_core_modules_do_not_import_rclpy() -> None:
    code = ("import sys; import agent, anycell.agent.packml, anycell.agent.journal, anycell.agent.executor, anycell.agent.api, "
            "anycell.agent.cell_service, anycell.agent.supervision.nodes, anycell.agent.supervision.supervisor, anycell.cli.operations; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'std_msgs')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
