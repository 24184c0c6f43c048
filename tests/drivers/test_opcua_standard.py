"""The OPC UA driver against servers that look like the standards, not like anycell's defaults:
LocalizedText and numeric states, URI-qualified addressing, a strict Int32 method with a
ReturnStatus, a namespace that moves on restart (simulated machine in its own process, TCP)."""

import pytest

from anycell.cell import MachineConfig, OpcUaDriver, Pose, Tending
from anycell.drivers.machine import open_machine
from anycell.drivers.opcua.errors import ServerMismatch
from anycell.errors import DriverError, MachineFault, ProgramRejected
from anycell.job import Program

URI = "urn:anycell:sim-machine"
PARAMS = {"depth": 0.002, "feed": 0.01}


def cfg(**driver):
    base = dict(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/anycell/mill", timeout=5.0)
    base.update(driver)
    return MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                         driver=OpcUaDriver(**base))


def connect(launch, c, **faults):
    sim = launch(c, **faults)
    m = open_machine(c, sim.address)
    launch.drivers.append(m)
    m.connect()
    return sim, m


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["localized", "number"])
def test_localized_text_and_numeric_states_drive_a_program(launch, encoding):
    sim, m = connect(launch, cfg(), time_scale=0.02, state_encoding=encoding)
    raw = m.read("state")
    assert raw == 4 if encoding == "number" else raw.Text == "Idle"
    assert m.state() == "Idle"
    assert m.run_program(Program(name="FACE_01"), PARAMS, timeout=20).status == "complete"
    assert m.state() == "Complete"
    m.reset()  # Reset really happens: the machine is Idle again
    assert m.state() == "Idle" and "CALL Reset" in sim.log_lines()


@pytest.mark.slow
def test_state_values_map_a_vendor_state(launch):
    sim, m = connect(launch, cfg(state_values={"4": "Held"}), time_scale=0.02, state_encoding="number")
    assert m.state() == "Held"  # the config's map wins over the OPC 30050 numbers
    with pytest.raises(MachineFault, match="Held, not Idle"):
        m.run_program(Program(name="FACE_01"), PARAMS, timeout=5)


@pytest.mark.slow
def test_namespace_uris_in_paths_and_node_ids(launch):
    # relative segments without a namespace are in namespace 0: give them the URI
    c = cfg(object=f"0:Objects/{{{URI}}}:Machine",
            nodes={"state": f"{{{URI}}}:State", "program": f"{{{URI}}}:Program",
                   "part_count": f"nsu={URI};s=Machine.PartCount"},
            methods={"start": f"{{{URI}}}:Start", "reset": f"{{{URI}}}:Reset", "calibrate": f"{{{URI}}}:Calibrate"})
    sim, m = connect(launch, c, time_scale=0.02)
    assert m.state() == "Idle"
    assert m.run_program(Program(name="FACE_01"), PARAMS, timeout=20).status == "complete"
    assert m.read("part_count") == 1


@pytest.mark.slow
def test_typed_arguments_and_return_status(launch):
    c = cfg(methods={"calibrate": "0:Objects/2:Machine/2:Calibrate"})
    sim, m = connect(launch, c, time_scale=0.02)
    assert m.call("calibrate", 3) == [0]  # a Python int goes out as the declared Int32
    assert "CALIBRATE 3 ok" in sim.log_lines()
    with pytest.raises(MachineFault, match="ReturnStatus 1"):
        m.call("calibrate", 50)
    with pytest.raises(ProgramRejected, match="Int32"):
        m.call("calibrate", 2**40)  # refused before anything is sent
    with pytest.raises(ProgramRejected, match="not an integer"):
        m.call("calibrate", 2.5)
    with pytest.raises(ProgramRejected, match="takes 1 argument"):
        m.call("calibrate")
    assert not any("REJECT" in ln for ln in sim.log_lines())
    with pytest.raises(ProgramRejected, match="UInt32"):
        m.write("part_count", -5)  # a local encoding error is a rejected value, not a lost connection


@pytest.mark.slow
def test_unknown_namespace_is_a_clear_error(launch):
    c = cfg(object="0:Objects/{urn:other:vendor}:Machine")
    sim = launch(cfg())
    m = open_machine(c, sim.address)
    launch.drivers.append(m)
    with pytest.raises(DriverError, match="no namespace 'urn:other:vendor'") as err:
        m.connect()
    assert err.value.hint


@pytest.mark.slow
def test_namespace_moved_on_restart_stops_retries_with_index_paths(launch):
    sim, m = connect(launch, cfg(), time_scale=0.1, restart_at_progress=0.2, restart_downtime=0.5,
                     namespace_shift_on_restart=True)
    with pytest.raises(ServerMismatch, match="not found") as err:
        m.run_program(Program(name="FACE_01"), PARAMS, timeout=30)
    assert err.value.hint
    health = m.health()
    assert health["level"] == "error" and health["message"].startswith("not reconnecting")
    with pytest.raises(ServerMismatch):
        m.state()


@pytest.mark.slow
def test_namespace_moved_on_restart_is_followed_by_uri(launch):
    names = ("State", "Program", "Progress", "PartCount", "Alarm")
    keys = ("state", "program", "progress", "part_count", "alarm")
    c = cfg(object=f"0:Objects/{{{URI}}}:Machine", nodes={k: f"{{{URI}}}:{n}" for k, n in zip(keys, names)}
            | {"parameters": f"0:Objects/{{{URI}}}:Machine/{{{URI}}}:Parameters"},
            methods={k: f"{{{URI}}}:{k.capitalize()}" for k in ("start", "stop", "reset", "clear", "hold", "unhold")})
    sim, m = connect(launch, c, time_scale=0.1, restart_at_progress=0.2, restart_downtime=0.5,
                     namespace_shift_on_restart=True)
    assert m.run_program(Program(name="FACE_01"), PARAMS, timeout=30).status == "complete"
    assert m.reconnects >= 1 and "SERVER_UP" in sim.log_lines()
