"""The OPC UA driver against a server from another stack: node-opcua (tools/node_opcua).

Skipped with a reason where node/npm are absent or the pinned install fails.
"""

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from anycell.cell import MachineConfig, OpcUaDriver, Pose, Tending
from anycell.errors import ProgramRejected
from anycell.job import Program
from anycell.drivers.machine import open_machine
from anycell.sim.machines import free_port

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "node_opcua")


def _ensure_node_opcua() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (node-opcua interop test)")
    if os.path.isdir(os.path.join(TOOL, "node_modules", "node-opcua")):
        return
    try:
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TOOL,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci for node-opcua timed out (offline?)")
    if proc.returncode != 0:
        pytest.skip(f"npm ci for node-opcua failed: {proc.stderr.strip()[-300:]}")


def _start(tmp_path, script, *extra):
    _ensure_node_opcua()
    port = free_port()
    err = open(tmp_path / f"{script}.stderr", "w")
    proc = subprocess.Popen(["node", script, "--port", str(port), "--path", "/anycell/mill", "--time-scale", "0.02",
                             *extra], cwd=TOOL, stdout=subprocess.PIPE, stderr=err, text=True)
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.startswith("{"):
            break
    return proc, err, line, tmp_path / f"{script}.stderr"


def _stop(proc, err):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    err.close()


@pytest.fixture
def node_server(tmp_path):
    proc, err, line, log = _start(tmp_path, "machine_server.js")
    try:
        if not line.startswith("{"):
            pytest.fail("node-opcua server did not start: " + log.read_text()[-1000:])
        yield json.loads(line)["address"], log
    finally:
        _stop(proc, err)


@pytest.fixture
def node_packml_server(tmp_path):
    proc, err, line, log = _start(tmp_path, "packml_server.js", "--instances", "2")
    try:
        if not line.startswith("{"):
            pytest.fail("node-opcua PackML server did not start: " + log.read_text()[-1000:])
        yield json.loads(line)["address"], log
    finally:
        _stop(proc, err)


@pytest.mark.slow
def test_driver_runs_a_program_on_a_node_opcua_server(node_server):
    endpoint, log = node_server
    base = "0:Objects/1:Machine/1:"
    cfg = MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                  driver=OpcUaDriver(kind="opcua", endpoint=endpoint, timeout=5.0,
                                     nodes={"state": base + "State", "program": base + "Program",
                                            "progress": base + "Progress", "part_count": base + "PartCount",
                                            "alarm": base + "Alarm", "parameters": "0:Objects/1:Machine/1:Parameters"},
                                     methods={k: base + k.capitalize() for k in
                                              ("start", "stop", "hold", "unhold", "reset", "abort", "clear")}
                                     | {"set_parameter": "ns=1;s=Machine.SetParameter"}))
    m = open_machine(cfg, endpoint)
    m.connect()
    try:
        assert m.state() == "Idle"
        result = m.run_program(Program(name="POCKET_01"), {"depth": 0.002, "feed": 0.01, "spindle_rpm": 12000},
                               timeout=30)
        assert result.status == "complete"
        assert m.state() == "Complete" and m.read("part_count") == 1
        assert 'START POCKET_01 {"depth":0.002,"feed":0.01,"spindle_rpm":12000}' in log.read_text()
        assert m.call("set_parameter", "depth", 0.25) == [True]
        assert m.read("param.depth") == 0.25
        m.reset()
        assert m.state() == "Idle"
        with pytest.raises(ProgramRejected):
            m.run_program(Program(name="NOT_THERE"), {}, timeout=10)
    finally:
        m.close()


