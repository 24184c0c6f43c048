"""E-stop from an OPC UA variable, over a real OPC UA session (asyncua server on TCP): a trip stops the
robots within the goal and aborts the cell; a server that goes away counts as tripped."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from anycell.agent import packml as pm
from anycell.agent.cell_service import CellService, wait_until
from anycell.agent.estop_sources import OpcUaEStopSource, opcua_estop_target
from anycell.agent.journal import Journal
from anycell.agent.safety import halt_devices
from anycell.cell import load_cell
from tests.paths import DEMO_CELL

from .test_safety import RecordingRobot

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EStopServer:
    """An asyncua server with one Boolean variable ns=2;s=EStop, on its own loop thread."""

    def __init__(self) -> None:
        self.endpoint = f"opc.tcp://127.0.0.1:{_port()}/estop"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())

    def run(self, coro, timeout: float = 20.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from asyncua import Server, ua

        self.server = Server()
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        idx = await self.server.register_namespace("urn:test:estop")
        obj = await self.server.nodes.objects.add_object(idx, "Mill")
        self.var = await obj.add_variable(ua.NodeId("EStop", idx), "EStop", False)
        await self.server.start()

    def set(self, value: bool) -> None:
        self.run(self.var.write_value(value))

    def stop(self) -> None:
        self.run(self.server.stop())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_opcua_estop_trips_and_a_lost_server_trips(tmp_path) -> None:
    server = EStopServer()
    cell = load_cell(DEMO_CELL)
    endpoint, path = server.endpoint, "ns=2;s=EStop"
    src = OpcUaEStopSource(endpoint, path, timeout=0.3)
    robot = RecordingRobot(["j1"])
    svc = CellService(cell, Journal(str(tmp_path / "j.db")))
    svc.halt_hooks.append(lambda: halt_devices({"panda": robot}, {}))
    watch = svc.add_estop(f"opcua:{endpoint}", src.read)
    svc.start()
    stopped = False
    try:
        assert wait_until(lambda: svc.packml.state == pm.STOPPED and not watch.active, 10), watch.reason
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        server.set(True)
        t0 = time.monotonic()              # the variable reads true from here on
        assert wait_until(lambda: robot.stopped_at, 2)
        assert robot.stopped_at[0] - t0 < 0.05
        assert svc.packml.wait_for([pm.ABORTED], 5)
        server.set(False)
        assert wait_until(lambda: not watch.active, 2)
        svc.command("clear")
        assert svc.packml.wait_for([pm.STOPPED], 5)
        svc.command("reset")
        assert svc.packml.wait_for([pm.IDLE], 5)
        server.stop()                    # the machine (and its e-stop) drops off the network
        stopped = True
        assert svc.packml.wait_for([pm.ABORTED], 5)
        assert "lost" in watch.reason
    finally:
        svc.shutdown()
        src.close()
        if not stopped:
            server.stop()
        server.close()


def test_opcua_estop_target_names_the_field_for_a_non_opcua_machine() -> None:
    from anycell.errors import ConfigError

    cell = load_cell(DEMO_CELL)
    serial = [m for m in cell.machines if m.driver.kind != "opcua" and getattr(m.driver, "protocol", "") != "opcua"]
    if not serial:
        pytest.skip("no non-OPC UA machine in the demo cell")
    import dataclasses

    estop = dataclasses.replace(cell.safety.estop, kind="opcua", source=f"{serial[0].id}/EStop")
    bad = dataclasses.replace(cell, safety=dataclasses.replace(cell.safety, estop=estop))
    with pytest.raises(ConfigError) as info:
        opcua_estop_target(bad)
    assert info.value.field == "safety.estop.source"
