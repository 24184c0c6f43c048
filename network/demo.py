"""The network on one machine: an exchange, N cells and a buyer, each with its own Zenoh session and key.

``run_demo`` is ``anycell network demo`` and the benchmark's engine: it posts
a burst of jobs, kills one cell while it is building, waits until every
contract is released or refunded, and returns the figures (counts, post ->
award latency, throughput, bid latency cached and uncached, refusals) after
checking the books. The sessions talk over TCP on loopback; multicast
scouting is off so two demos on one machine never meet.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from anycell.cell import CellConfig, load_cell
from anycell.errors import ConfigError

from .buyer import Buyer, portable_spec
from .building import Builder, PlanWalkBuilder
from .cell_node import CellNode
from .exchange_node import ExchangeNode
from .identity import Identity, Keyring
from .records import verify_chain
from .transport import Keys, free_port

log = logging.getLogger(__name__)

BuilderFactory = Callable[[int, CellConfig, float], Builder]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return float(ordered[k])


def job_variants(paths: Sequence[str], count: int) -> List[Dict[str, Any]]:
    """``count`` job specs cycling over ``paths``, the first one also as a two-unit order: a few distinct specs,
    as repeat orders are (a stacked product cannot leave the demo cell's fixture in quantity, so only the first
    path is doubled)."""
    bases = [portable_spec(p) for p in paths]
    kinds = [(b, 1) for b in bases] + [(bases[0], 2)]
    out = []
    for i in range(count):
        base, qty = kinds[i % len(kinds)]
        spec = json.loads(json.dumps(base))
        spec["quantity"] = qty
        spec["id"] = f"{spec['id']}-q{qty}"
        out.append(spec)
    return out


def _fast_builder(index: int, cell: CellConfig, time_scale: float) -> Builder:
    return PlanWalkBuilder(cell, time_scale=time_scale)


def run_demo(cell_path: str, job_paths: Sequence[str], *, cells: int = 6, jobs: int = 20,
             builder_factory: Optional[BuilderFactory] = None, kill: bool = True, report_dir: Optional[str] = None,
             time_scale: float = 0.01, workdir: Optional[str] = None, budget: float = 60.0, due_in: float = 600.0,
             timeout: float = 600.0, bid_window: float = 3.0, namespace: Optional[str] = None,
             rule: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run the network demo and return its summary (see the module docstring)."""
    if cells < 1 or jobs < 1:
        raise ConfigError("the demo needs at least one cell and one job", field="cells" if cells < 1 else "jobs")
    if kill and cells < 2:
        raise ConfigError("killing a cell needs at least two cells", field="cells", hint="--cells 2, or --no-kill")
    cell = load_cell(cell_path)
    specs = job_variants(job_paths, jobs)
    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="anycell-net-") if own_dir else None
    work = tmp.name if tmp is not None else str(workdir)
    keys_dir = os.path.join(work, "keys")
    factory = builder_factory or _fast_builder
    keys = Keys(namespace or f"anycell-demo-{os.getpid()}-{int(time.time() * 1000) % 100000}")
    port = free_port()
    hub = {"listen": [f"tcp/127.0.0.1:{port}"]}
    spoke = {"connect": [f"tcp/127.0.0.1:{port}"]}

    ex_ident = Identity.load_or_create(keys_dir, "exchange", "exchange")
    buyer_ident = Identity.load_or_create(keys_dir, "buyer", "buyer")
    cell_idents = [Identity.load_or_create(keys_dir, f"cell-{i + 1:02d}", "cell") for i in range(cells)]
    records: Dict[str, List[Dict[str, Any]]] = {}
    rec_lock = threading.Lock()

    def on_record(cell_name: str, contract: str, env: Dict[str, Any]) -> None:
        with rec_lock:
            records.setdefault(cell_name, []).append(env)

    exchange = ExchangeNode(ex_ident, os.path.join(work, "exchange.db"), Keyring(keys_dir), session=hub, keys=keys,
                            bid_window=bid_window, grace=max(5.0, 30 * time_scale * 100))
    nodes: List[CellNode] = []
    buyer: Optional[Buyer] = None
    t_start = time.time()
    try:
        exchange.start()
        for i, ident in enumerate(cell_idents):
            builder = factory(i, cell, time_scale)
            # a builder slower than the plan-walkers (the full simulated cell) says how it maps plan seconds to
            # wall seconds, so its finish promises hold; it may also price differently
            nodes.append(CellNode(ident, cell, builder, Keyring(keys_dir), session=spoke, keys=keys,
                                  time_scale=float(getattr(builder, "bid_time_scale", time_scale)),
                                  price_factor=float(getattr(builder, "price_factor", 1.0)),
                                  max_jobs=getattr(builder, "max_jobs", None),
                                  chain_path=os.path.join(work, f"{ident.name}.chain.json"),
                                  on_record=on_record).start())
        buyer = Buyer(buyer_ident, Keyring(keys_dir), session=spoke, keys=keys).start()
        _wait(lambda: len(exchange.alive_cells()) == cells, 30.0, "the cells to show up at the exchange")
        t_post = time.time()
        contracts = [buyer.post(s, budget=budget, due_in=due_in, rule=rule) for s in specs]
        killed = None
        if kill:
            killed = _kill_one_mid_job(nodes, timeout=min(120.0, timeout))
        states = buyer.wait(contracts, timeout=timeout)
        t_end = time.time()
        _wait(lambda: exchange.exchange.summary()["open"] == 0, 10.0, "the exchange to settle")
        books = exchange.exchange.books()          # raises if money was created or lost
        summary = exchange.exchange.summary()
        lat = list(exchange.award_latency.values())
        bids = [x for n in nodes for x in n.bidder.latencies]
        misses = sum(n.cache.misses for n in nodes)
        chains_ok = all(v.ok for envs in records.values() for v in verify_chain(envs, keyring=Keyring(keys_dir)))
        out: Dict[str, Any] = {
            **{k: summary[k] for k in ("posted", "awarded", "completed", "verified", "released", "refunded",
                                       "reawarded", "lost", "double_awarded", "forfeits")},
            "not_settled": sum(1 for s in states.values() if s not in ("released", "refunded")),
            "cells": cells, "jobs": jobs, "killed_cell": killed,
            "post_to_award_p50_s": round(percentile(lat, 50), 4),
            "post_to_award_p99_s": round(percentile(lat, 99), 4),
            "wall_s": round(t_end - t_start, 3),
            "burst_s": round(t_end - t_post, 3),
            "throughput_jobs_per_min": round(60.0 * summary["released"] / max(1e-9, t_end - t_post), 2),
            "bids": len(bids), "plan_cache_misses": misses,
            "bid_p50_ms": round(1000 * percentile(bids, 50), 3), "bid_p99_ms": round(1000 * percentile(bids, 99), 3),
            "records": sum(len(v) for v in records.values()), "chains_verified": chains_ok,
            "refused_messages": dict(exchange.guard.refused), "late_bids": exchange.late_bids,
            "ledger_sum_cents": sum(books.values()),
            "paid_to_cells": round(sum(v for k, v in books.items() if k.startswith("cell:")) / 100.0, 2),
            "jobs_by_cell": {n.name: len(n.built_contracts) for n in nodes},
            "refund_reasons": _reasons(exchange, "refunded"),
            "forfeit_reasons": _reasons(exchange, "forfeited"),
        }
        if report_dir:
            out["report"] = write_records(report_dir, records)
        return out
    finally:
        if buyer is not None:
            buyer.close()
        exchange.stop()
        for n in nodes:
            if not n.killed:
                n.stop()
        if tmp is not None:
            tmp.cleanup()


