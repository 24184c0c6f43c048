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
