"""OPC UA round trips through the anycell driver vs bare asyncua calls, in the same run.

Two servers, each its own process on localhost TCP: the project's simulated machine tool (asyncua)
and a node-opcua machine server (tools/node_opcua, skipped with a note where node is absent). The
reference is a bare asyncua ``Client`` awaiting ``read_value``/``write_value``/``call_method`` in
its own event loop; the driver does the same calls from synchronous code through its loop thread,
with its timeout, argument typing from InputArguments and error mapping. The ratio is the driver's
overhead (goal <= 1.2x on both servers).

    .venv/bin/python bench/bench_opcua.py [--n 200 --rounds 6]

Each figure is the best block of ``n`` calls over ``rounds`` alternating blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asyncua import Client, ua  # noqa: E402

from anycell.cell import MachineConfig, OpcUaDriver, Pose, SimDriver, Tending  # noqa: E402
from anycell.drivers.machine import open_machine  # noqa: E402
from anycell.sim.machines import free_port, launch_sim_machine  # noqa: E402

OPS = ("read", "write", "call")
NODE_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "node_opcua")


class Bare:
    """The reference: a bare asyncua client driven from its own event loop."""

    def __init__(self, endpoint: str, ns: int) -> None:
        self.ns = ns
        self.loop = asyncio.new_event_loop()
        self.client = Client(endpoint, timeout=5)
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        await self.client.connect()
        ns = self.ns
        self.machine = await self.client.nodes.root.get_child(["0:Objects", f"{ns}:Machine"])
        self.state = await self.machine.get_child([f"{ns}:State"])
        self.prog = await self.machine.get_child([f"{ns}:Program"])
        self.setp = await self.machine.get_child([f"{ns}:SetParameter"])

    async def _block(self, op: str, n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            if op == "read":
                await self.state.read_value()
            elif op == "write":
                await self.prog.write_value(ua.DataValue(ua.Variant("FACE_01", ua.VariantType.String)))
            else:
                await self.machine.call_method(self.setp, ua.Variant("depth", ua.VariantType.String),
                                               ua.Variant(float(i), ua.VariantType.Double))
        return (time.perf_counter() - t0) / n

    def block(self, op: str, n: int) -> float:
        return self.loop.run_until_complete(self._block(op, n))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.disconnect())
        self.loop.close()


def driver_block(m, op: str, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        if op == "read":
            m.read("state")
        elif op == "write":
            m.write("program", "FACE_01")
        else:
            m.call("set_parameter", "depth", float(i))
    return (time.perf_counter() - t0) / n


def measure(cfg: MachineConfig, endpoint: str, ns: int, n: int, rounds: int) -> Dict[Tuple[str, str], float]:
    bare = Bare(endpoint, ns)
    m = open_machine(cfg, endpoint)
    m.connect()
    try:
        m.read("state"), m.write("program", "FACE_01"), m.call("set_parameter", "depth", 0.0)  # warm caches
        best = {(who, op): float("inf") for who in ("bare", "driver") for op in OPS}
        # alternate short blocks so both see the same load on a shared machine; keep the best
        for _ in range(rounds):
            for op in OPS:
                best["bare", op] = min(best["bare", op], bare.block(op, n))
                best["driver", op] = min(best["driver", op], driver_block(m, op, n))
        return best
    finally:
        m.close()
        bare.close()


def start_node_server() -> Tuple[Optional[subprocess.Popen], str]:
    """The node-opcua machine server, or (None, why not)."""
    if shutil.which("node") is None or not os.path.isdir(os.path.join(NODE_TOOL, "node_modules", "node-opcua")):
        return None, "node or tools/node_opcua/node_modules missing (run the node-opcua test once, or npm ci there)"
    port = free_port()
    proc = subprocess.Popen(["node", "machine_server.js", "--port", str(port), "--path", "/anycell/mill"],
                            cwd=NODE_TOOL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.startswith("{"):
            return proc, json.loads(line)["address"]
    proc.kill()
    proc.wait(5)
    return None, "node-opcua server did not start"


def report(label: str, best: Dict[Tuple[str, str], float]) -> None:
    for op in OPS:
        b, d = best["bare", op], best["driver", op]
        print(f"OPC UA {op} ({label}): driver {d * 1e3:.3f} ms, bare asyncua {b * 1e3:.3f} ms (same run), "
              f"ratio {d / b:.2f}x (goal <= 1.2x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="calls per block")
    ap.add_argument("--rounds", type=int, default=6, help="alternating blocks per operation")
    args = ap.parse_args()
    sim_cfg = MachineConfig(id="bench_mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                            driver=SimDriver(kind="sim", protocol="opcua"))
    with tempfile.TemporaryDirectory() as tmp:
        sim = launch_sim_machine(sim_cfg, tmp, {"time_scale": 0.01})
        try:
            report("asyncua simulator", measure(sim_cfg, sim.address, 2, args.n, args.rounds))
        finally:
            sim.stop()
    proc, address = start_node_server()
    if proc is None:
        print(f"OPC UA (node-opcua): skipped: {address}")
        return
    try:
        base = "0:Objects/1:Machine/1:"
        nodes = {key: base + name for key, name in (("state", "State"), ("program", "Program"),
                                                    ("progress", "Progress"), ("part_count", "PartCount"),
                                                    ("alarm", "Alarm"))}
        node_cfg = MachineConfig(
            id="bench_node", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
            driver=OpcUaDriver(kind="opcua", endpoint=address, nodes=nodes,
                               methods={"set_parameter": base + "SetParameter"}))
        report("node-opcua server", measure(node_cfg, address, 1, args.n, args.rounds))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
