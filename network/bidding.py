"""A cell's bid: its own transparent quote, from a plan cache keyed by the spec and config digests.

A call for proposals carries the job spec. The cell checks the job fits
(parts, processes, stations), plans and schedules it, and prices it with
:func:`anycell.planners.quote.quote` (resource rates, setup, material), the
same quote ``anycell quote`` prints. Planning is the slow part (hundreds of
milliseconds for a new spec), so the plan and quote are cached under
``(spec digest, config digest)``: a spec seen before is answered from the
cache in well under a millisecond, and the finish promise is computed fresh
from the cell's queue each time.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from anycell.cell import CellConfig
from anycell.documents import from_data
from anycell.errors import AnycellError
from anycell.job import JobSpec, job_from_document
from anycell.plan import Plan

from .identity import digest

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """What the cache holds for one spec on one config: the parsed job, its scheduled plan and its quote."""

    job: JobSpec
    plan: Plan
    price: int             # cents
    makespan: float        # seconds on this cell
    currency: str
    lines: int


def cell_digest(cell: CellConfig) -> str:
    """The config digest: the cell's document as loaded (any change to the config changes it)."""
    doc = getattr(cell, "document", None)
    data = getattr(doc, "data", None)
    return digest(data if data is not None else repr(cell))


class PlanCache:
    """Plans and quotes by (spec digest, config digest), least recently used dropped past ``size``."""

    def __init__(self, cell: CellConfig, *, size: int = 256, time_limit: float = 1.0) -> None:
        self.cell = cell
        self.config_digest = cell_digest(cell)
        self.size = size
        self.time_limit = time_limit
        self._items: "OrderedDict[Tuple[str, str], Planned | AnycellError]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, spec: Dict[str, Any], spec_digest: Optional[str] = None) -> Planned:
        """The plan and quote for ``spec``; raises the planner's error (cached too) if the cell cannot make it."""
        key = (spec_digest or digest(spec), self.config_digest)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
        if found is None:
            with self._lock:
                self.misses += 1
            found = self._plan(spec)
            with self._lock:
                self._items[key] = found
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        if isinstance(found, AnycellError):
            # a fresh copy each time: raising the cached object would pin the caller's frames (and a Zenoh
            # query in them, whose final reply is sent only when it is freed) to its traceback
            raise copy.copy(found).with_traceback(None)
        return found

    def warm(self) -> None:
        """Import the planners now, so the first call for proposals does not pay for it."""
        import anycell.planners.pipeline  # noqa: F401
        import anycell.planners.quote  # noqa: F401
        import anycell.planners.schedule  # noqa: F401

    def _plan(self, spec: Dict[str, Any]) -> "Planned | AnycellError":
        from anycell.planners.pipeline import PlanOptions, plan_and_schedule
        from anycell.planners.quote import quote

        try:
            job = job_from_document(from_data(spec))
            plan = plan_and_schedule(self.cell, job, PlanOptions(time_limit=self.time_limit))
            q = quote(self.cell, job, plan)
        except AnycellError as exc:
            return exc.with_traceback(None)
        return Planned(job, plan, int(round(q.total * 100)), float(q.makespan), q.currency, len(q.lines))


class Bidder:
    """Answers calls for proposals for one cell: a priced, timed bid, or the reason it does not bid.

    ``time_scale`` maps the plan's seconds to wall seconds (the demo's cells run
    faster than real time); ``backlog`` returns the wall seconds of work the
    cell has already committed to, so the finish promise includes its queue.
    """

    def __init__(self, cell_id: str, cache: PlanCache, *, time_scale: float = 1.0, margin: float = 1.0,
                 price_factor: float = 1.0, backlog: Any = None) -> None:
        self.cell_id = cell_id
        self.cache = cache
        self.time_scale = time_scale
        self.margin = margin
        self.price_factor = price_factor
        self.backlog = backlog or (lambda: 0.0)
        self.latencies: list = []

    def bid(self, spec: Dict[str, Any], spec_digest: str, *, now: Optional[float] = None) -> Dict[str, Any]:
        """A bid body ``{cell, price, finish, ...}``, or ``{cell, declined: reason}``."""
        t0 = time.perf_counter()
        try:
            planned = self.cache.get(spec, spec_digest)
        except AnycellError as exc:
            self.latencies.append(time.perf_counter() - t0)
            return {"cell": self.cell_id, "declined": str(exc), "spec_digest": spec_digest}
        at = time.time() if now is None else now
        wall = planned.makespan * self.time_scale
        out = {"cell": self.cell_id, "spec_digest": spec_digest, "config_digest": self.cache.config_digest,
               "price": int(round(planned.price * self.price_factor)), "currency": planned.currency,
               "makespan": planned.makespan, "finish": at + float(self.backlog()) + wall + self.margin,
               "quote_lines": planned.lines}
        self.latencies.append(time.perf_counter() - t0)
        return out
