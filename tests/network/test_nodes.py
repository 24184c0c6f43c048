"""The participants over real Zenoh sessions (in one process, TCP on loopback): faults seen from the network."""

from __future__ import annotations

import os
import time
from typing import Any, Dict

import pytest

from anycell.cell import load_cell
from anycell.errors import ConfigError
from anycell.network.building import PlanWalkBuilder
from anycell.network.buyer import Buyer, portable_spec
from anycell.network.cell_node import CellNode
from anycell.network.exchange_node import ExchangeNode
from anycell.network.identity import Identity, Keyring
from anycell.network.transport import Keys, free_port
from tests.paths import ROOT

CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
WIDGET = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")
STACK = os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml")


@pytest.fixture()
def market(tmp_path):
    """An exchange and a factory of cells and buyers, all on one loopback port; everything closed afterwards."""
    keys = str(tmp_path / "keys")
    port = free_port()
    ns = Keys(f"anycell-nodes-{os.getpid()}-{port}")
    hub, spoke = {"listen": [f"tcp/127.0.0.1:{port}"]}, {"connect": [f"tcp/127.0.0.1:{port}"]}
    ex = ExchangeNode(Identity.load_or_create(keys, "exchange", "exchange"), str(tmp_path / "ex.db"), Keyring(keys),
                      session=hub, keys=ns, bid_window=5.0, startup_grace=0.5).start()
    opened: list = []
    cell = load_cell(CELL)

    def add_cell(name: str, defect: float = 0.0, price_factor: float = 1.0) -> CellNode:
        node = CellNode(Identity.load_or_create(keys, name, "cell"), cell,
                        PlanWalkBuilder(cell, time_scale=0.005, defect=defect), Keyring(keys), session=spoke, keys=ns,
                        time_scale=0.005, price_factor=price_factor).start()
        opened.append(node)
        end = time.time() + 20
        while name not in ex.alive_cells():
            assert time.time() < end, "the cell never showed up"
            time.sleep(0.02)
        return node

    def add_buyer(name: str = "buyer", known: bool = True) -> Buyer:
        ident = Identity.load_or_create(keys, name, "buyer") if known else Identity.generate(name, "buyer")
        b = Buyer(ident, Keyring(keys), session=spoke, keys=ns).start()
        opened.append(b)
        time.sleep(0.3)
        return b

    yield {"ex": ex, "cell": add_cell, "buyer": add_buyer}
    for o in reversed(opened):
        (o.close if isinstance(o, Buyer) else o.stop)()
    ex.stop()


def _history(ex: ExchangeNode, cid: str) -> Dict[str, Any]:
    return {kind: data for _id, kind, data in ex.exchange.transitions(cid)}


@pytest.mark.slow
def test_a_job_no_cell_can_make_is_declined_at_once_and_refunded(market) -> None:
    market["cell"]("cell-a")
    market["cell"]("cell-b")
    buyer = market["buyer"]()
    spec = portable_spec(STACK)
    spec["quantity"] = 2          # the demo cell cannot take a stacked unit off its fixture
    t0 = time.time()
    cid = buyer.post(spec, budget=50, due_in=120)
    assert buyer.wait([cid], timeout=30) == {cid: "refunded"}
    assert time.time() - t0 < 3.0            # the refusals end the call, not the 5 s bid window
    assert "no acceptable bid" in _history(market["ex"], cid)["refunded"]["reason"]
    assert market["ex"].exchange.books()["buyer:buyer"] == 0


@pytest.mark.slow
def test_a_defective_cell_is_caught_by_verification_and_another_cell_rebuilds(market) -> None:
    sloppy = market["cell"]("cheap-sloppy", defect=0.01, price_factor=0.5)   # cheapest: wins, builds out of tolerance
    careful = market["cell"]("careful")
    spec = portable_spec(WIDGET)
    for node in (sloppy, careful):        # both have planned this product before: both bid well within the window
        node.cache.get(spec)
    buyer = market["buyer"]()
    cid = buyer.post(spec, budget=50, due_in=120, rule={"on_fail": "rebuild"})
    assert buyer.wait([cid], timeout=60) == {cid: "released"}
    hist = _history(market["ex"], cid)
    assert hist["forfeited"]["cell"] == "cheap-sloppy" and "tolerance" in hist["forfeited"]["reason"]
    assert hist["released"]["cell"] == "careful"
    books = market["ex"].exchange.books()
    assert books.get("cell:cheap-sloppy", 0) == 0 and books["cell:careful"] == hist["released"]["price"]


@pytest.mark.slow
def test_a_buyer_with_an_unknown_key_is_refused_and_counted(market) -> None:
    market["cell"]("cell-a")
    stranger = market["buyer"]("mallory", known=False)
    with pytest.raises(ConfigError, match="refused"):
        stranger.post(portable_spec(WIDGET), budget=50, due_in=120)
    assert market["ex"].guard.refused.get("unknown_key") == 1
    assert market["ex"].exchange.contracts() == []


@pytest.mark.slow
def test_a_late_bid_loses_to_a_bid_in_time(market) -> None:
    """The cheaper cell answers after the call closed: its bid does not count, the cell in time wins."""
    market["ex"].bid_window = 3.0
    slow = market["cell"]("cheap-but-late", price_factor=0.5)
    in_time = market["cell"]("in-time")
    spec = portable_spec(WIDGET)
    in_time.cache.get(spec)
    answer = slow.bidder.bid

    def late(*args, **kwargs):
        time.sleep(4.0)
        return answer(*args, **kwargs)

    slow.bidder.bid = late
    buyer = market["buyer"]()
    cid = buyer.post(spec, budget=50, due_in=120)
    assert buyer.wait([cid], timeout=60) == {cid: "released"}
    hist = _history(market["ex"], cid)
    assert hist["awarded"]["cell"] == "in-time" and hist["awarded"]["rejected"] == []
