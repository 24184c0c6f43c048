"""Profile packml: the driver against OPC 30050 PackML machines loaded from the official nodeset.

The simulated server imports Opc.Ua.PackML.NodeSet2.xml (fetched at set-up from the npm package
node-opcua-nodesets) and serves two PackMLBaseObjectType instances whose methods exist only on the
ObjectTypes; states are the standard LocalizedText CurrentState of the nested state machines.
"""

import pytest

from anycell.cell import MachineConfig, OpcUaDriver, Pose, Tending
from anycell.drivers.machine import open_machine
from anycell.errors import ProgramRejected
from anycell.job import Program
from anycell.sim import nodesets

URI = "urn:anycell:sim-machine"


@pytest.fixture(autouse=True)
def _nodesets():
    if nodesets.find(nodesets.PACKML) is None:
        try:
            nodesets.fetch()
        except Exception as exc:  # noqa: BLE001 - no npm / offline: skip with the reason
            pytest.skip(f"PackML nodeset not available: {exc}")


def packml_cfg(name="Mill"):
    return MachineConfig(id="mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                         driver=OpcUaDriver(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/anycell/mill",
                                            profile="packml", object=f"0:Objects/{{{URI}}}:{name}",
                                            products={"POCKET_01": 1, "FACE_01": 2}))


@pytest.mark.slow
def test_packml_machine_runs_a_product_on_the_right_instance(launch):
    c = packml_cfg()
    sim = launch(c, time_scale=0.02, packml_instances=2)
    m = open_machine(c, sim.address)
    launch.drivers.append(m)
    m.connect()
    assert m.state() == "Idle"
    seen = []
    m.add_state_listener(seen.append)
    result = m.run_program(Program(name="FACE_01"), {"depth": 0.002, "feed": 0.01}, timeout=30)
    assert result.status == "complete" and result.details["part_count"] == 1
    assert m.state() == "Complete"
    log = sim.log_lines()
    # the driver set the unit mode and the product as OPC 30050 requires, then started this instance only
    assert log.index("UNIT_MODE 1") < log.index("PRODUCT 2 FACE_01") < log.index("CALL Start")
    assert any(ln.startswith("START FACE_01") and '"depth": 0.002' in ln for ln in log)
    assert not any(ln.startswith("Mill2:") and "CALL" in ln for ln in log)
    assert "Execute" in seen and seen[-1] == "Complete"
    m.reset()
    assert m.state() == "Idle"
    # a structure variable written from a mapping, typed by the server's data type definition
    m.write("product", {"ProductID": 7, "ProcessVariables": [{"ID": 1, "Name": "depth", "Value": 0.5}]})
    back = m.read("product")
    assert back.ProductID == 7 and back.ProcessVariables[0].Name == "depth" and back.ProcessVariables[0].Value == 0.5
    with pytest.raises(ProgramRejected, match="no field Bogus"):
        m.write("product", {"Bogus": 1})
    # a product number the machine does not know is refused before Start
    with pytest.raises(ProgramRejected, match="product 99"):
        m.run_program(Program(name="99"), {}, timeout=10)
    with pytest.raises(ProgramRejected, match="by number"):
        m.run_program(Program(name="NOT_A_NUMBER"), {}, timeout=10)


@pytest.mark.slow
def test_second_instance_is_driven_separately(launch):
    c1, c2 = packml_cfg("Mill"), packml_cfg("Mill2")
    sim = launch(c1, time_scale=0.02, packml_instances=2)
    m2 = open_machine(c2, sim.address)
    launch.drivers.append(m2)
    m2.connect()
    m2.run_program(Program(name="2"), {"depth": 0.001}, timeout=30)
    assert m2.state() == "Complete"
    log = sim.log_lines()
    assert "Mill2: CALL Start" in log and "CALL Start" not in log
    m1 = open_machine(c1, sim.address)
    launch.drivers.append(m1)
    m1.connect()
    assert m1.state() == "Idle"


@pytest.mark.slow
def test_stop_abort_clear_through_the_standard_state_machines(launch):
    c = packml_cfg()
    sim = launch(c, time_scale=0.02, alarm_at_progress=0.3)
    m = open_machine(c, sim.address)
    launch.drivers.append(m)
    m.connect()
    from anycell.errors import MachineFault
    with pytest.raises(MachineFault, match="aborted: ALARM 1012: spindle overload"):  # Admin.Alarm structures
        m.run_program(Program(name="FACE_01"), {}, timeout=30)
    assert m.state() == "Aborted"
    m.reset()  # Clear (BaseStateMachine), then Reset (MachineState) from Stopped
    assert m.state() == "Idle"
    assert "CALL Clear" in sim.log_lines() and "CALL Reset" in sim.log_lines()
