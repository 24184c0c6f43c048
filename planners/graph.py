"""Small graph helpers shared by the planners (precedence graphs of parts and operations)."""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Mapping, Sequence, Set, TypeVar, Union, cast

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
