"""E-stop sources outside ROS: an OPC UA variable read over its own connection.

The e-stop gets its own OPC UA session (not the machine driver's): a driver busy in a long
method call, or reconnecting, must not delay the e-stop. The source is read at ``period``;
a read that fails or takes longer than ``timeout`` raises, which :class:`~anycell.agent.safety.EStopWatch`
treats as a lost source (tripped). After a loss it reconnects at most once a second.

``safety.estop.source`` is ``<machine_id>/<variable>``: the variable is a key of that machine's
``driver.nodes`` map when it is one, else a node id (``ns=2;s=EStop``) or a browse path
(``0:Objects/2:Mill/2:EStop``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Optional

from anycell.cell import CellConfig
from anycell.errors import ConfigError

from anycell.agent.safety import EStopLost


def opcua_estop_target(cell: CellConfig, endpoint: Optional[str] = None) -> tuple:
    """``(endpoint, node path)`` of an ``opcua`` e-stop; ConfigError naming the field when it cannot be read."""
    src = cell.safety.estop.source
    mid, _, var = src.partition("/")
    field = "safety.estop.source"
    if not var:
        raise ConfigError(f"e-stop source '{src}' has no variable", field=field,
                          hint="write it as <machine_id>/<variable>, e.g. mill/EStop")
    machine = cell.machine(mid)
    drv = machine.driver
    if not (drv.kind == "opcua" or (drv.kind == "sim" and getattr(drv, "protocol", "") == "opcua")):
        raise ConfigError(f"e-stop source names machine '{mid}', which is not reached over OPC UA "
                          f"(driver {drv.kind})", field=field,
                          hint="use kind: ros_topic for a signal that is not an OPC UA variable")
    nodes = getattr(drv, "nodes", None) or {}
    path = nodes.get(var, var)
    ep = endpoint or getattr(drv, "endpoint", None)
    if not ep:
        raise ConfigError(f"machine '{mid}' has no OPC UA endpoint yet", field=field,
                          hint="a simulated machine's endpoint is known once it runs")
    return ep, path


class OpcUaEStopSource:
    """Reads one boolean OPC UA variable; :meth:`read` raises :class:`EStopLost` when it cannot."""

    def __init__(self, endpoint: str, path: str, *, timeout: float = 0.5) -> None:
        self.endpoint = endpoint
        self.path = path
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="estop-opcua", daemon=True)
        self._thread.start()
        self._client: Any = None
        self._node: Any = None
        self._next_try = 0.0

    def _run(self, coro: Any, timeout: float) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    async def _open(self) -> None:
        from asyncua import Client

        client = Client(self.endpoint, timeout=max(self.timeout, 1.0))
        await client.connect()
        try:
            if self.path.startswith(("ns=", "i=", "s=", "g=", "b=")):
                node = client.get_node(self.path)
            else:
                node = await client.nodes.root.get_child(self.path.split("/"))
            await node.read_value()
        except BaseException:
            await client.disconnect()
            raise
        self._client, self._node = client, node

    async def _drop(self) -> None:
        client, self._client, self._node = self._client, None, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), 1.0)
            except BaseException:  # noqa: BLE001 - the connection is gone anyway
                pass

    def read(self) -> Any:
        if self._node is None:
            now = time.monotonic()
            if now < self._next_try:
                raise EStopLost(f"not connected to {self.endpoint}")
            self._next_try = now + 1.0
            try:
                self._run(self._open(), 3.0)
            except Exception as exc:  # noqa: BLE001
                raise EStopLost(f"cannot connect to {self.endpoint}: {exc or type(exc).__name__}") from None
        try:
            return self._run(self._node.read_value(), self.timeout)
        except Exception as exc:  # noqa: BLE001
            try:
                self._run(self._drop(), 2.0)
            except Exception:  # noqa: BLE001
                self._client = self._node = None
            raise EStopLost(f"read of {self.path} failed: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        try:
            self._run(self._drop(), 2.0)
        except Exception:  # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)


def serial_estop_read(cell: CellConfig, drv: Any) -> Any:
    """The read function of a ``serial_state`` or ``serial_pin`` e-stop over the machine's own driver.

    ``serial_state``: tripped while the machine reports Aborted (GRBL Alarm, Marlin kill) or
    Suspended (GRBL's safety door). ``serial_pin``: tripped while the GRBL status report's ``Pn``
    field lists the pin. A lost serial line raises (a lost source).
    """
    cfg = cell.safety.estop
    _mid, _, pin = cfg.source.partition("/")
    if cfg.kind == "serial_pin":
        def read_pin() -> bool:
            try:
                st = drv.query_status(timeout=0.5)
            except Exception as exc:  # noqa: BLE001
                raise EStopLost(str(exc) or type(exc).__name__) from None
            return pin in str(st.get("pins", "")) or (pin == "D" and st.get("state") == "Door")

        return read_pin

    def read_state() -> bool:
        try:
            state = str(drv.state())
        except Exception as exc:  # noqa: BLE001
            raise EStopLost(str(exc) or type(exc).__name__) from None
        return state in ("Aborted", "Suspended")

    return read_state
