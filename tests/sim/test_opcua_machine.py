"""The simulated OPC UA machine tool, spoken to with a bare asyncua client: PackML rules."""

import asyncio
import subprocess
import sys

import pytest
from asyncua import Client, ua

from anycell.cell import MachineConfig, Pose, SimDriver, Tending
from anycell.sim.machines import launch_sim_machine


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "anycell.sim.opcua_machine", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "--restart-at-progress" in out.stdout


@pytest.mark.slow
def test_packml_commands_and_invalid_state(tmp_path):
    cfg = MachineConfig(id="m", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                  driver=SimDriver(kind="sim", protocol="opcua"))
    sim = launch_sim_machine(cfg, str(tmp_path), {"time_scale": 0.02})

    async def scenario():
        async with Client(sim.address, timeout=5) as client:
            machine = await client.nodes.root.get_child(["0:Objects", "2:Machine"])
            state = await machine.get_child(["2:State"])
            hold = await machine.get_child(["2:Hold"])
            start = await machine.get_child(["2:Start"])
            program = await machine.get_child(["2:Program"])
            assert await state.read_value() == "Idle"
            with pytest.raises(ua.UaStatusCodeError):  # Hold is not allowed in Idle
                await machine.call_method(hold)
            with pytest.raises(ua.UaStatusCodeError):  # no program selected
                await machine.call_method(start)
            await program.write_value(ua.DataValue(ua.Variant("FACE_01", ua.VariantType.String)))
            await machine.call_method(start)
            for _ in range(200):
                if await state.read_value() == "Complete":
                    break
                await asyncio.sleep(0.02)
            assert await state.read_value() == "Complete"
            assert await (await machine.get_child(["2:PartCount"])).read_value() == 1

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()
    assert "STATE Execute -> Completing" in sim.log_lines()


@pytest.mark.slow
def test_packml_profile_serves_the_official_model(tmp_path):
    """--profile packml: PackMLBaseObjectType instances from the official nodeset, LocalizedText states,
    commands bound on the ObjectTypes (called with the instance's state machine as the object)."""
    from anycell.cell import OpcUaDriver
    from anycell.sim import nodesets

    try:
        nodesets.require(nodesets.PACKML)
    except Exception as exc:  # noqa: BLE001 - no npm / offline
        pytest.skip(f"PackML nodeset not available: {exc}")
    cfg = MachineConfig(id="m", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                        driver=OpcUaDriver(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/anycell/m", profile="packml",
                                           object="0:Objects/{urn:anycell:sim-machine}:Mill"))
    sim = launch_sim_machine(cfg, str(tmp_path), {"time_scale": 0.02, "packml_instances": 2})

    async def scenario():
        async with Client(sim.address, timeout=5) as client:
            p = await client.get_namespace_index("http://opcfoundation.org/UA/PackML/")
            own = await client.get_namespace_index("urn:anycell:sim-machine")
            mill = await client.nodes.objects.get_child([f"{own}:Mill"])
            assert (await client.get_node(await mill.read_type_definition()).read_browse_name()).Name == \
                "PackMLBaseObjectType"
            es = await mill.get_child([f"{p}:BaseStateMachine", f"{p}:MachineState", f"{p}:ExecuteState"])
            current = await es.get_child(["0:CurrentState"])
            assert (await current.read_value()).Text == "Idle"
            start_on_type = await client.get_node(ua.NodeId(1, p)).get_child([f"{p}:Start"])  # ExecuteStateMachineType
            with pytest.raises(ua.UaStatusCodeError):  # unit mode Invalid: Start refused
                await es.call_method(start_on_type, ua.Variant([], ua.VariantType.ExtensionObject, is_array=True))
            await mill.call_method(await mill.get_child([f"{p}:SetUnitMode"]), ua.Variant(1, ua.VariantType.Int32))

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()
    log = sim.log_lines()
    assert "REJECT Start in unit mode 0" in log and "UNIT_MODE 1" in log
