"""The `anycell up` supervisor with real child processes: prefixed output, crash reporting, clean shutdown."""

from __future__ import annotations

import pytest

import io
import os
import threading
import time

from anycell.agent.supervision.nodes import NodeSpec
from anycell.agent.supervision.supervisor import Supervisor

CHILD = '''
import os, sys, time
mode = sys.argv[-1].split(":=")[1]   # the last --ros-args parameter: -p mode:=<mode>
print("hello from", os.getpid(), flush=True)
try:
    if mode == "crash":
        time.sleep(0.2)
        sys.exit(3)
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print("clean stop", flush=True)
'''


def _specs(tmp_path, modes):
    (tmp_path / "childmod.py").write_text(CHILD)
    return [NodeSpec(name=f"n{i}", executable="x", module="childmod", namespace="/t",
                     parameters={"mode": mode}, required=(mode != "crash_optional"))
            for i, mode in enumerate(modes)]


def _env(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_crash_is_reported_the_handler_runs_and_the_rest_stops_cleanly(tmp_path) -> None:
    out = io.StringIO()
    crashes = []
    sup = Supervisor(_specs(tmp_path, ["run", "crash"]), _env(tmp_path), out=out, color=False, grace=5,
                     on_crash=lambda spec, rc: crashes.append((spec.name, rc)) or False)
    code = sup.run()
    text = out.getvalue()
    assert code == 1
    assert crashes == [("n1", 3)]
    assert "[anycell   ] n1 exited unexpectedly with code 3" in text
    assert "[n0        ] hello from" in text and "[n1        ] hello from" in text
    assert "[n0        ] clean stop" in text          # the survivor got SIGINT, not a kill
    assert sup.procs["n0"].returncode == 0


def test_handled_crash_keeps_the_cell_up_until_sigterm(tmp_path) -> None:
    out = io.StringIO()
    crashes = []
    sup = Supervisor(_specs(tmp_path, ["run", "crash"]), _env(tmp_path), out=out, color=True, grace=5,
                     on_crash=lambda spec, rc: crashes.append(rc) or True)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("code", sup.run()))
    # run() off the main thread (no SIGTERM handler there); stop() does what SIGTERM does
    t.start()
    assert _wait(lambda: crashes == [3])
    assert sup.procs["n0"].poll() is None            # handled: the rest keeps running
    sup.stop()
    t.join(timeout=20)
    assert box["code"] == 0
    assert "\033[" in out.getvalue()                 # coloured prefixes
    assert "clean stop" in out.getvalue()


def test_a_watched_process_is_reported_when_it_dies_and_stopped_after_the_nodes(tmp_path) -> None:
    """The simulated machines `anycell up` starts before its nodes: watched, not required."""
    import subprocess
    import sys

    out = io.StringIO()
    sleeper = "import time\nwhile True: time.sleep(0.05)"
    doomed = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(4)"], start_new_session=True)
    kept = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
    sup = Supervisor(_specs(tmp_path, ["run"]), _env(tmp_path), out=out, color=False, grace=5)
    sup.watch("sim:doomed", doomed)
    sup.watch("sim:kept", kept)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("code", sup.run()))
    t.start()
    try:
        assert _wait(lambda: "sim:doomed exited unexpectedly with code 4" in out.getvalue()), out.getvalue()
        assert sup.procs["n0"].poll() is None and kept.poll() is None     # not required: the cell stays up
    finally:
        sup.stop()
        t.join(timeout=30)
    assert box["code"] == 0
    text = out.getvalue()
    assert kept.poll() is not None
    assert text.index("n0 stopped") < text.index("sim:kept stopped")      # the nodes first, then the machines


@pytest.mark.slow
def test_children_die_with_a_killed_supervisor() -> None:
    """kill -9 of `anycell up` itself must not leave its nodes running."""
    from tests.orphans import assert_child_dies_with_parent

    assert_child_dies_with_parent(
        "import os, sys, time\n"
        "from anycell.agent.supervision.nodes import NodeSpec\n"
        "from anycell.agent.supervision.supervisor import Supervisor\n"
        "spec = NodeSpec(name='sleeper', executable='x', module='x', namespace='/t')\n"
        "spec.argv = lambda python=None: [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "sup = Supervisor([spec], dict(os.environ))\n"
        "sup.start()\n"
        "print('PID', sup.procs['sleeper'].pid, flush=True)\n"
        "time.sleep(60)\n", "a node of anycell up")
