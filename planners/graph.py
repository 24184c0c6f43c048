"""Small graph helpers shared by the planners (precedence graphs of parts and operations)."""

from __future__ import annotations

from typing import Hashable, Iterable, Mapping, Sequence, Set, Union

Successors = Union[Mapping[Hashable, Iterable[Hashable]], Sequence[Iterable[Hashable]]]


def reachable(node: Hashable, succ: Successors) -> Set[Hashable]:
    """Every node reachable from ``node`` along ``succ`` (``node`` itself only if on a cycle)."""
    seen: Set[Hashable] = set()
    todo = list(succ[node])  # type: ignore[index]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(succ[m])  # type: ignore[index]
    return seen
