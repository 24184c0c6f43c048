"""A real cell on the network: `anycell up --sim --market` (cell agent, simulated cell, network bridge) wins a job
posted to an exchange over Zenoh, builds it through its ROS API, and is paid once its signed records verify."""

from __future__ import annotations

import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from anycell.network.buyer import Buyer, portable_spec  # noqa: E402
from anycell.network.exchange_node import ExchangeNode  # noqa: E402
from anycell.network.identity import Identity, Keyring  # noqa: E402
from anycell.network.transport import free_port  # noqa: E402
from tests.paths import DEMO_JOB  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_anycell_up_market_builds_a_won_job_through_the_cell_agent(processes, ros_env, tmp_path) -> None:
    keys = str(tmp_path / "keys")
    port = free_port()
    hub = f"tcp/127.0.0.1:{port}"
    ex = ExchangeNode(Identity.load_or_create(keys, "exchange", "exchange"), str(tmp_path / "ex.db"), Keyring(keys),
                      session={"listen": [hub]}, bid_window=20.0).start()
    buyer = None
    try:
        up = processes.start([sys.executable, "-m", "anycell", "up", "demo_cell", "--sim", "--startup", "execute",
                              "--journal", str(tmp_path / "j.db"), "--no-color", "--market", "--market-connect", hub,
                              "--market-keys", keys], "up", timeout=300)
        end = time.time() + 90
        while "demo_cell" not in ex.alive_cells():
            assert time.time() < end and up.poll() is None, processes.log(up)
            time.sleep(0.1)
        buyer = Buyer(Identity.load_or_create(keys, "buyer", "buyer"), Keyring(keys),
                      session={"connect": [hub]}).start()
        time.sleep(0.3)
        spec = portable_spec(DEMO_JOB)
        cid = buyer.post(spec, budget=50, due_in=600)
        assert buyer.wait([cid], timeout=240) == {cid: "released"}, processes.log(up)
        hist = {kind: data for _id, kind, data in ex.exchange.transitions(cid)}
        assert hist["awarded"]["cell"] == "demo_cell" and hist["verified"]["units"] == 2
        assert ex.exchange.books()["cell:demo_cell"] == hist["released"]["price"]
        records = ex.exchange.contract(cid)["records"]
        from anycell.network.records import verify_record

        for env in records:
            v = verify_record(env, keyring=Keyring(keys), spec_data=spec)
            assert v.ok, v.failures()
            pred = v.statement["predicate"]
            cap = [p for p in pred["programs"] if p["part"] == "cap"][0]
            assert cap["acknowledged"] > 0 and len(pred["snapshots"]) > 0   # what the firmware took, the pictures
        assert "[network_bridge]" in processes.log(up)
    finally:
        if buyer is not None:
            buyer.close()
        ex.stop()