def write_records(report_dir: str, records: Dict[str, List[Dict[str, Any]]]) -> str:
    """Write every record as ``<dir>/<cell>/record-<sequence>.json`` (the chain order); return the directory."""
    for cell_name, envs in records.items():
        folder = os.path.join(report_dir, cell_name)
        os.makedirs(folder, exist_ok=True)
        for i, env in enumerate(envs, start=1):
            with open(os.path.join(folder, f"record-{i:04d}.json"), "w", encoding="utf-8") as handle:
                json.dump(env, handle, indent=1, sort_keys=True)
    return os.path.abspath(report_dir)


def _reasons(exchange: ExchangeNode, kind: str) -> Dict[str, int]:
    """How many transitions of ``kind`` gave each reason (why jobs were refunded or forfeited)."""
    out: Dict[str, int] = {}
    for _id, k, data in exchange.exchange.transitions():
        if k == kind:
            reason = str(data.get("reason", ""))[:120]
            out[reason] = out.get(reason, 0) + 1
    return out


def _kill_one_mid_job(nodes: List[CellNode], timeout: float) -> Optional[str]:
    """Kill the first cell seen building a job, among those whose builder can be stopped mid-job (the full
    simulated cell runs machine processes that must be shut down in order, so it is never the victim)."""
    end = time.time() + timeout
    while time.time() < end:
        for n in reversed(nodes):
            if n.building is not None and not n.killed and getattr(n.builder, "killable", True):
                log.warning("killing cell %s while it builds %s", n.name, n.building)
                n.kill()
                return n.name
        time.sleep(0.01)
    return None


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise ConfigError(f"timed out waiting for {what}", hint="is the loopback network usable?")
        time.sleep(0.02)
