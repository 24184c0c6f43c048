"""OPC UA security and outages that must stop the retries: no None endpoint at all, X.509 user
identity, a server certificate that changes on restart, a login refused after restart, and a
machine that comes back Idle after an outage (simulated machine in its own process, TCP)."""

import asyncio
import time

import pytest
from asyncua import Client

from anycell.cell import MachineConfig, OpcUaDriver, Pose, SecurityConfig, Tending
from anycell.drivers.machine import open_machine
from anycell.drivers.opcua.errors import LoginRefused, NotTrusted, ServerMismatch
from anycell.errors import MachineFault
from anycell.job import Program
from anycell.sim.certs import make_certificate

PARAMS = {"depth": 0.002, "feed": 0.01}


def secure_cfg(tmp_path, trusted, **driver):
    cert, key = make_certificate(str(tmp_path / "pki"), "client")
    return MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                         driver=OpcUaDriver(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/anycell/mill", timeout=2.0,
                                            security=SecurityConfig(policy="Basic256Sha256", mode="SignAndEncrypt",
                                                                    certificate=cert, private_key=key,
                                                                    trusted_server_certificates=trusted),
                                            **driver))


def plain_cfg():
    return MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                         driver=OpcUaDriver(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/anycell/mill", timeout=2.0))


def driver(launch, cfg, address):
    m = open_machine(cfg, address)
    launch.drivers.append(m)
    return m


def wait_until(cond, seconds=30.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_secure_session_without_any_none_endpoint(launch, tmp_path):
    server_cert, server_key = make_certificate(str(tmp_path / "pki"), "server", server=True)
    other_cert, _ = make_certificate(str(tmp_path / "pki"), "impostor", server=True)
    sim = launch(plain_cfg(), time_scale=0.02, security="encrypt", cert=server_cert, key=server_key,
                 no_none_channel=True)

    async def bare_discovery():
        await Client(sim.address, timeout=2).connect_and_get_server_endpoints()

    with pytest.raises(Exception):  # noqa: B017 - the server really offers nothing over None, not even GetEndpoints
        asyncio.run(bare_discovery())
    m = driver(launch, secure_cfg(tmp_path, [other_cert, server_cert]), sim.address)
    m.connect()  # the impostor is tried and refused, the right certificate opens the channel
    assert m.health()["security"] == "Basic256Sha256/SignAndEncrypt"
    assert m.run_program(Program(name="FACE_01"), PARAMS, timeout=20).status == "complete"
    bad = driver(launch, secure_cfg(tmp_path, [other_cert]), sim.address)
    with pytest.raises(NotTrusted) as err:
        bad.connect()
    assert err.value.hint and "trusted" in err.value.message


@pytest.mark.slow
def test_x509_user_identity(launch, tmp_path):
    server_cert, server_key = make_certificate(str(tmp_path / "pki"), "server", server=True)
    user_cert, user_key = make_certificate(str(tmp_path / "users"), "operator")
    stranger_cert, stranger_key = make_certificate(str(tmp_path / "users"), "stranger")
    sim = launch(plain_cfg(), time_scale=0.02, security="encrypt", cert=server_cert, key=server_key,
                 user_cert=user_cert)
    m = driver(launch, secure_cfg(tmp_path, [server_cert], user_certificate=user_cert, user_private_key=user_key),
               sim.address)
    m.connect()
    assert m.state() == "Idle"
    anon = driver(launch, secure_cfg(tmp_path, [server_cert]), sim.address)
    with pytest.raises(LoginRefused) as err:
        anon.connect()
    assert err.value.hint
    stranger = driver(launch, secure_cfg(tmp_path, [server_cert], user_certificate=stranger_cert,
                                         user_private_key=stranger_key), sim.address)
    with pytest.raises(LoginRefused, match="user certificate"):
        stranger.connect()


@pytest.mark.slow
def test_changed_server_certificate_stops_the_retries(launch, tmp_path):
    server_cert, server_key = make_certificate(str(tmp_path / "pki"), "server", server=True)
    new_cert, new_key = make_certificate(str(tmp_path / "pki"), "server2", server=True)
    sim = launch(plain_cfg(), time_scale=0.1, security="both", cert=server_cert, key=server_key,
                 restart_at_progress=0.2, restart_downtime=0.5, restart_cert=new_cert, restart_key=new_key)
    m = driver(launch, secure_cfg(tmp_path, [server_cert, new_cert]), sim.address)
    m.connect()
    with pytest.raises(ServerMismatch, match="certificate .* changed"):
        m.run_program(Program(name="FACE_01"), PARAMS, timeout=60)
    health = m.health()
    assert health["level"] == "error" and "not reconnecting" in health["message"] and health["hint"]


@pytest.mark.slow
def test_login_refused_after_restart_stops_the_retries(launch, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCELL_TEST_OPC_PW", "s3cret")
    sim = launch(plain_cfg(), time_scale=0.1, username="operator", password_env="ANYCELL_TEST_OPC_PW",
                 restart_at_progress=0.2, restart_downtime=0.5, restart_refuses_login=True)
    cfg = MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                        driver=OpcUaDriver(kind="opcua", endpoint=sim.address, timeout=2.0, username="operator",
                                           password_env="ANYCELL_TEST_OPC_PW"))
    m = driver(launch, cfg, sim.address)
    m.connect()
    with pytest.raises(LoginRefused, match="refused user 'operator'"):
        m.run_program(Program(name="FACE_01"), PARAMS, timeout=60)
    reconnect_attempts = len([ln for ln in sim.log_lines() if ln == "SERVER_UP"])
    assert reconnect_attempts == 1 and m.health()["message"].startswith("not reconnecting")


@pytest.mark.slow
def test_machine_back_idle_after_outage_fails_the_step_at_once(launch):
    sim = launch(plain_cfg(), time_scale=0.5, restart_at_progress=0.1, restart_downtime=0.5, restart_loses_job=True)
    m = driver(launch, plain_cfg(), sim.address)
    m.connect()
    t0 = time.monotonic()
    with pytest.raises(MachineFault, match="after a connection outage the machine is Idle") as err:
        m.run_program(Program(name="FACE_01"), PARAMS)  # no timeout: it must not wait for one
    assert time.monotonic() - t0 < 15 and err.value.hint
    assert "JOB_LOST state Idle" in sim.log_lines()
