"""OPC UA driver against the simulated machine tool (asyncua server in its own process, TCP)."""

import dataclasses
import threading

import pytest

from anycell.cell import MachineConfig, OpcUaDriver, Pose, SecurityConfig, Tending, load_cell
from anycell.errors import DriverError, MachineFault, ProgramRejected
from anycell.job import Program
from anycell.drivers.machine import open_machine
from anycell.sim.certs import make_certificate

PARAMS = {"depth": 0.002, "feed": 0.01, "spindle_rpm": 12000}


def mill_cfg():
    """The demo mill's config with the default (custom) node map instead of its PackML profile."""
    cell = load_cell("cell_configs/demo_cell.yaml")
    mill = next(m for m in cell.machines if m.id == "mill")
    return dataclasses.replace(mill, driver=OpcUaDriver(kind="opcua", endpoint=mill.driver.endpoint))


def connect(launch, cfg, address=None, **faults):
    sim = launch(cfg, **faults)
    m = open_machine(cfg, address or sim.address)
    launch.drivers.append(m)
    m.connect()
    return sim, m


@pytest.mark.slow
def test_program_runs_with_parameters_through_the_config_node_map(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.02)
    assert m.state() == "Idle"
    seen = []
    result = m.run_program(Program(name="POCKET_01"), PARAMS, progress=seen.append, timeout=20)
    assert result.status == "complete"
    assert m.state() == "Complete" and m.read("part_count") == 1
    start = next(ln for ln in sim.log_lines() if ln.startswith("START "))
    assert start == 'START POCKET_01 {"depth": 0.002, "feed": 0.01, "spindle_rpm": 12000.0}'
    assert seen and seen[-1].done == 1000
    # typed write and a method with arguments
    m.write("program", "FACE_01")
    assert m.read("program") == "FACE_01"
    assert m.call("set_parameter", "depth", 0.5) == [True]
    assert m.read("param.depth") == 0.5
    m.reset()
    assert m.state() == "Idle"


@pytest.mark.slow
def test_unknown_program_and_parameter_rejected(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.02)
    with pytest.raises(ProgramRejected):
        m.run_program(Program(name="NOPE"), {}, timeout=5)
    with pytest.raises(ProgramRejected):
        m.run_program(Program(name="POCKET_01"), {"not_a_param": 1.0}, timeout=5)
    with pytest.raises(ProgramRejected):
        m.run_program(Program(inline="G1 X1"), {}, timeout=5)


@pytest.mark.slow
def test_hold_and_unhold(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.05)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(name="POCKET_01"), PARAMS,
                                                                           timeout=20)))
    t.start()
    m._wait_state({"Execute"}, 5)
    m.hold()
    assert m._wait_state({"Held"}, 5) == "Held"
    m.resume()
    t.join(20)
    assert out["r"].status == "complete"
    assert "CALL Hold" in sim.log_lines() and "CALL Unhold" in sim.log_lines()


@pytest.mark.slow
def test_alarm_aborts_with_clear_error(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.02, alarm_at_progress=0.3)
    with pytest.raises(MachineFault, match="spindle overload"):
        m.run_program(Program(name="POCKET_01"), PARAMS, timeout=20)
    assert m.state() == "Aborted"
    m.reset()  # Clear, then Reset
    assert m.state() == "Idle"


@pytest.mark.slow
def test_server_restart_mid_cycle_is_survived(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.1, restart_at_progress=0.3, restart_downtime=1.0)
    result = m.run_program(Program(name="POCKET_01"), PARAMS, timeout=30)
    assert result.status == "complete"
    assert "SERVER_RESTART down for 1.0s" in sim.log_lines()
    assert m.reconnects >= 1 and m.outages[-1]["seconds"] > 0.5
    # the true state after the restart: the cycle finished on the machine, one part made
    assert m.state() == "Complete" and m.read("part_count") == 1
    health = m.health()
    assert health["level"] == "warn" and "outage" in health["message"]


def _secure_cfg(tmp_path, endpoint, trusted, mode="SignAndEncrypt"):
    cert, key = make_certificate(str(tmp_path / "pki"), "client")
    return MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                   driver=OpcUaDriver(kind="opcua", endpoint=endpoint, timeout=5.0,
                                      security=SecurityConfig(policy="Basic256Sha256", mode=mode,
                                                              certificate=cert, private_key=key,
                                                              trusted_server_certificates=trusted),
                                      username="operator", password_env="ANYCELL_TEST_OPC_PW"))


@pytest.mark.slow
def test_sign_and_encrypt_with_login_and_untrusted_certificate_refused(launch, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCELL_TEST_OPC_PW", "s3cret")
    server_cert, server_key = make_certificate(str(tmp_path / "pki"), "server", server=True)
    other_cert, _ = make_certificate(str(tmp_path / "pki"), "impostor", server=True)
    plain = mill_cfg()
    sim = launch(plain, time_scale=0.02, security="both", cert=server_cert, key=server_key,
                 username="operator", password_env="ANYCELL_TEST_OPC_PW")
    # refused: the server's certificate is not the trusted one
    bad = open_machine(_secure_cfg(tmp_path, sim.address, [other_cert]))
    launch.drivers.append(bad)
    with pytest.raises(DriverError, match="not trusted"):
        bad.connect()
    assert not any(ln.startswith("CALL") for ln in sim.log_lines())
    # accepted: trusted certificate, SignAndEncrypt, user name login
    good = open_machine(_secure_cfg(tmp_path, sim.address, [server_cert]))
    launch.drivers.append(good)
    good.connect()
    assert good.health()["security"] == "Basic256Sha256/SignAndEncrypt"
    assert good.run_program(Program(name="FACE_01"), {"depth": 0.001, "feed": 0.02}, timeout=20).status == "complete"
    # Sign (integrity only) works with the same certificates
    signed = open_machine(_secure_cfg(tmp_path, sim.address, [server_cert], mode="Sign"))
    launch.drivers.append(signed)
    signed.connect()
    assert signed.health()["security"] == "Basic256Sha256/Sign" and signed.read("part_count") == 1
    # a wrong password is refused too
    monkeypatch.setenv("ANYCELL_TEST_OPC_PW", "wrong")
    wrong = open_machine(_secure_cfg(tmp_path, sim.address, [server_cert]))
    launch.drivers.append(wrong)
    with pytest.raises(DriverError):
        wrong.connect()


@pytest.mark.slow
def test_stop_mid_cycle_and_state_listener(launch):
    sim, m = connect(launch, mill_cfg(), time_scale=0.1)
    seen = []
    m.add_state_listener(seen.append)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", m.run_program(Program(name="POCKET_01"), PARAMS,
                                                                           timeout=20)))
    t.start()
    m._wait_state({"Execute"}, 5)
    m.stop()
    t.join(20)
    assert out["r"].status == "stopped"
    assert m.state() == "Stopped" and m.read("part_count") == 0
    assert seen[:3] == ["Starting", "Execute", "Stopping"] and seen[-1] == "Stopped"
