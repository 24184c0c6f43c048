"""Small graph helpers shared by the planners and the executor (precedence graphs of parts and operations).

The one topological sort of the project is :func:`topological_order`, on the
standard library's :mod:`graphlib`; a cycle comes out as
:class:`graphlib.CycleError`, whose ``args[1]`` lists the cycle's members in
order (before -> after, the first repeated at the end).
"""

from __future__ import annotations

import graphlib
import heapq
from typing import Callable, Hashable, Iterable, List, Mapping, Sequence, Set, Tuple, TypeVar, Union, cast

N = TypeVar("N", bound=Hashable)
#: A node's successors: a mapping, or a list indexed by node number.
Successors = Union[Mapping[N, Iterable[N]], Sequence[Iterable[N]]]


def reachable(node: N, succ: Successors[N]) -> Set[N]:
    """Every node reachable from ``node`` along ``succ`` (``node`` itself only if on a cycle)."""
    nexts = cast(Callable[[N], Iterable[N]], succ.__getitem__)
    seen: Set[N] = set()
    todo = list(nexts(node))
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(nexts(m))
    return seen


def topological_order(nodes: Sequence[N], preds: Successors[N]) -> List[N]:
    """``nodes`` with each after its predecessors; of the nodes free at once, the earliest in ``nodes`` first.

    ``preds`` gives each node's predecessors (a mapping, or a list indexed by
    node number); predecessors that are not in ``nodes`` are ignored, so a
    subgraph can be sorted. The tie-break keeps the given order wherever the
    precedences allow it, so the result is deterministic. Raises
    :class:`graphlib.CycleError` when the precedences have a cycle.
    """
    before = cast(Callable[[N], Iterable[N]], preds.__getitem__)
    rank = {n: i for i, n in enumerate(nodes)}
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for n in nodes:
        sorter.add(n, *(p for p in before(n) if p in rank))
    sorter.prepare()
    ready: List[Tuple[int, N]] = [(rank[n], n) for n in sorter.get_ready()]
    heapq.heapify(ready)
    order: List[N] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        sorter.done(n)
        for m in sorter.get_ready():
            heapq.heappush(ready, (rank[m], m))
    return order


def cycle_members(exc: graphlib.CycleError) -> List[Hashable]:
    """The members of the cycle ``exc`` found, in order (before -> after), each once."""
    found = list(exc.args[1]) if len(exc.args) > 1 else []
    return found[:-1] if len(found) > 1 and found[0] == found[-1] else found
