"""Helpers shared by the simulator's tests."""

from __future__ import annotations

from typing import Any, Tuple


def load_alone(cell: Any, rid: str) -> Tuple[int, Any]:
    """Robot ``rid`` of ``cell`` loaded into a fresh PyBullet DIRECT client: (client, loaded robot).

    The caller disconnects the client; it is disconnected here when loading fails.
    """
    import pybullet as p

    from anycell.sim.builder import load_robot

    client = p.connect(p.DIRECT)
    try:
        return client, load_robot(client, cell.robot(rid))
    except BaseException:
        p.disconnect(client)
        raise