@pytest.mark.slow
def test_packml_profile_on_a_node_opcua_packml_machine(node_packml_server):
    """node-opcua loads the official PackML nodeset; the commands exist only on the ObjectTypes."""
    endpoint, log = node_packml_server
    cfg = MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                        driver=OpcUaDriver(kind="opcua", endpoint=endpoint, timeout=5.0, profile="packml",
                                           object="0:Objects/{urn:anycell:sim-machine}:Mill",
                                           products={"FACE_01": 2}))
    m = open_machine(cfg, endpoint)
    m.connect()
    try:
        assert m.state() == "Idle"
        result = m.run_program(Program(name="FACE_01"), {"depth": 0.002, "feed": 0.01}, timeout=30)
        assert result.status == "complete"
        assert m.state() == "Complete"
        text = log.read_text()
        assert "Mill: UNIT_MODE 1" in text and "Mill: PRODUCT 2 FACE_01" in text
        assert 'Mill: START FACE_01 {"depth":0.002,"feed":0.01}' in text
        assert "Mill2: CALL" not in text  # the other instance of the same type was not touched
        m.reset()
        assert m.state() == "Idle"
        with pytest.raises(ProgramRejected, match="product 7"):
            m.run_program(Program(name="7"), {}, timeout=10)
    finally:
        m.close()


@pytest.fixture
def node_jobs_server(tmp_path):
    proc, err, line, log = _start(tmp_path, "jobs_server.js")
    try:
        if not line.startswith("{"):
            pytest.fail("node-opcua job management server did not start: " + log.read_text()[-1000:])
        yield json.loads(line)["address"], log
    finally:
        _stop(proc, err)


@pytest.mark.slow
def test_machinery_jobs_profile_on_a_node_opcua_machine_tool(node_jobs_server):
    """OPC 40001-3 job orders: Store with the ISA-95 structures, Start, ReturnStatus, the job's state."""
    endpoint, log = node_jobs_server
    cfg = MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                        driver=OpcUaDriver(kind="opcua", endpoint=endpoint, timeout=5.0, profile="machinery_jobs",
                                           object="0:Objects/{urn:anycell:sim-machine}:Mill"))
    m = open_machine(cfg, endpoint)
    m.connect()
    try:
        assert m.state() == "Idle"
        result = m.run_program(Program(name="FACE_01"), {"depth": 0.002, "feed": 0.01}, timeout=30)
        assert result.status == "complete"
        assert m.state() == "Complete"
        text = log.read_text()
        store = next(ln for ln in text.splitlines() if ln.startswith("STORE "))
        assert store.endswith('FACE_01 {"depth":0.002,"feed":0.01}')
        assert 'START FACE_01 {"depth":0.002,"feed":0.01}' in text
        m.reset()  # Clear removes the ended job order
        assert m.state() == "Idle" and "CALL Clear anycell-mill-" in log.read_text()
        # a work master the machine does not have: Store answers ReturnStatus 4, nothing is started
        with pytest.raises(ProgramRejected, match="ReturnStatus 4"):
            m.run_program(Program(name="NOT_THERE"), {}, timeout=10)
        assert log.read_text().count("CALL Start") == 1
        # a second program after the first
        assert m.run_program(Program(name="POCKET_01"), {"depth": 0.001}, timeout=60).status == "complete"
    finally:
        m.close()


@pytest.mark.slow
def test_machinery_jobs_simulator_from_the_launcher_hold_resume_stop(launch):
    """launch_sim_machine serves a machinery_jobs machine with node-opcua; Pause/Resume/Stop by job order."""
    _ensure_node_opcua()
    cfg = MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                        driver=OpcUaDriver(kind="opcua", endpoint="opc.tcp://127.0.0.1:4843/anycell/mill",
                                           profile="machinery_jobs", object="0:Objects/{urn:anycell:sim-machine}:Mill"))
    sim = launch(cfg, time_scale=0.1)
    m = open_machine(cfg, sim.address)
    launch.drivers.append(m)
    m.connect()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(name="FACE_01"), {}, timeout=30)))
    t.start()
    m._wait_state({"Execute"}, 10)
    m.hold()
    assert m._wait_state({"Held"}, 5) == "Held"
    m.resume()
    t.join(30)
    assert out["r"].status == "complete"
    assert any(ln.endswith("Interrupted") for ln in sim.log_lines())
    m.reset()
    out.clear()
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(name="POCKET_01"), {}, timeout=30)))
    t.start()
    m._wait_state({"Execute"}, 10)
    m.stop()
    t.join(30)
    assert out["r"].status == "stopped"
