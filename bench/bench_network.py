"""Benchmark: the manufacturing network, a burst of 200 jobs on 20 cells, and bid latency cached vs uncached.

1. Burst: an exchange, 20 cells (each its own Zenoh session and key, on
   loopback) and a buyer; 200 jobs posted at once; one cell killed while it
   builds. Figures: every job awarded, built, verified and settled; post ->
   award p50/p99; throughput; the killed cell's job re-awarded. Reference, in
   the same run: the same jobs queued on one cell, i.e. the sum of their
   planned build times at the same time scale (one cell builds one job at a
   time). Scale-out ratio = one-cell time / network time.
2. Bids: a cell's bid for a spec it has not seen (plans and quotes, goal
   < 3 s) and for a spec seen before (from the plan cache, goal p99 < 50 ms).

Run: ``.venv/bin/python bench/bench_network.py [--cells 20 --jobs 200]`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anycell.cell import load_cell  # noqa: E402
from anycell.network.bidding import Bidder, PlanCache  # noqa: E402
from anycell.network.demo import job_variants, percentile, run_demo  # noqa: E402
from anycell.network.identity import digest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
JOBS = [os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml"),
        os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml")]


def bid_latency(rounds: int = 200) -> dict:
    cell = load_cell(CELL)
    base = job_variants(JOBS, 3)
    uncached = []
    for i in range(12):      # a new spec each time (a new product id): plan, schedule, quote
        spec = dict(base[i % 3], id=f"new-{i}")
        bidder = Bidder("c", PlanCache(cell))
        t0 = time.perf_counter()
        bidder.bid(spec, digest(spec))
        uncached.append(time.perf_counter() - t0)
    bidder = Bidder("c", PlanCache(cell))
    for s in base:
        bidder.bid(s, digest(s))
    cached = []
    for i in range(rounds):
        s = base[i % 3]
        t0 = time.perf_counter()
        bidder.bid(s, digest(s))
        cached.append(time.perf_counter() - t0)
    return {"uncached_p50_ms": 1000 * percentile(uncached, 50), "uncached_p99_ms": 1000 * percentile(uncached, 99),
            "cached_p50_ms": 1000 * percentile(cached, 50), "cached_p99_ms": 1000 * percentile(cached, 99)}


def one_cell_seconds(jobs: int, time_scale: float) -> float:
    """The same jobs queued on one cell: the sum of their planned makespans, at the demo's time scale."""
    cache = PlanCache(load_cell(CELL))
    return sum(cache.get(s).makespan for s in job_variants(JOBS, jobs)) * time_scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--time-scale", type=float, default=0.01)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    bids = bid_latency()
    print(f"bid, new spec:  p50 {bids['uncached_p50_ms']:8.1f} ms  p99 {bids['uncached_p99_ms']:8.1f} ms (goal < 3000)")
    print(f"bid, cached:    p50 {bids['cached_p50_ms']:8.3f} ms  p99 {bids['cached_p99_ms']:8.3f} ms  (goal < 50)")
    print(f"  cached/uncached p50 ratio: {bids['cached_p50_ms'] / max(1e-9, bids['uncached_p50_ms']):.5f}")
    out = run_demo(CELL, JOBS, cells=args.cells, jobs=args.jobs, time_scale=args.time_scale, timeout=900)
    serial = one_cell_seconds(args.jobs, args.time_scale)
    print(f"burst of {out['posted']} jobs on {out['cells']} cells (killed {out['killed_cell']}):")
    print(f"  awarded {out['awarded']}, built {out['completed']}, verified {out['verified']}, released "
          f"{out['released']}, refunded {out['refunded']}, re-awarded {out['reawarded']}, lost {out['lost']}, "
          f"double-awarded {out['double_awarded']}")
    print(f"  post -> award p50 {out['post_to_award_p50_s']:.3f} s  p99 {out['post_to_award_p99_s']:.3f} s")
    print(f"  network: {out['burst_s']:.1f} s for the burst, {out['throughput_jobs_per_min']:.0f} jobs/min")
    print(f"  one cell (same jobs queued, same time scale): {serial:.1f} s")
    print(f"  scale-out ratio (one cell / network): {serial / max(1e-9, out['burst_s']):.1f}x on {out['cells']} cells")
    print(json.dumps({"bids": bids, "burst": out, "one_cell_s": serial}, sort_keys=True))
    ok = out["lost"] == 0 and out["double_awarded"] == 0 and out["not_settled"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
