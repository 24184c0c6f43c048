"""OPC UA round trips through the anycell driver vs bare asyncua calls, in the same run.

One simulated machine-tool server (its own process, TCP on localhost). The reference is a bare
asyncua ``Client`` awaiting ``read_value``/``write_value``/``call_method`` in its own event loop;
the driver does the same calls from synchronous code through its loop thread, with its timeout
and error mapping. The ratio is the driver's overhead (goal <= 1.2x).

    .venv/bin/python bench/bench_opcua.py [--n 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asyncua import Client, ua  # noqa: E402

from anycell.cell import Machine, Pose, SimDriver, Tending  # noqa: E402
from drivers.machine import open_machine  # noqa: E402
from sim.machines import launch_sim_machine  # noqa: E402


async def bare(endpoint: str, n: int) -> dict:
    client = Client(endpoint, timeout=5)
    await client.connect()
    try:
        machine = await client.nodes.root.get_child(["0:Objects", "2:Machine"])
        state = await machine.get_child(["2:State"])
        prog = await machine.get_child(["2:Program"])
        setp = await machine.get_child(["2:SetParameter"])
        out = {}
        t0 = time.perf_counter()
        for _ in range(n):
            await state.read_value()
        out["read"] = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(n):
            await prog.write_value(ua.DataValue(ua.Variant("FACE_01", ua.VariantType.String)))
        out["write"] = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(n):
            await machine.call_method(setp, "depth", float(i))
        out["call"] = (time.perf_counter() - t0) / n
        return out
    finally:
        await client.disconnect()


def driver(cfg, endpoint: str, n: int) -> dict:
    m = open_machine(cfg, endpoint)
    m.connect()
    try:
        m.read("state"), m.write("program", "FACE_01"), m.call("set_parameter", "depth", 0.0)  # warm caches
        out = {}
        t0 = time.perf_counter()
        for _ in range(n):
            m.read("state")
        out["read"] = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for _ in range(n):
            m.write("program", "FACE_01")
        out["write"] = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(n):
            m.call("set_parameter", "depth", float(i))
        out["call"] = (time.perf_counter() - t0) / n
        return out
    finally:
        m.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    cfg = Machine(id="bench_mill", kind="cnc_mill", capabilities=["mill"], tending=Tending(load=Pose()),
                  driver=SimDriver(kind="sim", protocol="opcua"))
    with tempfile.TemporaryDirectory() as tmp:
        sim = launch_sim_machine(cfg, tmp, {"time_scale": 0.01})
        try:
            # interleave to share any drift of the machine's load fairly
            b1 = asyncio.run(bare(sim.address, args.n))
            d1 = driver(cfg, sim.address, args.n)
            b2 = asyncio.run(bare(sim.address, args.n))
            d2 = driver(cfg, sim.address, args.n)
        finally:
            sim.stop()
    for op in ("read", "write", "call"):
        b = min(b1[op], b2[op])
        d = min(d1[op], d2[op])
        print(f"OPC UA {op}: driver {d * 1e3:.3f} ms, bare asyncua {b * 1e3:.3f} ms (same run), "
              f"ratio {d / b:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    main()
