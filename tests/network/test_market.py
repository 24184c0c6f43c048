"""The market state machine with every fault; the books are checked after every step."""

from __future__ import annotations

import os
from typing import Any, Dict, List

import pytest

from anycell.errors import ConfigError
from anycell.network.buyer import portable_spec
from anycell.network.identity import Identity, Keyring, digest
from anycell.network.market import Exchange
from anycell.network.records import RecordChain
from tests.network.test_records import _unit
from tests.paths import ROOT

JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")
NOW = 1_800_000_000.0


class Books:
    """An exchange whose ledger invariants are checked after every call (and the transitions counted)."""

    def __init__(self, path: str) -> None:
        self.announced: List[str] = []
        self.ex = Exchange(path, announce=lambda tr: self.announced.append(tr.id), grace=5.0)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.ex, name)

        def checked(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            self.ex.books()
            assert self.ex.double_awarded() == 0
            return out

        return checked


@pytest.fixture()
def spec() -> Dict[str, Any]:
    s = portable_spec(JOB)
    s["quantity"] = 1
    return s


@pytest.fixture()
def books(tmp_path) -> Books:
    return Books(str(tmp_path / "ex.db"))


@pytest.fixture()
def cells(tmp_path):
    ring = Keyring(str(tmp_path / "keys"))
    ids = {n: Identity.load_or_create(str(tmp_path / "keys"), n, "cell") for n in ("a", "b", "c")}
    ring.rescan()
    return ids, ring, {n: RecordChain() for n in ids}


def bid(cell: str, price: int, finish: float) -> Dict[str, Any]:
    return {"cell": cell, "price": price, "finish": finish}


def post(books: Books, spec, cid="c1", budget=1000, due=NOW + 600, rule=None):
    return books.post(cid, "buyer", spec, digest(spec), budget, due, rule, now=NOW)


def deliver(books: Books, cells, spec, cid: str, cell: str, attempt: int, offset: float = 0.0):
    ids, _ring, chains = cells
    rec = chains[cell].seal(ids[cell], spec, spec["id"], {"id": cell, "config_digest": "x"}, _unit(spec, 1, offset),
                            contract=cid)
    return books.built(cid, cell, attempt, [rec], now=NOW + 50)


def test_the_happy_path_pays_the_price_and_returns_the_change(books, spec, cells) -> None:
    post(books, spec)
    assert books.ex.balances() == {"buyer:buyer": -1000, "escrow:c1": 1000}
    tr = books.award("c1", [bid("a", 700, NOW + 100), bid("b", 600, NOW + 200), bid("c", 500, NOW + 900)], now=NOW)
    assert tr.data["cell"] == "b" and tr.data["price"] == 600     # c is cheapest but late for the due time
    deliver(books, cells, spec, "c1", "b", 1)
    assert books.verify("c1", keyring=cells[1], now=NOW + 51).kind == "verified"
    assert books.release("c1", now=NOW + 52).kind == "released"
    assert books.ex.balances() == {"buyer:buyer": -600, "escrow:c1": 0, "cell:b": 600}
    assert [t[1] for t in books.ex.transitions("c1")] == ["posted", "awarded", "built", "verified", "released"]
    assert books.announced == [t[0] for t in books.ex.transitions()]


@pytest.mark.parametrize("rule,winner", [("lowest_price", "b"), ("quickest", "a"), ("weighted", "a")])
def test_award_rules(books, spec, rule, winner) -> None:
    post(books, spec, rule={"rule": rule, "price_weight": 0.2, "time_weight": 0.8})
    tr = books.award("c1", [bid("a", 700, NOW + 60), bid("b", 600, NOW + 500), bid("c", 2000, NOW + 10)], now=NOW)
    assert tr.data["cell"] == winner


def test_no_bids_refunds_the_buyer(books, spec) -> None:
    post(books, spec)
    assert books.award("c1", [], now=NOW).kind == "refunded"
    assert books.ex.balances()["buyer:buyer"] == 0 and books.ex.contract("c1")["state"] == "refunded"


def test_a_late_bid_changes_nothing_once_awarded(books, spec) -> None:
    post(books, spec)
    books.award("c1", [bid("a", 700, NOW + 100)], now=NOW)
    assert books.award("c1", [bid("b", 100, NOW + 100)], now=NOW + 1) is None
    assert books.ex.contract("c1")["cell"] == "a"


def test_a_cell_that_dies_after_award_forfeits_and_the_next_bidder_builds(books, spec, cells) -> None:
    post(books, spec)
    books.award("c1", [bid("a", 500, NOW + 100), bid("b", 600, NOW + 100)], now=NOW)
    assert books.cell_lost("a", now=NOW + 1) == ["c1"]
    assert books.ex.contract("c1")["state"] == "open"
    tr = books.award("c1", [bid("a", 500, NOW + 100), bid("b", 600, NOW + 100)], now=NOW + 2)
    assert tr.data["cell"] == "b" and tr.data["attempt"] == 2     # the forfeiting cell is excluded
    assert deliver(books, cells, spec, "c1", "a", 1) is None       # a's records (old attempt) are ignored
    deliver(books, cells, spec, "c1", "b", 2)
    books.verify("c1", keyring=cells[1], now=NOW + 60)
    books.release("c1", now=NOW + 61)
    assert books.ex.balances()["cell:b"] == 600 and "cell:a" not in books.ex.balances()
    assert books.ex.summary()["reawarded"] == 1


def test_a_cell_that_dies_after_building_is_still_verified_and_paid(books, spec, cells) -> None:
    """Dying after delivering (during verification) forfeits nothing: the records are what counts."""
    post(books, spec)
    books.award("c1", [bid("a", 500, NOW + 100)], now=NOW)
    deliver(books, cells, spec, "c1", "a", 1)
    assert books.cell_lost("a", now=NOW + 51) == []
    books.verify("c1", keyring=cells[1], now=NOW + 52)
    assert books.release("c1", now=NOW + 53).data["price"] == 500


def test_a_missed_deadline_forfeits(books, spec) -> None:
    post(books, spec)
    books.award("c1", [bid("a", 500, NOW + 100)], now=NOW)
    assert books.overdue(now=NOW + 104) == []
    assert books.overdue(now=NOW + 106) == ["c1"]
    assert books.ex.contract("c1")["reason"] == "missed its deadline"


@pytest.mark.parametrize("on_fail,state", [("rebuild", "open"), ("refund", "refunded")])
def test_a_unit_that_fails_verification_is_rebuilt_or_refunded(books, spec, cells, on_fail, state) -> None:
    post(books, spec, rule={"on_fail": on_fail})
    books.award("c1", [bid("a", 500, NOW + 100), bid("b", 600, NOW + 100)], now=NOW)
    deliver(books, cells, spec, "c1", "a", 1, offset=0.01)
    assert books.verify("c1", keyring=cells[1], now=NOW + 51) is None
    c = books.ex.contract("c1")
    assert c["state"] == state and "verification failed" in c["reason"] and "tolerance" in c["reason"]


def test_records_signed_by_another_cell_fail_verification(books, spec, cells) -> None:
    post(books, spec, rule={"on_fail": "refund"})
    books.award("c1", [bid("a", 500, NOW + 100)], now=NOW)
    ids, _ring, chains = cells
    rec = chains["b"].seal(ids["b"], spec, spec["id"], {"id": "b", "config_digest": "x"}, _unit(spec, 1))
    books.built("c1", "a", 1, [rec], now=NOW + 10)
    books.verify("c1", keyring=cells[1], now=NOW + 11)
    assert books.ex.contract("c1")["state"] == "refunded"


def test_attempts_are_bounded(books, spec) -> None:
    post(books, spec, rule={"max_attempts": 2})
    bids = [bid(c, 500, NOW + 100) for c in "abc"]
    books.award("c1", bids, now=NOW)
    books.cell_lost("a", now=NOW)
    books.award("c1", bids, now=NOW)
    books.cell_lost("b", now=NOW)
    assert books.award("c1", bids, now=NOW).kind == "refunded"


def test_transitions_are_idempotent(books, spec, cells) -> None:
    post(books, spec)
    assert post(books, spec) is None                    # the same post again: nothing happens
    books.award("c1", [bid("a", 500, NOW + 100)], now=NOW)
    deliver(books, cells, spec, "c1", "a", 1)
    assert books.built("c1", "a", 1, [], now=NOW) is None
    books.verify("c1", keyring=cells[1], now=NOW + 51)
    books.release("c1", now=NOW + 52)
    assert books.release("c1", now=NOW + 53) is None and books.refund("c1", "again", now=NOW + 54) is None
    assert books.ex.balances()["cell:a"] == 500


def test_bad_posts_are_refused_with_the_field(books, spec) -> None:
    with pytest.raises(ConfigError) as exc:
        post(books, spec, budget=0)
    assert exc.value.field == "budget"
    with pytest.raises(ConfigError) as exc:
        post(books, spec, due=NOW - 1)
    assert exc.value.field == "due"
    with pytest.raises(ConfigError) as exc:
        post(books, spec, rule={"rule": "cheapest"})
    assert exc.value.field == "rule"
    assert books.ex.contracts() == [] and books.ex.balances() == {}


def test_the_books_refuse_a_transition_that_would_create_money(books, spec) -> None:
    from anycell.errors import StateError
    from anycell.network.ledger import post_entries

    post(books, spec)
    with pytest.raises(StateError):
        post_entries(books.ex.conn, "forged", [("cell:a", 100)], NOW)


def test_a_bid_bond_is_returned_with_the_pay_or_forfeited_to_the_buyer(books, spec, cells) -> None:
    post(books, spec, rule={"bond": 100})
    books.award("c1", [bid("a", 500, NOW + 100), bid("b", 600, NOW + 100)], now=NOW)
    assert books.ex.balances()["cell:a"] == -100 and books.ex.balances()["bond:c1"] == 100
    books.cell_lost("a", now=NOW + 1)                      # a loses the job: its bond compensates the buyer
    assert books.ex.balances()["cell:a"] == -100 and books.ex.balances()["buyer:buyer"] == -900
    books.award("c1", [bid("b", 600, NOW + 100)], now=NOW + 2)
    deliver(books, cells, spec, "c1", "b", 2)
    books.verify("c1", keyring=cells[1], now=NOW + 60)
    books.release("c1", now=NOW + 61)
    bal = books.ex.balances()
    assert bal["cell:b"] == 600 and bal["bond:c1"] == 0 and bal["buyer:buyer"] == -500   # -600 + 100 bond


def test_a_unit_refunded_after_failing_verification_forfeits_the_bond_to_the_buyer(books, spec, cells) -> None:
    post(books, spec, rule={"bond": 100, "on_fail": "refund"})
    books.award("c1", [bid("a", 500, NOW + 100)], now=NOW)
    deliver(books, cells, spec, "c1", "a", 1, offset=0.01)
    books.verify("c1", keyring=cells[1], now=NOW + 51)
    bal = books.ex.balances()
    assert books.ex.contract("c1")["state"] == "refunded" and bal["buyer:buyer"] == 100 and bal["cell:a"] == -100
